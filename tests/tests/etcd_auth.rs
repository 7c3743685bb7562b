//! Who may use Berth's etcd API: the first admin, tokens from
//! Auth.Authenticate, and tenant users kept to their tenants' keys.

use std::time::Duration;

use berth_api::etcd::etcdserverpb as pb;
use berth_tests::db::{TestBackend, TestDb, create_user};
use berth_tests::process::TestServer;
use etcd_client::{Client, ConnectOptions, GetOptions, Txn, TxnOp, WatchOptions};

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";

async fn sign_in(
    server: &TestServer,
    email: &str,
    password: &str,
) -> Result<Client, etcd_client::Error> {
    Client::connect(
        [server.etcd_endpoint()],
        Some(ConnectOptions::new().with_user(email, password)),
    )
    .await
}

fn code(error: etcd_client::Error) -> tonic::Code {
    match error {
        etcd_client::Error::GRpcStatus(status) => status.code(),
        other => panic!("expected a gRPC status, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_creates_the_admin_once_with_a_generated_password_kept_0600() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = TestServer::start(&db.url, &[]);
    let file = server.data_dir.path().join("admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 20, "a strong generated password");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut admin = sign_in(&server, ADMIN, &password).await.unwrap();
    admin.put("/any", "v", None).await.unwrap();
    // A restart, even with another password given, keeps the admin as it was.
    let TestServer { process, data_dir } = server;
    drop(process);
    let server = TestServer::start_in(data_dir, &db.url, &["--admin-password", "another-password"]);
    assert!(sign_in(&server, ADMIN, "another-password").await.is_err());
    let mut admin = sign_in(&server, ADMIN, &password).await.unwrap();
    assert_eq!(admin.get("/any", None).await.unwrap().kvs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_user_cannot_read_write_or_watch_another_tenants_keys() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let server = TestServer::start(&db.url, &["--admin-password", ADMIN_PASSWORD]);
    // Accounts straight in the store (the REST API for them comes later).
    let store = db.open().await;
    for tenant in ["acme", "globex"] {
        store.create_tenant(tenant).await.unwrap();
    }
    let alice = create_user(
        &store,
        "alice@acme.test",
        "alice-password",
        Some(("acme", "editor")),
    )
    .await;
    create_user(
        &store,
        "bob@globex.test",
        "bob-password",
        Some(("globex", "viewer")),
    )
    .await;

    let mut admin = sign_in(&server, ADMIN, ADMIN_PASSWORD).await.unwrap();
    admin
        .put("/registry/pods/globex/db", "globex-secret", None)
        .await
        .unwrap();

    let mut alice_client = sign_in(&server, "alice@acme.test", "alice-password")
        .await
        .unwrap();
    alice_client
        .put("/registry/pods/acme/web", "v", None)
        .await
        .unwrap();
    let own = alice_client
        .get(
            "/registry/pods/acme/",
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(own.kvs().len(), 1);
    let denied = tonic::Code::PermissionDenied;
    assert_eq!(
        code(
            alice_client
                .get("/registry/pods/globex/db", None)
                .await
                .unwrap_err()
        ),
        denied
    );
    assert_eq!(
        code(
            alice_client
                .put("/registry/pods/globex/db", "mine", None)
                .await
                .unwrap_err()
        ),
        denied
    );
    assert_eq!(
        code(
            alice_client
                .delete("/registry/pods/globex/db", None)
                .await
                .unwrap_err()
        ),
        denied
    );
    // A range wider than her tenant, or a prefix that also covers "acme2".
    let wide = alice_client
        .get("/registry/", Some(GetOptions::new().with_prefix()))
        .await;
    assert_eq!(code(wide.unwrap_err()), denied);
    let sibling = alice_client
        .get("/registry/pods/acme", Some(GetOptions::new().with_prefix()))
        .await;
    assert_eq!(code(sibling.unwrap_err()), denied);
    // A transaction that touches another tenant anywhere is refused whole.
    let txn = Txn::new()
        .and_then([TxnOp::put("/registry/pods/acme/x", "1", None)])
        .or_else([TxnOp::get("/registry/pods/globex/db", None)]);
    assert_eq!(code(alice_client.txn(txn).await.unwrap_err()), denied);
    assert_eq!(
        code(alice_client.compact(1, None).await.unwrap_err()),
        denied
    );
    // A watch on another tenant is cancelled, and nothing of it is seen.
    let mut watch = alice_client
        .watch(
            "/registry/pods/globex/",
            Some(WatchOptions::new().with_prefix().with_start_revision(1)),
        )
        .await
        .unwrap();
    let mut cancelled = false;
    while let Ok(Ok(Some(response))) =
        tokio::time::timeout(Duration::from_secs(5), watch.message()).await
    {
        assert!(response.events().is_empty(), "a globex event reached alice");
        if response.canceled() {
            assert!(
                response.cancel_reason().contains("permission denied"),
                "{}",
                response.cancel_reason()
            );
            cancelled = true;
            break;
        }
    }
    assert!(cancelled, "the watch was not cancelled");

    // A viewer reads and does not write.
    let mut bob_client = sign_in(&server, "bob@globex.test", "bob-password")
        .await
        .unwrap();
    assert_eq!(
        bob_client
            .get("/registry/pods/globex/db", None)
            .await
            .unwrap()
            .kvs()
            .len(),
        1
    );
    assert_eq!(
        code(
            bob_client
                .put("/registry/pods/globex/db", "x", None)
                .await
                .unwrap_err()
        ),
        denied
    );

    // The platform admin reaches everything.
    let all = admin
        .get("/registry/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(all.kvs().len(), 2);

    // A deleted user's token stops working within a second: callers are
    // cached until the accounts change, and this deletion comes from
    // another process (the test's own store), which a server on SQLite
    // hears of through its 1 s poll.
    store.delete_user(alice.id).await.unwrap();
    let deleted = std::time::Instant::now();
    let refused = loop {
        match alice_client.get("/registry/pods/acme/web", None).await {
            Err(refused) => break refused,
            Ok(_) => {
                assert!(
                    deleted.elapsed() < std::time::Duration::from_secs(1),
                    "a deleted user still reads after {:?}",
                    deleted.elapsed()
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(code(refused), tonic::Code::Unauthenticated);
    assert!(deleted.elapsed() < std::time::Duration::from_secs(1));
}

/// A KV call with `token` in its metadata, as etcd's clients send it.
async fn range_with_token(
    server: &TestServer,
    token: &str,
) -> Result<pb::RangeResponse, tonic::Status> {
    let mut client =
        pb::kv_client::KvClient::connect(format!("http://{}", server.process.grpc_addr))
            .await
            .unwrap();
    let mut request = tonic::Request::new(pb::RangeRequest {
        key: b"/k".to_vec(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("token", token.parse().unwrap());
    client.range(request).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_and_foreign_tokens_are_refused() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = TestServer::start(&db.url, &["--admin-password", ADMIN_PASSWORD]);
    let mut auth =
        pb::auth_client::AuthClient::connect(format!("http://{}", server.process.grpc_addr))
            .await
            .unwrap();
    let good = auth
        .authenticate(pb::AuthenticateRequest {
            name: ADMIN.into(),
            password: ADMIN_PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    range_with_token(&server, &good)
        .await
        .expect("the real token works");

    let secret = db.open().await.signing_secret().await.unwrap();
    let cases = berth_tests::tokens::forged(&good, &secret);
    for (name, token) in cases {
        let status = range_with_token(&server, &token).await.expect_err(name);
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{name}: {status:?}"
        );
    }
}
