//! The dashboard in a real browser (headless Chromium), against a real
//! server whose pods run on the sim runtime: the main path of a user from
//! sign-in to rollback and logs, roles, CSRF, escaping, sliding sessions
//! and the "why isn't it running" card. Each test saves screenshots of the
//! pages it visits under `<target dir>/screenshots/`.

use berth_tests::browser::Browser;
use berth_tests::cluster::{
    ADMIN, ADMIN_PASSWORD, TENANT, admin_with_tenant, create, deployment, server,
};
use berth_tests::db::{TestBackend, TestDb, create_user};
use berth_tests::process::{AgentProcess, TestServer};
use berth_tests::rest::Api;
use serde_json::{Value, json};

/// A server with two sim nodes whose containers start in 200 ms and, when
/// their logs are followed, write a line every 300 ms.
struct Dashboard {
    admin: Api,
    server: TestServer,
    db: TestDb,
    _agent: AgentProcess,
}

impl Dashboard {
    async fn start(extra: &[&str]) -> Dashboard {
        let db = TestDb::new(TestBackend::Sqlite).await;
        let server = server(&db.url, extra);
        let agent = AgentProcess::sim(
            &server,
            "sim",
            2,
            &[
                "--sim-start-delay-ms",
                "200",
                "--heartbeat-ms",
                "1000",
                "--sim-log-interval-ms",
                "300",
            ],
        );
        let admin = admin_with_tenant(&server, TENANT).await;
        admin
            .eventually("/api/v1/nodes", 30, "two nodes", |list| {
                list["items"].as_array().is_some_and(|n| n.len() == 2)
            })
            .await;
        Dashboard {
            admin,
            server,
            db,
            _agent: agent,
        }
    }

    fn url(&self, path: &str) -> String {
        self.server.process.url(path)
    }

    /// A browser signed in as `email` through the sign-in page.
    async fn signed_in(&self, email: &str, password: &str) -> Browser {
        let browser = Browser::start().await;
        browser.goto(&self.url("/t/acme")).await;
        assert_eq!(browser.current_path().await, "/login");
        browser.fill("#email", email).await;
        browser.fill("#password", password).await;
        browser.click("#sign-in").await;
        browser
            .wait_until("the tenant's overview after signing in", async || {
                let path = browser.current_path().await;
                if path == "/t/acme" { Ok(()) } else { Err(path) }
            })
            .await;
        browser
    }

    async fn member(&self, email: &str, role: &str) {
        let store = self.db.open().await;
        create_user(&store, email, "member-secret-1", Some((TENANT, role))).await;
        store.close().await;
    }
}

/// The statuses of the pods a page lists under `css`.
async fn pod_statuses(browser: &Browser, css: &str) -> Vec<String> {
    let value = browser
        .eval(&format!(
            "Array.from(document.querySelectorAll('{css} .pod-status')).map(e => e.textContent.trim())"
        ))
        .await;
    serde_json::from_value(value).unwrap_or_default()
}

async fn wait_for_running(browser: &Browser, css: &str, count: usize) {
    browser
        .wait_until(&format!("{count} Running pods in {css}"), async || {
            let statuses = pod_statuses(browser, css).await;
            if statuses.len() == count && statuses.iter().all(|s| s == "Running") {
                Ok(())
            } else {
                Err(format!("{statuses:?}"))
            }
        })
        .await;
}

/// Whether the page has an open JavaScript dialog (`alert`).
async fn alert_open(browser: &Browser) -> bool {
    browser.client().get_alert_text().await.is_ok()
}

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox:1
        ports:
        - containerPort: 8080
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_creates_scales_changes_rolls_back_and_follows_logs_without_reloading() {
    let dashboard = Dashboard::start(&[]).await;
    let browser = dashboard.signed_in(ADMIN, ADMIN_PASSWORD).await;
    browser.screenshot("overview-empty").await;

    // A mistake is shown at its line, and nothing is created.
    browser
        .goto(&dashboard.url("/t/acme/deployments/new"))
        .await;
    browser
        .fill("#yaml", &WEB.replace("replicas: 2", "replicas: two"))
        .await;
    browser.click("#create").await;
    browser
        .wait_for_text("#yaml-errors li", "Line 6: spec.replicas")
        .await;
    let marked = browser
        .eval("document.querySelector('.gutter .bad').textContent")
        .await;
    assert_eq!(marked, json!("6 !\n"));
    browser.screenshot("deployment-new-error").await;
    let (status, _) = dashboard
        .admin
        .get("/api/v1/tenants/acme/deployments/web")
        .await;
    assert_eq!(status, 404, "a refused manifest creates nothing");

    // Fixed, it is created, and its pods go Running on the open page.
    browser.fill("#yaml", WEB).await;
    browser.click("#create").await;
    browser
        .wait_until("the new deployment's page", async || {
            let path = browser.current_path().await;
            if path == "/t/acme/deployments/web" {
                Ok(())
            } else {
                Err(path)
            }
        })
        .await;
    browser.eval("window.__samePage = 'yes'").await;
    wait_for_running(&browser, "#deployment-pods", 2).await;

    // Scale to 5.
    browser.fill("#replicas", "5").await;
    browser.click("#scale").await;
    wait_for_running(&browser, "#deployment-pods", 5).await;
    browser.wait_for_text("#deployment-ready", "5/5").await;
    browser.screenshot("deployment").await;

    // A new image is a new revision.
    browser.fill("#image-web", "busybox:2").await;
    browser.click(".set-image").await;
    browser
        .wait_for_text("#deployment-images", "busybox:2")
        .await;
    browser
        .wait_for("#revisions tr[data-revision='2'] .badge.ok")
        .await;

    // Roll back to revision 1 through the diff preview.
    browser
        .click("#revisions tr[data-revision='1'] .preview-rollback")
        .await;
    let diff = browser.text_of("#rollback-1 .diff").await;
    assert!(
        diff.contains("- ") && diff.contains("image: busybox:2"),
        "{diff}"
    );
    assert!(
        diff.contains("+ ") && diff.contains("image: busybox:1"),
        "{diff}"
    );
    browser.screenshot("rollback-preview").await;
    browser.click("#rollback-1 .confirm-rollback").await;
    browser
        .wait_for_text("#deployment-images", "busybox:1")
        .await;
    wait_for_running(&browser, "#deployment-pods", 5).await;
    let (_, deployment) = dashboard
        .admin
        .get("/api/v1/tenants/acme/deployments/web")
        .await;
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1"
    );

    // The logs of all its pods follow: lines keep arriving, tagged by pod.
    let lines = async || {
        browser
            .eval("document.querySelectorAll('#deployment-logs .logs > div').length")
            .await
            .as_u64()
            .unwrap_or(0)
    };
    browser
        .wait_for_text("#deployment-logs .logs", "[web-")
        .await;
    let before = lines().await;
    browser
        .wait_until("more log lines while following", async || {
            let now = lines().await;
            if now > before + 3 {
                Ok(())
            } else {
                Err(format!("{now} lines, {before} before"))
            }
        })
        .await;

    // All of it on the one page, never reloaded, and nothing refused by
    // the Content-Security-Policy.
    assert_eq!(browser.eval("window.__samePage").await, json!("yes"));
    // The one error is the refused manifest's 400.
    let errors: Vec<String> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !e.contains("/api/v1/tenants/acme/deployments - Failed to load resource: the server responded with a status of 400"))
        .collect();
    assert_eq!(errors, Vec::<String>::new());

    browser.goto(&dashboard.url("/t/acme/deployments")).await;
    browser.wait_for_text("#deployments", "web").await;
    browser.screenshot("deployments").await;
    browser.goto(&dashboard.url("/t/acme")).await;
    browser.screenshot("overview").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_scale_disabled_with_its_reason_and_a_change_without_the_csrf_token_is_refused()
 {
    let dashboard = Dashboard::start(&[]).await;
    create(
        &dashboard.admin,
        "/api/v1/tenants/acme/deployments",
        deployment("web", 1, "busybox:1"),
    )
    .await;
    dashboard.member("viewer@example.com", "viewer").await;

    let viewer = dashboard
        .signed_in("viewer@example.com", "member-secret-1")
        .await;
    viewer.goto(&dashboard.url("/t/acme/deployments/web")).await;
    let scale = viewer.wait_for("#scale").await;
    assert!(
        !scale.is_enabled().await.expect("reading #scale"),
        "a viewer's scale button is disabled"
    );
    assert_eq!(
        viewer.text_of("#scale-reason").await,
        "editors and above can scale"
    );
    viewer.screenshot("deployment-as-viewer").await;

    // The admin's own session, from a script that leaves the token out: refused.
    let admin = dashboard.signed_in(ADMIN, ADMIN_PASSWORD).await;
    admin.goto(&dashboard.url("/t/acme/deployments/web")).await;
    let put = |token: &str| {
        format!(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/tenants/acme/deployments/web/scale', {{method: 'PUT',
               headers: {{'Content-Type': 'application/json'{token}}},
               body: JSON.stringify({{spec: {{replicas: 3}}}})}})
             .then(r => r.text().then(t => done([r.status, t])));"
        )
    };
    let forged = admin
        .client()
        .execute_async(&put(""), Vec::new())
        .await
        .expect("the forged request");
    assert_eq!(forged[0], json!(403), "{forged}");
    assert!(
        forged[1].as_str().unwrap_or_default().contains("CSRF"),
        "{forged}"
    );
    let (_, web) = dashboard
        .admin
        .get("/api/v1/tenants/acme/deployments/web")
        .await;
    assert_eq!(web["spec"]["replicas"], 1, "the forged change did nothing");
    let genuine = admin
        .client()
        .execute_async(
            &put(", 'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content"),
            Vec::new(),
        )
        .await
        .expect("the genuine request");
    assert_eq!(genuine[0], json!(200), "{genuine}");

    // A console (a WebSocket, which carries no token) opened with the
    // session from another site's page: refused for its Origin.
    let cookies: Vec<String> = admin
        .client()
        .get_all_cookies()
        .await
        .expect("the session's cookies")
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect();
    let handshake = |origin: &str| {
        reqwest::Client::new()
            .get(dashboard.url("/api/v1/tenants/acme/pods/nothing/exec?command=sh"))
            .header("Cookie", cookies.join("; "))
            .header("Origin", origin)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
    };
    let foreign = handshake("http://pages.example")
        .await
        .expect("the handshake");
    assert_eq!(foreign.status(), 403);
    let own_origin = dashboard.url("").trim_end_matches('/').to_owned();
    let own = handshake(&own_origin).await.expect("the handshake");
    assert_eq!(
        own.status(),
        404,
        "from the dashboard's own origin it gets as far as the pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_fit_a_phone_screen() {
    let dashboard = Dashboard::start(&[]).await;
    create(
        &dashboard.admin,
        "/api/v1/tenants/acme/deployments",
        deployment("web", 2, "busybox:1"),
    )
    .await;
    let phone = Browser::start_with_size(390, 844).await;
    phone.goto(&dashboard.url("/login")).await;
    phone.fill("#email", ADMIN).await;
    phone.fill("#password", ADMIN_PASSWORD).await;
    phone.click("#sign-in").await;
    phone.wait_for("#tenant-switch").await;
    for (path, name) in [
        ("/t/acme", "phone-overview"),
        ("/t/acme/deployments", "phone-deployments"),
        ("/t/acme/deployments/web", "phone-deployment"),
        ("/t/acme/pods", "phone-pods"),
    ] {
        phone.goto(&dashboard.url(path)).await;
        phone.wait_for("main h1").await;
        let width = phone.eval("document.documentElement.scrollWidth").await;
        assert!(
            width.as_u64().is_some_and(|w| w <= 390),
            "{path} is {width} px wide"
        );
        phone.screenshot(name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_an_annotation_is_shown_as_text_and_never_runs() {
    let dashboard = Dashboard::start(&[]).await;
    let hostile = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">";
    let mut web = deployment("web", 1, "busybox:1");
    web["metadata"]["annotations"] = json!({"note": hostile});
    web["metadata"]["labels"] = json!({"team": "a"});
    create(&dashboard.admin, "/api/v1/tenants/acme/deployments", web).await;

    let browser = dashboard.signed_in(ADMIN, ADMIN_PASSWORD).await;
    for path in ["/t/acme/deployments/web", "/t/acme/deployments"] {
        browser.goto(&dashboard.url(path)).await;
        browser.wait_for("main").await;
        assert_eq!(
            browser.eval("typeof window.__xss").await,
            json!("undefined"),
            "{path}"
        );
        assert!(!alert_open(&browser).await, "{path}");
    }
    browser
        .goto(&dashboard.url("/t/acme/deployments/web"))
        .await;
    let shown = browser.text_of("#deployment-annotations").await;
    assert!(shown.contains(hostile), "{shown}");
    assert_eq!(
        browser
            .eval("document.querySelectorAll('main script, main img').length")
            .await,
        json!(0)
    );
    browser.screenshot("escaped-annotation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_its_access_tokens_while_the_user_is_active() {
    // Access tokens of 2 s stand in for 15 minutes: 8 s of activity spans
    // four of them, as 20 minutes of work spans more than one.
    let dashboard = Dashboard::start(&["--access-token-ttl", "2s"]).await;
    create(
        &dashboard.admin,
        "/api/v1/tenants/acme/deployments",
        deployment("web", 1, "busybox:1"),
    )
    .await;
    let browser = dashboard.signed_in(ADMIN, ADMIN_PASSWORD).await;
    let access = async || {
        browser
            .client()
            .get_named_cookie("berth_access")
            .await
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    };
    let first = access().await;
    let started = tokio::time::Instant::now();
    let mut replicas = 1;
    while started.elapsed() < std::time::Duration::from_secs(8) {
        browser
            .goto(&dashboard.url("/t/acme/deployments/web"))
            .await;
        assert_eq!(browser.current_path().await, "/t/acme/deployments/web");
        // A change from the page, with whatever token the browser holds.
        replicas = if replicas == 1 { 2 } else { 1 };
        browser.fill("#replicas", &replicas.to_string()).await;
        browser.click("#scale").await;
        browser
            .wait_until(&format!("the scale to {replicas}"), async || {
                // Signed in afresh: the API's own tokens last 2 s here too.
                let api = Api::new(dashboard.url(""))
                    .login(ADMIN, ADMIN_PASSWORD)
                    .await;
                let (_, web) = api.get("/api/v1/tenants/acme/deployments/web").await;
                let toast = browser
                    .eval("document.querySelector('#toast').textContent")
                    .await;
                if web["spec"]["replicas"] == replicas {
                    Ok(())
                } else {
                    Err(format!(
                        "replicas {}, toast {toast}",
                        web["spec"]["replicas"]
                    ))
                }
            })
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
    assert_ne!(access().await, first, "the access token was renewed");

    // Signing out ends it: the next page asks to sign in.
    browser.click("#sign-out").await;
    browser.wait_for("#sign-in").await;
    browser
        .goto(&dashboard.url("/t/acme/deployments/web"))
        .await;
    assert_eq!(browser.current_path().await, "/login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_fits_no_node_shows_the_scheduler_s_reasons() {
    let dashboard = Dashboard::start(&[]).await;
    let mut big = deployment("big", 1, "busybox:1");
    big["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "64", "memory": "32Mi"}});
    create(&dashboard.admin, "/api/v1/tenants/acme/deployments", big).await;
    let pods = dashboard
        .admin
        .eventually(
            "/api/v1/tenants/acme/pods",
            20,
            "the pending pod's reasons",
            |list| {
                list["items"].as_array().is_some_and(|pods| {
                    pods.iter().any(|p| {
                        p["status"]["conditions"]
                            .as_array()
                            .is_some_and(|c| c.iter().any(|c| c["reason"] == "Unschedulable"))
                    })
                })
            },
        )
        .await;
    let pod: &Value = &pods["items"][0];
    let name = pod["metadata"]["name"].as_str().expect("a pod name");

    let browser = dashboard.signed_in(ADMIN, ADMIN_PASSWORD).await;
    // The overview puts it on top, with a link to why, and lists the
    // scheduler's warning.
    browser.wait_for_text(".failing", name).await;
    browser
        .wait_for_text("[data-live-id='warnings']", "FailedScheduling")
        .await;
    browser
        .goto(&dashboard.url(&format!("/t/acme/pods/{name}")))
        .await;
    let why = browser.text_of("#why").await;
    assert!(why.contains("Insufficient cpu"), "{why}");
    assert!(why.contains('2'), "the node count: {why}");
    browser.screenshot("pod-why-pending").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_pages_show_services_config_secrets_nodes_members_tokens_and_the_audit_log() {
    let dashboard = Dashboard::start(&[]).await;
    let admin = &dashboard.admin;
    create(
        admin,
        "/api/v1/tenants/acme/deployments",
        deployment("web", 2, "busybox:1"),
    )
    .await;
    create(
        admin,
        "/api/v1/tenants/acme/services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"type": "NodePort", "selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 8080}]}}),
    )
    .await;
    create(
        admin,
        "/api/v1/tenants/acme/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
               "data": {"greeting": "hello <b>world</b>"}}),
    )
    .await;
    create(
        admin,
        "/api/v1/tenants/acme/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
               "data": {"password": "czNjcmV0", "user": "YWRtaW4="}}),
    )
    .await;
    dashboard.member("viewer@example.com", "viewer").await;

    let browser = dashboard.signed_in(ADMIN, ADMIN_PASSWORD).await;
    browser.goto(&dashboard.url("/t/acme/services/web")).await;
    browser
        .wait_until("the Service's two ready endpoints", async || {
            let ready = browser
                .eval("document.querySelectorAll('#service-endpoints tr[data-pod]').length")
                .await;
            if ready == json!(2) {
                Ok(())
            } else {
                Err(format!("{ready} endpoints"))
            }
        })
        .await;
    browser.screenshot("service").await;

    browser
        .goto(&dashboard.url("/t/acme/configmaps/settings"))
        .await;
    assert_eq!(
        browser.text_of("#value-greeting").await,
        "hello <b>world</b>"
    );

    // A Secret's values stay masked until one is revealed, and then only it.
    browser.goto(&dashboard.url("/t/acme/secrets/db")).await;
    assert_eq!(browser.text_of("#value-password").await, "••••••");
    browser.click("#reveal-password").await;
    browser.wait_for_text("#value-password", "s3cret").await;
    assert_eq!(browser.text_of("#value-user").await, "••••••");
    browser.screenshot("secret-revealed").await;

    browser.goto(&dashboard.url("/nodes")).await;
    browser.wait_for_text("#nodes-ready", "2").await;
    browser.screenshot("nodes").await;

    browser.goto(&dashboard.url("/t/acme/members")).await;
    browser
        .wait_for_text("#members", "viewer@example.com")
        .await;

    // A new token is shown once.
    browser.goto(&dashboard.url("/t/acme/tokens")).await;
    browser.fill("#token-name", "ci").await;
    browser.click("#create-token").await;
    let token = browser.wait_for_text("#new-token", "berth_").await;
    let secret = token.text().await.expect("the new token");
    browser.wait_for_text("#tokens", "ci").await;
    browser.goto(&dashboard.url("/t/acme/tokens")).await;
    let page = browser.text_of("main").await;
    assert!(
        !page.contains(&secret),
        "the token's secret is shown only once"
    );

    browser.goto(&dashboard.url("/t/acme/audit")).await;
    browser.wait_for_text("#audit", "Secret").await;
    browser.goto(&dashboard.url("/t/acme/events")).await;
    browser.wait_for("#events").await;
    browser.screenshot("events").await;

    // A viewer sees the Secret's keys only, and why.
    let viewer = dashboard
        .signed_in("viewer@example.com", "member-secret-1")
        .await;
    viewer.goto(&dashboard.url("/t/acme/secrets/db")).await;
    let reveal = viewer.wait_for("#reveal-password").await;
    assert!(!reveal.is_enabled().await.expect("reading #reveal-password"));
    assert!(
        viewer
            .text_of("#reveal-reason")
            .await
            .contains("editors and above")
    );
    assert_eq!(viewer.text_of("#value-password").await, "••••••");
    viewer.goto(&dashboard.url("/nodes")).await;
    assert!(viewer.text_of("main").await.contains("403"));
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pod_list_comes_in_pages_of_200() {
    let dashboard = Dashboard::start(&[]).await;
    create(
        &dashboard.admin,
        "/api/v1/tenants/acme/deployments",
        deployment("many", 210, "busybox:1"),
    )
    .await;
    dashboard
        .admin
        .eventually("/api/v1/tenants/acme/pods", 30, "210 pods", |list| {
            list["items"]
                .as_array()
                .is_some_and(|pods| pods.len() == 210)
        })
        .await;
    let browser = dashboard.signed_in(ADMIN, ADMIN_PASSWORD).await;
    browser.goto(&dashboard.url("/t/acme/pods")).await;
    browser.wait_for_text("#pod-pages", "1–200 of 210").await;
    let rows = browser
        .eval("document.querySelectorAll('#pods tbody tr').length")
        .await;
    assert_eq!(rows, json!(200));
    browser.click("#pods-next").await;
    browser.wait_for_text("#pod-pages", "201–210 of 210").await;
    let rows = browser
        .eval("document.querySelectorAll('#pods tbody tr').length")
        .await;
    assert_eq!(rows, json!(10));
    browser.wait_for("#pods-previous").await;
}
