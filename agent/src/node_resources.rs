//! What a node keeps back from its pods, as kubelet computes it: the
//! reservations of `--system-reserved` and `--kube-reserved`, the hard
//! eviction thresholds of `--eviction-hard`, and from them the node's
//! allocatable:
//!
//! ```text
//! allocatable = capacity − system-reserved − kube-reserved − hard eviction threshold
//! ```
//!
//! where the eviction threshold counts for memory (`memory.available`) and
//! ephemeral storage (`nodefs.available`). Pure: the host is read in
//! `pressure.rs`.

use std::fmt;

use berth_api::node::v1 as pb;
use berth_api::quantity::Quantity;

/// Resources kept back from pods for the host's own daemons (one of
/// `--system-reserved`, `--kube-reserved`, or their sum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reservation {
    /// Millicores.
    pub cpu_milli: i128,
    /// Bytes.
    pub memory: i128,
    /// Bytes of the node filesystem.
    pub ephemeral_storage: i128,
    /// Process ids.
    pub pids: i128,
}

impl Reservation {
    /// Parses kubelet's `cpu=500m,memory=1Gi,ephemeral-storage=1Gi,pid=1000`
    /// (an empty text reserves nothing); the error names the bad part.
    pub fn parse(text: &str) -> Result<Reservation, String> {
        let mut reservation = Reservation::default();
        let mut seen = Vec::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                format!("{pair:?} is not resource=quantity (cpu=500m,memory=1Gi,…)")
            })?;
            let (name, value) = (name.trim(), value.trim());
            if seen.contains(&name) {
                return Err(format!("{name:?} is given twice"));
            }
            seen.push(name);
            let quantity = Quantity::parse(value).map_err(|e| format!("{pair:?}: {e}"))?;
            if quantity.nano_value() < 0 {
                return Err(format!("{pair:?}: a reservation cannot be negative"));
            }
            match name {
                "cpu" => reservation.cpu_milli = quantity.milli_value(),
                "memory" => reservation.memory = quantity.value(),
                "ephemeral-storage" => reservation.ephemeral_storage = quantity.value(),
                "pid" => reservation.pids = quantity.value(),
                _ => {
                    return Err(format!(
                        "{pair:?}: unknown resource {name:?}; use cpu, memory, ephemeral-storage or pid"
                    ));
                }
            }
        }
        Ok(reservation)
    }

    /// Both reservations together.
    pub fn plus(self, other: Reservation) -> Reservation {
        Reservation {
            cpu_milli: self.cpu_milli + other.cpu_milli,
            memory: self.memory + other.memory,
            ephemeral_storage: self.ephemeral_storage + other.ephemeral_storage,
            pids: self.pids + other.pids,
        }
    }
}

/// What kubelet's eviction manager watches on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Memory not in use by anything (here: `MemAvailable`).
    MemoryAvailable,
    /// Free space on the node filesystem (the agent's state directory).
    NodefsAvailable,
    /// Free inodes there.
    NodefsInodesFree,
    /// Free space on the image filesystem (the Docker root directory).
    ImagefsAvailable,
    /// Free inodes there.
    ImagefsInodesFree,
    /// Process ids not in use.
    PidAvailable,
}

impl Signal {
    /// Every signal, in the order they are reported.
    pub const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodefsAvailable,
        Signal::NodefsInodesFree,
        Signal::ImagefsAvailable,
        Signal::ImagefsInodesFree,
        Signal::PidAvailable,
    ];

    /// Kubelet's name for it (`memory.available`).
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
            Signal::ImagefsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    fn named(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|signal| signal.name() == name)
    }

    /// Whether the signal counts bytes (else inodes or process ids).
    pub fn is_bytes(self) -> bool {
        matches!(
            self,
            Signal::MemoryAvailable | Signal::NodefsAvailable | Signal::ImagefsAvailable
        )
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A threshold's amount: a quantity, or a share of the signal's capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    /// Bytes, inodes or process ids.
    Quantity(i128),
    /// Percent of the capacity (0 to 100).
    Percentage(f64),
}

impl Amount {
    /// The amount for a resource of `capacity`.
    pub fn of(self, capacity: i128) -> i128 {
        match self {
            Amount::Quantity(quantity) => quantity,
            Amount::Percentage(percent) => (capacity as f64 * percent / 100.0).round() as i128,
        }
    }
}

/// One hard eviction threshold: `signal < amount`.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// What is compared.
    pub signal: Signal,
    /// Below what.
    pub amount: Amount,
    /// The amount as the operator wrote it (`100Mi`, `10%`), for messages.
    pub written: String,
}

/// The hard eviction thresholds (`--eviction-hard`).
#[derive(Clone, Debug, PartialEq)]
pub struct EvictionThresholds(Vec<Threshold>);

/// Kubelet's default `--eviction-hard`.
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%";

impl EvictionThresholds {
    /// Parses kubelet's `memory.available<100Mi,nodefs.available<10%,…`.
    /// As kubelet does, the given thresholds replace the defaults whole (a
    /// signal not named is not watched) and a zero amount (`0`, `0%`)
    /// watches nothing; the error names the bad part.
    pub fn parse(text: &str) -> Result<EvictionThresholds, String> {
        let mut thresholds: Vec<Threshold> = Vec::new();
        for statement in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((name, written)) = statement.split_once('<') else {
                return Err(format!(
                    "{statement:?} is not signal<amount (memory.available<100Mi); only < is supported"
                ));
            };
            let (name, written) = (name.trim(), written.trim());
            let signal = Signal::named(name).ok_or_else(|| {
                let known: Vec<&str> = Signal::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "{statement:?}: unknown signal {name:?}; use one of {}",
                    known.join(", ")
                )
            })?;
            if thresholds.iter().any(|t| t.signal == signal) {
                return Err(format!("{name:?} is given twice"));
            }
            let amount = parse_amount(written).map_err(|e| format!("{statement:?}: {e}"))?;
            if amount == Amount::Quantity(0) || amount == Amount::Percentage(0.0) {
                continue;
            }
            thresholds.push(Threshold {
                signal,
                amount,
                written: written.to_owned(),
            });
        }
        Ok(EvictionThresholds(thresholds))
    }

    /// The threshold of `signal`, if one is set.
    pub fn get(&self, signal: Signal) -> Option<&Threshold> {
        self.0.iter().find(|t| t.signal == signal)
    }

    /// Every threshold set.
    pub fn iter(&self) -> impl Iterator<Item = &Threshold> {
        self.0.iter()
    }
}

fn parse_amount(text: &str) -> Result<Amount, String> {
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(Amount::Percentage(p)),
            _ => Err(format!("{text:?} is not a percentage from 0% to 100%")),
        };
    }
    let quantity = Quantity::parse(text).map_err(|e| e.to_string())?;
    if quantity.nano_value() < 0 {
        return Err(format!("{text:?}: a threshold cannot be negative"));
    }
    Ok(Amount::Quantity(quantity.value()))
}

/// A node's resources in numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeResources {
    /// Millicores.
    pub cpu_milli: i128,
    /// Bytes.
    pub memory: i128,
    /// Pods.
    pub pods: i128,
    /// Bytes of the node filesystem, when known.
    pub ephemeral_storage: Option<i128>,
}

impl NodeResources {
    /// What pods may use of a node of this capacity, as kubelet computes
    /// it; never below zero.
    pub fn allocatable(
        &self,
        reserved: &Reservation,
        eviction: &EvictionThresholds,
    ) -> NodeResources {
        let threshold =
            |signal, capacity| eviction.get(signal).map_or(0, |t| t.amount.of(capacity));
        NodeResources {
            cpu_milli: (self.cpu_milli - reserved.cpu_milli).max(0),
            memory: (self.memory
                - reserved.memory
                - threshold(Signal::MemoryAvailable, self.memory))
            .max(0),
            pods: self.pods,
            ephemeral_storage: self.ephemeral_storage.map(|capacity| {
                (capacity
                    - reserved.ephemeral_storage
                    - threshold(Signal::NodefsAvailable, capacity))
                .max(0)
            }),
        }
    }

    /// As the node API carries it: CPU in cores (`4`) or millicores
    /// (`3500m`), memory and storage in bytes.
    pub fn to_proto(self) -> pb::Capacity {
        let cpu = if self.cpu_milli % 1000 == 0 {
            (self.cpu_milli / 1000).to_string()
        } else {
            format!("{}m", self.cpu_milli)
        };
        pb::Capacity {
            cpu,
            memory: self.memory.to_string(),
            pods: self.pods.to_string(),
            ephemeral_storage: self
                .ephemeral_storage
                .map(|bytes| bytes.to_string())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: i128 = 1 << 30;
    const MI: i128 = 1 << 20;

    #[test]
    fn reservations_read_as_kubelet_writes_them() {
        let reserved = Reservation::parse("cpu=500m, memory=1Gi,ephemeral-storage=2Gi,pid=100")
            .expect("valid");
        assert_eq!(
            reserved,
            Reservation {
                cpu_milli: 500,
                memory: GI,
                ephemeral_storage: 2 * GI,
                pids: 100,
            }
        );
        assert_eq!(Reservation::parse("").unwrap(), Reservation::default());
        assert_eq!(Reservation::parse("cpu=1").unwrap().cpu_milli, 1000);
    }

    #[test]
    fn a_bad_reservation_names_its_bad_part() {
        for (text, part) in [
            ("cpu", "\"cpu\" is not resource=quantity"),
            ("cpu=lots", "\"cpu=lots\""),
            ("gpu=1", "unknown resource \"gpu\""),
            ("memory=-1Gi", "cannot be negative"),
            ("cpu=1,cpu=2", "\"cpu\" is given twice"),
        ] {
            let error = Reservation::parse(text).unwrap_err();
            assert!(error.contains(part), "{text}: {error}");
        }
    }

    #[test]
    fn eviction_thresholds_read_as_kubelet_writes_them() {
        let thresholds = EvictionThresholds::parse(DEFAULT_EVICTION_HARD).unwrap();
        let memory = thresholds.get(Signal::MemoryAvailable).unwrap();
        assert_eq!(memory.amount, Amount::Quantity(100 * MI));
        assert_eq!(memory.written, "100Mi");
        assert_eq!(
            thresholds.get(Signal::ImagefsAvailable).unwrap().amount,
            Amount::Percentage(15.0)
        );
        assert!(thresholds.get(Signal::PidAvailable).is_none());

        // Given thresholds replace the defaults whole; zero watches nothing.
        let given = EvictionThresholds::parse(
            "memory.available<1Gi, pid.available<5%, nodefs.available<0%",
        )
        .unwrap();
        assert_eq!(given.iter().count(), 2);
        assert!(given.get(Signal::NodefsAvailable).is_none());
        assert_eq!(given.get(Signal::PidAvailable).unwrap().amount.of(1000), 50);
    }

    #[test]
    fn a_bad_eviction_threshold_names_its_bad_part() {
        for (text, part) in [
            ("memory.available>1Gi", "only < is supported"),
            ("memory.free<1Gi", "unknown signal \"memory.free\""),
            ("memory.available<lots", "\"memory.available<lots\""),
            ("nodefs.available<120%", "not a percentage from 0% to 100%"),
            ("memory.available<1Gi,memory.available<2Gi", "given twice"),
            ("memory.available<-1", "cannot be negative"),
        ] {
            let error = EvictionThresholds::parse(text).unwrap_err();
            assert!(error.contains(part), "{text}: {error}");
        }
    }

    #[test]
    fn allocatable_is_capacity_less_reservations_and_the_hard_eviction_threshold() {
        let capacity = NodeResources {
            cpu_milli: 4000,
            memory: 16 * GI,
            pods: 110,
            ephemeral_storage: Some(100 * GI),
        };
        let reserved = Reservation::parse("cpu=500m,memory=1Gi,ephemeral-storage=5Gi")
            .unwrap()
            .plus(Reservation::parse("cpu=100m,memory=512Mi").unwrap());
        let eviction = EvictionThresholds::parse(DEFAULT_EVICTION_HARD).unwrap();
        let allocatable = capacity.allocatable(&reserved, &eviction);
        assert_eq!(
            allocatable,
            NodeResources {
                cpu_milli: 3400,
                memory: 16 * GI - GI - 512 * MI - 100 * MI,
                pods: 110,
                // 10 % of the filesystem for nodefs.available.
                ephemeral_storage: Some(100 * GI - 5 * GI - 10 * GI),
            }
        );
        let proto = allocatable.to_proto();
        assert_eq!(proto.cpu, "3400m");
        assert_eq!(proto.memory, (16 * GI - GI - 612 * MI).to_string());
        assert_eq!(proto.pods, "110");

        // A percentage threshold is of the memory capacity; nothing goes
        // below zero.
        let eviction = EvictionThresholds::parse("memory.available<25%").unwrap();
        let more_than_there_is = Reservation::parse("cpu=8").unwrap();
        let allocatable = capacity.allocatable(&more_than_there_is, &eviction);
        assert_eq!(allocatable.cpu_milli, 0);
        assert_eq!(allocatable.memory, 12 * GI);
        assert_eq!(allocatable.ephemeral_storage, Some(100 * GI));
        assert_eq!(allocatable.to_proto().cpu, "0");
    }
}
