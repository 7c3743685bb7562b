//! The store across `berth server` processes: two servers writing to one
//! PostgreSQL, and a server killed with SIGKILL in the middle of a write
//! stream, on both backends. Clients reach the servers through the etcd API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::TestServer;
use etcd_client::{Client, GetOptions, WatchOptions};

async fn connect(server: &TestServer) -> Client {
    Client::connect([server.etcd_endpoint()], None)
        .await
        .unwrap()
}

/// Writes `count` distinct keys under `prefix` from `writers` tasks; returns
/// the acknowledged revisions.
async fn write_keys(client: Client, prefix: &str, count: usize, writers: usize) -> Vec<i64> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (mut client, next, prefix) = (client.clone(), next.clone(), prefix.to_owned());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= count {
                        return acked;
                    }
                    let put = client
                        .put(format!("{prefix}{i:06}"), "v", None)
                        .await
                        .unwrap();
                    acked.push(put.header().unwrap().revision());
                }
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked
}

/// Collects the revisions of `total` events from a watch on every key.
async fn watch_revisions(mut client: Client, total: usize) -> Vec<i64> {
    let mut stream = client
        .watch(
            "/",
            Some(WatchOptions::new().with_prefix().with_start_revision(2)),
        )
        .await
        .unwrap();
    let mut revisions = Vec::with_capacity(total);
    while revisions.len() < total {
        let response = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("no event for 30 s after {}", revisions.len()))
            .unwrap()
            .unwrap();
        assert!(!response.canceled(), "{}", response.cancel_reason());
        revisions.extend(
            response
                .events()
                .iter()
                .map(|e| e.kv().unwrap().mod_revision()),
        );
    }
    revisions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_see_the_same_gap_free_revision_sequence() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let a = TestServer::open(&db.url);
    let b = TestServer::open(&db.url);
    const PER_SERVER: usize = 2500;
    let total = 2 * PER_SERVER;
    let watch_a = tokio::spawn(watch_revisions(connect(&a).await, total));
    let watch_b = tokio::spawn(watch_revisions(connect(&b).await, total));
    // Both servers take writes at the same time.
    let (acked_a, acked_b) = tokio::join!(
        write_keys(connect(&a).await, "/a/", PER_SERVER, 16),
        write_keys(connect(&b).await, "/b/", PER_SERVER, 16)
    );
    let expected: Vec<i64> = (2..2 + total as i64).collect();
    for (name, watch) in [("a", watch_a), ("b", watch_b)] {
        let seen = watch.await.unwrap();
        assert_eq!(
            seen, expected,
            "the watcher on server {name} saw every revision once, in order"
        );
    }
    let mut acked: Vec<i64> = acked_a.into_iter().chain(acked_b).collect();
    acked.sort();
    assert_eq!(acked, expected, "each revision went to exactly one write");
}

/// Kills a server mid-stream; after a restart every acknowledged write is
/// there with its revision, and the revisions run without a gap.
async fn acknowledged_writes_survive_sigkill(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let mut server = TestServer::open(&db.url);
    let client = connect(&server).await;
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (mut client, acked) = (client.clone(), acked.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{w:02}/{i:06}");
                    match client.put(key.clone(), "v", None).await {
                        Ok(put) => acked
                            .lock()
                            .unwrap()
                            .push((key, put.header().unwrap().revision())),
                        // The server is gone.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 3000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writes are too slow"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: no chance to flush or shut down.
    server.process.child.kill().unwrap();
    server.process.child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // The same data dir and database, a new process.
    let restarted = TestServer::start_in(server.data_dir, &db.url, &["--etcd-auth", "none"]);
    let mut client = connect(&restarted).await;
    let all = client
        .get("/crash/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let current = all.header().unwrap().revision();
    let mut revisions: Vec<i64> = all.kvs().iter().map(|kv| kv.mod_revision()).collect();
    revisions.sort();
    assert_eq!(
        revisions,
        (2..=current).collect::<Vec<_>>(),
        "the revision sequence is intact"
    );
    let stored: std::collections::HashMap<String, i64> = all
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_owned(), kv.mod_revision()))
        .collect();
    for (key, revision) in &acked {
        assert_eq!(
            stored.get(key),
            Some(revision),
            "acknowledged {key} was lost or changed"
        );
    }
    // The store goes on from where it was.
    let next = client.put("/after", "v", None).await.unwrap();
    assert_eq!(next.header().unwrap().revision(), current + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_sigkill() {
    acknowledged_writes_survive_sigkill(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_writes_survive_sigkill() {
    acknowledged_writes_survive_sigkill(TestBackend::Postgres).await;
}
