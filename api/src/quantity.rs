//! Resource quantities as Kubernetes writes them: `500m`, `2`, `1.5`,
//! `128Mi`, `1G`, `2e3`. Parsed exactly into nano-units, so that CPU
//! (milli-cores) and memory (bytes) compare and add without rounding.

use std::fmt;

/// A parsed quantity; it remembers how it was written.
#[derive(Clone, Debug)]
pub struct Quantity {
    /// The value in nano-units (10⁻⁹), rounded up as Kubernetes rounds
    /// anything finer.
    nanos: i128,
    written: String,
}

/// Why a string is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Empty, or no digits where a number belongs.
    #[error(
        "{0:?} is not a quantity: expected a number with an optional suffix, like 500m, 2 or 128Mi"
    )]
    Malformed(String),
    /// An unknown suffix.
    #[error(
        "{input:?} has an unknown suffix {suffix:?}; use one of n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent like e3"
    )]
    UnknownSuffix {
        /// The whole input.
        input: String,
        /// The suffix found.
        suffix: String,
    },
    /// Too large to hold.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Parses a quantity.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let malformed = || QuantityError::Malformed(input.to_owned());
        let text = input.trim();
        let (negative, text) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(malformed());
        }
        // The digits as one integer, and how many of them follow the point.
        let digits = format!("{whole}{fraction}");
        let mantissa: i128 = digits
            .parse()
            .map_err(|_| QuantityError::TooLarge(input.to_owned()))?;
        let scale = fraction.len() as i32;
        // The suffix as (multiplier, power of ten).
        let (multiplier, exponent): (i128, i32) = match suffix {
            "" => (1, 0),
            "n" => (1, -9),
            "u" => (1, -6),
            "m" => (1, -3),
            "k" => (1, 3),
            "M" => (1, 6),
            "G" => (1, 9),
            "T" => (1, 12),
            "P" => (1, 15),
            "E" => (1, 18),
            "Ki" => (1 << 10, 0),
            "Mi" => (1 << 20, 0),
            "Gi" => (1 << 30, 0),
            "Ti" => (1 << 40, 0),
            "Pi" => (1 << 50, 0),
            "Ei" => (1 << 60, 0),
            other if other.starts_with(['e', 'E']) => {
                let exponent: i32 =
                    other[1..]
                        .parse()
                        .map_err(|_| QuantityError::UnknownSuffix {
                            input: input.to_owned(),
                            suffix: other.to_owned(),
                        })?;
                if exponent.abs() > 30 {
                    return Err(QuantityError::TooLarge(input.to_owned()));
                }
                (1, exponent)
            }
            other => {
                return Err(QuantityError::UnknownSuffix {
                    input: input.to_owned(),
                    suffix: other.to_owned(),
                });
            }
        };
        // nanos = mantissa × multiplier × 10^(exponent − scale + 9), rounded up.
        let power = exponent - scale + 9;
        let too_large = || QuantityError::TooLarge(input.to_owned());
        let scaled = mantissa.checked_mul(multiplier).ok_or_else(too_large)?;
        let nanos = if power >= 0 {
            scaled
                .checked_mul(10i128.checked_pow(power as u32).ok_or_else(too_large)?)
                .ok_or_else(too_large)?
        } else {
            let divisor = 10i128.checked_pow((-power) as u32).ok_or_else(too_large)?;
            (scaled + divisor - 1) / divisor
        };
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            written: input.trim().to_owned(),
        })
    }

    /// The value in milli-units, rounded up (CPU: milli-cores).
    pub fn milli_value(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded up (memory: bytes).
    pub fn value(&self) -> i128 {
        div_ceil(self.nanos, NANO)
    }

    /// The value in nano-units.
    pub fn nano_value(&self) -> i128 {
        self.nanos
    }
}

fn div_ceil(value: i128, by: i128) -> i128 {
    let quotient = value / by;
    if value % by > 0 {
        quotient + 1
    } else {
        quotient
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.written)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    // Manifests write quantities as strings ("500m") or bare numbers (2).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Integer(i64),
            Float(f64),
        }
        let text = match Written::deserialize(deserializer)? {
            Written::Text(text) => text,
            Written::Integer(n) => n.to_string(),
            Written::Float(x) => x.to_string(),
        };
        Quantity::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn cpu_quantities_read_as_milli_cores() {
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("2").milli_value(), 2000);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("0.1").milli_value(), 100);
        assert_eq!(q("100u").milli_value(), 1, "finer than a milli rounds up");
        assert_eq!(q("250000n").milli_value(), 1);
    }

    #[test]
    fn memory_quantities_read_as_bytes() {
        assert_eq!(q("128Mi").value(), 128 * 1024 * 1024);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("1.5Ki").value(), 1536);
        assert_eq!(q("2e3").value(), 2000);
        assert_eq!(q("1E6").value(), 1_000_000);
        assert_eq!(q("64k").value(), 64_000);
        assert_eq!(q("1Ei").value(), 1 << 60);
    }

    #[test]
    fn quantities_compare_by_value_whatever_their_spelling() {
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1Ki"), q("1024"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("0"));
        assert_eq!(q("500m").to_string(), "500m", "kept as written");
    }

    #[test]
    fn malformed_quantities_are_refused_with_a_clear_error() {
        for bad in ["", "m", "abc", "1.2.3", "--1", ".", "1 Mi"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let error = Quantity::parse("12XB").unwrap_err();
        assert!(
            error.to_string().contains("unknown suffix \"XB\""),
            "{error}"
        );
        assert!(matches!(
            Quantity::parse("1e99"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn quantities_read_from_strings_and_bare_numbers() {
        let parsed: Vec<Quantity> = serde_json::from_str(r#"["250m", 2, 0.5]"#).unwrap();
        assert_eq!(
            parsed.iter().map(Quantity::milli_value).collect::<Vec<_>>(),
            [250, 2000, 500]
        );
        assert!(serde_json::from_str::<Quantity>(r#""lots""#).is_err());
    }
}
