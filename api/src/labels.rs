//! Label selectors as Kubernetes parses them (`app=web,tier!=db`,
//! `env in (prod,staging)`, `!canary`), and as Deployments write them
//! (`matchLabels` plus `matchExpressions`). Both become one list of
//! requirements that all must hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One condition on a label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value`.
    Equals(String, String),
    /// `key!=value`: also holds when the key is absent.
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, BTreeSet<String>),
    /// `key notin (a,b)`: also holds when the key is absent.
    NotIn(String, BTreeSet<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(key, value) => labels.get(key) == Some(value),
            Requirement::NotEquals(key, value) => labels.get(key) != Some(value),
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// Requirements that must all hold; the empty selector selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// The requirements.
    pub requirements: Vec<Requirement>,
}

/// Why a selector or label is not valid; names what and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong.
    pub reason: String,
}

impl Selector {
    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Parses the string form (`?labelSelector=`).
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let error = |reason: String| SelectorError {
            selector: input.to_owned(),
            reason,
        };
        let mut requirements = Vec::new();
        for part in split_top_level(input).map_err(error)? {
            let part = part.trim();
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(error("an empty requirement (two commas in a row?)".into()));
            }
            requirements.push(parse_requirement(part).map_err(error)?);
        }
        Ok(Selector { requirements })
    }

    /// The structured form of a workload's `selector`.
    pub fn from_match(
        match_labels: &BTreeMap<String, String>,
        match_expressions: &[(String, String, Vec<String>)],
    ) -> Result<Selector, SelectorError> {
        let error = |reason: String| SelectorError {
            selector: "matchExpressions".into(),
            reason,
        };
        let mut requirements = Vec::new();
        for (key, value) in match_labels {
            validate_key(key).map_err(error)?;
            validate_value(value).map_err(error)?;
            requirements.push(Requirement::Equals(key.clone(), value.clone()));
        }
        for (key, operator, values) in match_expressions {
            validate_key(key).map_err(error)?;
            let set: BTreeSet<String> = values.iter().cloned().collect();
            for value in &set {
                validate_value(value).map_err(error)?;
            }
            let requirement = match operator.as_str() {
                "In" | "NotIn" if set.is_empty() => {
                    return Err(error(format!(
                        "operator {operator} on {key:?} needs at least one value"
                    )));
                }
                "In" => Requirement::In(key.clone(), set),
                "NotIn" => Requirement::NotIn(key.clone(), set),
                "Exists" | "DoesNotExist" if !set.is_empty() => {
                    return Err(error(format!(
                        "operator {operator} on {key:?} takes no values"
                    )));
                }
                "Exists" => Requirement::Exists(key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(key.clone()),
                other => {
                    return Err(error(format!(
                        "unknown operator {other:?} on {key:?}; use In, NotIn, Exists or DoesNotExist"
                    )));
                }
            };
            requirements.push(requirement);
        }
        Ok(Selector { requirements })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |values: &BTreeSet<String>| values.iter().cloned().collect::<Vec<_>>().join(",");
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", set(vs)),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", set(vs)),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(input: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Err(format!("unbalanced ')' at position {i}")),
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    parts.push(&input[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        validate_key(key)?;
        return Ok(Requirement::DoesNotExist(key.to_owned()));
    }
    for (operator, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = part.split_once(operator) {
            let (key, value) = (key.trim(), value.trim());
            validate_key(key)?;
            validate_value(value)?;
            return Ok(if negated {
                Requirement::NotEquals(key.to_owned(), value.to_owned())
            } else {
                Requirement::Equals(key.to_owned(), value.to_owned())
            });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words.as_slice() {
        let rest = rest.trim();
        let (negated, values) = if let Some(values) = rest.strip_prefix("notin") {
            (true, values)
        } else if let Some(values) = rest.strip_prefix("in") {
            (false, values)
        } else {
            return Err(format!(
                "expected in, notin, =, == or != after {key:?}, found {rest:?}"
            ));
        };
        validate_key(key)?;
        let values = values.trim();
        let inner = values
            .strip_prefix('(')
            .and_then(|v| v.strip_suffix(')'))
            .ok_or_else(|| format!("the values of {key:?} must be in parentheses, like (a,b)"))?;
        let set: BTreeSet<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
        for value in &set {
            validate_value(value)?;
        }
        if set.iter().all(String::is_empty) {
            return Err(format!("{key:?} needs at least one value in its set"));
        }
        return Ok(if negated {
            Requirement::NotIn(key.to_string(), set)
        } else {
            Requirement::In(key.to_string(), set)
        });
    }
    validate_key(part)?;
    Ok(Requirement::Exists(part.to_owned()))
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 characters (alphanumerics, `-`, `_`, `.`, starting and ending
/// alphanumeric).
pub fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Err(format!(
            "the prefix of label key {key:?} must be a DNS subdomain (like example.com)"
        ));
    }
    if !is_label_name(name) {
        return Err(format!(
            "label key {key:?} must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or like a key's name part.
pub fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

fn is_label_name(name: &str) -> bool {
    is_name(name, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
    })
}

/// At most 63 bytes that `allowed` accepts, starting and ending with an
/// alphanumeric.
fn is_name(name: &str, allowed: fn(u8) -> bool) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| allowed(*b))
}

/// A DNS-1123 label: at most 63 lower-case alphanumerics or `-`, starting
/// and ending alphanumeric (the form of object and tenant names).
pub fn is_dns_label(name: &str) -> bool {
    is_name(name, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
    })
}

/// A DNS-1123 subdomain: dot-separated DNS labels, at most 253 characters.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_set_based_selectors_match_as_in_kubernetes() {
        let web = labels(&[("app", "web"), ("env", "prod")]);
        let db = labels(&[("app", "db"), ("env", "staging"), ("canary", "true")]);
        let cases = [
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app!=web", false, true),
            ("env in (prod, staging)", true, true),
            ("env notin (prod)", false, true),
            ("tier notin (x)", true, true),
            ("tier!=x", true, true),
            ("canary", false, true),
            ("!canary", true, false),
            ("app=web,env=prod", true, false),
            ("app in (web,db),!canary", true, false),
        ];
        for (text, on_web, on_db) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(selector.matches(&web), on_web, "{text:?} on web");
            assert_eq!(selector.matches(&db), on_db, "{text:?} on db");
        }
    }

    #[test]
    fn malformed_selectors_say_what_is_wrong() {
        for (text, words) in [
            ("app=web,,env=prod", "empty requirement"),
            ("env in prod", "parentheses"),
            ("env in (prod", "unbalanced"),
            ("env foo (a)", "expected in, notin"),
            ("-bad=x", "label key"),
            ("app=-bad", "label value"),
            ("env in ()", "at least one value"),
        ] {
            let error = Selector::parse(text).expect_err(text).to_string();
            assert!(error.contains(words), "{text:?}: {error}");
        }
    }

    #[test]
    fn structured_selectors_read_match_labels_and_expressions() {
        let selector = Selector::from_match(
            &labels(&[("app", "web")]),
            &[
                ("env".into(), "In".into(), vec!["prod".into()]),
                ("canary".into(), "DoesNotExist".into(), vec![]),
            ],
        )
        .unwrap();
        assert!(selector.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("env", "prod"), ("canary", "1")])));
        assert_eq!(selector.to_string(), "app=web,env in (prod),!canary");
        let bad = Selector::from_match(&BTreeMap::new(), &[("env".into(), "Near".into(), vec![])]);
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown operator \"Near\"")
        );
    }

    #[test]
    fn keys_with_prefixes_and_names_follow_the_dns_rules() {
        assert!(validate_key("app.kubernetes.io/name").is_ok());
        assert!(
            validate_key("Example.com/name").is_err(),
            "prefixes are lower case"
        );
        assert!(validate_key(&"a".repeat(64)).is_err());
        assert!(
            is_dns_label("web-1")
                && !is_dns_label("Web")
                && !is_dns_label("-web")
                && !is_dns_label("")
        );
        assert!(is_dns_subdomain("my.app-1") && !is_dns_subdomain("my..app"));
    }
}
