//! The log API end to end: `GET .../pods/{name}/log` and
//! `GET .../deployments/{name}/log`, read by a real server from real agent
//! processes through their tunnels. The sim runtime's containers write a
//! few numbered lines; the Docker test runs busybox containers on the
//! host's engine (it fails, never skips, without one) and removes them.

use berth_tests::cluster::{
    SimCluster, TENANT, admin_with_tenant, create, deployment, items, ready_status, server,
};
use berth_tests::db::{TestBackend, TestDb, create_user};
use berth_tests::docker::{EngineCleanup, TEST_IMAGE, ensure_test_image};
use berth_tests::logs::{FollowedLog, read_log};
use berth_tests::process::AgentProcess;
use berth_tests::rest::Api;
use serde_json::{Value, json};

fn pods(tenant: &str) -> String {
    format!("/api/v1/tenants/{tenant}/pods")
}

/// Waits until every pod of the tenant whose name starts with `prefix`
/// is Running, `count` of them, and answers their names.
async fn running_pods(api: &Api, tenant: &str, prefix: &str, count: usize) -> Vec<String> {
    let list = api
        .eventually(
            &pods(tenant),
            90,
            &format!("{count} pods {prefix}* Running"),
            |list| {
                let running: Vec<Value> = items(list)
                    .into_iter()
                    .filter(|pod| {
                        pod["metadata"]["name"]
                            .as_str()
                            .is_some_and(|n| n.starts_with(prefix))
                    })
                    .collect();
                running.len() == count
                    && running
                        .iter()
                        .all(|pod| ready_status(pod).as_deref() == Some("True"))
            },
        )
        .await;
    items(&list)
        .iter()
        .filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_owned))
        .filter(|name| name.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_pods_log_comes_through_the_agent_and_names_its_containers_when_asked() {
    let cluster = SimCluster::start(&[]).await;
    let admin = &cluster.admin;
    create(
        admin,
        &pods(TENANT),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"},
               "spec": {"containers": [{"name": "app", "image": "busybox"},
                                       {"name": "side", "image": "busybox"}]}}),
    )
    .await;
    create(
        admin,
        &pods(TENANT),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nowhere"},
               "spec": {"nodeSelector": {"zone": "none"},
                        "containers": [{"name": "app", "image": "busybox"}]}}),
    )
    .await;
    running_pods(admin, TENANT, "two", 1).await;
    let log = |name: &str, query: &str| format!("{}/{name}/log{query}", pods(TENANT));

    let (status, text) = read_log(admin, &log("two", "")).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("a container name must be specified for pod two, choose one of: [app side]"),
        "{text}"
    );
    let (status, text) = read_log(admin, &log("two", "?container=side&tailLines=2")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        text,
        "sim acme/two side: line 2\nsim acme/two side: line 3\n"
    );
    let (status, text) = read_log(admin, &log("nowhere", "")).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains(
            r#"container \"app\" in pod \"nowhere\" is waiting to start: ContainerCreating"#
        ),
        "{text}"
    );
    let (status, text) = read_log(admin, &log("absent", "?container=app")).await;
    assert_eq!(status, 404, "{text}");

    let viewer = cluster.member("viewer@example.com", "viewer").await;
    let (status, text) = read_log(&viewer, &log("two", "?container=app")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");

    let store = cluster.db.open().await;
    create_user(&store, "stranger@example.com", "stranger-secret-1", None).await;
    store.close().await;
    let stranger = Api::new(cluster.server.process.url(""))
        .login("stranger@example.com", "stranger-secret-1")
        .await;
    let (status, text) = read_log(&stranger, &log("two", "?container=app")).await;
    assert_eq!(status, 404, "{text}");
    let deployment_log = format!("/api/v1/tenants/{TENANT}/deployments/web/log");
    let (status, text) = read_log(&stranger, &deployment_log).await;
    assert_eq!(status, 404, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_simulated_deployments_log_shows_every_pod_and_a_new_one_joins() {
    let cluster = SimCluster::start(&[]).await;
    let admin = &cluster.admin;
    let deployments = format!("/api/v1/tenants/{TENANT}/deployments");
    create(admin, &deployments, deployment("web", 2, "busybox")).await;
    let first = running_pods(admin, TENANT, "web-", 2).await;
    let mut followed =
        FollowedLog::open(admin, &format!("{deployments}/web/log?follow=true")).await;
    followed
        .until(20, "lines of both pods", |text| {
            first.iter().all(|pod| {
                text.contains(&format!("[pod/{pod}/web] sim {TENANT}/{pod} web: line 3\n"))
            })
        })
        .await;
    let (status, body) = admin
        .patch(
            &format!("{deployments}/web"),
            json!({"spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let all = running_pods(admin, TENANT, "web-", 3).await;
    let joined = all
        .into_iter()
        .find(|pod| !first.contains(pod))
        .expect("a third pod");
    followed
        .until(20, "the new pod's lines", |text| {
            text.contains(&format!(
                "[pod/{joined}/web] sim {TENANT}/{joined} web: line 1\n"
            ))
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_output_reaches_the_log_api_with_tail_and_timestamps_and_a_followed_deployment_gains_new_pods()
 {
    ensure_test_image();
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = server(&db.url, &[]);
    let tenant = format!("lg{:08x}", rand::random::<u32>());
    let node = format!("docker-{:08x}", rand::random::<u32>());
    // Dropped in this order: the agent stops before its containers go.
    let agent = AgentProcess::docker(&server, &node, &["--heartbeat-ms", "1000"]);
    let cleanup = EngineCleanup::new(&node, &[&tenant]);
    let admin = admin_with_tenant(&server, &tenant).await;
    let mut echo = deployment("echo", 2, TEST_IMAGE);
    echo["spec"]["template"]["spec"]["containers"][0]["command"] = json!([
        "sh",
        "-c",
        "for i in 1 2 3; do echo line-$i; done; sleep 3600"
    ]);
    echo["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(1);
    let deployments = format!("/api/v1/tenants/{tenant}/deployments");
    create(&admin, &deployments, echo).await;
    let first = running_pods(&admin, &tenant, "echo-", 2).await;

    let log = format!("{}/{}/log", pods(&tenant), first[0]);
    let (status, text) = read_log(&admin, &format!("{log}?tailLines=2")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "line-2\nline-3\n");
    let (status, text) = read_log(&admin, &format!("{log}?timestamps=true")).await;
    assert_eq!(status, 200, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (n, line) in lines.iter().enumerate() {
        let (time, rest) = line.split_once(' ').expect("a time before each line");
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{line}");
        assert_eq!(rest, format!("line-{}", n + 1));
    }

    let mut followed =
        FollowedLog::open(&admin, &format!("{deployments}/echo/log?follow=true")).await;
    followed
        .until(30, "lines of both pods", |text| {
            first
                .iter()
                .all(|pod| text.contains(&format!("[pod/{pod}/web] line-3\n")))
        })
        .await;
    let (status, body) = admin
        .patch(
            &format!("{deployments}/echo"),
            json!({"spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let joined = running_pods(&admin, &tenant, "echo-", 3)
        .await
        .into_iter()
        .find(|pod| !first.contains(pod))
        .expect("a third pod");
    followed
        .until(30, "the new pod's lines", |text| {
            text.contains(&format!("[pod/{joined}/web] line-1\n"))
        })
        .await;
    drop(followed);
    drop(agent);
    drop(cleanup);
}
