//! The scheduler against a real store: it binds pods to nodes that fit,
//! spreads one owner's pods, leaves a pod that fits nowhere Pending with
//! `PodScheduled=False` and a `FailedScheduling` event that counts the
//! reasons, and places it once a node that fits appears.

use std::time::Duration;

use berth_server::controllers::start_pod_informer;
use berth_server::events::EventRecorder;
use berth_server::objects::Objects;
use berth_server::scheduler::driver::{Scheduler, SchedulerMetrics};
use berth_server::secrets::EncryptionKey;
use berth_server::store::Store;
use berth_server::store::types::{KeyRange, PutRequest, RangeRequest};
use berth_tests::db::{TestBackend, TestDb};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn put(store: &Store, key: &str, value: Value) {
    store
        .put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.to_string().into_bytes(),
            ..PutRequest::default()
        })
        .await
        .unwrap();
}

fn node(name: &str, cpu: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

fn pod(name: &str, cpu: &str, owner: &str, node_selector: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "tenant": "acme", "uid": format!("uid-{name}"),
            "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                "uid": owner, "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox:1",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}],
            "nodeSelector": node_selector},
    })
}

async fn get(store: &Store, key: &str) -> Value {
    let kv = store.get(key.as_bytes(), 0).await.unwrap().expect(key);
    serde_json::from_slice(&kv.value).unwrap()
}

async fn wait_for<F: Fn(&Value) -> bool>(store: &Store, key: &str, what: &str, check: F) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = get(store, key).await;
        if check(&value) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_spread_and_told_why_when_nothing_fits() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let store = db.open().await;
    for name in ["n1", "n2", "n3"] {
        put(
            &store,
            &format!("/registry/nodes/{name}"),
            node(name, "4", json!({"disk": "ssd"})),
        )
        .await;
    }
    for i in 0..6 {
        put(
            &store,
            &format!("/registry/pods/acme/web-{i}"),
            pod(&format!("web-{i}"), "500m", "rs-web", json!({})),
        )
        .await;
    }
    // Fits nowhere: too much CPU for any node, and a label none has.
    put(
        &store,
        "/registry/pods/acme/huge",
        pod("huge", "16", "rs-huge", json!({"disk": "hdd"})),
    )
    .await;

    let shutdown = CancellationToken::new();
    let objects = Objects::new(store.clone(), EncryptionKey::from_bytes([7; 32]));
    let scheduler = Scheduler {
        objects: objects.clone(),
        pods: start_pod_informer(store.clone(), shutdown.clone()),
        events: EventRecorder::new(objects, "scheduler", Duration::from_secs(3600)),
        metrics: SchedulerMetrics::new(&prometheus::Registry::new()).unwrap(),
    };
    let task = tokio::spawn(scheduler.run(shutdown.clone()));

    let mut per_node = std::collections::BTreeMap::<String, i32>::new();
    for i in 0..6 {
        let bound = wait_for(
            &store,
            &format!("/registry/pods/acme/web-{i}"),
            "bound",
            |p| p["spec"]["nodeName"].is_string(),
        )
        .await;
        *per_node
            .entry(bound["spec"]["nodeName"].as_str().unwrap().to_owned())
            .or_default() += 1;
        let scheduled = bound["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "PodScheduled" && c["status"] == "True");
        assert!(scheduled, "{bound}");
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "spread: {per_node:?}"
    );

    let huge = wait_for(&store, "/registry/pods/acme/huge", "told why", |p| {
        p["status"]["conditions"].is_array()
    })
    .await;
    assert!(huge["spec"]["nodeName"].is_null());
    let condition = &huge["status"]["conditions"][0];
    assert_eq!(condition["type"], "PodScheduled");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "Unschedulable");
    assert_eq!(
        condition["message"],
        "0/3 nodes are available: 3 Insufficient cpu, 3 node(s) didn't match node selector."
    );
    // The event follows the condition.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = store
            .range(RangeRequest {
                range: KeyRange::prefix("/registry/events/acme/huge."),
                ..RangeRequest::default()
            })
            .await
            .unwrap();
        if !events.kvs.is_empty() || tokio::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(events.kvs.len(), 1, "one FailedScheduling event");
    let event: Value = serde_json::from_slice(&events.kvs[0].value).unwrap();
    assert_eq!(event["reason"], "FailedScheduling");
    assert_eq!(event["type"], "Warning");
    assert_ne!(events.kvs[0].lease, 0, "events expire with a lease");

    // A node that fits appears: the pod is placed there.
    put(
        &store,
        "/registry/nodes/big",
        node("big", "32", json!({"disk": "hdd"})),
    )
    .await;
    let placed = wait_for(
        &store,
        "/registry/pods/acme/huge",
        "placed on the new node",
        |p| p["spec"]["nodeName"].is_string(),
    )
    .await;
    assert_eq!(placed["spec"]["nodeName"], "big");

    shutdown.cancel();
    task.await.unwrap().unwrap();
    store.close().await;
}
