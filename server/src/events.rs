//! Events (the Event kind) that tell users what the control plane did or
//! could not do: `Scheduled`, `FailedScheduling`, `ScalingReplicaSet`, …
//!
//! An event lives at `/registry/events/{tenant}/{object}.{digest}` where the
//! digest covers the involved object, the reason and the message, so that a
//! repeat of the same event bumps `count` and `lastTimestamp` of one object
//! instead of piling up new ones, as Kubernetes does. Events expire: each is
//! attached to a store lease of the recorder's current time bucket, so they
//! are gone an hour (by default) after they were last written, without a
//! lease per event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::Digest;
use tokio::sync::Mutex;

use berth_api::objects::Kind;

use crate::controllers::runtime::clock::format_time;
use crate::objects::{ObjectError, ObjectRef, Objects, Replacement};
use crate::store::types::LeaseOwner;
use crate::store::{StoreError, StoreResult};

/// How long an event is kept after it was last written, unless told
/// otherwise.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// How long one lease collects new events before the recorder takes a new
/// one; an event lives between the TTL and the TTL plus this.
const LEASE_BUCKET: Duration = Duration::from_secs(300);

/// How many event writes one recorder keeps in flight in the background
/// ([`EventRecorder::emit`]); past that, events are dropped rather than
/// slowing the controllers down, as Kubernetes' broadcaster drops them when
/// its queue is full.
const BACKGROUND_WRITES: usize = 256;

/// Events about one object with the same type and reason but different
/// messages: after this many distinct ones within [`SIMILAR_WINDOW`], the
/// rest are counted in one combined event, as Kubernetes' event aggregator
/// does (a ReplicaSet creating 100 pods writes 11 events, not 100).
const SIMILAR_BEFORE_COMBINING: usize = 10;
/// How long similar events are remembered for combining.
const SIMILAR_WINDOW: Duration = Duration::from_secs(600);
/// How many groups of similar events are remembered; past this, the group
/// whose window opened first is forgotten (Kubernetes' aggregator keeps an
/// LRU cache of the same size).
const SIMILAR_GROUPS_KEPT: usize = 4096;

/// The distinct messages of similar events seen in a group's window.
#[derive(Default)]
struct Similar {
    messages: std::collections::HashSet<u64>,
}

/// The groups of similar events within their windows, at most
/// [`SIMILAR_GROUPS_KEPT`] of them; a call costs the same however many
/// groups are kept.
#[derive(Default)]
struct SimilarGroups {
    groups: std::collections::HashMap<String, Similar>,
    /// Each group and when its window opened, oldest first: one entry per
    /// group, since a group whose window passed is forgotten, not reopened.
    opened: std::collections::VecDeque<(String, Instant)>,
}

impl SimilarGroups {
    /// Notes `message` in `group` at `now`: whether it is one too many and
    /// goes into the combined event. Groups whose window has passed are
    /// forgotten first, and the oldest when a new group would pass
    /// [`SIMILAR_GROUPS_KEPT`].
    fn note(&mut self, group: String, message: u64, now: Instant) -> bool {
        while let Some((oldest, opened)) = self.opened.front() {
            let expired = now.saturating_duration_since(*opened) >= SIMILAR_WINDOW;
            let full =
                self.groups.len() >= SIMILAR_GROUPS_KEPT && !self.groups.contains_key(&group);
            if !expired && !full {
                break;
            }
            self.groups.remove(oldest);
            self.opened.pop_front();
        }
        let similar = self.groups.entry(group).or_insert_with_key(|group| {
            self.opened.push_back((group.clone(), now));
            Similar::default()
        });
        if similar.messages.contains(&message) {
            return false;
        }
        if similar.messages.len() >= SIMILAR_BEFORE_COMBINING {
            return true;
        }
        similar.messages.insert(message);
        false
    }
}

/// `Normal` or `Warning`, as Kubernetes has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something went as it should.
    Normal,
    /// Something users should look at.
    Warning,
}

/// The object an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Involved {
    /// Its kind (`Pod`, `ReplicaSet`, …).
    pub kind: String,
    /// Its tenant.
    pub tenant: String,
    /// Its name.
    pub name: String,
    /// Its uid, when known.
    pub uid: Option<String>,
}

impl Involved {
    /// `object`, by its kind, tenant, name and uid.
    pub fn of<K: berth_api::objects::Resource>(object: &K) -> Involved {
        let meta = object.metadata();
        Involved {
            kind: K::KIND.name().to_owned(),
            tenant: meta.tenant.clone().unwrap_or_default(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
        }
    }
}

/// Writes events on behalf of one component (`scheduler`,
/// `deployment-controller`, …), through [`Objects`]: a recorder over
/// fenced objects writes only while its process leads.
#[derive(Clone)]
pub struct EventRecorder {
    objects: Objects,
    component: String,
    /// The node the component runs on (`source.host`), for agents.
    host: Option<String>,
    ttl: Duration,
    lease: Arc<Mutex<Option<(i64, Instant)>>>,
    background: Arc<tokio::sync::Semaphore>,
    similar: Arc<std::sync::Mutex<SimilarGroups>>,
}

impl EventRecorder {
    /// A recorder for `component` writing through `objects` (fenced, for
    /// the control plane), keeping events for `ttl`.
    pub fn new(objects: Objects, component: &str, ttl: Duration) -> EventRecorder {
        EventRecorder {
            objects,
            component: component.to_owned(),
            host: None,
            ttl,
            lease: Arc::new(Mutex::new(None)),
            background: Arc::new(tokio::sync::Semaphore::new(BACKGROUND_WRITES)),
            similar: Arc::default(),
        }
    }

    /// Whether this event is one too many of its kind (same object, type
    /// and reason, another message) and goes into the combined event.
    fn combine(&self, involved: &Involved, kind: EventType, reason: &str, message: &str) -> bool {
        use std::hash::{Hash, Hasher};
        let group = format!(
            "{}\n{}\n{}\n{}\n{kind:?}\n{reason}",
            involved.kind,
            involved.tenant,
            involved.name,
            involved.uid.as_deref().unwrap_or_default()
        );
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        message.hash(&mut hasher);
        let message = hasher.finish();
        self.similar
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(group, message, Instant::now())
    }

    /// Records an event in the background: the caller does not wait for the
    /// write, and an event that cannot be written is only logged.
    pub fn emit(&self, involved: Involved, kind: EventType, reason: &str, message: String) {
        let Ok(permit) = self.background.clone().try_acquire_owned() else {
            tracing::debug!(reason, object = %involved.name, "too many events in flight; dropped one");
            return;
        };
        let recorder = self.clone();
        let reason = reason.to_owned();
        tokio::spawn(async move {
            if let Err(error) = recorder.record(&involved, kind, &reason, &message).await {
                tracing::warn!(%reason, object = %involved.name, %error, "recording an event failed");
            }
            drop(permit);
        });
    }

    /// The same recorder, writing events seen on node `host`.
    pub fn on_host(mut self, host: &str) -> EventRecorder {
        self.host = Some(host.to_owned());
        self
    }

    /// Records an event, or counts a repeat of the same one.
    #[tracing::instrument(skip_all, fields(reason, object = %involved.name))]
    pub async fn record(
        &self,
        involved: &Involved,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> StoreResult<()> {
        let combined;
        let (message, digested) = if self.combine(involved, kind, reason, message) {
            combined = format!("(combined from similar events): {message}");
            (combined.as_str(), "(combined from similar events)")
        } else {
            (message, message)
        };
        let digest = hex::encode(
            &sha2::Sha256::digest(format!(
                "{}\n{}\n{}\n{reason}\n{digested}",
                involved.kind,
                involved.name,
                involved.uid.as_deref().unwrap_or_default()
            ))[..8],
        );
        let name = format!("{}.{digest}", involved.name);
        let at = ObjectRef {
            kind: Kind::Event,
            tenant: Some(involved.tenant.clone()),
            name: name.clone(),
        };
        let now = format_time(self.objects.now());
        let lease = self.lease().await?;
        let event = |count: i64, first: &str| {
            json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "tenant": involved.tenant},
                "involvedObject": {
                    "kind": involved.kind,
                    "name": involved.name,
                    "uid": involved.uid,
                },
                "reason": reason,
                "message": message,
                "type": match kind { EventType::Normal => "Normal", EventType::Warning => "Warning" },
                "count": count,
                "firstTimestamp": first,
                "lastTimestamp": now,
                "source": match &self.host {
                    Some(host) => json!({"component": self.component, "host": host}),
                    None => json!({"component": self.component}),
                },
                "reportingComponent": self.component,
            })
        };
        // Most events are new: the first attempt creates without reading.
        // A repeat is a read-modify-write; two recorders racing on one event
        // lose a count at worst, so one retry is enough.
        let created = self
            .objects
            .create_checked(Kind::Event, event(1, &now), lease)
            .await;
        match created {
            Err(ObjectError::AlreadyExists { .. }) => {}
            other => return other.map(drop).map_err(store_error),
        }
        for _ in 0..2 {
            let Some(kv) = self.objects.store().get(at.key().as_bytes(), 0).await? else {
                return Ok(());
            };
            let old: serde_json::Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            let first = old["firstTimestamp"].as_str().unwrap_or(&now).to_owned();
            let mut repeat = event(old["count"].as_i64().unwrap_or(1) + 1, &first);
            // The server's fields stay as the create set them.
            repeat["metadata"] = old["metadata"].clone();
            let replaced = self
                .objects
                .replace_all(vec![Replacement {
                    at: at.clone(),
                    object: repeat,
                    expected: kv.mod_revision,
                    lease: Some(lease),
                }])
                .await;
            match replaced {
                Err(ObjectError::Conflict(_)) => continue,
                other => return other.map(drop).map_err(store_error),
            }
        }
        Ok(())
    }

    /// The lease new events go on; a new one every [`LEASE_BUCKET`].
    async fn lease(&self) -> StoreResult<i64> {
        let mut current = self.lease.lock().await;
        if let Some((id, since)) = *current
            && since.elapsed() < LEASE_BUCKET
        {
            return Ok(id);
        }
        let ttl = (self.ttl + LEASE_BUCKET).as_secs() as i64;
        let id = rand::random::<i64>().abs().max(1);
        let granted = self
            .objects
            .store()
            .lease_grant(id, ttl, LeaseOwner::Platform)
            .await?;
        *current = Some((granted.id, Instant::now()));
        Ok(granted.id)
    }
}

/// An event write that failed, as the recorder reports it.
fn store_error(error: ObjectError) -> StoreError {
    match error {
        ObjectError::Store(error) => error,
        other => StoreError::Database(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::types::KeyRange;

    fn objects(store: &Store) -> Objects {
        Objects::new(
            store.clone(),
            crate::secrets::EncryptionKey::from_bytes([7; 32]),
        )
    }

    #[test]
    fn similar_groups_are_forgotten_when_their_window_passes_or_past_the_cap() {
        let start = Instant::now();
        let mut groups = SimilarGroups::default();
        for message in 0..10 {
            assert!(!groups.note("web".into(), message, start));
        }
        assert!(
            groups.note("web".into(), 10, start),
            "the eleventh combines"
        );
        assert!(
            !groups.note("web".into(), 3, start),
            "a repeat counts alone"
        );
        // The window passes: the group starts again.
        let later = start + SIMILAR_WINDOW;
        assert!(!groups.note("web".into(), 10, later));
        // Past the cap, the group opened first goes; the others stay.
        for group in 0..SIMILAR_GROUPS_KEPT + 100 {
            for message in 0..10 {
                groups.note(format!("pod-{group}"), message, later);
            }
        }
        assert_eq!(groups.groups.len(), SIMILAR_GROUPS_KEPT);
        assert_eq!(groups.opened.len(), SIMILAR_GROUPS_KEPT);
        assert!(!groups.groups.contains_key("web"));
        assert!(!groups.groups.contains_key("pod-99"));
        let newest = format!("pod-{}", SIMILAR_GROUPS_KEPT + 99);
        assert!(groups.note(newest, 10, later), "the newest group is kept");
    }

    #[tokio::test]
    async fn similar_events_past_ten_are_counted_in_one_combined_event() {
        let (_dir, store) = crate::store::temporary().await;
        let recorder =
            EventRecorder::new(objects(&store), "replicaset-controller", DEFAULT_EVENT_TTL);
        let web = Involved {
            kind: "ReplicaSet".into(),
            tenant: "acme".into(),
            name: "web-1".into(),
            uid: Some("uid-web-1".into()),
        };
        for pod in 0..25 {
            let message = format!("Created pod: web-1-{pod}");
            recorder
                .record(&web, EventType::Normal, "SuccessfulCreate", &message)
                .await
                .unwrap();
        }
        // A repeat of an early message counts on its own event.
        recorder
            .record(
                &web,
                EventType::Normal,
                "SuccessfulCreate",
                "Created pod: web-1-0",
            )
            .await
            .unwrap();
        let events = store
            .range(crate::store::types::RangeRequest {
                range: KeyRange::prefix("/registry/events/acme/"),
                ..Default::default()
            })
            .await
            .unwrap();
        let events: Vec<serde_json::Value> = events
            .kvs
            .iter()
            .map(|kv| serde_json::from_slice(&kv.value).unwrap())
            .collect();
        assert_eq!(events.len(), 11, "ten of their own and one combined");
        let combined: Vec<_> = events
            .iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("(combined from similar events): ")
            })
            .collect();
        assert_eq!(combined.len(), 1);
        assert_eq!(combined[0]["count"], 15);
        assert_eq!(
            combined[0]["message"],
            "(combined from similar events): Created pod: web-1-24"
        );
        let first = events
            .iter()
            .find(|e| e["message"] == "Created pod: web-1-0")
            .unwrap();
        assert_eq!(first["count"], 2);
    }
}
