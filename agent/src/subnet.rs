//! IPv4 subnets (`10.42.0.0/23`): the tenant networks the agent makes, the
//! pool it carves them from, and who may reach a tenant's service
//! addresses and DNS.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address with its host bits clear, and a prefix
/// length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a subnet could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// Not `ADDRESS/PREFIX`.
    #[error("{0:?} is not an IPv4 subnet such as 10.42.0.0/16")]
    Syntax(String),
    /// Host bits are set (`10.42.0.1/16`).
    #[error("{0:?} has host bits set; the network is {1}")]
    HostBits(String, Subnet),
}

impl Subnet {
    /// The subnet of `prefix` bits containing `address` (host bits are
    /// cleared); `None` when `prefix` is above 32.
    pub fn containing(address: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        (prefix <= 32).then(|| Subnet {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix)),
            prefix,
        })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses it spans (network and broadcast included).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `index`th address (0 is the network address); `None` past the
    /// end.
    pub fn nth(&self, index: u64) -> Option<Ipv4Addr> {
        (index < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + index as u32))
    }

    /// Where `address` is in the subnet (0 for the network address), if
    /// it is in it.
    pub fn index_of(&self, address: Ipv4Addr) -> Option<u64> {
        self.contains(address)
            .then(|| u64::from(u32::from(address) - u32::from(self.network)))
    }

    /// Whether `address` is in it.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let prefix = self.prefix.min(other.prefix);
        u32::from(self.network) & mask(prefix) == u32::from(other.network) & mask(prefix)
    }

    /// The subnets of `prefix` bits that it is made of, in order; empty
    /// when `prefix` is shorter than its own.
    pub fn split(&self, prefix: u8) -> impl Iterator<Item = Subnet> + '_ {
        let count = if prefix >= self.prefix && prefix <= 32 {
            1u64 << (prefix - self.prefix)
        } else {
            0
        };
        let step = 1u64 << (32 - u32::from(prefix.min(32)));
        (0..count).map(move |i| Subnet {
            network: Ipv4Addr::from(u32::from(self.network) + (i * step) as u32),
            prefix,
        })
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(text: &str) -> Result<Subnet, SubnetError> {
        let syntax = || SubnetError::Syntax(text.to_owned());
        let (address, prefix) = text.trim().split_once('/').ok_or_else(syntax)?;
        let address: Ipv4Addr = address.parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(syntax)?;
        let subnet = Subnet::containing(address, prefix).ok_or_else(syntax)?;
        if subnet.network != address {
            return Err(SubnetError::HostBits(text.to_owned(), subnet));
        }
        Ok(subnet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_read_checked_and_split() {
        let pool: Subnet = "10.42.0.0/16".parse().unwrap();
        assert_eq!(pool.to_string(), "10.42.0.0/16");
        assert_eq!(pool.size(), 65_536);
        assert!(pool.contains("10.42.255.1".parse().unwrap()));
        assert!(!pool.contains("10.43.0.1".parse().unwrap()));
        assert!(matches!(
            "10.42.0.1/16".parse::<Subnet>(),
            Err(SubnetError::HostBits(..))
        ));
        assert!("10.42.0.0".parse::<Subnet>().is_err());
        assert!("10.42.0.0/33".parse::<Subnet>().is_err());
        let parts: Vec<Subnet> = pool.split(23).take(2).collect();
        assert_eq!(parts[0].to_string(), "10.42.0.0/23");
        assert_eq!(parts[1].to_string(), "10.42.2.0/23");
        assert_eq!(pool.split(23).count(), 128);
        assert_eq!(pool.split(8).count(), 0);
        assert!(pool.overlaps(&parts[1]) && parts[1].overlaps(&pool));
        assert!(!parts[0].overlaps(&parts[1]));
        assert_eq!(parts[1].nth(1), Some("10.42.2.1".parse().unwrap()));
        assert_eq!(parts[1].nth(512), None);
        assert_eq!(parts[1].index_of("10.42.3.0".parse().unwrap()), Some(256));
        let everything: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("192.0.2.1".parse().unwrap()));
    }
}
