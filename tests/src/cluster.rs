//! A small cluster for end-to-end tests of the control loops: a server
//! running its controllers, an admin signed in with a tenant, and the
//! shapes and waits those tests share.

use std::time::Duration;

use serde_json::{Value, json};

use crate::process::TestServer;
use crate::rest::Api;

/// The platform admin every cluster test signs in as.
pub const ADMIN: &str = "admin@berth.local";
/// That admin's password.
pub const ADMIN_PASSWORD: &str = "admin-secret-1";

/// Starts a server with its controllers on `database_url`, plus `extra`
/// flags.
pub fn server(database_url: &str, extra: &[&str]) -> TestServer {
    let mut args = vec!["--admin-password", ADMIN_PASSWORD, "--controllers=true"];
    args.extend_from_slice(extra);
    TestServer::start(database_url, &args)
}

/// Signs the admin in on `server` and creates `tenant`.
pub async fn admin_with_tenant(server: &TestServer, tenant: &str) -> Api {
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    let (status, body) = admin.post("/api/v1/tenants", json!({"name": tenant})).await;
    assert_eq!(status, 201, "creating tenant {tenant}: {body}");
    admin
}

/// A Deployment `name` of `replicas` pods labelled `app: {name}`, each
/// asking for 100m CPU and 32Mi.
pub fn deployment(name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": name,
                    "image": image,
                    "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}},
                }]},
            },
        },
    })
}

/// Polls `path` until `check` holds, for at most `seconds`; answers the
/// body that passed.
pub async fn eventually(
    api: &Api,
    path: &str,
    seconds: u64,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let (status, body) = api.get(path).await;
        if status == 200 && check(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The items of a list body.
pub fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The status of a Node's (or pod's) `Ready` condition, if it has one.
pub fn ready_status(object: &Value) -> Option<String> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?["status"]
        .as_str()
        .map(str::to_owned)
}

/// Reads `/metrics` at `url` and answers the value of the sample whose
/// line starts with `series` (name and labels as printed).
pub async fn metric(url: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Polls `path` until it answers 404, for at most `seconds`.
pub async fn gone(api: &Api, path: &str, seconds: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let (status, body) = api.get(path).await;
        if status == 404 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Posts `body` to the collection at `path` and answers what was created;
/// anything but 201 fails the test.
pub async fn create(api: &Api, path: &str, body: Value) -> Value {
    let (status, created) = api.post(path, body).await;
    assert_eq!(status, 201, "creating at {path}: {created}");
    created
}
