//! Snapshots: `etcdctl snapshot save` against Berth writes a file with
//! etcd's SHA-256 trailer, and a snapshot taken while writes go on,
//! restored with `berth restore` into a new store, answers the same ranges
//! at the same revisions, keeps its leases, and signs its users in.

use std::time::Duration;

use berth_api::etcd::etcdserverpb as pb;
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::etcd::{RealEtcd, etcdctl};
use berth_tests::etcd_grpc::EtcdCaller;
use berth_tests::process::{TestServer, berth_binary};
use berth_tests::rest::Api;

const ADMIN_PASSWORD: &str = "admin-secret-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_snapshot_save_works_against_berth_as_against_etcd() {
    let dir = tempfile::tempdir().expect("a directory");
    let etcd = RealEtcd::start();
    let etcd_file = dir.path().join("etcd.db");
    let saved = etcdctl(
        &etcd.endpoint,
        &["snapshot", "save", etcd_file.to_str().expect("a path")],
        None,
    );
    assert!(saved.success, "{saved:?}");
    drop(etcd);
    let db = TestDb::new(TestBackend::Sqlite).await;
    let berth = TestServer::open(&db.url);
    etcdctl(&berth.etcd_endpoint(), &["put", "/a", "1"], None);
    let berth_file = dir.path().join("berth.db");
    let path = berth_file.to_str().expect("a path");
    let saved_berth = etcdctl(&berth.etcd_endpoint(), &["snapshot", "save", path], None);
    assert!(saved_berth.success, "{saved_berth:?}");
    assert_eq!(
        saved_berth.stdout.replace(path, "FILE"),
        saved
            .stdout
            .replace(etcd_file.to_str().expect("a path"), "FILE"),
        "etcdctl says the same for both"
    );
    let file = std::fs::read(&berth_file).expect("the snapshot");
    assert_eq!(
        file.len() % 512,
        32,
        "etcd's rule for a snapshot with its SHA-256"
    );
    use sha2::Digest;
    let (content, trailer) = file.split_at(file.len() - 32);
    assert_eq!(sha2::Sha256::digest(content)[..], *trailer);
    assert!(content.starts_with(b"berth-snapshot 2\n"));
}

async fn range_at(
    caller: &EtcdCaller,
    revision: i64,
) -> Vec<(Vec<u8>, Vec<u8>, i64, i64, i64, i64)> {
    caller
        .kv()
        .range(pb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("a range at {revision}: {e:?}"))
        .into_inner()
        .kvs
        .into_iter()
        .map(|kv| {
            (
                kv.key,
                kv.value,
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.lease,
            )
        })
        .collect()
}

async fn snapshot_round_trip(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let original = TestServer::start(
        &db.url,
        &["--admin-password", ADMIN_PASSWORD, "--etcd-auth", "none"],
    );
    let admin = Api::new(original.process.url(""))
        .login("admin@berth.local", ADMIN_PASSWORD)
        .await;
    admin
        .add_member("acme", "dev@example.com", "dev-secret-1", "editor")
        .await;
    let caller = EtcdCaller::anonymous(&original.etcd_endpoint()).await;
    let lease = caller
        .lease()
        .lease_grant(pb::LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .expect("a lease")
        .into_inner()
        .id;
    caller
        .kv()
        .put(pb::PutRequest {
            key: "/leased".into(),
            value: "v".into(),
            lease,
            ..Default::default()
        })
        .await
        .expect("a put on the lease");

    // Writes go on while the snapshot is taken: puts and deletes over a
    // small key space, from two writers.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = Vec::new();
    for w in 0..2 {
        let caller = caller.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.is_cancelled() && n < 5_000 {
                let key = format!("/load/{w}/{}", n % 40);
                if n % 7 == 6 {
                    let _ = caller
                        .kv()
                        .delete_range(pb::DeleteRangeRequest {
                            key: key.into(),
                            ..Default::default()
                        })
                        .await;
                } else {
                    let _ = caller
                        .kv()
                        .put(pb::PutRequest {
                            key: key.into(),
                            value: format!("v{n}").into(),
                            ..Default::default()
                        })
                        .await;
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("snapshot.db");
    let path = file.to_str().expect("a path").to_owned();
    let endpoint = original.etcd_endpoint();
    let saved =
        tokio::task::spawn_blocking(move || etcdctl(&endpoint, &["snapshot", "save", &path], None))
            .await
            .expect("etcdctl");
    assert!(saved.success, "{saved:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    for writer in writers {
        writer.await.expect("a writer");
    }

    // A new store from it.
    let target = TestDb::new(backend).await;
    let restored = std::process::Command::new(berth_binary())
        .args([
            "restore",
            file.to_str().expect("a path"),
            "--database-url",
            &target.url,
        ])
        .args(["--data-dir", dir.path().to_str().expect("a path")])
        .output()
        .expect("berth restore");
    let stdout = String::from_utf8_lossy(&restored.stdout).into_owned();
    assert!(
        restored.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let revision: i64 = stdout
        .split("at revision ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {stdout:?}"));
    assert!(
        revision > 10,
        "the snapshot was taken during the load: {stdout}"
    );
    let again = std::process::Command::new(berth_binary())
        .args([
            "restore",
            file.to_str().expect("a path"),
            "--database-url",
            &target.url,
        ])
        .output()
        .expect("berth restore");
    assert!(
        !again.status.success(),
        "a second restore into the same store must be refused"
    );

    let copy = TestServer::start(
        &target.url,
        &[
            "--admin-password",
            "ignored-password-1",
            "--etcd-auth",
            "none",
        ],
    );
    let restored_caller = EtcdCaller::anonymous(&copy.etcd_endpoint()).await;
    for at in [revision, revision - 1, revision / 2, 2] {
        assert_eq!(
            range_at(&restored_caller, at).await,
            range_at(&caller, at).await,
            "{backend:?}: the ranges at revision {at} differ"
        );
    }
    let newer = restored_caller
        .kv()
        .range(pb::RangeRequest {
            key: "/a".into(),
            revision: revision + 1,
            ..Default::default()
        })
        .await
        .expect_err("nothing after the snapshot's revision");
    assert_eq!(newer.code(), tonic::Code::OutOfRange, "{newer:?}");

    // Its leases and accounts came along.
    let ttl = restored_caller
        .lease()
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: lease,
            keys: true,
        })
        .await
        .expect("the lease")
        .into_inner();
    assert!(ttl.ttl > 0, "{ttl:?}");
    assert_eq!(ttl.keys, [b"/leased".to_vec()]);
    let dev = Api::new(copy.process.url(""))
        .login("dev@example.com", "dev-secret-1")
        .await;
    let (status, tenant) = dev.get("/api/v1/tenants/acme").await;
    assert_eq!(status, 200, "{tenant}");
    // A token the first server issued is good on the copy: the signing key
    // came too.
    let (status, _) = Api::new(copy.process.url(""))
        .with_token(admin.token().expect("a token"))
        .get("/api/v1/tenants")
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_taken_under_load_restores_to_the_same_ranges_leases_and_accounts_on_sqlite() {
    snapshot_round_trip(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_taken_under_load_restores_to_the_same_ranges_leases_and_accounts_on_postgres() {
    snapshot_round_trip(TestBackend::Postgres).await;
}
