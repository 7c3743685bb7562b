//! Objects over REST: create, read, replace, patch and delete with
//! optimistic concurrency; validation that lists every problem; lists with
//! label selectors and paging; watches that resume without a gap; apply;
//! and Secrets sealed at rest.

use berth_tests::db::{TestBackend, TestDb, create_user};
use berth_tests::process::TestServer;
use berth_tests::rest::Api;
use futures::StreamExt;
use serde_json::{Value, json};

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";

/// A server on `backend` with tenant `acme`, signed in as an editor of it.
async fn setup(backend: TestBackend, extra: &[&str]) -> (TestDb, TestServer, Api) {
    let db = TestDb::new(backend).await;
    let mut args = vec!["--admin-password", ADMIN_PASSWORD];
    args.extend_from_slice(extra);
    let server = TestServer::start(&db.url, &args);
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    let (status, body) = admin.post("/api/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{body}");
    let store = db.open().await;
    create_user(
        &store,
        "dev@acme.test",
        "dev-password-1",
        Some(("acme", "editor")),
    )
    .await;
    store.close().await;
    let dev = Api::new(server.process.url(""))
        .login("dev@acme.test", "dev-password-1")
        .await;
    (db, server, dev)
}

fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, "tier": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": image,
                    "ports": [{"containerPort": 8080}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                }]},
            },
        },
    })
}

const DEPLOYMENTS: &str = "/api/v1/tenants/acme/deployments";

async fn object_lifecycle(backend: TestBackend) {
    let (_db, _server, dev) = setup(backend, &[]).await;
    let (status, created) = dev.post(DEPLOYMENTS, deployment("web", "busybox:1")).await;
    assert_eq!(status, 201, "{created}");
    let meta = &created["metadata"];
    assert_eq!(meta["generation"], 1);
    assert_eq!(meta["tenant"], "acme");
    assert!(
        meta["uid"].as_str().is_some_and(|u| u.len() == 36),
        "{meta}"
    );
    assert!(meta["creationTimestamp"].as_str().is_some(), "{meta}");
    let rv1: i64 = meta["resourceVersion"].as_str().unwrap().parse().unwrap();
    // Defaults are filled in, as Kubernetes does.
    assert_eq!(created["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(created["spec"]["revisionHistoryLimit"], 10);

    let (status, again) = dev.post(DEPLOYMENTS, deployment("web", "busybox:1")).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "AlreadyExists");

    let (status, read) = dev.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);

    // A replace at the current version bumps the generation; the status a
    // user sends is ignored.
    let mut changed = read.clone();
    changed["spec"]["replicas"] = json!(5);
    changed["status"] = json!({"replicas": 99});
    let (status, updated) = dev
        .put(&format!("{DEPLOYMENTS}/web"), changed.clone())
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_ne!(updated["status"]["replicas"], 99);
    let rv2: i64 = updated["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);

    // The same replace again carries a stale resourceVersion.
    let (status, stale) = dev.put(&format!("{DEPLOYMENTS}/web"), changed).await;
    assert_eq!(status, 409, "{stale}");
    assert_eq!(stale["error"]["code"], "Conflict");

    // Labels are metadata: no new generation.
    let (status, patched) = dev
        .patch(
            &format!("{DEPLOYMENTS}/web"),
            json!({"metadata": {"labels": {"tier": null, "team": "blue"}}}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"app": "web", "team": "blue"})
    );
    assert_eq!(patched["metadata"]["generation"], 2);
    let (status, stale) = dev
        .patch(
            &format!("{DEPLOYMENTS}/web"),
            json!({"metadata": {"resourceVersion": rv1.to_string()}, "spec": {"replicas": 1}}),
        )
        .await;
    assert_eq!(status, 409, "{stale}");

    let (status, deleted) = dev.delete(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(status, 200, "{deleted}");
    let (status, gone) = dev.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(gone["error"]["code"], "NotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_created_read_replaced_patched_and_deleted_on_sqlite() {
    object_lifecycle(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_created_read_replaced_patched_and_deleted_on_postgres() {
    object_lifecycle(TestBackend::Postgres).await;
}

async fn assert_nothing_written(dev: &Api) {
    let (status, list) = dev.get(DEPLOYMENTS).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["items"],
        json!([]),
        "a refused request wrote something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_answers_the_envelope_with_every_problem_and_writes_nothing() {
    let (_db, _server, dev) = setup(TestBackend::Sqlite, &[]).await;
    let mut bad = deployment("Web_1", "busybox:1");
    bad["spec"]["replicaz"] = json!(2);
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(70000);
    bad["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    let (status, body) = dev.post(DEPLOYMENTS, bad).await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"spec.replicaz"), "{body}");
    assert_eq!(body["error"]["code"], "BadRequest");
    assert_nothing_written(&dev).await;

    // Once the unknown field is gone, every other problem is listed at once.
    let mut bad = deployment("Web_1", "busybox:1");
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(70000);
    bad["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    bad["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
        json!("lots");
    let (status, body) = dev.post(DEPLOYMENTS, bad).await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    for expected in [
        "metadata.name",
        "spec.template.spec.containers[0].ports[0].containerPort",
        "spec.template.spec.containers[0].resources.requests[cpu]",
        // Where Kubernetes reports a selector that misses the template.
        "spec.template.metadata.labels",
    ] {
        assert!(fields.contains(&expected), "{expected} missing from {body}");
    }

    // A wrong type names its field.
    let mut bad = deployment("web", "busybox:1");
    bad["spec"]["replicas"] = json!("three");
    let (status, body) = dev.post(DEPLOYMENTS, bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["details"][0]["field"], "spec.replicas",
        "{body}"
    );

    // Malformed JSON, malformed YAML, wrong content type, oversize body.
    let raw = |content_type: &str, body: Vec<u8>| {
        dev.request(reqwest::Method::POST, DEPLOYMENTS)
            .header("Content-Type", content_type)
            .body(body)
    };
    let (status, body) = Api::send(raw("application/json", b"{\"kind\": ".to_vec())).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "BadRequest");
    let (status, body) = Api::send(raw("application/yaml", b"kind: [unclosed".to_vec())).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = Api::send(raw("text/plain", b"hello".to_vec())).await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["error"]["code"], "UnsupportedMediaType");
    let mut huge = deployment("web", "busybox:1");
    huge["metadata"]["annotations"] = json!({"big": "x".repeat(1600 * 1024)});
    let (status, body) = Api::send(raw("application/json", huge.to_string().into_bytes())).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "PayloadTooLarge");
    // A kind that does not match the path.
    let mut wrong = deployment("web", "busybox:1");
    wrong["kind"] = json!("Service");
    let (status, body) = dev.post(DEPLOYMENTS, wrong).await;
    assert_eq!(status, 400, "{body}");
    // A YAML manifest, as kubectl users write them, is accepted.
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: yaml-web\nspec:\n  selector:\n    matchLabels: {app: yaml-web}\n  template:\n    metadata:\n      labels: {app: yaml-web}\n    spec:\n      containers:\n      - name: web\n        image: busybox:1\n";
    let (status, body) = Api::send(raw("application/yaml", yaml.as_bytes().to_vec())).await;
    assert_eq!(status, 201, "{body}");
    // Everything refused above left no trace.
    let (_, list) = dev.get(DEPLOYMENTS).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["yaml-web"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_by_label_selector_and_page_with_continue_tokens() {
    let (_db, _server, dev) = setup(TestBackend::Sqlite, &[]).await;
    for i in 0..25 {
        let mut object = deployment(&format!("app-{i:02}"), "busybox:1");
        object["metadata"]["labels"]["env"] = json!(if i % 2 == 0 { "prod" } else { "dev" });
        if i % 5 == 0 {
            object["metadata"]["labels"]["canary"] = json!("yes");
        }
        let (status, body) = dev.post(DEPLOYMENTS, object).await;
        assert_eq!(status, 201, "{body}");
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, list) = dev
        .get(&format!("{DEPLOYMENTS}?labelSelector=env%3Dprod"))
        .await;
    assert_eq!(names(&list).len(), 13);
    let (_, list) = dev
        .get(&format!(
            "{DEPLOYMENTS}?labelSelector=env%20in%20(prod),!canary"
        ))
        .await;
    assert_eq!(names(&list).len(), 10, "{list}");
    let (status, body) = dev
        .get(&format!("{DEPLOYMENTS}?labelSelector=env%20in%20prod"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "labelSelector");

    // Pages of 4 of the prod objects, all read at the first page's revision,
    // even when an object is added halfway.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut revisions = std::collections::BTreeSet::new();
    loop {
        let mut path = format!("{DEPLOYMENTS}?labelSelector=env%3Dprod&limit=4");
        if let Some(token) = &token {
            path.push_str(&format!("&continue={token}"));
        }
        let (status, page) = dev.get(&path).await;
        assert_eq!(status, 200, "{page}");
        assert!(names(&page).len() <= 4);
        seen.extend(names(&page));
        revisions.insert(page["metadata"]["resourceVersion"].to_string());
        if seen.len() == 4 {
            let mut late = deployment("app-00a", "busybox:1");
            late["metadata"]["labels"]["env"] = json!("prod");
            assert_eq!(dev.post(DEPLOYMENTS, late).await.0, 201);
        }
        match page["metadata"]["continue"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("app-{i:02}"))
        .collect();
    assert_eq!(
        seen, expected,
        "the pages add up to the list at one revision"
    );
    assert_eq!(revisions.len(), 1);
    let (status, body) = dev
        .get(&format!("{DEPLOYMENTS}?limit=2&continue=garbage"))
        .await;
    assert_eq!(status, 400, "{body}");
}

async fn watch(dev: &Api, query: &str) -> reqwest::Response {
    dev.request(
        reqwest::Method::GET,
        &format!("{DEPLOYMENTS}?watch=true{query}"),
    )
    .send()
    .await
    .unwrap()
}

/// The lines of a watch stream, parsed, as they arrive.
struct Lines {
    stream: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: Vec<u8>,
}

impl Lines {
    fn new(response: reqwest::Response) -> Lines {
        Lines {
            stream: response
                .bytes_stream()
                .map(|chunk| chunk.map(|b| b.to_vec()))
                .boxed(),
            buffer: Vec::new(),
        }
    }

    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return serde_json::from_slice(&line).expect("a JSON line");
            }
            let chunk =
                tokio::time::timeout(std::time::Duration::from_secs(10), self.stream.next())
                    .await
                    .expect("a watch event within 10 s")
                    .expect("the stream goes on")
                    .expect("reading the stream");
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_reconnects_from_its_last_resource_version_misses_nothing() {
    let (_db, _server, dev) = setup(TestBackend::Sqlite, &["--watch-bookmark-ms", "200"]).await;
    let (_, first) = dev.post(DEPLOYMENTS, deployment("w-0", "busybox:1")).await;
    let start = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    // Without a resourceVersion the stream opens with the current objects.
    let mut initial = Lines::new(watch(&dev, "").await);
    let added = initial.next().await;
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["metadata"]["name"], "w-0");
    drop(initial);

    let writer = {
        let dev = dev.clone();
        tokio::spawn(async move {
            for i in 1..=60 {
                let (status, body) = dev
                    .post(DEPLOYMENTS, deployment(&format!("w-{i}"), "busybox:1"))
                    .await;
                assert_eq!(status, 201, "{body}");
                if i % 3 == 0 {
                    let (status, body) = dev.delete(&format!("{DEPLOYMENTS}/w-{}", i - 1)).await;
                    assert_eq!(status, 200, "{body}");
                }
            }
        })
    };
    // Read a few events, hang up, and resume from the last resourceVersion,
    // several times while the writer goes on.
    let mut last = start;
    let mut events = Vec::new();
    let mut bookmarks = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while events.len() < 80 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 80 events arrived: {events:?}",
            events.len()
        );
        let mut lines = Lines::new(watch(&dev, &format!("&resourceVersion={last}")).await);
        for _ in 0..7 {
            let event = lines.next().await;
            let rv = event["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_owned();
            if event["type"] == "BOOKMARK" {
                bookmarks += 1;
            } else {
                events.push((
                    event["type"].as_str().unwrap().to_owned(),
                    event["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    rv.parse::<i64>().unwrap(),
                ));
            }
            last = rv;
            if events.len() >= 80 {
                break;
            }
        }
    }
    writer.await.unwrap();
    let mut expected = Vec::new();
    for i in 1..=60 {
        expected.push(("ADDED".to_owned(), format!("w-{i}")));
        if i % 3 == 0 {
            expected.push(("DELETED".to_owned(), format!("w-{}", i - 1)));
        }
    }
    let got: Vec<(String, String)> = events
        .iter()
        .map(|(t, n, _)| (t.clone(), n.clone()))
        .collect();
    assert_eq!(
        got,
        expected[..got.len()].to_vec(),
        "no event missed or repeated"
    );
    assert!(
        events.windows(2).all(|w| w[0].2 < w[1].2),
        "revisions increase"
    );
    // An idle stream gets bookmarks.
    let mut lines = Lines::new(watch(&dev, &format!("&resourceVersion={last}")).await);
    loop {
        let event = lines.next().await;
        if event["type"] == "BOOKMARK" {
            bookmarks += 1;
            break;
        }
    }
    assert!(bookmarks >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_resource_version_answers_410_gone() {
    let (db, _server, dev) = setup(TestBackend::Sqlite, &[]).await;
    let (_, first) = dev.post(DEPLOYMENTS, deployment("a", "busybox:1")).await;
    let old = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, second) = dev.post(DEPLOYMENTS, deployment("b", "busybox:1")).await;
    let newest: i64 = second["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let store = db.open().await;
    store.compact(newest).await.unwrap();
    store.close().await;
    let response = watch(
        &dev,
        &format!("&resourceVersion={}", old.parse::<i64>().unwrap() - 1),
    )
    .await;
    assert_eq!(response.status().as_u16(), 410);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_and_updates_each_document_and_fails_bad_ones_alone() {
    let (_db, _server, dev) = setup(TestBackend::Sqlite, &[]).await;
    let manifest = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: Bad_Name
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec: {containers: [{name: c, image: busybox:1}]}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;
    let apply = |body: &str| {
        Api::send(
            dev.request(reqwest::Method::POST, "/api/v1/tenants/acme/apply")
                .header("Content-Type", "application/yaml")
                .body(body.to_owned()),
        )
    };
    let (status, body) = apply(manifest).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], 2, "{body}");
    assert_eq!(body["failed"], 1, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["action"], "created");
    assert_eq!(results[1]["index"], 1);
    assert_eq!(results[1]["action"], "failed");
    assert_eq!(
        results[1]["error"]["details"][0]["field"], "metadata.name",
        "{body}"
    );
    assert_eq!(results[2]["action"], "created");
    let (status, service) = dev.get("/api/v1/tenants/acme/services/web").await;
    assert_eq!(status, 200, "{service}");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);

    // Applying again changes nothing; a changed document is configured.
    let (_, body) = apply(manifest).await;
    assert_eq!(body["results"][0]["action"], "unchanged", "{body}");
    let (_, body) = apply(&manifest.replace("mode: fast", "mode: safe")).await;
    assert_eq!(body["results"][0]["action"], "configured", "{body}");
    let (_, settings) = dev.get("/api/v1/tenants/acme/configmaps/settings").await;
    assert_eq!(settings["data"]["mode"], "safe");
}

async fn secrets_are_sealed(backend: TestBackend) {
    let (db, server, dev) = setup(backend, &[]).await;
    let store = db.open().await;
    create_user(
        &store,
        "viewer@acme.test",
        "viewer-password-1",
        Some(("acme", "viewer")),
    )
    .await;
    let viewer = Api::new(server.process.url(""))
        .login("viewer@acme.test", "viewer-password-1")
        .await;
    let plaintext = "hunter2-very-secret-value";
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "stringData": {"password": plaintext},
        "data": {"user": "YWRtaW4="},
    });
    let (status, created) = dev.post("/api/v1/tenants/acme/secrets", secret).await;
    assert_eq!(status, 201, "{created}");
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(plaintext);
    assert_eq!(created["data"]["password"], encoded);

    // An editor reads the values; a viewer sees the keys only.
    let (_, read) = dev.get("/api/v1/tenants/acme/secrets/db").await;
    assert_eq!(read["data"]["password"], encoded);
    let (status, seen) = viewer.get("/api/v1/tenants/acme/secrets/db").await;
    assert_eq!(status, 200);
    assert_eq!(seen["data"], json!({"password": "", "user": ""}), "{seen}");
    let (_, listed) = viewer.get("/api/v1/tenants/acme/secrets").await;
    assert_eq!(listed["items"][0]["data"]["password"], "");

    // The store holds ciphertext only.
    let raw = store
        .get(b"/registry/secrets/acme/db", 0)
        .await
        .unwrap()
        .expect("the secret is stored under its key");
    let raw = String::from_utf8(raw.value).unwrap();
    assert!(!raw.contains(plaintext) && !raw.contains(&encoded), "{raw}");
    assert!(raw.contains("berth:aes256gcm:v1:"), "{raw}");
    store.close().await;
    // And so does the database, byte for byte.
    let dump = database_dump(&db).await;
    assert!(
        !dump.contains(plaintext),
        "the plaintext is in the database"
    );
    assert!(
        !dump.contains(&encoded),
        "the base64 value is in the database"
    );
}

/// Every value of the revision log's tables, as text.
async fn database_dump(db: &TestDb) -> String {
    use sqlx::Connection;
    let mut dump = String::new();
    if db.url.starts_with("sqlite://") {
        let path = db.url.trim_start_matches("sqlite://");
        for file in [path.to_owned(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                dump.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT value FROM kv_log")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        for (value,) in rows {
            dump.push_str(&String::from_utf8_lossy(&value));
        }
    }
    dump
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_are_sealed_at_rest_and_hidden_from_viewers_on_sqlite() {
    secrets_are_sealed(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_are_sealed_at_rest_and_hidden_from_viewers_on_postgres() {
    secrets_are_sealed(TestBackend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_in_the_audit_log_for_tenant_admins() {
    let (db, server, dev) = setup(TestBackend::Sqlite, &[]).await;
    let store = db.open().await;
    create_user(
        &store,
        "boss@acme.test",
        "boss-password-1",
        Some(("acme", "admin")),
    )
    .await;
    store.close().await;
    let boss = Api::new(server.process.url(""))
        .login("boss@acme.test", "boss-password-1")
        .await;
    assert_eq!(
        dev.post(DEPLOYMENTS, deployment("web", "busybox:1"))
            .await
            .0,
        201
    );
    assert_eq!(
        dev.post(DEPLOYMENTS, deployment("web", "busybox:1"))
            .await
            .0,
        409
    );
    assert_eq!(dev.delete(&format!("{DEPLOYMENTS}/web")).await.0, 200);
    let (status, denied) = dev.get("/api/v1/tenants/acme/audit").await;
    assert_eq!(status, 403, "editors do not read the audit log: {denied}");
    let (status, page) = boss
        .get("/api/v1/tenants/acme/audit?user=dev%40acme.test&kind=Deployment")
        .await;
    assert_eq!(status, 200, "{page}");
    let entries: Vec<(String, i64)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["verb"].as_str().unwrap().to_owned(),
                e["code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("delete".to_owned(), 200),
            ("create".to_owned(), 409),
            ("create".to_owned(), 201)
        ]
    );
    let entry = &page["items"][0];
    assert_eq!(entry["name"], "web");
    assert_eq!(entry["tenant"], "acme");
    assert_eq!(entry["source"], "127.0.0.1");
    assert!(entry["time"].as_str().is_some());
    // Paging: one entry per page, newest first.
    let (_, first) = boss
        .get("/api/v1/tenants/acme/audit?kind=Deployment&limit=1")
        .await;
    let token = first["continue"].as_str().unwrap();
    let (_, second) = boss
        .get(&format!(
            "/api/v1/tenants/acme/audit?kind=Deployment&limit=1&continue={token}"
        ))
        .await;
    assert_eq!(second["items"][0]["code"], 409, "{second}");
}
