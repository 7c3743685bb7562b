//! Sign-in sessions over REST: login, refresh, logout, throttling, and the
//! error envelope for bad bodies.

use berth_tests::db::{TestBackend, TestDb, create_user};
use berth_tests::process::TestServer;
use serde_json::{Value, json};

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";

fn start(db: &TestDb) -> TestServer {
    TestServer::start(&db.url, &["--admin-password", ADMIN_PASSWORD])
}

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.process.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refresh_and_logout_make_and_end_sessions() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = start(&db);
    let (status, session) = post(
        &server,
        "/api/v1/auth/login",
        json!({"email": ADMIN, "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    for field in ["token", "expiresAt", "refreshToken"] {
        assert!(
            session[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} missing: {session}"
        );
    }
    let expires =
        chrono::DateTime::parse_from_rfc3339(session["expiresAt"].as_str().unwrap()).unwrap();
    let minutes = (expires.timestamp() - chrono::Utc::now().timestamp()) / 60;
    assert!(
        (14..=15).contains(&minutes),
        "access tokens live 15 minutes, not {minutes}"
    );

    // A refresh token buys a new session once.
    let refresh = session["refreshToken"].clone();
    let (status, renewed) = post(
        &server,
        "/api/v1/auth/refresh",
        json!({"refreshToken": refresh}),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    assert_ne!(renewed["refreshToken"], refresh, "refresh tokens rotate");
    let (status, again) = post(
        &server,
        "/api/v1/auth/refresh",
        json!({"refreshToken": refresh}),
    )
    .await;
    assert_eq!(status, 401, "a spent refresh token is refused: {again}");
    assert_eq!(again["error"]["code"], "Unauthorized");

    // Logout revokes.
    let current = renewed["refreshToken"].clone();
    let logout = reqwest::Client::new()
        .post(server.process.url("/api/v1/auth/logout"))
        .json(&json!({"refreshToken": current}))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let (status, _) = post(
        &server,
        "/api/v1/auth/refresh",
        json!({"refreshToken": current}),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_never_tell_whether_the_email_exists_and_end_in_429() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let server = start(&db);
    let store = db.open().await;
    create_user(&store, "alice@acme.test", "alice-password", None).await;

    let (unknown_status, unknown) = post(
        &server,
        "/api/v1/auth/login",
        json!({"email": "nobody@acme.test", "password": "x"}),
    )
    .await;
    let (wrong_status, wrong) = post(
        &server,
        "/api/v1/auth/login",
        json!({"email": "alice@acme.test", "password": "x"}),
    )
    .await;
    assert_eq!((unknown_status, wrong_status), (401, 401));
    assert_eq!(
        unknown, wrong,
        "the same answer for an unknown email and a wrong password"
    );

    // Alice's account locks after five failures, even for the right password.
    for _ in 0..4 {
        let (status, _) = post(
            &server,
            "/api/v1/auth/login",
            json!({"email": "alice@acme.test", "password": "x"}),
        )
        .await;
        assert_eq!(status, 401);
    }
    let response = reqwest::Client::new()
        .post(server.process.url("/api/v1/auth/login"))
        .json(&json!({"email": "alice@acme.test", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 60, "locked for a while, not {retry_after} s");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    // Another account from the same address still signs in.
    let (status, _) = post(
        &server,
        "/api/v1/auth/login",
        json!({"email": ADMIN, "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_answer_the_error_envelope_with_a_4xx() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = start(&db);
    let client = reqwest::Client::new();
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "malformed JSON",
            client
                .post(server.process.url("/api/v1/auth/login"))
                .header("content-type", "application/json")
                .body("{not json"),
        ),
        (
            "wrong content type",
            client
                .post(server.process.url("/api/v1/auth/login"))
                .header("content-type", "text/plain")
                .body("{}"),
        ),
        (
            "missing field",
            client
                .post(server.process.url("/api/v1/auth/login"))
                .json(&json!({"email": ADMIN})),
        ),
        (
            "unknown field",
            client
                .post(server.process.url("/api/v1/auth/login"))
                .json(&json!({"email": ADMIN, "password": "x", "admin": true})),
        ),
        (
            "wrong type",
            client
                .post(server.process.url("/api/v1/auth/login"))
                .json(&json!({"email": 5, "password": "x"})),
        ),
        (
            "oversize",
            client
                .post(server.process.url("/api/v1/auth/login"))
                .header("content-type", "application/json")
                .body(vec![b' '; 2 * 1024 * 1024]),
        ),
    ];
    for (name, request) in cases {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let (want_status, want_code) = match name {
            "wrong content type" => (415, "UnsupportedMediaType"),
            "oversize" => (413, "PayloadTooLarge"),
            _ => (400, "BadRequest"),
        };
        assert_eq!(status, want_status, "{name}: {body}");
        assert_eq!(body["error"]["code"], want_code, "{name}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {body}"
        );
        assert!(body["error"]["details"].is_array(), "{name}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_orphaned_tokens_are_refused_by_the_rest_api() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = start(&db);
    let api = berth_tests::rest::Api::new(server.process.url(""));
    let admin = api.login(ADMIN, ADMIN_PASSWORD).await;
    let (status, _) = admin.get("/api/v1/users/me").await;
    assert_eq!(status, 200, "the real token works");
    let (_, session) = post(
        &server,
        "/api/v1/auth/login",
        json!({"email": ADMIN, "password": ADMIN_PASSWORD}),
    )
    .await;
    let good = session["token"].as_str().unwrap();
    let store = db.open().await;
    let secret = store.signing_secret().await.unwrap();
    for (name, token) in berth_tests::tokens::forged(good, &secret) {
        let (status, body) = api.with_token(token).get("/api/v1/users/me").await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error"]["code"], "Unauthorized", "{name}: {body}");
    }
    // The token of a user who has since been deleted.
    let user = create_user(&store, "gone@example.com", "gone-password-1", None).await;
    let gone = api.login("gone@example.com", "gone-password-1").await;
    assert_eq!(gone.get("/api/v1/users/me").await.0, 200);
    store.delete_user(user.id).await.unwrap();
    let (status, body) = gone.get("/api/v1/users/me").await;
    assert_eq!(status, 401, "a deleted user's token: {body}");
    // No token, and a header that is not a bearer.
    assert_eq!(api.get("/api/v1/users/me").await.0, 401);
    let (status, _) = berth_tests::rest::Api::send(
        api.request(reqwest::Method::GET, "/api/v1/users/me")
            .header("Authorization", "Basic YTpi"),
    )
    .await;
    assert_eq!(status, 401);
    store.close().await;
}
