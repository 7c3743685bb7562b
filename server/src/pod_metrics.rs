//! Pods' resource use as their agents report it (`ReportPodMetrics`, every
//! 10 s): kept in memory for the last [`RETENTION`], per pod, one bounded
//! ring of samples each holding every running container's figures.
//!
//! Nothing is written to the store: figures are many, short-lived and
//! cheap to lose. Each server process keeps what the agents connected to
//! it sent; with several replicas, a pod's figures are on the replica its
//! node's agent reports to (the one holding its tunnel), as its logs are.
//! A pod replaced by one of the same name (another uid) starts a new ring.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long samples are kept.
pub const RETENTION: Duration = Duration::from_secs(15 * 60);

/// The most samples one pod keeps: 15 minutes of 10 s reports, with room
/// for an agent that reports a little faster.
const MAX_SAMPLES: usize = 120;

/// How often the whole map is swept of pods that stopped reporting.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// One container's figures in a sample.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerUsage {
    /// The container's name.
    pub name: String,
    /// CPU in cores.
    pub cpu_cores: f64,
    /// Memory working set in bytes.
    pub memory_bytes: u64,
}

/// One report of a pod's running containers.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// When the server received it.
    pub at: DateTime<Utc>,
    /// Over how long the CPU figures were measured.
    pub window: Duration,
    /// Each running container's figures.
    pub containers: Vec<ContainerUsage>,
}

/// The samples of one pod, oldest first.
#[derive(Debug)]
struct Series {
    uid: String,
    samples: VecDeque<Sample>,
}

/// Every pod's recent samples; cheap to clone, shared by the node API
/// (which writes) and the REST API (which reads).
#[derive(Clone, Default)]
pub struct PodMetricsStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// By (tenant, pod name).
    series: HashMap<(String, String), Series>,
    last_sweep: Option<DateTime<Utc>>,
}

impl PodMetricsStore {
    /// Keeps `sample` of the pod `tenant`/`pod` with `uid`.
    pub fn record(&self, tenant: &str, pod: &str, uid: &str, sample: Sample) {
        let now = sample.at;
        let mut inner = self.lock();
        let series = inner
            .series
            .entry((tenant.to_owned(), pod.to_owned()))
            .or_insert_with(|| Series {
                uid: uid.to_owned(),
                samples: VecDeque::new(),
            });
        if series.uid != uid {
            series.uid = uid.to_owned();
            series.samples.clear();
        }
        series.samples.push_back(sample);
        while series.samples.len() > MAX_SAMPLES {
            series.samples.pop_front();
        }
        prune(&mut series.samples, now);
        let due = inner
            .last_sweep
            .is_none_or(|last| elapsed(last, now) >= SWEEP_INTERVAL);
        if due {
            inner.last_sweep = Some(now);
            inner.series.retain(|_, series| {
                prune(&mut series.samples, now);
                !series.samples.is_empty()
            });
        }
    }

    /// The samples of the last [`RETENTION`] of the pod `tenant`/`pod`
    /// with `uid`, oldest first.
    pub fn history(&self, tenant: &str, pod: &str, uid: &str, now: DateTime<Utc>) -> Vec<Sample> {
        let inner = self.lock();
        inner
            .series
            .get(&(tenant.to_owned(), pod.to_owned()))
            .filter(|series| series.uid == uid)
            .map(|series| {
                series
                    .samples
                    .iter()
                    .filter(|sample| elapsed(sample.at, now) < RETENTION)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Drops the samples older than [`RETENTION`] at `now`.
fn prune(samples: &mut VecDeque<Sample>, now: DateTime<Utc>) {
    while samples
        .front()
        .is_some_and(|oldest| elapsed(oldest.at, now) >= RETENTION)
    {
        samples.pop_front();
    }
}

/// The time from `then` to `now`; zero when `now` is earlier.
fn elapsed(then: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: DateTime<Utc>, cpu_cores: f64) -> Sample {
        Sample {
            at,
            window: Duration::from_secs(1),
            containers: vec![ContainerUsage {
                name: "app".into(),
                cpu_cores,
                memory_bytes: 1 << 20,
            }],
        }
    }

    #[test]
    fn samples_older_than_fifteen_minutes_are_forgotten() {
        let store = PodMetricsStore::default();
        let start = Utc::now();
        for minute in 0..20 {
            let at = start + chrono::Duration::minutes(minute);
            store.record("t", "web", "u1", sample(at, f64::from(minute as u8)));
        }
        let now = start + chrono::Duration::minutes(19);
        let kept = store.history("t", "web", "u1", now);
        assert_eq!(kept.len(), 15, "{kept:?}");
        assert_eq!(kept[0].at, start + chrono::Duration::minutes(5));
    }

    #[test]
    fn a_pod_of_another_uid_starts_afresh_and_hides_the_old_samples() {
        let store = PodMetricsStore::default();
        let now = Utc::now();
        store.record("t", "web", "u1", sample(now, 1.0));
        store.record("t", "web", "u2", sample(now, 2.0));
        assert!(store.history("t", "web", "u1", now).is_empty());
        let kept = store.history("t", "web", "u2", now);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].containers[0].cpu_cores, 2.0);
    }

    #[test]
    fn a_ring_holds_at_most_its_bound() {
        let store = PodMetricsStore::default();
        let start = Utc::now();
        for n in 0..500 {
            store.record(
                "t",
                "web",
                "u1",
                sample(start + chrono::Duration::seconds(n), 0.5),
            );
        }
        let now = start + chrono::Duration::seconds(500);
        assert_eq!(store.history("t", "web", "u1", now).len(), MAX_SAMPLES);
    }
}
