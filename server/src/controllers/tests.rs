//! The controllers over a real (SQLite) store: leadership, fencing, and a
//! Deployment going from an object to pods and back, driven only by store
//! events (every wait is for a watch event, bounded by a timeout).

use std::future::Future;
use std::time::Duration;

use berth_api::labels::Selector;
use berth_api::objects::Kind;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::fenced::{FencedWriter, WriteError};
use super::leader::{ElectionSettings, LEADER_KEY, LeaderElection};
use super::runtime::SystemClock;
use super::*;
use crate::objects::{ObjectRef, Objects, SecretValues};
use crate::secrets::EncryptionKey;
use crate::store::types::{KeyRange, WatchRequest};

/// Waits until `check` holds, looking again after every store event.
async fn eventually<F, Fut>(store: &Store, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut watch = store
        .watch(WatchRequest {
            range: KeyRange::prefix("/registry/"),
            start_revision: 0,
            prev_kv: false,
        })
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !check().await {
            watch.next().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

async fn list(objects: &Objects, kind: Kind) -> Vec<Value> {
    objects
        .list(
            kind,
            Some("acme"),
            &Selector::default(),
            0,
            None,
            SecretValues::Redact,
        )
        .await
        .unwrap()
        .items
}

fn pod_ref(pod: &Value) -> ObjectRef {
    ObjectRef {
        kind: Kind::Pod,
        tenant: Some("acme".into()),
        name: pod["metadata"]["name"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn a_deployment_gets_pods_becomes_available_and_scales_down() {
    let (_dir, store) = crate::store::temporary().await;
    let objects = Objects::new(store.clone(), EncryptionKey::from_bytes([7; 32]));
    let (_, deployment) = objects
        .decode(
            Some(Kind::Deployment),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "main", "image": "busybox:1"}]}
                    }
                }
            }),
        )
        .unwrap();
    objects
        .create(
            Kind::Deployment,
            Some("acme"),
            deployment,
            SecretValues::Reveal,
        )
        .await
        .unwrap();
    let registry = prometheus::Registry::new();
    let shutdown = CancellationToken::new();
    let manager = ControllerManager::new(
        objects.clone(),
        start_pod_informer(store.clone(), shutdown.clone()),
        &registry,
        super::ControllerSettings::with_lease_ttl(Duration::from_secs(10)),
    )
    .unwrap();
    let running = tokio::spawn(manager.run(shutdown.clone()));

    eventually(&store, "the deployment has 3 pods", || async {
        list(&objects, Kind::Pod).await.len() == 3
    })
    .await;
    let replica_sets = list(&objects, Kind::ReplicaSet).await;
    assert_eq!(replica_sets.len(), 1);
    let hash = replica_sets[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(replica_sets[0]["metadata"]["name"], format!("web-{hash}"));
    for pod in list(&objects, Kind::Pod).await {
        assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], hash);
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    }

    // What an agent would report: every pod running and ready.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for pod in list(&objects, Kind::Pod).await {
        let status = json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]
        });
        objects
            .update_status(&pod_ref(&pod), status, None)
            .await
            .unwrap();
    }
    let web = ObjectRef {
        kind: Kind::Deployment,
        tenant: Some("acme".into()),
        name: "web".into(),
    };
    eventually(&store, "the deployment reports 3 available", || async {
        let deployment = objects.get(&web, SecretValues::Redact).await.unwrap();
        let status = &deployment["status"];
        status["availableReplicas"] == 3
            && status["updatedReplicas"] == 3
            && status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["reason"] == "NewReplicaSetAvailable")
    })
    .await;

    // The controllers never act on a cache that has not seen their own
    // writes, so until a user writes too, no write of theirs lost a race.
    for family in registry.gather() {
        if family.name() == "berth_controller_reconcile_errors_total" {
            for metric in family.get_metric() {
                assert_eq!(metric.get_counter().get_value(), 0.0, "{metric:?}");
            }
        }
    }

    objects
        .patch(&web, json!({"spec": {"replicas": 1}}), SecretValues::Redact)
        .await
        .unwrap();
    eventually(&store, "the deployment is down to 1 pod", || async {
        list(&objects, Kind::Pod).await.len() == 1
    })
    .await;

    shutdown.cancel();
    running.await.unwrap();
    // Leadership was given up on the way out, for a standby to take.
    assert!(store.get(LEADER_KEY.as_bytes(), 0).await.unwrap().is_none());
    store.close().await;
}

/// Leadership for a process named `first`, and its fenced writer.
async fn leading(store: &Store) -> (LeaderElection, leader::Leadership, FencedWriter) {
    let election = LeaderElection::new(
        store.clone(),
        "first".into(),
        ElectionSettings::with_ttl(Duration::from_secs(10)),
        Arc::new(SystemClock),
    );
    let term = election.try_acquire().await.unwrap().unwrap();
    let objects = Objects::new(store.clone(), EncryptionKey::from_bytes([7; 32]));
    let writer = FencedWriter::new(objects, term.fence.clone(), Arc::new(SystemClock));
    (election, term, writer)
}

#[tokio::test]
async fn a_write_after_leadership_is_lost_is_refused() {
    let (_dir, store) = crate::store::temporary().await;
    let (election, term, writer) = leading(&store).await;
    let created = writer
        .create(&fixtures::replica_set("web", 1))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(matches!(
        writer.create(&fixtures::replica_set("web", 1)).await,
        Err(WriteError::AlreadyExists { .. })
    ));

    election.release(&term).await;
    let refused = writer.create(&fixtures::replica_set("api", 1)).await;
    assert!(
        matches!(refused, Err(WriteError::LostLeadership { .. })),
        "{refused:?}"
    );
    assert!(
        store
            .get(b"/registry/replicasets/acme/api", 0)
            .await
            .unwrap()
            .is_none()
    );
    store.close().await;
}

/// Fills `cache` with what the store holds of its kind now, as a
/// reflector's list would.
async fn load<K: berth_api::objects::Resource>(store: &Store, cache: &Cache<K>) {
    use runtime::ObjectKey;
    let mut objects = Vec::new();
    let revision = store
        .range_prefix(
            crate::keys::collection(K::KIND, None).as_bytes(),
            0,
            100,
            |kv| {
                let key = ObjectKey::from_store_key(K::KIND, &kv.key).unwrap();
                let object: K = runtime::reflector::decode_stored(&kv).unwrap();
                objects.push((key, object, kv.create_revision));
            },
        )
        .await
        .unwrap();
    cache.replace(objects, revision);
}

#[tokio::test]
async fn the_collector_deletes_orphans_strips_owners_on_request_and_waits_in_the_foreground() {
    use gc::{Collector, GarbageCollector, Graph};
    use runtime::{Change, ObjectKey, Reconciler};

    let (_dir, store) = crate::store::temporary().await;
    let (_election, _term, writer) = leading(&store).await;
    let web = writer
        .create(&fixtures::replica_set("web", 2))
        .await
        .unwrap();
    let api = writer
        .create(&fixtures::replica_set("api", 1))
        .await
        .unwrap();
    for (owner, name) in [(&web, "web-a"), (&web, "web-b"), (&api, "api-a")] {
        writer
            .create(&replicaset::pod_from_template(owner, name))
            .await
            .unwrap();
    }
    let graph = Graph {
        deployments: Cache::new(None),
        replica_sets: Cache::new(Some(replica_set_index)),
        pods: Cache::new(Some(pod_index)),
        services: Cache::new(None),
        endpoint_slices: Cache::new(None),
    };
    let reload = || async {
        load(&store, &graph.replica_sets).await;
        load(&store, &graph.pods).await;
    };
    reload().await;
    let collector = Arc::new(GarbageCollector::new(
        graph.clone(),
        writer.clone(),
        store.clone(),
    ));
    let pods = Collector::<Pod>::new(collector.clone());
    let replica_sets = Collector::<ReplicaSet>::new(collector);
    let pod_key = |name: &str| ObjectKey::namespaced("acme", name);
    let stored = |name: &str| {
        let store = store.clone();
        let key = format!("/registry/pods/acme/{name}");
        async move { store.get(key.as_bytes(), 0).await.unwrap() }
    };

    // A pod whose owner the cache shows is nobody's business.
    let web_a = graph.pods.get(&pod_key("web-a")).unwrap();
    let added = Change {
        key: &pod_key("web-a"),
        old: None,
        new: Some(&web_a),
        revision: 0,
    };
    assert!(gc::needs_collection::<Pod>(graph.clone())(&added).is_empty());
    pods.reconcile(&pod_key("web-a")).await.unwrap();
    assert!(stored("web-a").await.is_some());

    // Its owner gone (from the store; the cache still lags), the pod goes.
    store
        .delete(crate::store::types::DeleteRequest {
            range: KeyRange::single("/registry/replicasets/acme/web"),
            prev_kv: false,
        })
        .await
        .unwrap();
    load(&store, &graph.replica_sets).await;
    pods.reconcile(&pod_key("web-a")).await.unwrap();
    pods.reconcile(&pod_key("web-b")).await.unwrap();
    assert!(stored("web-a").await.is_none() && stored("web-b").await.is_none());

    // Orphan: the owner is marked; its pod loses the reference, then the
    // owner goes and the pod stays.
    let mut marked = graph
        .replica_sets
        .get(&ObjectKey::namespaced("acme", "api"))
        .unwrap()
        .as_ref()
        .clone();
    marked.metadata.deletion_timestamp = Some("2030-01-01T00:00:00Z".into());
    marked.metadata.finalizers = vec![crate::objects::ORPHAN_FINALIZER.into()];
    writer.replace(&marked).await.unwrap();
    reload().await;
    let api_key = ObjectKey::namespaced("acme", "api");
    replica_sets.reconcile(&api_key).await.unwrap();
    reload().await;
    let orphan = graph.pods.get(&pod_key("api-a")).unwrap();
    assert!(orphan.metadata.owner_references.is_empty(), "{orphan:?}");
    assert!(graph.replica_sets.get(&api_key).is_some(), "released next");
    replica_sets.reconcile(&api_key).await.unwrap();
    reload().await;
    assert!(graph.replica_sets.get(&api_key).is_none());
    assert!(stored("api-a").await.is_some(), "the orphan stays");

    // Foreground: the owner waits until its pod is gone.
    let db = writer
        .create(&fixtures::replica_set("db", 1))
        .await
        .unwrap();
    writer
        .create(&replicaset::pod_from_template(&db, "db-a"))
        .await
        .unwrap();
    reload().await;
    let db_key = ObjectKey::namespaced("acme", "db");
    let mut marked = graph.replica_sets.get(&db_key).unwrap().as_ref().clone();
    marked.metadata.deletion_timestamp = Some("2030-01-01T00:00:00Z".into());
    marked.metadata.finalizers = vec![crate::objects::FOREGROUND_FINALIZER.into()];
    writer.replace(&marked).await.unwrap();
    reload().await;
    replica_sets.reconcile(&db_key).await.unwrap();
    assert!(stored("db-a").await.is_none(), "the dependent went first");
    reload().await;
    assert!(
        graph.replica_sets.get(&db_key).is_some(),
        "the owner waited"
    );
    replica_sets.reconcile(&db_key).await.unwrap();
    reload().await;
    assert!(graph.replica_sets.get(&db_key).is_none());
    store.close().await;
}
