//! Node pressure, as kubelet's eviction manager reports it: the host's
//! signals, sampled at each heartbeat, compared with the hard eviction
//! thresholds, and turned into the `MemoryPressure`, `DiskPressure` and
//! `PIDPressure` conditions with kubelet's reasons.
//!
//! - `memory.available` is `MemAvailable` of `/proc/meminfo` over
//!   `MemTotal`. Kubelet takes the capacity less the root cgroup's working
//!   set; `MemAvailable` is the kernel's own estimate of the same thing
//!   (what can be had without swapping), close enough to decide pressure.
//! - `nodefs.*` is the filesystem of the agent's state directory, where
//!   pods' volumes live; `imagefs.*` that of the Docker root directory.
//!   Space is what an unprivileged writer may still use (`f_bavail`).
//! - `pid.available` is the smaller of `pid_max` and `threads-max` less the
//!   tasks that exist (`/proc/loadavg`).
//!
//! A condition turns True as soon as one of its thresholds is crossed and
//! turns False only once none has been for the transition period
//! (`--eviction-pressure-transition-period`), so that it does not flap.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_api::node::v1 as pb;

use crate::node_resources::{EvictionThresholds, Signal};

/// A signal's value at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// What is left.
    pub available: i128,
    /// All there is (percent thresholds are of this).
    pub capacity: i128,
}

/// The signals read at one moment; a signal that could not be read is
/// absent (and crosses no threshold).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSample {
    /// By signal.
    pub observations: BTreeMap<Signal, Observation>,
}

/// Reads the host's signals.
#[derive(Clone, Debug)]
pub struct HostSampler {
    /// The node filesystem: the agent's state directory.
    pub nodefs: PathBuf,
    /// The image filesystem: the Docker root directory, when the engine
    /// told it.
    pub imagefs: Option<PathBuf>,
}

impl HostSampler {
    /// The signals now.
    pub fn sample(&self) -> HostSample {
        let mut observations = BTreeMap::new();
        if let Some(memory) = read("/proc/meminfo").and_then(|text| memory_of(&text)) {
            observations.insert(Signal::MemoryAvailable, memory);
        }
        for (path, space, inodes) in [
            (
                Some(&self.nodefs),
                Signal::NodefsAvailable,
                Signal::NodefsInodesFree,
            ),
            (
                self.imagefs.as_ref(),
                Signal::ImagefsAvailable,
                Signal::ImagefsInodesFree,
            ),
        ] {
            if let Some(filesystem) = path.and_then(|path| filesystem(path)) {
                observations.insert(space, filesystem.space);
                observations.insert(inodes, filesystem.inodes);
            }
        }
        if let (Some(pid_max), Some(threads_max), Some(loadavg)) = (
            read("/proc/sys/kernel/pid_max"),
            read("/proc/sys/kernel/threads-max"),
            read("/proc/loadavg"),
        ) && let Some(pids) = pids_of(&pid_max, &threads_max, &loadavg)
        {
            observations.insert(Signal::PidAvailable, pids);
        }
        HostSample { observations }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// A filesystem's space and inodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filesystem {
    /// Bytes.
    pub space: Observation,
    /// Inodes.
    pub inodes: Observation,
}

/// The filesystem that holds `path`, if it can be read.
pub fn filesystem(path: &Path) -> Option<Filesystem> {
    let stats = nix::sys::statvfs::statvfs(path).ok()?;
    let block = i128::from(stats.fragment_size());
    Some(Filesystem {
        space: Observation {
            available: i128::from(stats.blocks_available()) * block,
            capacity: i128::from(stats.blocks()) * block,
        },
        inodes: Observation {
            available: i128::from(stats.files_available()),
            capacity: i128::from(stats.files()),
        },
    })
}

/// `memory.available` from `/proc/meminfo`: `MemAvailable` of `MemTotal`.
pub fn memory_of(meminfo: &str) -> Option<Observation> {
    let field = |name: &str| {
        meminfo.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: i128 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some(kib * 1024)
        })
    };
    Some(Observation {
        available: field("MemAvailable")?,
        capacity: field("MemTotal")?,
    })
}

/// `pid.available` from `pid_max`, `threads-max` and `/proc/loadavg`
/// (whose fourth field is `running/existing` tasks).
pub fn pids_of(pid_max: &str, threads_max: &str, loadavg: &str) -> Option<Observation> {
    let limit = pid_max
        .trim()
        .parse::<i128>()
        .ok()?
        .min(threads_max.trim().parse::<i128>().ok()?);
    let existing: i128 = loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()?;
    Some(Observation {
        available: limit - existing,
        capacity: limit,
    })
}

/// The three pressures, each a node condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pressure {
    /// `MemoryPressure`.
    Memory,
    /// `DiskPressure`.
    Disk,
    /// `PIDPressure`.
    Pid,
}

impl Pressure {
    /// In the order conditions are reported.
    pub const ALL: [Pressure; 3] = [Pressure::Memory, Pressure::Disk, Pressure::Pid];

    /// The pressure a signal's threshold causes.
    pub fn of(signal: Signal) -> Pressure {
        match signal {
            Signal::MemoryAvailable => Pressure::Memory,
            Signal::PidAvailable => Pressure::Pid,
            Signal::NodefsAvailable
            | Signal::NodefsInodesFree
            | Signal::ImagefsAvailable
            | Signal::ImagefsInodesFree => Pressure::Disk,
        }
    }

    /// The condition's type.
    pub fn condition_type(self) -> &'static str {
        match self {
            Pressure::Memory => "MemoryPressure",
            Pressure::Disk => "DiskPressure",
            Pressure::Pid => "PIDPressure",
        }
    }

    /// Kubelet's reason and a message in Berth's words.
    fn reason_and_message(self, pressed: bool) -> (&'static str, &'static str) {
        match (self, pressed) {
            (Pressure::Memory, false) => (
                "KubeletHasSufficientMemory",
                "berth agent has sufficient memory available",
            ),
            (Pressure::Memory, true) => (
                "KubeletHasInsufficientMemory",
                "berth agent has insufficient memory available",
            ),
            (Pressure::Disk, false) => (
                "KubeletHasNoDiskPressure",
                "berth agent has no disk pressure",
            ),
            (Pressure::Disk, true) => ("KubeletHasDiskPressure", "berth agent has disk pressure"),
            (Pressure::Pid, false) => (
                "KubeletHasSufficientPID",
                "berth agent has sufficient PID available",
            ),
            (Pressure::Pid, true) => (
                "KubeletHasInsufficientPID",
                "berth agent has insufficient PID available",
            ),
        }
    }
}

/// Turns samples into pressure conditions, holding a pressure for the
/// transition period after its last crossing.
#[derive(Debug)]
pub struct PressureMonitor {
    thresholds: EvictionThresholds,
    transition_period: Duration,
    /// Per pressure: when a threshold was last seen crossed, and what.
    last_crossed: HashMap<Pressure, (Instant, String)>,
    /// What was last reported, to log changes.
    reported: HashMap<Pressure, bool>,
}

impl PressureMonitor {
    /// A monitor of `thresholds`.
    pub fn new(thresholds: EvictionThresholds, transition_period: Duration) -> PressureMonitor {
        PressureMonitor {
            thresholds,
            transition_period,
            last_crossed: HashMap::new(),
            reported: HashMap::new(),
        }
    }

    /// The three conditions for `sample`, taken at `now`.
    pub fn observe(&mut self, sample: &HostSample, now: Instant) -> Vec<pb::NodeCondition> {
        let mut crossed: HashMap<Pressure, Vec<String>> = HashMap::new();
        for threshold in self.thresholds.iter() {
            let Some(observed) = sample.observations.get(&threshold.signal) else {
                continue;
            };
            if observed.available < threshold.amount.of(observed.capacity) {
                crossed
                    .entry(Pressure::of(threshold.signal))
                    .or_default()
                    .push(format!(
                        "{} {} is below the hard eviction threshold {}",
                        threshold.signal,
                        amount(threshold.signal, observed.available),
                        threshold.written
                    ));
            }
        }
        for (pressure, what) in crossed {
            self.last_crossed.insert(pressure, (now, what.join("; ")));
        }
        let mut conditions = Vec::new();
        for pressure in Pressure::ALL {
            let held = self.last_crossed.get(&pressure).filter(|(at, _)| {
                *at == now || now.saturating_duration_since(*at) < self.transition_period
            });
            let pressed = held.is_some();
            let (reason, message) = pressure.reason_and_message(pressed);
            let message = match held {
                Some((at, what)) if *at == now => format!("{message}: {what}"),
                Some((_, what)) => format!(
                    "{message}: {what} (seen within the pressure transition period, {:?})",
                    self.transition_period
                ),
                None => message.to_owned(),
            };
            // A change, or pressure from the start; not the quiet start.
            let was = self.reported.insert(pressure, pressed);
            if was.map_or(pressed, |was| was != pressed) {
                tracing::info!(
                    condition = pressure.condition_type(),
                    status = pressed,
                    message,
                    "node pressure changed"
                );
            }
            conditions.push(pb::NodeCondition {
                r#type: pressure.condition_type().into(),
                status: if pressed { "True" } else { "False" }.into(),
                reason: reason.into(),
                message,
            });
        }
        conditions
    }
}

/// A signal's amount for people: bytes in Mi or Gi, else a count.
fn amount(signal: Signal, value: i128) -> String {
    const MI: i128 = 1 << 20;
    const GI: i128 = 1 << 30;
    if !signal.is_bytes() {
        return value.to_string();
    }
    if value.abs() >= GI {
        format!("{:.1}Gi", value as f64 / GI as f64)
    } else {
        format!("{}Mi", value / MI)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: i128 = 1 << 30;

    fn sample(memory_available: i128, nodefs_percent: i128) -> HostSample {
        HostSample {
            observations: [
                (
                    Signal::MemoryAvailable,
                    Observation {
                        available: memory_available,
                        capacity: 8 * GI,
                    },
                ),
                (
                    Signal::NodefsAvailable,
                    Observation {
                        available: nodefs_percent * GI,
                        capacity: 100 * GI,
                    },
                ),
            ]
            .into(),
        }
    }

    fn statuses(conditions: &[pb::NodeCondition]) -> Vec<(&str, &str)> {
        conditions
            .iter()
            .map(|c| (c.r#type.as_str(), c.status.as_str()))
            .collect()
    }

    #[test]
    fn the_host_files_are_read_as_the_kernel_writes_them() {
        let meminfo =
            "MemTotal:       24683792 kB\nMemFree:  1000 kB\nMemAvailable:   23308284 kB\n";
        assert_eq!(
            memory_of(meminfo),
            Some(Observation {
                available: 23_308_284 * 1024,
                capacity: 24_683_792 * 1024,
            })
        );
        assert_eq!(memory_of("MemTotal: 1 kB\n"), None);
        assert_eq!(
            pids_of("32768\n", "192739\n", "6.31 2.68 1.03 8/163 16892\n"),
            Some(Observation {
                available: 32768 - 163,
                capacity: 32768,
            })
        );
        assert_eq!(
            pids_of("32768", "100", "0 0 0 1/40 9"),
            Some(Observation {
                available: 60,
                capacity: 100
            })
        );
        assert_eq!(pids_of("x", "100", "0 0 0 1/40 9"), None);
    }

    #[test]
    fn this_host_can_be_sampled() {
        let sampler = HostSampler {
            nodefs: std::env::temp_dir(),
            imagefs: None,
        };
        let sample = sampler.sample();
        for signal in [
            Signal::MemoryAvailable,
            Signal::NodefsAvailable,
            Signal::NodefsInodesFree,
            Signal::PidAvailable,
        ] {
            let observed = sample.observations.get(&signal).expect("read");
            assert!(
                observed.capacity > 0 && observed.available <= observed.capacity,
                "{signal}: {observed:?}"
            );
        }
        assert!(!sample.observations.contains_key(&Signal::ImagefsAvailable));
    }

    #[test]
    fn a_crossed_threshold_is_pressure_in_kubelets_words() {
        let thresholds =
            EvictionThresholds::parse("memory.available<1Gi,nodefs.available<10%").unwrap();
        let mut monitor = PressureMonitor::new(thresholds, Duration::ZERO);
        let now = Instant::now();
        let fine = monitor.observe(&sample(4 * GI, 50), now);
        assert_eq!(
            statuses(&fine),
            [
                ("MemoryPressure", "False"),
                ("DiskPressure", "False"),
                ("PIDPressure", "False")
            ]
        );
        assert_eq!(fine[0].reason, "KubeletHasSufficientMemory");
        assert_eq!(fine[1].reason, "KubeletHasNoDiskPressure");
        assert_eq!(fine[2].reason, "KubeletHasSufficientPID");

        let low = monitor.observe(&sample(GI / 2, 5), now + Duration::from_secs(10));
        assert_eq!(
            statuses(&low)[..2],
            [("MemoryPressure", "True"), ("DiskPressure", "True")]
        );
        assert_eq!(low[0].reason, "KubeletHasInsufficientMemory");
        assert_eq!(
            low[0].message,
            "berth agent has insufficient memory available: memory.available 512Mi is below the hard eviction threshold 1Gi"
        );
        assert_eq!(low[1].reason, "KubeletHasDiskPressure");
        assert!(
            low[1]
                .message
                .contains("nodefs.available 5.0Gi is below the hard eviction threshold 10%"),
            "{}",
            low[1].message
        );
    }

    #[test]
    fn pressure_ends_only_after_the_transition_period() {
        let thresholds = EvictionThresholds::parse("memory.available<1Gi").unwrap();
        let period = Duration::from_secs(300);
        let mut monitor = PressureMonitor::new(thresholds, period);
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(
            monitor.observe(&sample(4 * GI, 50), at(0))[0].status,
            "False"
        );
        assert_eq!(
            monitor.observe(&sample(GI / 2, 50), at(10))[0].status,
            "True"
        );
        // Memory is back, but the pressure holds for the period after the
        // last crossing.
        let held = monitor.observe(&sample(4 * GI, 50), at(20));
        assert_eq!(held[0].status, "True");
        assert!(
            held[0].message.contains("transition period"),
            "{}",
            held[0].message
        );
        // Crossing again restarts the period.
        assert_eq!(
            monitor.observe(&sample(GI / 2, 50), at(200))[0].status,
            "True"
        );
        assert_eq!(
            monitor.observe(&sample(4 * GI, 50), at(499))[0].status,
            "True"
        );
        let over = monitor.observe(&sample(4 * GI, 50), at(500));
        assert_eq!(over[0].status, "False");
        assert_eq!(over[0].reason, "KubeletHasSufficientMemory");
    }

    #[test]
    fn signals_that_cannot_be_read_and_unwatched_signals_cause_no_pressure() {
        let thresholds = EvictionThresholds::parse("pid.available<10%").unwrap();
        let mut monitor = PressureMonitor::new(thresholds, Duration::ZERO);
        let conditions = monitor.observe(&sample(0, 0), Instant::now());
        assert!(
            conditions.iter().all(|c| c.status == "False"),
            "{conditions:?}"
        );
    }
}
