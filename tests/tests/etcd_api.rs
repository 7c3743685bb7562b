//! Berth's etcd API through the Rust `etcd-client` crate: the same calls
//! against a real etcd and against Berth, two Berth servers on one
//! PostgreSQL, a watcher that stops reading, and the access check.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_tests::db::{TestBackend, TestDb};
use berth_tests::etcd::RealEtcd;
use berth_tests::process::TestServer;
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions,
    PutOptions, Txn, TxnOp, WatchFilterType, WatchOptions,
};

async fn connect(endpoint: &str) -> Client {
    Client::connect([endpoint], None)
        .await
        .expect("connecting with etcd-client")
}

/// A scenario through etcd-client; returns a transcript of what a user of
/// the crate sees (no server identities, no random ids).
async fn client_scenario(endpoint: &str) -> Vec<String> {
    let mut client = connect(endpoint).await;
    let mut out = Vec::new();
    for (key, value) in [("/s/a", "1"), ("/s/b", "2"), ("/s/a", "3")] {
        let put = client
            .put(key, value, Some(PutOptions::new().with_prev_key()))
            .await
            .unwrap();
        out.push(format!(
            "put {key} rev={} prev={:?}",
            put.header().unwrap().revision(),
            put.prev_key().map(|kv| kv.value_str().unwrap().to_owned())
        ));
    }
    let txn = Txn::new()
        .when([
            Compare::version("/s/a", CompareOp::Equal, 2),
            Compare::value("/s/b", CompareOp::Equal, "2"),
        ])
        .and_then([
            TxnOp::put("/s/c", "txn", None),
            TxnOp::get("/s/", Some(GetOptions::new().with_prefix())),
        ])
        .or_else([TxnOp::delete("/s/a", None)]);
    let answer = client.txn(txn).await.unwrap();
    out.push(format!(
        "txn succeeded={} rev={}",
        answer.succeeded(),
        answer.header().unwrap().revision()
    ));
    let failed = Txn::new()
        .when([Compare::value("/s/missing", CompareOp::Equal, "")])
        .and_then([TxnOp::put("/s/d", "then", None)])
        .or_else([TxnOp::put("/s/d", "else", None)]);
    out.push(format!(
        "txn succeeded={}",
        client.txn(failed).await.unwrap().succeeded()
    ));
    // A nested transaction decides on its own compares.
    let inner = Txn::new()
        .when([Compare::value("/s/b", CompareOp::Equal, "nope")])
        .and_then([TxnOp::put("/s/n", "inner-then", None)])
        .or_else([TxnOp::put("/s/n", "inner-else", None)]);
    let nested = Txn::new().and_then([TxnOp::txn(inner), TxnOp::put("/s/o", "outer", None)]);
    let answer = client.txn(nested).await.unwrap();
    out.push(format!(
        "nested txn succeeded={} rev={}",
        answer.succeeded(),
        answer.header().unwrap().revision()
    ));
    let duplicate =
        Txn::new().and_then([TxnOp::put("/s/x", "1", None), TxnOp::put("/s/x", "2", None)]);
    out.push(format!(
        "duplicate: {}",
        client.txn(duplicate).await.unwrap_err()
    ));
    let keys = client
        .get("/s/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    for kv in keys.kvs() {
        out.push(format!(
            "{}={} create={} mod={} version={}",
            kv.key_str().unwrap(),
            kv.value_str().unwrap(),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version()
        ));
    }

    // Leases with a client-chosen id.
    let lease = client
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(777)))
        .await
        .unwrap();
    out.push(format!("lease id={} ttl={}", lease.id(), lease.ttl()));
    let again = client
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(777)))
        .await;
    out.push(format!("grant again: {}", again.unwrap_err()));
    client
        .put("/s/leased", "v", Some(PutOptions::new().with_lease(777)))
        .await
        .unwrap();
    let (mut keeper, mut responses) = client.lease_keep_alive(777).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let kept = responses.message().await.unwrap().unwrap();
    out.push(format!("keep-alive id={} ttl={}", kept.id(), kept.ttl()));
    let ttl = client
        .lease_time_to_live(777, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    out.push(format!(
        "time-to-live granted={} keys={:?}",
        ttl.granted_ttl(),
        ttl.keys()
    ));
    client.lease_revoke(777).await.unwrap();
    out.push(format!(
        "revoke again: {}",
        client.lease_revoke(777).await.unwrap_err()
    ));
    let gone = client.get("/s/leased", None).await.unwrap();
    out.push(format!("leased key after revoke: {}", gone.kvs().len()));

    // A watch of deletes only, from the start, then a progress request.
    let mut watch = client
        .watch(
            "/s/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(2)
                    .with_filters([WatchFilterType::NoPut]),
            ),
        )
        .await
        .unwrap();
    let current = client
        .get("/s/a", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut deletes = Vec::new();
    while deletes.is_empty() {
        let response = watch.message().await.unwrap().unwrap();
        for event in response.events() {
            assert_eq!(
                event.event_type(),
                EventType::Delete,
                "NOPUT lets no put through"
            );
            deletes.push(format!(
                "{} at {}",
                event.kv().unwrap().key_str().unwrap(),
                event.kv().unwrap().mod_revision()
            ));
        }
    }
    out.push(format!("deletes seen: {deletes:?}"));
    watch.request_progress().await.unwrap();
    loop {
        let response = watch.message().await.unwrap().unwrap();
        if response.events().is_empty() && !response.created() {
            out.push(format!(
                "progress watch_id={} at current revision: {}",
                response.watch_id(),
                response.header().unwrap().revision() == current
            ));
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_sees_the_same_answers_from_berth_as_from_etcd() {
    let etcd = RealEtcd::start();
    let expected = client_scenario(&etcd.endpoint).await;
    drop(etcd);
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let db = TestDb::new(backend).await;
        let berth = TestServer::open(&db.url);
        let actual = client_scenario(&berth.etcd_endpoint()).await;
        assert_eq!(actual, expected, "Berth on {backend:?} differs from etcd");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_one_server_sees_puts_through_another_within_50_ms() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let a = TestServer::open(&db.url);
    let b = TestServer::open(&db.url);
    let mut writer = connect(&a.etcd_endpoint()).await;
    let mut reader = connect(&b.etcd_endpoint()).await;
    let mut watch = reader
        .watch("/x/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    const PUTS: usize = 1000;
    let receiver = tokio::spawn(async move {
        let mut seen = HashMap::new();
        while seen.len() < PUTS {
            let response = tokio::time::timeout(Duration::from_secs(10), watch.message())
                .await
                .expect("events keep coming")
                .unwrap()
                .unwrap();
            for event in response.events() {
                seen.insert(
                    event.kv().unwrap().key_str().unwrap().to_owned(),
                    Instant::now(),
                );
            }
        }
        seen
    });
    let mut sent = HashMap::new();
    for i in 0..PUTS {
        let key = format!("/x/{i:04}");
        sent.insert(key.clone(), Instant::now());
        writer.put(key, "v", None).await.unwrap();
    }
    let seen = receiver.await.unwrap();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .map(|(key, at)| seen[key].duration_since(*at))
        .collect();
    latencies.sort();
    let p99 = latencies[PUTS * 99 / 100];
    assert!(
        p99 <= Duration::from_millis(50),
        "p99 {p99:?} (p50 {:?})",
        latencies[PUTS / 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_stalls_nobody_and_then_gets_every_event() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let berth = TestServer::open(&db.url);
    let endpoint = berth.etcd_endpoint();
    let mut stalled_client = connect(&endpoint).await;
    let stalled = stalled_client
        .watch("/y/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut live_client = connect(&endpoint).await;
    let live = live_client
        .watch("/y/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut writer = connect(&endpoint).await;
    // 3,000 events of 4 KiB: far more than the stalled stream's windows and
    // buffers hold.
    const PUTS: usize = 3000;
    let value = vec![b'v'; 4096];
    let collect = |mut stream: etcd_client::WatchStream, deadline: Duration| async move {
        let mut revisions = Vec::new();
        let until = tokio::time::Instant::now() + deadline;
        while revisions.len() < PUTS {
            let response = tokio::time::timeout_at(until, stream.message())
                .await
                .unwrap_or_else(|_| panic!("only {} events in time", revisions.len()))
                .unwrap()
                .unwrap();
            assert!(
                !response.canceled(),
                "cancelled: {}",
                response.cancel_reason()
            );
            revisions.extend(
                response
                    .events()
                    .iter()
                    .map(|e| e.kv().unwrap().mod_revision()),
            );
        }
        revisions
    };
    let live_task = tokio::spawn(collect(live, Duration::from_secs(60)));
    let started = Instant::now();
    let mut first = 0;
    for i in 0..PUTS {
        let put = writer
            .put(format!("/y/{i}"), value.clone(), None)
            .await
            .unwrap();
        if i == 0 {
            first = put.header().unwrap().revision();
        }
    }
    let writes_took = started.elapsed();
    let live_revisions = live_task.await.unwrap();
    let expected: Vec<i64> = (first..first + PUTS as i64).collect();
    assert_eq!(
        live_revisions, expected,
        "the reading watcher got everything, in order"
    );
    assert!(
        writes_took < Duration::from_secs(60),
        "writes were held up: {writes_took:?}"
    );
    // The stalled watcher resumes and misses nothing.
    let stalled_revisions = collect(stalled, Duration::from_secs(60)).await;
    assert_eq!(
        stalled_revisions, expected,
        "the stalled watcher caught up without a gap"
    );
    drop(stalled_client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_etcd_api_answers_unauthenticated() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    // The default: --etcd-auth=users.
    let server = TestServer::start(&db.url, &[]);
    let mut client = connect(&server.etcd_endpoint()).await;
    let error = client.put("/k", "v", None).await.unwrap_err();
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            assert_eq!(status.code(), tonic::Code::Unauthenticated)
        }
        other => panic!("expected Unauthenticated, got {other}"),
    }
    let error = client.get("/k", None).await.unwrap_err();
    assert!(
        error.to_string().contains("Unauthenticated") || error.to_string().contains("token"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_shows_every_server_process_on_the_database() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let a = TestServer::open(&db.url);
    let mut b = TestServer::open(&db.url);
    let mut client = connect(&a.etcd_endpoint()).await;
    let urls = |members: &[etcd_client::Member]| -> Vec<String> {
        let mut urls: Vec<String> = members
            .iter()
            .flat_map(|m| m.client_urls().to_vec())
            .collect();
        urls.sort();
        urls
    };
    let mut both = vec![
        format!("http://{}", a.process.grpc_addr),
        format!("http://{}", b.process.grpc_addr),
    ];
    both.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let members = client.member_list().await.unwrap();
        if urls(members.members()) == both {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "members: {:?}",
            urls(members.members())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A server that stops leaves the list.
    let pid = nix::unistd::Pid::from_raw(b.process.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    b.process.child.wait().unwrap();
    let members = client.member_list().await.unwrap();
    assert_eq!(
        urls(members.members()),
        [format!("http://{}", a.process.grpc_addr)]
    );
    let status = client.status().await.unwrap();
    assert_eq!(status.leader(), members.members()[0].id());
}

/// A raw watch stream: one create request, kept open.
async fn raw_watch(
    endpoint: std::net::SocketAddr,
    create: berth_api::etcd::etcdserverpb::WatchCreateRequest,
) -> tonic::Streaming<berth_api::etcd::etcdserverpb::WatchResponse> {
    use berth_api::etcd::etcdserverpb as pb;
    use futures::StreamExt;
    let mut client = pb::watch_client::WatchClient::connect(format!("http://{endpoint}"))
        .await
        .unwrap();
    let request = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
    };
    let requests = futures::stream::iter(vec![request]).chain(futures::stream::pending());
    client.watch(requests).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watch_that_asked_for_progress_notifications_gets_them() {
    use berth_api::etcd::etcdserverpb as pb;
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = TestServer::start(
        &db.url,
        &["--etcd-auth", "none", "--etcd-progress-notify-ms", "300"],
    );
    let mut client = connect(&server.etcd_endpoint()).await;
    let revision = client
        .put("/elsewhere", "v", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let create = pb::WatchCreateRequest {
        key: b"/idle".to_vec(),
        progress_notify: true,
        ..Default::default()
    };
    let mut stream = raw_watch(server.process.grpc_addr, create).await;
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created);
    let started = Instant::now();
    let progress = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        progress.events.is_empty() && !progress.canceled,
        "{progress:?}"
    );
    assert_eq!(
        progress.header.unwrap().revision,
        revision,
        "progress says how far the watch is synced"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "not before the interval"
    );
    // A watch that did not ask gets nothing while idle.
    let quiet = pb::WatchCreateRequest {
        key: b"/idle".to_vec(),
        ..Default::default()
    };
    let mut quiet = raw_watch(server.process.grpc_addr, quiet).await;
    assert!(quiet.message().await.unwrap().unwrap().created);
    assert!(
        tokio::time::timeout(Duration::from_millis(900), quiet.message())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_watch_answers_are_split_at_revisions_and_fragmented_on_request() {
    use berth_api::etcd::etcdserverpb as pb;
    let db = TestDb::new(TestBackend::Sqlite).await;
    let berth = TestServer::open(&db.url);
    let mut client = connect(&berth.etcd_endpoint()).await;
    let big = vec![b'x'; 600 * 1024];
    // Three revisions of 600 KiB each, then one revision of three such keys.
    let mut first = 0;
    for i in 0..3 {
        let put = client
            .put(format!("/big/{i}"), big.clone(), None)
            .await
            .unwrap();
        if i == 0 {
            first = put.header().unwrap().revision();
        }
    }
    let txn = Txn::new().and_then([
        TxnOp::put("/big/t0", big.clone(), None),
        TxnOp::put("/big/t1", big.clone(), None),
        TxnOp::put("/big/t2", big.clone(), None),
    ]);
    let last = client.txn(txn).await.unwrap().header().unwrap().revision();
    for fragment in [false, true] {
        let create = pb::WatchCreateRequest {
            key: b"/big/".to_vec(),
            range_end: b"/big0".to_vec(),
            start_revision: first,
            fragment,
            ..Default::default()
        };
        let mut stream = raw_watch(berth.process.grpc_addr, create).await;
        assert!(stream.message().await.unwrap().unwrap().created);
        let mut responses = Vec::new();
        let mut events = 0;
        while events < 6 {
            let response = stream.message().await.unwrap().unwrap();
            events += response.events.len();
            responses.push(response);
        }
        // A response holds several revisions only within the 1 MiB budget.
        let revisions: Vec<Vec<i64>> = responses
            .iter()
            .map(|r| {
                r.events
                    .iter()
                    .map(|e| e.kv.as_ref().unwrap().mod_revision)
                    .collect()
            })
            .collect();
        for (response, revs) in responses.iter().zip(&revisions) {
            if !fragment {
                assert!(!response.fragment);
            }
            let distinct: std::collections::BTreeSet<_> = revs.iter().collect();
            let bytes: usize = response
                .events
                .iter()
                .map(|e| e.kv.as_ref().unwrap().value.len())
                .sum();
            assert!(distinct.len() == 1 || bytes <= 1024 * 1024, "{revisions:?}");
        }
        let flat: Vec<i64> = revisions.concat();
        assert_eq!(flat, [first, first + 1, first + 2, last, last, last]);
        if fragment {
            // The last revision (1.8 MiB) came in pieces, all but the last
            // marked as fragments.
            let pieces: Vec<&pb::WatchResponse> = responses
                .iter()
                .filter(|r| {
                    r.events
                        .iter()
                        .any(|e| e.kv.as_ref().unwrap().mod_revision == last)
                })
                .collect();
            assert!(pieces.len() > 1, "{revisions:?}");
            assert!(pieces[..pieces.len() - 1].iter().all(|r| r.fragment));
            assert!(!pieces[pieces.len() - 1].fragment);
        } else {
            let whole = responses.iter().find(|r| {
                r.events
                    .iter()
                    .any(|e| e.kv.as_ref().unwrap().mod_revision == last)
            });
            assert_eq!(
                whole.unwrap().events.len(),
                3,
                "without fragment, a revision goes out whole"
            );
        }
    }
}
