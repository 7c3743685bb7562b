//! The controllers across real `berth server` processes: two servers on one
//! PostgreSQL elect one leader; when it is killed with SIGKILL the other
//! takes over within 15 s, and a Deployment created while nobody led still
//! gets its pods.

use std::time::{Duration, Instant};

use berth_api::labels::Selector;
use berth_api::objects::Kind;
use berth_server::controllers::leader::LEADER_KEY;
use berth_server::objects::{Objects, SecretValues};
use berth_server::secrets::EncryptionKey;
use berth_server::store::Store;
use berth_tests::cluster::deployment;
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::TestServer;
use serde_json::Value;

/// The pid in the leader key's holder (`{host}-{pid}-{random}`), if any.
async fn leader_pid(store: &Store) -> Option<u32> {
    let kv = store.get(LEADER_KEY.as_bytes(), 0).await.unwrap()?;
    let value: Value = serde_json::from_slice(&kv.value).unwrap();
    let holder = value["holder"].as_str()?;
    holder.rsplit('-').nth(1)?.parse().ok()
}

/// Polls `check` every 100 ms until it answers `Some`, for at most `limit`.
async fn within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_standby_takes_over_within_15_s_of_the_leader_being_killed_and_converges_a_deployment() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let mut servers = [
        TestServer::start(&db.url, &["--controllers=true"]),
        TestServer::start(&db.url, &["--controllers=true"]),
    ];
    let store = db.open().await;
    let pids: Vec<u32> = servers.iter().map(|s| s.process.child.id()).collect();
    let leader = within(Duration::from_secs(15), "one server leads", || async {
        leader_pid(&store).await.filter(|pid| pids.contains(pid))
    })
    .await;
    let leader_index = pids.iter().position(|pid| *pid == leader).unwrap();
    let standby = pids[1 - leader_index];

    // SIGKILL: no chance to release leadership.
    servers[leader_index].process.child.kill().unwrap();
    servers[leader_index].process.child.wait().unwrap();
    let killed = Instant::now();

    // A Deployment arrives while its lease still blocks a takeover.
    let objects = Objects::new(store.clone(), EncryptionKey::from_bytes([1; 32]));
    let (_, deployment) = objects
        .decode(Some(Kind::Deployment), deployment("web", 3, "busybox:1"))
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

    within(Duration::from_secs(15), "the standby leads", || async {
        (leader_pid(&store).await == Some(standby)).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    assert!(takeover <= Duration::from_secs(15), "took {takeover:?}");

    within(
        Duration::from_secs(15),
        "the deployment has 3 pods",
        || async {
            let pods = objects
                .list(
                    Kind::Pod,
                    Some("acme"),
                    &Selector::default(),
                    0,
                    None,
                    SecretValues::Redact,
                )
                .await
                .unwrap();
            (pods.items.len() == 3).then_some(())
        },
    )
    .await;
    store.close().await;
}
