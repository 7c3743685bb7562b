//! The OpenAPI document (`openapi/openapi.json`) against tools that take it
//! at its word: openapi-python-client generates an SDK that must drive a
//! live server, and schemathesis fuzzes a live server and checks that no
//! answer is a 5xx or contradicts the document.
//!
//! Both tools come from the Python virtualenv that `scripts/test` makes and
//! names in `BERTH_PYTHON_VENV`; without it these tests fail, never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::TestServer;
use berth_tests::rest::Api;
use serde_json::json;

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";

/// The workspace's root, where `openapi/` is.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
}

/// `tests/data/<name>`.
fn data(name: &str) -> PathBuf {
    workspace().join("tests").join("data").join(name)
}

/// An executable of the virtualenv named by `BERTH_PYTHON_VENV`.
fn venv_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("BERTH_PYTHON_VENV").unwrap_or_else(|| {
        panic!(
            "BERTH_PYTHON_VENV is not set: these tests need a Python virtualenv with \
             openapi-python-client and schemathesis. Run the tests through scripts/test, \
             which makes one."
        )
    });
    let tool = PathBuf::from(venv).join("bin").join(name);
    assert!(
        tool.exists(),
        "{} does not exist: BERTH_PYTHON_VENV must name a virtualenv with \
         openapi-python-client and schemathesis installed (scripts/test makes one)",
        tool.display()
    );
    tool
}

/// A tool's output for a failure message.
fn shown(output: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `command` with only the loopback reachable through it: proxies
/// from the environment would send the tools' requests elsewhere.
fn run(command: &mut Command) -> Output {
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        command.env_remove(proxy);
    }
    command
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

/// A server on a fresh SQLite database with its admin's password set.
async fn server() -> (TestDb, TestServer) {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = TestServer::start(&db.url, &["--admin-password", ADMIN_PASSWORD]);
    (db, server)
}

#[tokio::test]
async fn a_query_string_that_does_not_parse_is_a_400_in_the_error_envelope() {
    let (_db, server) = server().await;
    let token = login_token(&server).await;
    let admin = Api::new(server.process.url("")).with_token(&token);
    let (status, body) = admin.post("/api/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{body}");
    for path in [
        "/api/v1/tenants/acme/deployments?limit=1&limit=2",
        "/api/v1/tenants/acme/audit?limit=99999999999999999999",
        "/api/v1/tenants/acme/audit?colour=blue",
    ] {
        let response = admin
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("sending a request");
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        assert_eq!(body["error"]["code"], "BadRequest", "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("the query string is invalid")),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn the_generated_python_sdk_signs_in_creates_a_tenant_applies_and_lists_a_deployment() {
    let generator = venv_tool("openapi-python-client");
    let python = venv_tool("python");
    let dir = tempfile::tempdir().expect("a temp dir");
    let generated = run(Command::new(generator)
        .arg("generate")
        .arg("--path")
        .arg(workspace().join("openapi/openapi.json"))
        .arg("--output-path")
        .arg(dir.path().join("berth_client"))
        .args(["--meta", "none"])
        .arg("--config")
        .arg(data("sdk_config.yaml"))
        .current_dir(dir.path()));
    assert!(
        generated.status.success(),
        "the generator refused the document:\n{}",
        shown(&generated)
    );
    // The generator writes no code for YAML request bodies and says so
    // once per operation that takes one; each such operation takes JSON
    // too, so the SDK loses nothing. Any other warning is a part of the
    // document it could not turn into code.
    let log = String::from_utf8_lossy(&generated.stdout);
    let warnings = log.matches("WARNING").count();
    let yaml_bodies = log
        .matches("Unsupported content type application/yaml")
        .count();
    assert_eq!(
        warnings,
        yaml_bodies,
        "the generator warned about more than YAML bodies:\n{}",
        shown(&generated)
    );

    let (_db, server) = server().await;
    let smoke = run(Command::new(python)
        .arg(data("sdk_smoke.py"))
        .arg(server.process.url(""))
        .arg(ADMIN_PASSWORD)
        .env("PYTHONPATH", dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(dir.path()));
    assert!(
        smoke.status.success(),
        "the generated SDK did not work against the server:\n{}",
        shown(&smoke)
    );
    assert!(
        String::from_utf8_lossy(&smoke.stdout).contains("listed ['applied', 'created']"),
        "{}",
        shown(&smoke)
    );
}

#[tokio::test]
async fn schemathesis_finds_no_server_errors_and_no_responses_that_contradict_the_document() {
    let schemathesis = venv_tool("schemathesis");
    let (_db, server) = server().await;
    let token = login_token(&server).await;
    let admin = Api::new(server.process.url("")).with_token(&token);
    // `acme` is where requests go; `doomed` is the one delete_tenant
    // deletes (tests/data/schemathesis.toml).
    for tenant in ["acme", "doomed"] {
        let (status, body) = admin.post("/api/v1/tenants", json!({"name": tenant})).await;
        assert_eq!(status, 201, "{body}");
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let report = run(Command::new(schemathesis)
        .arg("--config-file")
        .arg(data("schemathesis.toml"))
        .arg("run")
        .arg(server.process.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance",
        ])
        // No stateful phase, to keep the run short: the examples phase
        // already sends each kind's example object to create, then reads,
        // replaces, patches and deletes it by the example name.
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "20", "--seed", "1"])
        // One worker: with more, hypothesis calls ast.parse from several
        // threads at once, which CPython 3.11 does not survive reliably
        // ("SystemError: AST constructor recursion depth mismatch").
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--generation-database", "none", "--no-color"])
        .current_dir(dir.path()));
    assert!(
        report.status.success(),
        "schemathesis found answers that contradict the document:\n{}",
        shown(&report)
    );
}

/// A fresh access token of the admin.
async fn login_token(server: &TestServer) -> String {
    let (status, body) = Api::new(server.process.url(""))
        .post(
            "/api/v1/auth/login",
            json!({"email": ADMIN, "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("a token").to_owned()
}
