//! Node join tokens made over REST by the platform admin: an agent
//! registers with one, nobody registers with it once it is revoked, its
//! secret is shown only once, and nobody but the platform admin touches
//! them.

use berth_api::node::v1 as pb;
use berth_api::node::v1::node_service_client::NodeServiceClient;
use berth_tests::db::{TestBackend, TestDb, create_user};
use berth_tests::process::{AgentProcess, TestServer};
use berth_tests::rest::Api;
use serde_json::{Value, json};

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";
const JOIN_TOKENS: &str = "/api/v1/nodes/join-tokens";

/// A server and its platform admin, signed in.
async fn setup() -> (TestDb, TestServer, Api) {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = TestServer::start(&db.url, &["--admin-password", ADMIN_PASSWORD]);
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    (db, server, admin)
}

/// Registers `node` with `join_token` over the node API.
async fn register(server: &TestServer, join_token: &str, node: &str) -> Result<(), tonic::Status> {
    let mut client = NodeServiceClient::connect(format!("http://{}", server.process.grpc_addr))
        .await
        .expect("connecting to the node API");
    client
        .register(pb::RegisterRequest {
            join_token: join_token.into(),
            node_name: node.into(),
            ..pb::RegisterRequest::default()
        })
        .await
        .map(drop)
}

fn parse_time(text: &Value) -> chrono::DateTime<chrono::Utc> {
    text.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("an RFC 3339 time: {text}"))
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_registers_with_a_join_token_the_admin_made_and_nobody_after_it_is_revoked() {
    let (_db, server, admin) = setup().await;
    let (status, made) = admin
        .post(
            JOIN_TOKENS,
            json!({"description": "rack 7", "ttlSeconds": 3600}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().expect("the secret").to_owned();
    assert!(token.starts_with("bjoin_"), "{made}");
    assert_eq!(made["description"], "rack 7");
    let lifetime = parse_time(&made["expiresAt"]) - parse_time(&made["createdAt"]);
    assert!(
        (3599..=3601).contains(&lifetime.num_seconds()),
        "expires an hour after it was made: {made}"
    );

    // Lists never show a secret.
    let (status, list) = admin.get(JOIN_TOKENS).await;
    assert_eq!(status, 200, "{list}");
    let listed: Vec<&Value> = list["items"].as_array().unwrap().iter().collect();
    assert_eq!(
        listed
            .iter()
            .map(|t| t["description"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["rack 7", "bootstrap"],
        "newest first: {list}"
    );
    assert!(
        !list.to_string().contains(&token) && listed.iter().all(|t| t.get("token").is_none()),
        "{list}"
    );

    // An agent registers with it and its node turns Ready.
    let _agent = AgentProcess::sim_with_token(&server, &token, "rack7", 1, &[]);
    admin
        .eventually("/api/v1/nodes/rack7", 30, "the node registers", |node| {
            node["status"]["conditions"]
                .as_array()
                .is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .await;

    // Revoked, it registers nobody; revoking again is fine; an unknown id
    // is not found.
    let id = made["id"].as_i64().unwrap();
    let (status, body) = admin.delete(&format!("{JOIN_TOKENS}/{id}")).await;
    assert_eq!(status, 204, "{body}");
    let refused = register(&server, &token, "rack8")
        .await
        .expect_err("a revoked token registers nobody");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let (status, _) = admin.delete(&format!("{JOIN_TOKENS}/{id}")).await;
    assert_eq!(status, 204);
    for unknown in ["9999", "x"] {
        let (status, body) = admin.delete(&format!("{JOIN_TOKENS}/{unknown}")).await;
        assert_eq!(status, 404, "{body}");
    }
    let (_, list) = admin.get(JOIN_TOKENS).await;
    assert_eq!(list["items"][0]["revoked"], true, "{list}");

    // A token made without a body never expires, and works.
    let response = admin
        .request(reqwest::Method::POST, JOIN_TOKENS)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let made: Value = response.json().await.unwrap();
    assert_eq!(made["expiresAt"], Value::Null, "{made}");
    assert_eq!(made["description"], "", "{made}");
    register(&server, made["token"].as_str().unwrap(), "rack9")
        .await
        .expect("a fresh token registers a node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tokens_are_the_platform_admins_alone_and_bad_requests_name_the_field() {
    let (db, server, admin) = setup().await;
    let (status, body) = admin.post("/api/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{body}");
    let store = db.open().await;
    create_user(
        &store,
        "owner@acme.test",
        "owner-secret-1",
        Some(("acme", "owner")),
    )
    .await;
    store.close().await;
    let owner = Api::new(server.process.url(""))
        .login("owner@acme.test", "owner-secret-1")
        .await;
    let (status, made) = admin.post(JOIN_TOKENS, json!({})).await;
    assert_eq!(status, 201, "{made}");
    for (status, answer) in [
        owner.post(JOIN_TOKENS, json!({})).await,
        owner.get(JOIN_TOKENS).await,
        owner.delete(&format!("{JOIN_TOKENS}/{}", made["id"])).await,
    ] {
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["error"]["code"], "Forbidden", "{answer}");
    }
    let (status, _) = Api::new(server.process.url("")).get(JOIN_TOKENS).await;
    assert_eq!(status, 401);

    for (body, field) in [
        (json!({"ttlSeconds": 5}), "ttlSeconds"),
        (json!({"ttlSeconds": -60}), "ttlSeconds"),
        (json!({"ttlSeconds": "1h"}), "ttlSeconds"),
        (json!({"description": "x".repeat(101)}), "description"),
        (json!({"name": "rack 7"}), "name"),
    ] {
        let (status, answer) = admin.post(JOIN_TOKENS, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(
            answer["error"]["details"][0]["field"], field,
            "{body}: {answer}"
        );
    }
    let response = admin
        .request(reqwest::Method::POST, JOIN_TOKENS)
        .header("Content-Type", "text/plain")
        .body("rack 7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // Nothing was made by the refused requests.
    let (_, list) = admin.get(JOIN_TOKENS).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
}
