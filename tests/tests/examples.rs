//! Every manifest in `examples/` applies as it is with `berth apply`, its
//! Deployments become available (on sim nodes), and applying it again
//! changes nothing.

use berth_tests::cli::Terminal;
use berth_tests::cluster::{ADMIN, ADMIN_PASSWORD, SimCluster, TENANT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_applies_as_it_is_becomes_available_and_applies_again_unchanged() {
    let cluster = SimCluster::start(&[]).await;
    let terminal = Terminal::new();
    terminal.login(&cluster.server.process.url(""), ADMIN, ADMIN_PASSWORD);
    let files = [
        "web-app.yaml",
        "worker.yaml",
        "volume.yaml",
        "kubernetes-nginx.yaml",
    ];
    let mut deployments = Vec::new();
    for file in files {
        let applied = terminal.ok(&["apply", "-f", &format!("examples/{file}")]);
        for line in applied.lines() {
            assert!(line.ends_with(" created"), "{file}: {line}");
            if let Some(name) = line.strip_prefix("deployment/") {
                deployments.push(name.trim_end_matches(" created").to_owned());
            }
        }
    }
    assert_eq!(deployments, ["web", "worker", "notes", "nginx-deployment"]);
    for name in &deployments {
        cluster
            .admin
            .eventually(
                &format!("/api/v1/tenants/{TENANT}/deployments/{name}"),
                30,
                &format!("{name} available"),
                |d| {
                    let wanted = d["spec"]["replicas"].as_i64().unwrap_or(1);
                    d["status"]["availableReplicas"].as_i64() == Some(wanted)
                },
            )
            .await;
    }
    for file in files {
        let again = terminal.ok(&["apply", "-f", &format!("examples/{file}")]);
        for line in again.lines() {
            assert!(line.ends_with(" unchanged"), "{file}: {line}");
        }
    }
}
