//! `berth server` as a process: its settings, health, readiness and metrics.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::db::{TestBackend, TestDb, postgres_admin_url};
use berth_tests::process::{ServerProcess, TestServer, berth_binary};
use sqlx::Connection;

/// Runs `berth server ARGS` expecting it to refuse to start; returns its exit
/// code, its stderr, and how long it took.
fn refused(args: &[&str]) -> (Option<i32>, String, Duration) {
    let binary = berth_binary();
    let started = Instant::now();
    let output = Command::new(binary)
        .arg("server")
        .args(args)
        .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("running berth server");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

/// The lines of `stderr` that are not log records.
fn message_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("berth: "))
        .collect()
}

#[test]
fn an_unknown_database_scheme_ends_the_server_with_exit_code_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (code, stderr, _) = refused(&[
        "--data-dir",
        data_dir,
        "--database-url",
        "mysql://localhost/berth",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    let lines = message_lines(&stderr);
    assert_eq!(lines.len(), 1, "one clear line: {stderr}");
    assert!(
        lines[0].contains("--database-url") && lines[0].contains("mysql"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_database_ends_the_server_at_once_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    // Port 1 on loopback: nothing listens there.
    let (code, stderr, took) = refused(&[
        "--data-dir",
        data_dir,
        "--database-url",
        "postgres://berth:secret@127.0.0.1:1/berth",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    let lines = message_lines(&stderr);
    assert_eq!(lines.len(), 1, "one clear line: {stderr}");
    assert!(lines[0].contains("--database-url"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "the password must not be printed: {stderr}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn an_unwritable_data_dir_ends_the_server_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file cannot be created, even by root.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let data_dir = file.join("data");
    let (code, stderr, _) = refused(&["--data-dir", data_dir.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    let lines = message_lines(&stderr);
    assert_eq!(lines.len(), 1, "one clear line: {stderr}");
    assert!(lines[0].contains("--data-dir"), "{stderr}");
}

#[tokio::test]
async fn the_server_starts_on_sqlite_by_default_and_answers_health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // Settings from the environment work as well as flags.
    // Without the control loops nothing writes on its own, so the store's
    // figures are those of an empty store.
    let server = ServerProcess::start(
        &[],
        &[
            ("BERTH_DATA_DIR", data_dir.to_str().unwrap()),
            ("BERTH_CONTROLLERS", "false"),
        ],
    );
    assert!(
        data_dir.join("berth.db").exists(),
        "the default database is <data-dir>/berth.db"
    );
    let client = reqwest::Client::new();
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "Prometheus text format"
    );
    let body = metrics.text().await.unwrap();
    for name in [
        "berth_store_write_duration_seconds_bucket",
        "berth_store_revision 1",
        // The node API's shared watches over pods, ConfigMaps and Secrets
        // (three, whatever the number of nodes), and the etcd API's on the
        // accounts key, for its callers' cache.
        "berth_store_open_watches 4",
        "berth_store_watch_events_sent_total 0",
        "berth_store_db_pool_connections",
        "berth_store_db_pool_idle_connections",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
}

#[tokio::test]
async fn readyz_answers_503_while_postgres_refuses_the_server_and_200_again_after() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let server = TestServer::start(&db.url, &[]);
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(server.process.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Cut the server off its database: refuse new connections and end the
    // open ones.
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    // (A connection limit would not stop the superuser the tests run as.)
    let allow = |allow: bool| format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}");
    sqlx::query(sqlx::AssertSqlSafe(allow(false)))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();
    // pg_terminate_backend only signals; wait until the backends are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(&name)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} connections survived pg_terminate_backend"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let not_ready = client
        .get(server.process.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status(), 503);
    let body: serde_json::Value = not_ready.json().await.unwrap();
    assert_eq!(body["error"]["code"], "StoreUnavailable");
    // Liveness does not depend on the database.
    assert_eq!(
        client
            .get(server.process.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    sqlx::query(sqlx::AssertSqlSafe(allow(true)))
        .execute(&mut admin)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = client
            .get(server.process.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&["--data-dir", dir.path().to_str().unwrap()], &[]);
    let pid = nix::unistd::Pid::from_raw(server.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
