//! Deleting an owner, through the REST API with the controllers running:
//! background (its ReplicaSets and pods follow), `Orphan` (they stay, no
//! longer owned) and `Foreground` (the owner waits for them, here held up
//! by a finalizer on one pod).

use berth_tests::cluster::{admin_with_tenant, create, deployment, gone, items, server};
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::rest::Api;
use serde_json::{Value, json};

const PODS: &str = "/api/v1/tenants/acme/pods";
const REPLICA_SETS: &str = "/api/v1/tenants/acme/replicasets";
const WEB: &str = "/api/v1/tenants/acme/deployments/web";

/// Creates the Deployment `web` of 3 and waits for its ReplicaSet and pods
/// (no node runs them: they stay Pending, which is all this needs).
async fn web_with_pods(admin: &Api) -> (Value, Vec<Value>) {
    create(
        admin,
        "/api/v1/tenants/acme/deployments",
        deployment("web", 3, "busybox:1"),
    )
    .await;
    let pods = admin
        .eventually(PODS, 30, "3 pods", |list| items(list).len() == 3)
        .await;
    let (_, replica_sets) = admin.get(REPLICA_SETS).await;
    let replica_sets = items(&replica_sets);
    assert_eq!(replica_sets.len(), 1, "{replica_sets:?}");
    (replica_sets[0].clone(), items(&pods))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_owner_deletes_orphans_or_waits_for_what_it_owns() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = server(&db.url, &[]);
    let admin = admin_with_tenant(&server, "acme").await;

    // A policy that does not exist is refused, naming it; nothing goes.
    web_with_pods(&admin).await;
    let (status, body) = admin
        .delete(&format!("{WEB}?propagationPolicy=Later"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("propagationPolicy"), "{body}");
    assert_eq!(admin.get(WEB).await.0, 200);

    // Background, the default: the Deployment goes at once, then its
    // ReplicaSet and pods.
    let (status, body) = admin.delete(WEB).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(admin.get(WEB).await.0, 404);
    admin
        .eventually(REPLICA_SETS, 30, "the ReplicaSet is collected", |list| {
            items(list).is_empty()
        })
        .await;
    admin
        .eventually(PODS, 30, "the pods are collected", |list| {
            items(list).is_empty()
        })
        .await;

    // Orphan: the Deployment goes; its ReplicaSet stays, owned by nobody,
    // and keeps its pods.
    let (replica_set, pods) = web_with_pods(&admin).await;
    let (status, body) = admin
        .delete(&format!("{WEB}?propagationPolicy=Orphan"))
        .await;
    assert_eq!(status, 200, "{body}");
    gone(
        &admin,
        WEB,
        30,
        "the Deployment goes once orphaning is done",
    )
    .await;
    let rs_path = format!(
        "{REPLICA_SETS}/{}",
        replica_set["metadata"]["name"].as_str().unwrap()
    );
    let (status, kept) = admin.get(&rs_path).await;
    assert_eq!(status, 200, "the ReplicaSet stays: {kept}");
    assert!(
        kept["metadata"].get("ownerReferences").is_none(),
        "owned by nobody: {kept}"
    );
    assert_eq!(kept["metadata"]["uid"], replica_set["metadata"]["uid"]);
    let (_, now) = admin.get(PODS).await;
    let uids = |pods: &[Value]| -> Vec<Value> {
        let mut uids: Vec<Value> = pods.iter().map(|p| p["metadata"]["uid"].clone()).collect();
        uids.sort_by_key(Value::to_string);
        uids
    };
    assert_eq!(uids(&items(&now)), uids(&pods), "the same pods stay");

    // Foreground: the ReplicaSet waits for its pods, here for one held by
    // a finalizer, and goes once that is removed.
    let held = pods[0]["metadata"]["name"].as_str().unwrap().to_owned();
    let held_path = format!("{PODS}/{held}");
    let (status, body) = admin
        .patch(
            &held_path,
            json!({"metadata": {"finalizers": ["example.com/hold"]}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, marked) = admin
        .delete(&format!("{rs_path}?propagationPolicy=Foreground"))
        .await;
    assert_eq!(status, 200, "{marked}");
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    let left = admin
        .eventually(PODS, 30, "only the held pod is left", |list| {
            items(list).len() == 1
        })
        .await;
    let pod = &items(&left)[0];
    assert_eq!(pod["metadata"]["name"], held.as_str());
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
    let (status, waiting) = admin.get(&rs_path).await;
    assert_eq!(status, 200, "the ReplicaSet waits for its pod: {waiting}");
    assert!(waiting["metadata"]["deletionTimestamp"].is_string());

    let (status, body) = admin
        .patch(&held_path, json!({"metadata": {"finalizers": null}}))
        .await;
    assert_eq!(status, 200, "{body}");
    gone(
        &admin,
        &held_path,
        10,
        "the pod goes with its last finalizer",
    )
    .await;
    gone(&admin, &rs_path, 30, "then the ReplicaSet").await;
    let (_, pods) = admin.get(PODS).await;
    assert!(
        items(&pods).is_empty(),
        "nothing recreated the pods: {pods}"
    );
}
