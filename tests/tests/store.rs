//! The store's conformance suite. Every test body runs twice, on SQLite and on
//! PostgreSQL, through the `conformance!` macro at the bottom.

use std::collections::HashSet;
use std::time::Duration;

use berth_server::store::types::*;
use berth_server::store::{Store, StoreError, Watch};
use berth_tests::db::{TestBackend, TestDb};

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    }
}

async fn put_ok(store: &Store, key: &str, value: &str) -> Revision {
    store.put(put(key, value)).await.expect("put").revision
}

async fn value_of(store: &Store, key: &str) -> Option<String> {
    store
        .get(key.as_bytes(), 0)
        .await
        .expect("get")
        .map(|kv| String::from_utf8(kv.value).expect("utf-8 value"))
}

/// Reads events from a watch until `count` have arrived (or 10 s pass).
async fn collect(watch: &mut Watch, count: usize) -> Vec<Event> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < count {
        match tokio::time::timeout_at(deadline, watch.next()).await {
            Ok(Some(Ok(batch))) => events.extend(batch),
            Ok(Some(Err(error))) => panic!("watch failed after {} events: {error}", events.len()),
            Ok(None) => panic!("watch ended after {} events", events.len()),
            Err(_) => panic!("timed out with {} of {count} events", events.len()),
        }
    }
    events
}

fn keys_of(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

async fn revisions_start_at_one_and_rise_by_one_per_write(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    assert_eq!(
        store.current_revision().await.unwrap(),
        1,
        "an empty store is at revision 1"
    );
    assert_eq!(put_ok(&store, "/a", "1").await, 2);
    assert_eq!(put_ok(&store, "/b", "1").await, 3);
    // A transaction that writes three keys uses one revision.
    let txn = TxnRequest {
        success: vec![
            Op::Put(put("/c", "1")),
            Op::Put(put("/d", "1")),
            Op::Delete(DeleteRequest {
                range: KeyRange::single("/a"),
                prev_kv: false,
            }),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(store.txn(txn).await.unwrap().revision, 4);
    // Deleting nothing and reading do not move the revision.
    let deleted = store
        .delete(DeleteRequest {
            range: KeyRange::single("/nope"),
            prev_kv: false,
        })
        .await
        .unwrap();
    assert_eq!((deleted.deleted, deleted.revision), (0, 4));
    let read = store
        .range(RangeRequest {
            range: KeyRange::prefix("/"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(read.revision, 4);
    assert_eq!(store.current_revision().await.unwrap(), 4);
    // The counter survives a restart.
    store.close().await;
    let store = db.open().await;
    assert_eq!(put_ok(&store, "/e", "1").await, 5);
}

async fn version_counts_from_one_and_resets_after_delete(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let r1 = put_ok(&store, "/k", "a").await;
    let r2 = put_ok(&store, "/k", "b").await;
    let kv = store.get(b"/k", 0).await.unwrap().unwrap();
    assert_eq!(
        (kv.version, kv.create_revision, kv.mod_revision),
        (2, r1, r2)
    );
    store
        .delete(DeleteRequest {
            range: KeyRange::single("/k"),
            prev_kv: false,
        })
        .await
        .unwrap();
    assert_eq!(store.get(b"/k", 0).await.unwrap(), None);
    let r4 = put_ok(&store, "/k", "c").await;
    let kv = store.get(b"/k", 0).await.unwrap().unwrap();
    assert_eq!(
        (kv.version, kv.create_revision, kv.mod_revision),
        (1, r4, r4),
        "a re-created key starts over"
    );
    // Reads at past revisions see the versions of then.
    let then = store.get(b"/k", r1).await.unwrap().unwrap();
    assert_eq!((then.value.as_slice(), then.version), (&b"a"[..], 1));
    assert_eq!(
        store.get(b"/k", r4 - 1).await.unwrap(),
        None,
        "deleted at that revision"
    );
}

async fn range_honours_prefix_limit_count_and_keys_only(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    for key in ["/p/a", "/p/b", "/p/c", "/p/d", "/q/a"] {
        put_ok(&store, key, "value").await;
    }
    let all = store
        .range(RangeRequest {
            range: KeyRange::prefix("/p/"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(keys_of(&all.kvs), ["/p/a", "/p/b", "/p/c", "/p/d"]);
    assert_eq!((all.count, all.more), (4, false));

    let limited = store
        .range(RangeRequest {
            range: KeyRange::prefix("/p/"),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(keys_of(&limited.kvs), ["/p/a", "/p/b"]);
    assert_eq!((limited.count, limited.more), (4, true));

    let between = store
        .range(RangeRequest {
            range: KeyRange::between("/p/b", "/p/d"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(keys_of(&between.kvs), ["/p/b", "/p/c"]);

    let from = store
        .range(RangeRequest {
            range: KeyRange::between("/p/c", vec![0]),
            ..Default::default()
        })
        .await;
    assert_eq!(keys_of(&from.unwrap().kvs), ["/p/c", "/p/d", "/q/a"]);

    let keys_only = store
        .range(RangeRequest {
            range: KeyRange::prefix("/p/"),
            keys_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        keys_only
            .kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version == 1)
    );

    let count_only = store
        .range(RangeRequest {
            range: KeyRange::prefix("/"),
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((count_only.count, count_only.kvs.len()), (5, 0));

    // The same reads at a past revision.
    let past = all.revision;
    store
        .delete(DeleteRequest {
            range: KeyRange::prefix("/p/"),
            prev_kv: false,
        })
        .await
        .unwrap();
    let old = store
        .range(RangeRequest {
            range: KeyRange::prefix("/p/"),
            revision: past,
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(keys_of(&old.kvs), ["/p/a", "/p/b", "/p/c"]);
    assert_eq!((old.count, old.more), (4, true));
}

async fn compare_and_swap_under_32_concurrent_writers_has_one_winner_per_revision(
    backend: TestBackend,
) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let start = put_ok(&store, "/counter", "0").await;
    const WRITERS: usize = 32;
    const INCREMENTS: usize = 10;
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            let mut losses = 0;
            while wins.len() < INCREMENTS {
                let kv = store.get(b"/counter", 0).await.unwrap().unwrap();
                let n: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                match store
                    .update_if(
                        b"/counter",
                        (n + 1).to_string().into_bytes(),
                        0,
                        kv.mod_revision,
                    )
                    .await
                {
                    Ok(put) => wins.push((put.revision, n + 1)),
                    Err(StoreError::Conflict { .. }) => losses += 1,
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            (wins, losses)
        }));
    }
    let mut wins = Vec::new();
    let mut losses = 0;
    for task in tasks {
        let (w, l) = task.await.unwrap();
        wins.extend(w);
        losses += l;
    }
    wins.sort();
    let total = (WRITERS * INCREMENTS) as u64;
    assert_eq!(
        value_of(&store, "/counter").await.unwrap(),
        total.to_string(),
        "no lost update"
    );
    // Every winning write has its own revision, and the n-th win wrote n.
    for (i, (revision, value)) in wins.iter().enumerate() {
        assert_eq!(*revision, start + 1 + i as i64, "one winner per revision");
        assert_eq!(*value, i as u64 + 1);
    }
    assert!(
        losses > 0,
        "32 writers on one key must have lost some compares"
    );
}

async fn a_transaction_is_atomic(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    put_ok(&store, "/t/a", "old").await;
    let before = store.current_revision().await.unwrap();

    // All writes of a transaction land at one revision.
    let response = store
        .txn(TxnRequest {
            compares: vec![Compare {
                range: KeyRange::single("/t/a"),
                op: CompareOp::Equal,
                target: CompareTarget::Value(b"old".to_vec()),
            }],
            success: vec![
                Op::Put(put("/t/a", "new")),
                Op::Put(put("/t/b", "new")),
                Op::Range(RangeRequest {
                    range: KeyRange::prefix("/t/"),
                    ..Default::default()
                }),
            ],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(response.succeeded);
    assert_eq!(response.revision, before + 1);
    for key in ["/t/a", "/t/b"] {
        assert_eq!(
            store
                .get(key.as_bytes(), 0)
                .await
                .unwrap()
                .unwrap()
                .mod_revision,
            before + 1
        );
    }
    // A read inside the transaction sees its own earlier writes.
    match &response.responses[2] {
        OpResponse::Range(range) => {
            assert_eq!(keys_of(&range.kvs), ["/t/a", "/t/b"]);
            assert!(range.kvs.iter().all(|kv| kv.value == b"new"));
        }
        other => panic!("expected a range response, got {other:?}"),
    }

    // A failing compare runs the other branch.
    let response = store
        .txn(TxnRequest {
            compares: vec![Compare {
                range: KeyRange::single("/t/a"),
                op: CompareOp::Equal,
                target: CompareTarget::Value(b"old".to_vec()),
            }],
            success: vec![Op::Put(put("/t/a", "wrong"))],
            failure: vec![Op::Put(put("/t/c", "else"))],
        })
        .await
        .unwrap();
    assert!(!response.succeeded);
    assert_eq!(value_of(&store, "/t/a").await.as_deref(), Some("new"));
    assert_eq!(value_of(&store, "/t/c").await.as_deref(), Some("else"));

    // A transaction that fails part-way leaves nothing behind: the second put
    // names a lease that does not exist.
    let revision = store.current_revision().await.unwrap();
    let failed = store
        .txn(TxnRequest {
            success: vec![
                Op::Put(put("/t/d", "half")),
                Op::Delete(DeleteRequest {
                    range: KeyRange::single("/t/a"),
                    prev_kv: false,
                }),
                Op::Put(PutRequest {
                    lease: 12345,
                    ..put("/t/e", "half")
                }),
            ],
            ..TxnRequest::default()
        })
        .await;
    assert!(
        matches!(failed, Err(StoreError::LeaseNotFound(12345))),
        "{failed:?}"
    );
    assert_eq!(
        store.current_revision().await.unwrap(),
        revision,
        "no revision used"
    );
    assert_eq!(value_of(&store, "/t/d").await, None);
    assert_eq!(value_of(&store, "/t/a").await.as_deref(), Some("new"));

    // Concurrent transactions each move several keys together; a reader never
    // sees one half of a transaction.
    let mut writers = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for j in 0..10 {
                let v = format!("{i}-{j}");
                store
                    .txn(TxnRequest {
                        success: vec![Op::Put(put("/pair/x", &v)), Op::Put(put("/pair/y", &v))],
                        ..TxnRequest::default()
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for _ in 0..50 {
        let read = store
            .range(RangeRequest {
                range: KeyRange::prefix("/pair/"),
                ..Default::default()
            })
            .await
            .unwrap();
        if read.kvs.len() == 2 {
            assert_eq!(
                read.kvs[0].value, read.kvs[1].value,
                "a torn transaction was visible"
            );
            assert_eq!(read.kvs[0].mod_revision, read.kvs[1].mod_revision);
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
}

async fn a_read_inside_a_transaction_can_look_at_a_past_revision(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let first = put_ok(&store, "/h", "a").await;
    put_ok(&store, "/h", "b").await;
    let response = store
        .txn(TxnRequest {
            success: vec![
                Op::Range(RangeRequest {
                    range: KeyRange::single("/h"),
                    revision: first,
                    ..Default::default()
                }),
                Op::Put(put("/h2", "c")),
                Op::Range(RangeRequest {
                    range: KeyRange::prefix("/h"),
                    ..Default::default()
                }),
            ],
            ..TxnRequest::default()
        })
        .await
        .unwrap();
    match (&response.responses[0], &response.responses[2]) {
        (OpResponse::Range(then), OpResponse::Range(now)) => {
            assert_eq!(
                then.kvs[0].value, b"a",
                "the version as of the past revision"
            );
            assert_eq!(keys_of(&now.kvs), ["/h", "/h2"]);
            assert_eq!(now.kvs[0].value, b"b");
        }
        other => panic!("expected two range answers, got {other:?}"),
    }
}

async fn compares_follow_etcd_on_missing_keys_values_leases_and_ranges(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let holds = |store: &Store, compare: Compare| {
        let store = store.clone();
        async move {
            store
                .txn(TxnRequest {
                    compares: vec![compare],
                    ..TxnRequest::default()
                })
                .await
                .unwrap()
                .succeeded
        }
    };
    let cmp = |key: &str, op, target| Compare {
        range: KeyRange::single(key),
        op,
        target,
    };
    // An absent key has version, create and mod revision 0 ...
    assert!(
        holds(
            &store,
            cmp("/m", CompareOp::Equal, CompareTarget::Version(0))
        )
        .await
    );
    assert!(
        holds(
            &store,
            cmp("/m", CompareOp::Equal, CompareTarget::CreateRevision(0))
        )
        .await
    );
    // ... but no value equals an absent key's.
    assert!(
        !holds(
            &store,
            cmp("/m", CompareOp::Equal, CompareTarget::Value(vec![]))
        )
        .await
    );
    assert!(
        !holds(
            &store,
            cmp("/m", CompareOp::NotEqual, CompareTarget::Value(vec![]))
        )
        .await
    );

    put_ok(&store, "/m", "bbb").await;
    assert!(
        holds(
            &store,
            cmp(
                "/m",
                CompareOp::Greater,
                CompareTarget::Value(b"aaa".to_vec())
            )
        )
        .await
    );
    assert!(
        holds(
            &store,
            cmp("/m", CompareOp::Less, CompareTarget::Value(b"c".to_vec()))
        )
        .await
    );
    assert!(
        holds(
            &store,
            cmp("/m", CompareOp::Greater, CompareTarget::Version(0))
        )
        .await
    );
    assert!(holds(&store, cmp("/m", CompareOp::Equal, CompareTarget::Lease(0))).await);

    let lease = store
        .lease_grant(0, 60, LeaseOwner::Platform)
        .await
        .unwrap();
    store
        .put(PutRequest {
            lease: lease.id,
            ..put("/m", "ccc")
        })
        .await
        .unwrap();
    assert!(
        holds(
            &store,
            cmp("/m", CompareOp::Equal, CompareTarget::Lease(lease.id))
        )
        .await
    );

    // With a range every key must satisfy the compare.
    put_ok(&store, "/r/1", "x").await;
    put_ok(&store, "/r/2", "x").await;
    let range_cmp = |op, target| Compare {
        range: KeyRange::prefix("/r/"),
        op,
        target,
    };
    assert!(
        holds(
            &store,
            range_cmp(CompareOp::Equal, CompareTarget::Value(b"x".to_vec()))
        )
        .await
    );
    put_ok(&store, "/r/2", "y").await;
    assert!(
        !holds(
            &store,
            range_cmp(CompareOp::Equal, CompareTarget::Value(b"x".to_vec()))
        )
        .await
    );
    assert!(
        holds(
            &store,
            range_cmp(CompareOp::Greater, CompareTarget::Version(0))
        )
        .await
    );
}

async fn malformed_transactions_are_refused_and_write_nothing(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let duplicate = store
        .txn(TxnRequest {
            success: vec![Op::Put(put("/d", "1")), Op::Put(put("/d", "2"))],
            ..TxnRequest::default()
        })
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::DuplicateKey { .. })),
        "{duplicate:?}"
    );
    let overlapping = store
        .txn(TxnRequest {
            success: vec![
                Op::Put(put("/d/x", "1")),
                Op::Delete(DeleteRequest {
                    range: KeyRange::prefix("/d/"),
                    prev_kv: false,
                }),
            ],
            ..TxnRequest::default()
        })
        .await;
    assert!(
        matches!(overlapping, Err(StoreError::DuplicateKey { .. })),
        "{overlapping:?}"
    );
    let too_many = store
        .txn(TxnRequest {
            success: (0..129)
                .map(|i| Op::Put(put(&format!("/many/{i}"), "v")))
                .collect(),
            ..TxnRequest::default()
        })
        .await;
    assert!(
        matches!(
            too_many,
            Err(StoreError::TooManyOps {
                count: 129,
                limit: 128
            })
        ),
        "{too_many:?}"
    );
    assert_eq!(
        store.current_revision().await.unwrap(),
        1,
        "nothing was written"
    );
}

async fn oversize_values_and_empty_keys_are_refused_and_write_nothing(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let big = vec![b'x'; 1536 * 1024 + 1];
    let refused = store
        .put(PutRequest {
            key: b"/big".to_vec(),
            value: big,
            ..Default::default()
        })
        .await;
    match refused {
        Err(error @ StoreError::ValueTooLarge { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("/big") && message.contains("1572864"),
                "unclear message: {message}"
            );
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    let empty = store
        .put(PutRequest {
            key: vec![],
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(matches!(empty, Err(StoreError::EmptyKey)), "{empty:?}");
    assert_eq!(
        store.current_revision().await.unwrap(),
        1,
        "nothing was written"
    );
    assert_eq!(store.get(b"/big", 0).await.unwrap(), None);
    // The largest value allowed is stored whole.
    let max = vec![b'y'; 1536 * 1024 - 4];
    store
        .put(PutRequest {
            key: b"/max".to_vec(),
            value: max.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.get(b"/max", 0).await.unwrap().unwrap().value, max);
}

async fn watch_from_a_revision_delivers_every_later_event_once_in_order(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    for i in 0..20 {
        put_ok(&store, &format!("/w/{i}"), "before").await;
    }
    let from = store.current_revision().await.unwrap() - 9;
    let mut watch = store
        .watch(WatchRequest {
            range: KeyRange::prefix("/w/"),
            start_revision: from,
            prev_kv: true,
        })
        .await
        .unwrap();
    // Writes from many tasks while the watch is catching up from the log.
    let mut writers = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                put_ok(
                    &store,
                    &format!("/w/{}", (t * 25 + i) % 20),
                    &format!("{t}-{i}"),
                )
                .await;
                // Writes outside the range must not appear.
                put_ok(&store, &format!("/other/{t}"), "x").await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let last = store.current_revision().await.unwrap();
    let events = collect(&mut watch, 10 + 200).await;
    let revisions: Vec<Revision> = events.iter().map(Event::revision).collect();
    assert_eq!(revisions.first(), Some(&from));
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "in order, once each"
    );
    assert!(events.iter().all(|e| e.kv.key.starts_with(b"/w/")));
    // Every write to the range at or after `from` is there.
    let expected = store
        .range(RangeRequest {
            range: KeyRange::prefix("/w/"),
            ..Default::default()
        })
        .await
        .unwrap()
        .kvs
        .iter()
        .map(|kv| kv.mod_revision)
        .max()
        .unwrap();
    assert_eq!(*revisions.last().unwrap(), expected);
    assert!(expected <= last);
    // prev_kv is the version each event replaced (the first ten created
    // their keys).
    for event in &events[10..] {
        let prev = event.prev_kv.as_ref().expect("every key existed before");
        assert_eq!(prev.version + 1, event.kv.version);
    }
    // Nothing more arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch.next())
            .await
            .is_err()
    );
}

async fn watch_resumed_after_a_disconnect_misses_and_repeats_nothing(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let start = store.current_revision().await.unwrap() + 1;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                put_ok(&store, &format!("/res/{}", i % 7), &i.to_string()).await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut next = start;
    // Three watch sessions, each dropped part-way.
    for take in [40, 70, 60] {
        let mut watch = store
            .watch(WatchRequest {
                range: KeyRange::prefix("/res/"),
                start_revision: next,
                prev_kv: false,
            })
            .await
            .unwrap();
        let events = collect(&mut watch, take).await;
        drop(watch);
        // Resume after the last revision fully received.
        let last = events.last().unwrap().revision();
        seen.extend(events.into_iter().map(|e| e.revision()));
        next = last + 1;
    }
    writer.await.unwrap();
    let mut watch = store
        .watch(WatchRequest {
            range: KeyRange::prefix("/res/"),
            start_revision: next,
            prev_kv: false,
        })
        .await
        .unwrap();
    let rest = (start + 300 - next) as usize;
    seen.extend(
        collect(&mut watch, rest)
            .await
            .into_iter()
            .map(|e| e.revision()),
    );
    let expected: Vec<Revision> = (start..start + 300).collect();
    assert_eq!(seen, expected);
}

async fn compaction_makes_old_revisions_fail_with_compacted(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let r1 = put_ok(&store, "/c", "1").await;
    let r2 = put_ok(&store, "/c", "2").await;
    put_ok(&store, "/gone", "x").await;
    store
        .delete(DeleteRequest {
            range: KeyRange::single("/gone"),
            prev_kv: false,
        })
        .await
        .unwrap();
    let r3 = put_ok(&store, "/c", "3").await;
    store.compact(r2).await.unwrap();
    assert_eq!(store.compact_revision().await.unwrap(), r2);

    let read_old = store.get(b"/c", r1).await;
    assert!(
        matches!(read_old, Err(StoreError::Compacted { requested, compact_revision }) if requested == r1 && compact_revision == r2),
        "{read_old:?}"
    );
    assert!(read_old.unwrap_err().to_string().contains("compacted"));
    // The compaction point itself and everything after stay readable.
    assert_eq!(store.get(b"/c", r2).await.unwrap().unwrap().value, b"2");
    assert_eq!(store.get(b"/c", r3).await.unwrap().unwrap().value, b"3");
    assert_eq!(store.get(b"/gone", 0).await.unwrap(), None);

    let watch = store
        .watch(WatchRequest {
            range: KeyRange::prefix("/"),
            start_revision: r1,
            prev_kv: false,
        })
        .await;
    assert!(
        matches!(watch, Err(StoreError::Compacted { .. })),
        "watch from a compacted revision must fail"
    );
    let mut watch = store
        .watch(WatchRequest {
            range: KeyRange::prefix("/c"),
            start_revision: r2,
            prev_kv: false,
        })
        .await
        .unwrap();
    let events = collect(&mut watch, 2).await;
    assert_eq!(
        events.iter().map(Event::revision).collect::<Vec<_>>(),
        [r2, r3]
    );

    // A future revision fails too, and so does compacting twice.
    let future = store.get(b"/c", r3 + 100).await;
    assert!(
        matches!(future, Err(StoreError::FutureRevision { .. })),
        "{future:?}"
    );
    assert!(matches!(
        store.compact(r1).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        store.compact(r3 + 100).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

async fn a_watcher_that_falls_behind_a_compaction_is_cancelled_not_silently_skipped(
    backend: TestBackend,
) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let start = store.current_revision().await.unwrap() + 1;
    // Nobody reads this watch while more commits go by than its buffer and
    // the broadcast hold together; then the history is compacted away.
    let mut watch = store
        .watch(WatchRequest {
            range: KeyRange::single("/slow"),
            start_revision: 0,
            prev_kv: false,
        })
        .await
        .unwrap();
    const WRITES: i64 = 4096 + 200;
    for i in 0..WRITES {
        put_ok(&store, "/slow", &i.to_string()).await;
    }
    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();
    let mut delivered = Vec::new();
    let outcome = loop {
        match tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("watch answered")
        {
            Some(Ok(events)) => delivered.extend(events.into_iter().map(|e| e.revision())),
            Some(Err(error)) => break Some(error),
            None => break None,
        }
    };
    assert!(
        matches!(outcome, Some(StoreError::Compacted { .. })),
        "expected a compacted error, got {outcome:?}"
    );
    // What did arrive before the error is a gap-free prefix.
    assert!(!delivered.is_empty() && delivered.len() < WRITES as usize);
    assert_eq!(
        delivered,
        (start..start + delivered.len() as i64).collect::<Vec<_>>()
    );
}

async fn a_slow_watcher_blocks_neither_writers_nor_other_watchers(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let start = store.current_revision().await.unwrap() + 1;
    // This watcher is never read while 6,000 writes go by, more than the
    // broadcast buffer holds.
    let mut slow = store
        .watch(WatchRequest {
            range: KeyRange::prefix("/s/"),
            start_revision: 0,
            prev_kv: false,
        })
        .await
        .unwrap();
    let mut fast = store
        .watch(WatchRequest {
            range: KeyRange::prefix("/s/"),
            start_revision: 0,
            prev_kv: false,
        })
        .await
        .unwrap();
    const WRITES: usize = 6000;
    let writers: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..WRITES / 16 {
                    put_ok(&store, &format!("/s/{t}"), &i.to_string()).await;
                }
            })
        })
        .collect();
    let fast_events = tokio::time::timeout(Duration::from_secs(60), collect(&mut fast, WRITES))
        .await
        .expect("the fast watcher kept up while the slow one stalled");
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(60), writer)
            .await
            .expect("writers were not blocked")
            .unwrap();
    }
    let slow_events = collect(&mut slow, WRITES).await;
    let expected: Vec<Revision> = (start..start + WRITES as i64).collect();
    assert_eq!(
        fast_events.iter().map(Event::revision).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(
        slow_events.iter().map(Event::revision).collect::<Vec<_>>(),
        expected,
        "the slow watcher caught up"
    );
}

async fn lease_expiry_deletes_its_keys_with_delete_events(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let lease = store.lease_grant(0, 1, LeaseOwner::Platform).await.unwrap();
    assert!(lease.id > 0);
    let granted = store.current_revision().await.unwrap();
    for key in ["/l/a", "/l/b"] {
        store
            .put(PutRequest {
                lease: lease.id,
                ..put(key, "v")
            })
            .await
            .unwrap();
    }
    put_ok(&store, "/l/keep", "v").await;
    let ttl = store.lease_time_to_live(lease.id, true).await.unwrap();
    assert_eq!(ttl.granted_ttl, 1);
    assert_eq!(ttl.keys, [b"/l/a".to_vec(), b"/l/b".to_vec()]);
    let mut watch = store
        .watch(WatchRequest {
            range: KeyRange::prefix("/l/"),
            start_revision: granted + 1,
            prev_kv: true,
        })
        .await
        .unwrap();
    let events = collect(&mut watch, 5).await;
    let deletes: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::Delete)
        .collect();
    assert_eq!(deletes.len(), 2, "{events:?}");
    assert_eq!(
        deletes[0].revision(),
        deletes[1].revision(),
        "one revision for the whole expiry"
    );
    let deleted: HashSet<&[u8]> = deletes.iter().map(|e| e.kv.key.as_slice()).collect();
    assert_eq!(deleted, HashSet::from([&b"/l/a"[..], &b"/l/b"[..]]));
    assert!(
        deletes
            .iter()
            .all(|e| e.prev_kv.as_ref().is_some_and(|p| p.lease == lease.id))
    );
    assert_eq!(value_of(&store, "/l/a").await, None);
    assert_eq!(value_of(&store, "/l/keep").await.as_deref(), Some("v"));
    assert!(matches!(
        store.lease_time_to_live(lease.id, false).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        store.lease_keep_alive(lease.id, None).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

async fn leases_are_kept_alive_revoked_and_outlive_a_restart(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let lease = store
        .lease_grant(7_000, 2, LeaseOwner::Platform)
        .await
        .unwrap();
    assert_eq!(lease.id, 7_000);
    assert!(matches!(
        store.lease_grant(7_000, 5, LeaseOwner::Platform).await,
        Err(StoreError::LeaseExists(7_000))
    ));
    store
        .put(PutRequest {
            lease: 7_000,
            ..put("/ka", "v")
        })
        .await
        .unwrap();
    // Kept alive past its TTL, the key stays.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(store.lease_keep_alive(7_000, None).await.unwrap(), 2);
    }
    assert_eq!(value_of(&store, "/ka").await.as_deref(), Some("v"));

    // A lease and its deadline survive a restart, and expiry still happens.
    let short = store.lease_grant(0, 2, LeaseOwner::Platform).await.unwrap();
    store
        .put(PutRequest {
            lease: short.id,
            ..put("/restart", "v")
        })
        .await
        .unwrap();
    store.close().await;
    let store = db.open().await;
    assert_eq!(store.leases().await.unwrap().len(), 2);
    let mut gone = false;
    for _ in 0..40 {
        store.lease_keep_alive(7_000, None).await.unwrap();
        if value_of(&store, "/restart").await.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the lease expired after the restart");

    // Revoke deletes the keys at once, in one revision.
    store
        .put(PutRequest {
            lease: 7_000,
            ..put("/kb", "v")
        })
        .await
        .unwrap();
    let before = store.current_revision().await.unwrap();
    let revision = store.lease_revoke(7_000, None).await.unwrap();
    assert_eq!(revision, before + 1);
    assert_eq!(value_of(&store, "/ka").await, None);
    assert_eq!(value_of(&store, "/kb").await, None);
    assert!(matches!(
        store.lease_revoke(7_000, None).await,
        Err(StoreError::LeaseNotFound(7_000))
    ));
    assert!(matches!(
        store.lease_grant(0, 0, LeaseOwner::Platform).await,
        Err(StoreError::InvalidRequest(_))
    ));
}

async fn a_lease_serves_only_its_owner_when_one_is_required(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let acme = LeaseOwner::Tenant("acme".into());
    let globex = LeaseOwner::Tenant("globex".into());
    let lease = store.lease_grant(0, 60, acme.clone()).await.unwrap();
    let platform = store
        .lease_grant(0, 60, LeaseOwner::Platform)
        .await
        .unwrap();
    let mut owners = store.leases().await.unwrap();
    owners.sort_by_key(|(id, _)| *id);
    let mut expected = vec![
        (lease.id, acme.clone()),
        (platform.id, LeaseOwner::Platform),
    ];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(owners, expected);
    assert_eq!(
        store
            .lease_time_to_live(lease.id, false)
            .await
            .unwrap()
            .owner,
        acme
    );

    // Another owner's lease, or the platform's, is not found by a put that
    // requires its own; nothing is written.
    for (id, required) in [(lease.id, &globex), (platform.id, &acme)] {
        let refused = store
            .put(PutRequest {
                lease: id,
                lease_owner: Some(required.clone()),
                ..put("/registry/pods/globex/web", "v")
            })
            .await;
        assert!(
            matches!(refused, Err(StoreError::LeaseNotFound(_))),
            "{refused:?}"
        );
    }
    assert_eq!(value_of(&store, "/registry/pods/globex/web").await, None);
    store
        .put(PutRequest {
            lease: lease.id,
            lease_owner: Some(acme.clone()),
            ..put("/registry/pods/acme/web", "v")
        })
        .await
        .unwrap();

    // Renewing or revoking as another owner finds nothing and changes nothing.
    assert!(matches!(
        store.lease_keep_alive(lease.id, Some(&globex)).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        store.lease_revoke(lease.id, Some(&globex)).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        store.lease_revoke(platform.id, Some(&acme)).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert_eq!(
        value_of(&store, "/registry/pods/acme/web").await.as_deref(),
        Some("v")
    );
    assert_eq!(
        store.lease_keep_alive(lease.id, Some(&acme)).await.unwrap(),
        60
    );
    store.lease_revoke(lease.id, Some(&acme)).await.unwrap();
    assert_eq!(value_of(&store, "/registry/pods/acme/web").await, None);
    assert_eq!(
        store.leases().await.unwrap(),
        vec![(platform.id, LeaseOwner::Platform)]
    );
}

async fn concurrent_writers_get_distinct_gap_free_revisions(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let start = store.current_revision().await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..20 {
                    revisions.push(put_ok(&store, &format!("/g/{t}/{i}"), "v").await);
                }
                revisions
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let revisions = task.await.unwrap();
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "one writer's revisions rise"
        );
        all.extend(revisions);
    }
    all.sort();
    assert_eq!(all, (start + 1..=start + 64 * 20).collect::<Vec<_>>());
    assert!(
        store.metrics().batch_size.get_sample_sum()
            < store.metrics().batch_size.get_sample_count() as f64 * 64.0
    );
}

/// Runs each test body once per backend.
/// A key's state in the model of [`every_past_revision_reads_as_a_model_of_the_history_says`]:
/// value, create revision, mod revision, version.
type ModelKv = (String, Revision, Revision, i64);

/// A small deterministic generator, so that a failure replays.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn model_of(kvs: &[KeyValue]) -> std::collections::BTreeMap<String, ModelKv> {
    kvs.iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                (
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.create_revision,
                    kv.mod_revision,
                    kv.version,
                ),
            )
        })
        .collect()
}

/// Puts, deletes and transactions of several writes at random over eight
/// keys, kept in a model; then every revision read back (whole range, one
/// key, a sub-range, counts), every watch event's previous version, and the
/// same after a compaction.
async fn every_past_revision_reads_as_a_model_of_the_history_says(backend: TestBackend) {
    use std::collections::BTreeMap;
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let mut random = Lcg(0x5eed);
    let key = |i: u64| format!("/m/{i}");
    // history[r] is the state at revision r.
    let mut history: Vec<BTreeMap<String, ModelKv>> = vec![BTreeMap::new(), BTreeMap::new()];
    for step in 0..300 {
        let mut state = history.last().expect("a state").clone();
        // Distinct keys, as etcd requires within one transaction.
        let mut keys: Vec<u64> = Vec::new();
        while keys.len() < 1 + random.below(3) as usize {
            let k = random.below(8);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let next = history.len() as Revision;
        let mut ops = Vec::new();
        for k in &keys {
            let name = key(*k);
            if random.below(3) == 0 {
                ops.push(Op::Delete(DeleteRequest {
                    range: KeyRange::single(name.clone()),
                    prev_kv: false,
                }));
                state.remove(&name);
            } else {
                let value = format!("v{step}");
                ops.push(Op::Put(put(&name, &value)));
                let (create, version) = match state.get(&name) {
                    Some((_, create, _, version)) => (*create, version + 1),
                    None => (next, 1),
                };
                state.insert(name, (value, create, next, version));
            }
        }
        let wrote = state != *history.last().expect("a state")
            || ops.iter().any(|op| matches!(op, Op::Put(_)));
        let answer = store
            .txn(TxnRequest {
                success: ops,
                ..TxnRequest::default()
            })
            .await
            .expect("txn");
        if wrote {
            assert_eq!(answer.revision, next, "step {step}");
            history.push(state);
        } else {
            assert_eq!(answer.revision, next - 1, "step {step} wrote nothing");
        }
    }
    let last = history.len() as Revision - 1;
    let check = |from: Revision| {
        let store = &store;
        let history = &history;
        async move {
            for revision in from..=last {
                let want = &history[revision as usize];
                let read = |range: KeyRange| RangeRequest {
                    range,
                    revision,
                    ..RangeRequest::default()
                };
                let all = store
                    .range(read(KeyRange::prefix("/m/")))
                    .await
                    .expect("range");
                assert_eq!(model_of(&all.kvs), *want, "the whole range at {revision}");
                assert_eq!(all.count, want.len() as i64, "the count at {revision}");
                let part = store
                    .range(read(KeyRange::between("/m/2", "/m/5")))
                    .await
                    .expect("range");
                let want_part: BTreeMap<_, _> = want
                    .range("/m/2".to_owned().."/m/5".to_owned())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(model_of(&part.kvs), want_part, "/m/2../m/5 at {revision}");
                let one = store
                    .range(read(KeyRange::single("/m/3")))
                    .await
                    .expect("get");
                assert_eq!(
                    model_of(&one.kvs).get("/m/3"),
                    want.get("/m/3"),
                    "/m/3 at {revision}"
                );
                let limited = store
                    .range(RangeRequest {
                        limit: 2,
                        ..read(KeyRange::prefix("/m/"))
                    })
                    .await
                    .expect("range");
                assert_eq!(
                    limited.count,
                    want.len() as i64,
                    "count beyond a limit at {revision}"
                );
                assert_eq!(limited.more, want.len() > 2, "more at {revision}");
            }
        }
    };
    check(1).await;
    // Every event carries the version it replaced.
    let mut watch = store
        .watch(WatchRequest {
            range: KeyRange::prefix("/m/"),
            start_revision: 2,
            prev_kv: true,
        })
        .await
        .expect("watch");
    let changes: usize = (2..=last)
        .map(|r| {
            let (before, after) = (&history[r as usize - 1], &history[r as usize]);
            before
                .keys()
                .chain(after.keys())
                .collect::<HashSet<_>>()
                .into_iter()
                .filter(|k| {
                    before.get(*k) != after.get(*k) || after.get(*k).is_some_and(|v| v.2 == r)
                })
                .count()
        })
        .sum();
    let events = collect(&mut watch, changes).await;
    for event in &events {
        let name = String::from_utf8_lossy(&event.kv.key).into_owned();
        let before = &history[event.kv.mod_revision as usize - 1];
        let prev = event
            .prev_kv
            .as_ref()
            .map(|kv| model_of(std::slice::from_ref(kv)));
        assert_eq!(
            prev.as_ref().and_then(|p| p.get(&name)),
            before.get(&name),
            "prev_kv of {name} at {}",
            event.kv.mod_revision
        );
    }
    // After a compaction, what is left still reads as before.
    let compact_at = last / 2;
    store.compact(compact_at).await.expect("compact");
    check(compact_at).await;
    assert!(matches!(
        store.get(b"/m/1", compact_at - 1).await,
        Err(StoreError::Compacted { .. })
    ));
}

/// A store written before the log lost its (key, revision) index: the
/// upgrade points every row at the version it replaced and every live key at
/// its row, so reads, past reads, watches and new writes go on as before.
async fn a_store_from_before_the_key_index_went_reads_the_same_after_the_upgrade(
    backend: TestBackend,
) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(match backend {
            TestBackend::Sqlite => "sqlite",
            TestBackend::Postgres => "postgres",
        });
    for entry in std::fs::read_dir(&source).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.as_str() < "0011" {
            std::fs::copy(&path, dir.path().join(&name)).expect("copy");
        }
    }
    let migrator = sqlx::migrate::Migrator::new(dir.path())
        .await
        .expect("migrations");
    // Revision 2 puts /a and /b, 3 puts /a, 4 deletes /b and puts /c, 5
    // puts /b anew and /c again (its second write, sub 1).
    let rows = "INSERT INTO kv_log (revision, sub, key, create_revision, prev_revision, version, lease, value, deleted) VALUES \
        (2, 0, '/a', 2, 0, 1, 0, 'a1', false), (2, 1, '/b', 2, 0, 1, 0, 'b1', false), \
        (3, 0, '/a', 2, 2, 2, 0, 'a2', false), \
        (4, 0, '/b', 0, 2, 0, 0, '', true), (4, 1, '/c', 4, 0, 1, 0, 'c1', false), \
        (5, 0, '/b', 5, 0, 1, 0, 'b2', false), (5, 1, '/c', 4, 4, 2, 0, 'c2', false)";
    let current = "INSERT INTO kv_current (key, mod_revision, lease) VALUES ('/a', 3, 0), ('/b', 5, 0), ('/c', 5, 0)";
    let meta = "UPDATE store_meta SET revision = 5 WHERE id = 1";
    match backend {
        TestBackend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(db.url.trim_start_matches("sqlite://"))
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options)
                .await
                .expect("sqlite");
            migrator.run(&pool).await.expect("old schema");
            // SQLite keeps these as text: make them blobs, as Berth writes them.
            for sql in [rows, current, meta] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .expect("old rows");
            }
            for table in ["kv_log", "kv_current"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET key = CAST(key AS BLOB)"
                )))
                .execute(&pool)
                .await
                .expect("blob keys");
            }
            sqlx::query("UPDATE kv_log SET value = CAST(value AS BLOB)")
                .execute(&pool)
                .await
                .expect("blob values");
            pool.close().await;
        }
        TestBackend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
            migrator.run(&pool).await.expect("old schema");
            let bytes = |sql: &str| {
                // Every quoted literal is bytes in this schema.
                let mut out = String::new();
                let mut parts = sql.split('\'');
                out.push_str(parts.next().unwrap_or_default());
                for (i, part) in parts.enumerate() {
                    if i % 2 == 0 {
                        out.push_str(&format!("convert_to('{part}', 'UTF8')"));
                    } else {
                        out.push_str(part);
                    }
                }
                out
            };
            for sql in [bytes(rows), bytes(current), meta.to_owned()] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .expect("old rows");
            }
            pool.close().await;
        }
    }
    let store = db.open().await;
    let latest = store
        .range(RangeRequest {
            range: KeyRange::prefix("/"),
            ..RangeRequest::default()
        })
        .await
        .expect("range");
    let want = |entries: &[(&str, &str, Revision, Revision, i64)]| {
        entries
            .iter()
            .map(|(k, v, c, m, ver)| (k.to_string(), (v.to_string(), *c, *m, *ver)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        model_of(&latest.kvs),
        want(&[
            ("/a", "a2", 2, 3, 2),
            ("/b", "b2", 5, 5, 1),
            ("/c", "c2", 4, 5, 2)
        ])
    );
    let at = |revision| {
        let store = &store;
        async move {
            let answer = store
                .range(RangeRequest {
                    range: KeyRange::prefix("/"),
                    revision,
                    ..RangeRequest::default()
                })
                .await
                .expect("range");
            model_of(&answer.kvs)
        }
    };
    assert_eq!(
        at(2).await,
        want(&[("/a", "a1", 2, 2, 1), ("/b", "b1", 2, 2, 1)])
    );
    assert_eq!(
        at(4).await,
        want(&[("/a", "a2", 2, 3, 2), ("/c", "c1", 4, 4, 1)])
    );
    let mut watch = store
        .watch(WatchRequest {
            range: KeyRange::prefix("/"),
            start_revision: 3,
            prev_kv: true,
        })
        .await
        .expect("watch");
    assert_eq!(put_ok(&store, "/c", "c3").await, 6);
    let events = collect(&mut watch, 6).await;
    let prev: Vec<Option<(String, Revision)>> = events
        .iter()
        .map(|e| {
            e.prev_kv.as_ref().map(|kv| {
                (
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.mod_revision,
                )
            })
        })
        .collect();
    assert_eq!(
        prev,
        vec![
            Some(("a1".into(), 2)),
            Some(("b1".into(), 2)),
            None,
            None,
            Some(("c1".into(), 4)),
            Some(("c2".into(), 5)),
        ],
        "each event's previous version, through the upgraded pointers"
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::TestBackend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::TestBackend::Postgres).await
                }
            )*
        }
    };
}

conformance!(
    revisions_start_at_one_and_rise_by_one_per_write,
    version_counts_from_one_and_resets_after_delete,
    range_honours_prefix_limit_count_and_keys_only,
    compare_and_swap_under_32_concurrent_writers_has_one_winner_per_revision,
    a_transaction_is_atomic,
    a_read_inside_a_transaction_can_look_at_a_past_revision,
    compares_follow_etcd_on_missing_keys_values_leases_and_ranges,
    malformed_transactions_are_refused_and_write_nothing,
    oversize_values_and_empty_keys_are_refused_and_write_nothing,
    watch_from_a_revision_delivers_every_later_event_once_in_order,
    watch_resumed_after_a_disconnect_misses_and_repeats_nothing,
    compaction_makes_old_revisions_fail_with_compacted,
    a_watcher_that_falls_behind_a_compaction_is_cancelled_not_silently_skipped,
    a_slow_watcher_blocks_neither_writers_nor_other_watchers,
    lease_expiry_deletes_its_keys_with_delete_events,
    leases_are_kept_alive_revoked_and_outlive_a_restart,
    a_lease_serves_only_its_owner_when_one_is_required,
    concurrent_writers_get_distinct_gap_free_revisions,
    every_past_revision_reads_as_a_model_of_the_history_says,
    a_store_from_before_the_key_index_went_reads_the_same_after_the_upgrade,
);
