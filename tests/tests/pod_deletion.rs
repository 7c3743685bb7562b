//! Graceful deletion, as Kubernetes has it: a pod that a node runs is only
//! marked when deleted (`deletionTimestamp`, `deletionGracePeriodSeconds`)
//! and stays, terminating, until its node has stopped it and removes it.
//! A real server with its controllers and `berth agent --runtime sim`
//! processes, which stop a pod at once.

use std::time::{Duration, Instant};

use berth_tests::cluster::{admin_with_tenant, create, deployment, gone, items, server};
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::AgentProcess;
use berth_tests::rest::Api;
use serde_json::{Value, json};

const PODS: &str = "/api/v1/tenants/acme/pods";
const FAST_AGENT: [&str; 4] = ["--sim-start-delay-ms", "100", "--heartbeat-ms", "500"];

fn pod(name: &str, grace: i64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "containers": [{"name": "c", "image": "busybox:1"}],
        },
    })
}

async fn running(admin: &Api, name: &str) -> Value {
    admin
        .eventually(&format!("{PODS}/{name}"), 30, "the pod Running", |pod| {
            pod["status"]["phase"] == "Running"
        })
        .await
}

fn terminating(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_terminates_until_its_node_has_stopped_it() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let server = server(&db.url, &[]);
    let admin = admin_with_tenant(&server, "acme").await;

    // Nothing runs a pod that no node has (there is no node yet): it goes
    // at once.
    create(&admin, PODS, pod("nowhere", 30)).await;
    let (status, body) = admin.delete(&format!("{PODS}/nowhere")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!terminating(&body), "{body}");
    let (status, body) = admin.get(&format!("{PODS}/nowhere")).await;
    assert_eq!(status, 404, "an unbound pod goes at once: {body}");

    let agent = AgentProcess::sim(&server, "sim", 1, &FAST_AGENT);

    // A running pod is marked, then removed by its node once stopped.
    create(&admin, PODS, pod("web", 30)).await;
    running(&admin, "web").await;
    let deleted_at = Instant::now();
    let (status, marked) = admin.delete(&format!("{PODS}/web")).await;
    assert_eq!(status, 200, "{marked}");
    assert!(terminating(&marked), "marked, not gone: {marked}");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    let due = chrono::DateTime::parse_from_rfc3339(
        marked["metadata"]["deletionTimestamp"].as_str().unwrap(),
    )
    .unwrap();
    let ahead = due.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!(
        (28..=31).contains(&ahead),
        "deletionTimestamp is the grace period ahead: {ahead} s"
    );
    gone(
        &admin,
        &format!("{PODS}/web"),
        5,
        "the node removes the stopped pod",
    )
    .await;
    assert!(
        deleted_at.elapsed() < Duration::from_secs(5),
        "removed once stopped, not after the grace period"
    );

    // With its node silent, a deleted pod stays terminating; a delete
    // with a grace period of 0 removes it at once.
    create(&admin, PODS, pod("stuck", 30)).await;
    running(&admin, "stuck").await;
    agent.pause();
    let (status, marked) = admin
        .delete(&format!("{PODS}/stuck?gracePeriodSeconds=5"))
        .await;
    assert_eq!(status, 200, "{marked}");
    assert_eq!(
        marked["metadata"]["deletionGracePeriodSeconds"], 5,
        "the caller's grace period: {marked}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, still) = admin.get(&format!("{PODS}/stuck")).await;
    assert_eq!(status, 200, "the pod waits for its node: {still}");
    assert!(terminating(&still));
    // A longer grace period does not put the deadline off.
    let (_, again) = admin
        .delete(&format!("{PODS}/stuck?gracePeriodSeconds=60"))
        .await;
    assert_eq!(
        again["metadata"]["deletionGracePeriodSeconds"], 5,
        "{again}"
    );
    assert_eq!(
        again["metadata"]["deletionTimestamp"],
        marked["metadata"]["deletionTimestamp"]
    );
    let (status, body) = admin
        .delete(&format!("{PODS}/stuck?gracePeriodSeconds=0"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin.get(&format!("{PODS}/stuck")).await;
    assert_eq!(
        status, 404,
        "a grace period of 0 removes it at once: {body}"
    );
    agent.resume();

    // Bad input names what is wrong.
    let (status, body) = admin
        .delete(&format!("{PODS}/nowhere?gracePeriodSeconds=soon"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["details"][0]["field"], "gracePeriodSeconds",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_pod_is_replaced_at_once_and_not_counted() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = server(&db.url, &[]);
    let agent = AgentProcess::sim(&server, "sim", 1, &FAST_AGENT);
    let admin = admin_with_tenant(&server, "acme").await;
    create(
        &admin,
        "/api/v1/tenants/acme/deployments",
        deployment("web", 2, "busybox:1"),
    )
    .await;
    admin
        .eventually(
            "/api/v1/tenants/acme/deployments/web",
            30,
            "2 available",
            |d| d["status"]["availableReplicas"] == 2,
        )
        .await;
    // The node cannot stop the pod while it is frozen.
    agent.pause();
    let (_, list) = admin.get(PODS).await;
    let victim = items(&list)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = admin.delete(&format!("{PODS}/{victim}")).await;
    assert_eq!(status, 200, "{body}");
    let list = admin
        .eventually(
            PODS,
            10,
            "a replacement beside the terminating pod",
            |list| {
                let pods = items(list);
                pods.len() == 3 && pods.iter().filter(|p| terminating(p)).count() == 1
            },
        )
        .await;
    let terminating_one = items(&list).into_iter().find(terminating).unwrap();
    assert_eq!(terminating_one["metadata"]["name"], victim.as_str());
    agent.resume();
    gone(
        &admin,
        &format!("{PODS}/{victim}"),
        10,
        "the node removes it once back",
    )
    .await;
    let (_, list) = admin.get(PODS).await;
    assert_eq!(items(&list).len(), 2, "{list}");
}
