//! The etcd API's side doors, tried as a tenant user would with `etcdctl`
//! and default settings: other owners' leases (the controllers' leadership
//! among them) cannot be listed, inspected or revoked, and password guessing
//! over `Auth.Authenticate` meets the same throttle as REST sign-in, shared
//! by every server replica through the database.

use std::time::Duration;

use berth_server::controllers::leader::LEADER_KEY;
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::etcd::etcdctl;
use berth_tests::etcd_grpc::EtcdCaller;
use berth_tests::process::TestServer;
use berth_tests::rest::Api;
use serde_json::{Value, json};
use tonic::Code;

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "side-doors-admin";
const MALLORY: &str = "mallory@mallory.test";
const MALLORY_PASSWORD: &str = "mallory-password";

/// Two server replicas on one PostgreSQL database, with `extra` arguments,
/// and Mallory, an editor of tenant mallory; the platform admin's REST
/// session on the first.
async fn two_replicas_with_mallory(db: &TestDb, extra: &[&str]) -> ([TestServer; 2], Api) {
    let mut args = vec!["--admin-password", ADMIN_PASSWORD];
    args.extend_from_slice(extra);
    let servers = [
        TestServer::start(&db.url, &args),
        TestServer::start(&db.url, &args),
    ];
    let admin = Api::new(servers[0].process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    admin
        .add_member("mallory", MALLORY, MALLORY_PASSWORD, "editor")
        .await;
    (servers, admin)
}

/// `etcdctl --user EMAIL:PASSWORD ARGS` against `server`.
fn etcdctl_as(server: &TestServer, email: &str, password: &str, args: &[&str]) -> (bool, String) {
    let user = format!("{email}:{password}");
    let mut all = vec!["--user", user.as_str()];
    all.extend_from_slice(args);
    let output = etcdctl(&server.etcd_endpoint(), &all, None);
    (
        output.success,
        format!("{}{}", output.stdout, output.stderr),
    )
}

/// The leadership key as the platform admin reads it: (holder, lease,
/// create revision).
async fn leadership(root: &EtcdCaller) -> Option<(String, i64, i64)> {
    let response = root
        .kv()
        .range(berth_api::etcd::etcdserverpb::RangeRequest {
            key: LEADER_KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let kv = response.kvs.first()?;
    let value: Value = serde_json::from_slice(&kv.value).unwrap();
    Some((
        value["holder"].as_str()?.to_owned(),
        kv.lease,
        kv.create_revision,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_editor_can_neither_list_inspect_nor_revoke_the_leaders_lease_and_leadership_stays_put()
 {
    let db = TestDb::new(TestBackend::Postgres).await;
    let (servers, _admin) = two_replicas_with_mallory(&db, &["--controllers=true"]).await;
    let root = EtcdCaller::sign_in(&servers[0].etcd_endpoint(), ADMIN, ADMIN_PASSWORD)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let leader = loop {
        if let Some(found) = leadership(&root).await {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let leader_lease = format!("{:x}", leader.1);

    // Mallory's own lease is hers to see; nothing else is.
    let (granted, out) = etcdctl_as(
        &servers[0],
        MALLORY,
        MALLORY_PASSWORD,
        &["lease", "grant", "60"],
    );
    assert!(granted, "{out}");
    let own_lease = out
        .split_whitespace()
        .nth(1)
        .expect("etcdctl names the granted lease")
        .to_owned();

    for server in &servers {
        let (listed, out) = etcdctl_as(server, MALLORY, MALLORY_PASSWORD, &["lease", "list"]);
        assert!(listed, "{out}");
        assert!(
            !out.contains(&leader_lease),
            "the leader's lease was listed: {out}"
        );
        assert!(out.contains("found 1 leases"), "{out}");
        assert!(out.contains(&own_lease), "{out}");

        let (_, out) = etcdctl_as(
            server,
            MALLORY,
            MALLORY_PASSWORD,
            &["lease", "timetolive", &leader_lease, "--keys"],
        );
        assert!(
            !out.contains("berth-controllers"),
            "its keys were shown: {out}"
        );
        assert!(out.contains("already expired"), "{out}");

        let (revoked, out) = etcdctl_as(
            server,
            MALLORY,
            MALLORY_PASSWORD,
            &["lease", "revoke", &leader_lease],
        );
        assert!(!revoked, "the leader's lease was revoked: {out}");
        assert!(out.contains("requested lease not found"), "{out}");

        // Nor can she keep it alive, or attach it to a key of her own.
        let (_, out) = etcdctl_as(
            server,
            MALLORY,
            MALLORY_PASSWORD,
            &["lease", "keep-alive", "--once", &leader_lease],
        );
        assert!(!out.contains("keepalived with TTL"), "{out}");
        let (attached, out) = etcdctl_as(
            server,
            MALLORY,
            MALLORY_PASSWORD,
            &[
                "put",
                "/registry/configmaps/mallory/x",
                "v",
                "--lease",
                &leader_lease,
            ],
        );
        assert!(!attached, "{out}");
        assert!(out.contains("requested lease not found"), "{out}");
    }

    // Leadership never moved: the same holder, lease and fence, and the
    // leader keeps renewing it well past a lease's TTL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(leadership(&root).await, Some(leader.clone()));
    let (alive, out) = etcdctl_as(
        &servers[0],
        ADMIN,
        ADMIN_PASSWORD,
        &["lease", "timetolive", &leader_lease, "--keys"],
    );
    assert!(alive, "{out}");
    assert!(out.contains(LEADER_KEY), "{out}");
}

/// One `Auth.Authenticate` call from a fresh connection: the gRPC code.
async fn authenticate(
    server: &TestServer,
    email: &str,
    password: &str,
) -> Result<(), tonic::Status> {
    EtcdCaller::anonymous(&server.etcd_endpoint())
        .await
        .authenticate(email, password)
        .await
        .map(|_| ())
}

/// A REST sign-in: the status and the Retry-After header.
async fn rest_sign_in(server: &TestServer, email: &str, password: &str) -> (u16, Option<String>) {
    let response = reqwest::Client::new()
        .post(server.process.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry_after)
}

fn assert_locked(answer: Result<(), tonic::Status>) {
    let status = answer.expect_err("a locked account signs nobody in");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("etcdserver: too many failed authentication attempts; retry in "),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_locks_an_account_after_five_failures_and_the_lock_holds_on_every_path() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = TestServer::start(&db.url, &["--admin-password", ADMIN_PASSWORD]);
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    admin
        .add_member("mallory", MALLORY, MALLORY_PASSWORD, "editor")
        .await;
    admin
        .add_member("acme", "alice@acme.test", "alice-password", "editor")
        .await;

    // 50 guesses from one client: five are checked, the rest refused.
    let started = std::time::Instant::now();
    let mut checked = 0;
    let mut locked = 0;
    for guess in 0..50 {
        match authenticate(&server, MALLORY, &format!("guess-{guess}")).await {
            Err(status) if status.code() == Code::InvalidArgument => checked += 1,
            Err(status) if status.code() == Code::ResourceExhausted => locked += 1,
            other => panic!("guess {guess}: {other:?}"),
        }
    }
    assert_eq!((checked, locked), (5, 45));
    // The third to fifth failures were answered more slowly.
    assert!(started.elapsed() >= Duration::from_millis(1_500));
    // Locked means locked: the right password, over etcd and over REST.
    assert_locked(authenticate(&server, MALLORY, MALLORY_PASSWORD).await);
    let (status, retry_after) = rest_sign_in(&server, MALLORY, MALLORY_PASSWORD).await;
    assert_eq!(status, 429);
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((800..=900).contains(&retry_after), "{retry_after}");

    // The other way round: locked over REST, refused over etcd.
    for _ in 0..5 {
        assert_eq!(
            rest_sign_in(&server, "alice@acme.test", "wrong").await.0,
            401
        );
    }
    assert_locked(authenticate(&server, "alice@acme.test", "alice-password").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_passwords_over_two_replicas_and_both_apis_lock_the_account_on_both() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let (servers, _admin) = two_replicas_with_mallory(&db, &[]).await;

    // Five failures, taking turns between the replicas and the APIs.
    let [a, b] = &servers;
    for (attempt, server, over_rest) in [
        (1, a, true),
        (2, b, false),
        (3, b, true),
        (4, a, false),
        (5, a, true),
    ] {
        let password = format!("wrong-{attempt}");
        if over_rest {
            assert_eq!(rest_sign_in(server, MALLORY, &password).await.0, 401);
        } else {
            let refused = authenticate(server, MALLORY, &password).await.unwrap_err();
            assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        }
    }

    for server in &servers {
        assert_eq!(rest_sign_in(server, MALLORY, MALLORY_PASSWORD).await.0, 429);
        assert_locked(authenticate(server, MALLORY, MALLORY_PASSWORD).await);
    }
    // Another account from the same address is not locked by these five.
    assert_eq!(rest_sign_in(b, ADMIN, ADMIN_PASSWORD).await.0, 200);
}
