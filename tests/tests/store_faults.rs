//! The store when its database fails: PostgreSQL restarted under a steady
//! write load, and SQLite on a full disk. Requests fail fast and say why,
//! readiness follows the database, everything recovers by itself, and no
//! acknowledged write is lost; watches go on without a gap or a repeat.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_api::etcd::etcdserverpb as pb;
use berth_tests::etcd_grpc::EtcdCaller;
use berth_tests::postgres::OwnPostgres;
use berth_tests::process::TestServer;
use futures::StreamExt;
use tonic::Code;

/// Every key under `/f/`, as a read answers it.
async fn read_f(
    caller: &EtcdCaller,
) -> Result<Vec<berth_api::etcd::mvccpb::KeyValue>, tonic::Status> {
    caller
        .kv()
        .range(pb::RangeRequest {
            key: "/f/".into(),
            range_end: "/f0".into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().kvs)
}

/// Acknowledged puts, key → value.
type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Puts `/f/{writer}/{n}` one after another until `stop`; keeps what was
/// acknowledged and how each failure was answered (code, how long it took).
fn writer(
    caller: EtcdCaller,
    writer: usize,
    acked: Acked,
    failures: Arc<Mutex<Vec<(Code, Duration)>>>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.is_cancelled() {
            let key = format!("/f/{writer}/{n:06}");
            let value = format!("v{n}");
            let started = Instant::now();
            let put = tokio::time::timeout(
                Duration::from_secs(20),
                caller.kv().put(pb::PutRequest {
                    key: key.clone().into(),
                    value: value.clone().into(),
                    ..Default::default()
                }),
            )
            .await;
            match put {
                Ok(Ok(_)) => {
                    acked.lock().unwrap().insert(key, value);
                }
                Ok(Err(status)) => {
                    failures
                        .lock()
                        .unwrap()
                        .push((status.code(), started.elapsed()));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => failures
                    .lock()
                    .unwrap()
                    .push((Code::DeadlineExceeded, started.elapsed())),
            }
            n += 1;
        }
    })
}

/// Follows `/f/` from revision 1, watching again from the next revision
/// whenever a stream breaks, until it has seen revision `until` (once that
/// is set) or `stop`; answers every event's revision, in order, and how
/// many times it watched again.
fn watcher(
    endpoint: String,
    until: Arc<std::sync::atomic::AtomicI64>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<(Vec<i64>, usize)> {
    tokio::spawn(async move {
        let mut revisions = Vec::new();
        let mut restarts = 0;
        let mut next = 1;
        while !stop.is_cancelled() {
            let caller = EtcdCaller::anonymous(&endpoint).await;
            let (requests, input) = tokio::sync::mpsc::channel(1);
            let _ = requests
                .send(pb::WatchRequest {
                    request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                        pb::WatchCreateRequest {
                            key: "/f/".into(),
                            range_end: "/f0".into(),
                            start_revision: next,
                            ..Default::default()
                        },
                    )),
                })
                .await;
            let stream = caller
                .watch()
                .watch(tokio_stream::wrappers::ReceiverStream::new(input))
                .await;
            let Ok(stream) = stream else {
                restarts += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut stream = stream.into_inner();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return (revisions, restarts),
                    message = stream.next() => match message {
                        Some(Ok(response)) => {
                            for event in response.events {
                                if let Some(kv) = event.kv {
                                    revisions.push(kv.mod_revision);
                                    next = kv.mod_revision + 1;
                                }
                            }
                            let last = until.load(std::sync::atomic::Ordering::Acquire);
                            if last > 0 && next > last {
                                return (revisions, restarts);
                            }
                        }
                        _ => break,
                    }
                }
            }
            restarts += 1;
        }
        (revisions, restarts)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_load_fails_fast_recovers_by_itself_and_loses_nothing() {
    let postgres = OwnPostgres::start();
    let server = TestServer::start(
        &postgres.url(),
        &["--etcd-auth", "none", "--admin-password", "admin-secret-1"],
    );
    let admin = berth_tests::rest::Api::new(server.process.url(""))
        .login("admin@berth.local", "admin-secret-1")
        .await;
    let endpoint = server.etcd_endpoint();
    let http = reqwest::Client::new();
    let readyz = || {
        let http = http.clone();
        let url = server.process.url("/readyz");
        async move {
            let started = Instant::now();
            let status = http
                .get(url)
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            (status, started.elapsed())
        }
    };
    assert_eq!(readyz().await.0, 200);

    let stop = tokio_util::sync::CancellationToken::new();
    let acked: Acked = Arc::default();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let until = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let watch_stop = tokio_util::sync::CancellationToken::new();
    let watch = watcher(endpoint.clone(), until.clone(), watch_stop.clone());
    let mut writers = Vec::new();
    for w in 0..4 {
        let caller = EtcdCaller::anonymous(&endpoint).await;
        writers.push(writer(
            caller,
            w,
            acked.clone(),
            failures.clone(),
            stop.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 20, "the load runs: {before} puts in a second");

    // The database goes away.
    postgres.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, took) = readyz().await;
    assert_eq!(status, 503, "/readyz while the database is down");
    assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    let started = Instant::now();
    let (status, body) = admin.get("/api/v1/tenants").await;
    assert_eq!(status, 503, "REST while the database is down: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let caller = EtcdCaller::anonymous(&endpoint).await;
    let started = Instant::now();
    let refused = read_f(&caller)
        .await
        .expect_err("a read while the database is down");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    {
        let failures = failures.lock().unwrap();
        assert!(
            !failures.is_empty(),
            "writes failed while the database was down"
        );
        for (code, took) in failures.iter() {
            assert_eq!(*code, Code::Unavailable, "{failures:?}");
            assert!(
                *took < Duration::from_secs(2),
                "a failing put took {took:?}"
            );
        }
    }

    // The database comes back; so does everything else, within 5 s.
    postgres.resume();
    let back = Instant::now();
    let during = acked.lock().unwrap().len();
    loop {
        let recovered = acked.lock().unwrap().len() > during + 20 && readyz().await.0 == 200;
        if recovered {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not recovered {:?} after the database came back",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    for writer in writers {
        writer.await.expect("a writer");
    }
    // The watcher ends once it has seen the last write (10 s at most).
    let last = read_f(&caller)
        .await
        .expect("a read")
        .iter()
        .map(|kv| kv.mod_revision)
        .max()
        .unwrap_or(0);
    until.store(last, std::sync::atomic::Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !watch.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch_stop.cancel();
    let (watched, restarts) = watch.await.expect("the watcher");
    assert!(
        watched.last().is_some_and(|r| *r >= last),
        "the watch (resumed {restarts} times) never delivered revision {last}: its last was {:?}",
        watched.last()
    );

    // Every acknowledged write is there, with its value.
    let stored: BTreeMap<String, String> = read_f(&caller)
        .await
        .expect("a read")
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    let acked = acked.lock().unwrap().clone();
    for (key, value) in &acked {
        assert_eq!(
            stored.get(key),
            Some(value),
            "an acknowledged write of {key} is lost"
        );
    }
    // The watch saw every write's revision once, in order.
    let mut expected: Vec<i64> = Vec::new();
    let response = read_f(&caller).await.expect("a read");
    expected.extend(response.iter().map(|kv| kv.mod_revision));
    expected.sort_unstable();
    let seen = watched;
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "the watch repeated or reordered an event"
    );
    let missing: Vec<&i64> = expected
        .iter()
        .filter(|r| seen.binary_search(r).is_err())
        .collect();
    let extra: Vec<&i64> = seen
        .iter()
        .filter(|r| expected.binary_search(r).is_err())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the watch (resumed {restarts} times) missed {missing:?} and saw {extra:?} that are not writes"
    );
}

/// A small tmpfs of the test's own, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("a directory");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount (the full-disk test needs root, as CI has)");
        assert!(status.success(), "mounting a {size} tmpfs failed");
        SmallDisk { dir }
    }

    /// Fills what is left with a file; answers its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("a filler file");
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_answers_errors_keeps_its_data_and_recovers_when_space_returns() {
    let disk = SmallDisk::mount("16m");
    let data = disk.dir.path().join("data");
    std::fs::create_dir(&data).expect("a data directory");
    let url = format!("sqlite://{}", data.join("berth.db").display());
    let server = TestServer::start_in(
        tempfile::TempDir::new_in(&data).expect("a data dir on the small disk"),
        &url,
        &["--etcd-auth", "none"],
    );
    let caller = EtcdCaller::anonymous(&server.etcd_endpoint()).await;
    let value = "x".repeat(2048);
    let put = |key: String| {
        let caller = caller.clone();
        let value = value.clone();
        async move { caller.put(&key, &value).await }
    };
    let mut acked = Vec::new();
    for n in 0..100 {
        put(format!("/d/{n:05}")).await.expect("a put with room");
        acked.push(n);
    }

    // The disk fills up: writes fail, with a reason, and fast.
    let filler = disk.fill();
    let mut refused = None;
    for n in 100..5_000 {
        let started = Instant::now();
        match put(format!("/d/{n:05}")).await {
            Ok(_) => acked.push(n),
            Err(status) => {
                refused = Some((status, started.elapsed()));
                break;
            }
        }
    }
    let (status, took) = refused.expect("a put is refused once the disk is full");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("disk is full"), "{status:?}");
    assert!(took < Duration::from_secs(2), "the refusal took {took:?}");
    for _ in 0..3 {
        let again = put("/d/again".into()).await.expect_err("still full");
        assert_eq!(again.code(), Code::Unavailable, "{again:?}");
    }
    // Reads go on.
    let read = caller
        .kv()
        .range(pb::RangeRequest {
            key: "/d/".into(),
            range_end: "/d0".into(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("a read on a full disk")
        .into_inner();
    assert_eq!(read.count as usize, acked.len());

    // Space comes back; so do writes, by themselves.
    std::fs::remove_file(&filler).expect("removing the filler");
    let back = Instant::now();
    loop {
        match put("/d/after".into()).await {
            Ok(_) => break,
            Err(status) => assert!(
                back.elapsed() < Duration::from_secs(5),
                "writes still fail {:?} after space returned: {status:?}",
                back.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys: Vec<String> = caller
        .kv()
        .range(pb::RangeRequest {
            key: "/d/".into(),
            range_end: "/d0".into(),
            keys_only: true,
            ..Default::default()
        })
        .await
        .expect("a read")
        .into_inner()
        .kvs
        .into_iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    for n in &acked {
        assert!(
            keys.contains(&format!("/d/{n:05}")),
            "acknowledged /d/{n:05} is lost"
        );
    }
    drop(server);
    // Nothing is corrupt.
    let check = std::process::Command::new("sqlite3")
        .arg(data.join("berth.db"))
        .arg("PRAGMA integrity_check;")
        .output()
        .expect("sqlite3");
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "ok");
}
