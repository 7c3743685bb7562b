//! Accounts over REST: users (platform admin), tenants and their members,
//! API tokens, and who may do what with each.

use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::TestServer;
use berth_tests::rest::Api;
use etcd_client::{Client, ConnectOptions};
use serde_json::{Value, json};

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";
const PASSWORD: &str = "user-password-1";

/// A server on a fresh database, with its platform admin signed in.
struct Platform {
    server: TestServer,
    admin: Api,
    // Dropped last: the server uses it.
    _db: TestDb,
}

impl Platform {
    async fn start(backend: TestBackend) -> Platform {
        let db = TestDb::new(backend).await;
        let server = TestServer::start(&db.url, &["--admin-password", ADMIN_PASSWORD]);
        let admin = Api::new(server.process.url(""))
            .login(ADMIN, ADMIN_PASSWORD)
            .await;
        Platform {
            server,
            admin,
            _db: db,
        }
    }

    /// An anonymous client.
    fn anonymous(&self) -> Api {
        Api::new(self.server.process.url(""))
    }

    /// Creates a user through the API and signs them in.
    async fn user(&self, email: &str) -> Api {
        let (status, body) = self
            .admin
            .post(
                "/api/v1/users",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 201, "creating {email}: {body}");
        self.anonymous().login(email, PASSWORD).await
    }

    /// The user's id, as `/users/me` tells it.
    async fn id_of(api: &Api) -> i64 {
        let (status, me) = api.get("/api/v1/users/me").await;
        assert_eq!(status, 200, "{me}");
        me["id"].as_i64().expect("an id")
    }
}

/// Asserts the error envelope with `code`.
fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error says what went wrong: {body}"
    );
}

/// The fields the details of a 400 name.
fn detail_fields(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .map(|details| {
            details
                .iter()
                .filter_map(|d| d["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn create_tenant(api: &Api, name: &str) {
    let (status, body) = api.post("/api/v1/tenants", json!({"name": name})).await;
    assert_eq!(status, 201, "creating tenant {name}: {body}");
}

async fn add_member(api: &Api, tenant: &str, email: &str, role: &str) -> (u16, Value) {
    api.post(
        &format!("/api/v1/tenants/{tenant}/members"),
        json!({"email": email, "role": role}),
    )
    .await
}

async fn role_of(api: &Api, tenant: &str, user_id: i64) -> Option<String> {
    let (status, members) = api.get(&format!("/api/v1/tenants/{tenant}/members")).await;
    assert_eq!(status, 200, "{members}");
    members["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|m| m["userId"] == user_id)
        .map(|m| m["role"].as_str().expect("a role").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_platform_admin_creates_and_lists_users() {
    let platform = Platform::start(TestBackend::Sqlite).await;
    let (status, created) = platform
        .admin
        .post(
            "/api/v1/users",
            json!({"email": "dev@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["email"], "dev@example.com");
    assert_eq!(created["platformAdmin"], false);
    assert!(created["id"].as_i64().is_some(), "{created}");
    assert!(
        created.get("password").is_none() && created.get("passwordHash").is_none(),
        "no password in answers: {created}"
    );

    let (status, body) = platform
        .admin
        .post(
            "/api/v1/users",
            json!({"email": "dev@example.com", "password": "another-password"}),
        )
        .await;
    assert_error(status, &body, 409, "AlreadyExists");

    let (status, body) = platform
        .admin
        .post(
            "/api/v1/users",
            json!({"email": "short@example.com", "password": "1234567"}),
        )
        .await;
    assert_error(status, &body, 400, "BadRequest");
    assert_eq!(detail_fields(&body), ["password"]);

    let (status, body) = platform
        .admin
        .post(
            "/api/v1/users",
            json!({"email": "not-an-email", "password": PASSWORD}),
        )
        .await;
    assert_error(status, &body, 400, "BadRequest");
    assert_eq!(detail_fields(&body), ["email"]);

    let long = format!("{}@example.com", "a".repeat(250));
    let (status, body) = platform
        .admin
        .post(
            "/api/v1/users",
            json!({"email": long, "password": PASSWORD}),
        )
        .await;
    assert_error(status, &body, 400, "BadRequest");
    assert_eq!(detail_fields(&body), ["email"]);

    // The new user signs in, sees themselves, and may not make accounts.
    let dev = platform
        .anonymous()
        .login("dev@example.com", PASSWORD)
        .await;
    let (status, me) = dev.get("/api/v1/users/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "dev@example.com");
    assert_eq!(me["platformAdmin"], false);
    assert_eq!(me["tenants"], json!([]));
    let (status, body) = dev
        .post(
            "/api/v1/users",
            json!({"email": "friend@example.com", "password": PASSWORD}),
        )
        .await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = dev.get("/api/v1/users").await;
    assert_error(status, &body, 403, "Forbidden");

    let (status, users) = platform.admin.get("/api/v1/users").await;
    assert_eq!(status, 200, "{users}");
    let emails: Vec<&str> = users["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(emails, [ADMIN, "dev@example.com"]);

    let (status, body) = platform.anonymous().get("/api/v1/users/me").await;
    assert_error(status, &body, 401, "Unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_creates_a_tenant_owns_it_and_names_must_be_dns_labels() {
    let platform = Platform::start(TestBackend::Sqlite).await;
    let dev = platform.user("dev@example.com").await;
    let (status, created) = dev.post("/api/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "acme");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created["createdAt"].as_str().unwrap()).is_ok(),
        "{created}"
    );

    let (status, tenants) = dev.get("/api/v1/tenants").await;
    assert_eq!(status, 200, "{tenants}");
    assert_eq!(tenants["items"].as_array().unwrap().len(), 1, "{tenants}");
    assert_eq!(tenants["items"][0]["name"], "acme");
    assert_eq!(tenants["items"][0]["role"], "owner");

    let (status, tenant) = dev.get("/api/v1/tenants/acme").await;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["role"], "owner");
    assert_eq!(tenant["memberCount"], 1);

    for bad in ["Acme", "-acme", "acme_corp", "", &"a".repeat(64)] {
        let (status, body) = dev.post("/api/v1/tenants", json!({"name": bad})).await;
        assert_error(status, &body, 400, "BadRequest");
        assert_eq!(body["error"]["details"][0]["field"], "name", "{body}");
    }
    let (status, body) = dev.post("/api/v1/tenants", json!({"name": "acme"})).await;
    assert_error(status, &body, 409, "AlreadyExists");
    let (status, body) = platform
        .admin
        .post("/api/v1/tenants", json!({"name": "acme", "extra": 1}))
        .await;
    assert_error(status, &body, 400, "BadRequest");

    // The platform admin sees every tenant, with no role where not a member.
    create_tenant(&platform.admin, "globex").await;
    let (status, tenants) = platform.admin.get("/api/v1/tenants").await;
    assert_eq!(status, 200, "{tenants}");
    assert_eq!(
        tenants["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].clone(), t["role"].clone()))
            .collect::<Vec<_>>(),
        [
            (json!("acme"), Value::Null),
            (json!("globex"), json!("owner"))
        ]
    );
    let (_, tenants) = dev.get("/api/v1/tenants").await;
    assert_eq!(tenants["items"].as_array().unwrap().len(), 1, "{tenants}");
}

async fn owners_and_admins_manage_members_within_their_rank(backend: TestBackend) {
    let platform = Platform::start(backend).await;
    let owner = platform.user("owner@example.com").await;
    let member = platform.user("member@example.com").await;
    let stranger = platform.user("stranger@example.com").await;
    let owner_id = Platform::id_of(&owner).await;
    let member_id = Platform::id_of(&member).await;
    create_tenant(&owner, "acme").await;

    let (status, added) = add_member(&owner, "acme", "member@example.com", "viewer").await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(
        added,
        json!({"userId": member_id, "email": "member@example.com", "role": "viewer"})
    );

    // A viewer reads the members but changes nothing.
    let (status, members) = member.get("/api/v1/tenants/acme/members").await;
    assert_eq!(status, 200, "{members}");
    assert_eq!(members["items"].as_array().unwrap().len(), 2, "{members}");
    let (status, body) = add_member(&member, "acme", "stranger@example.com", "viewer").await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = member
        .delete(&format!("/api/v1/tenants/acme/members/{owner_id}"))
        .await;
    assert_error(status, &body, 403, "Forbidden");

    // Someone outside is told the tenant does not exist.
    for path in ["/api/v1/tenants/acme", "/api/v1/tenants/acme/members"] {
        let (status, body) = stranger.get(path).await;
        assert_error(status, &body, 404, "NotFound");
    }
    let (status, body) = add_member(&stranger, "acme", "stranger@example.com", "owner").await;
    assert_error(status, &body, 404, "NotFound");

    // Bad requests from an owner name the field.
    let (status, body) = add_member(&owner, "acme", "nobody@example.com", "viewer").await;
    assert_error(status, &body, 400, "BadRequest");
    assert_eq!(detail_fields(&body), ["email"]);
    let (status, body) = add_member(&owner, "acme", "stranger@example.com", "superuser").await;
    assert_error(status, &body, 400, "BadRequest");
    assert_eq!(detail_fields(&body), ["role"]);

    // Changing a role answers 200.
    let (status, changed) = add_member(&owner, "acme", "member@example.com", "admin").await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["role"], "admin");

    // An admin adds people up to admin, but never makes an owner, nor
    // touches one.
    let (status, body) = add_member(&member, "acme", "stranger@example.com", "owner").await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = add_member(&member, "acme", "member@example.com", "owner").await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = add_member(&member, "acme", "owner@example.com", "viewer").await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = member
        .delete(&format!("/api/v1/tenants/acme/members/{owner_id}"))
        .await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = add_member(&member, "acme", "stranger@example.com", "editor").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        Platform::id_of(&stranger).await,
        body["userId"].as_i64().unwrap()
    );
    let (status, tenant) = stranger.get("/api/v1/tenants/acme").await;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["role"], "editor");

    // The last owner can neither leave nor be demoted.
    let (status, body) = owner
        .delete(&format!("/api/v1/tenants/acme/members/{owner_id}"))
        .await;
    assert_error(status, &body, 409, "Conflict");
    let (status, body) = add_member(&owner, "acme", "owner@example.com", "admin").await;
    assert_error(status, &body, 409, "Conflict");
    assert_eq!(
        role_of(&owner, "acme", owner_id).await.as_deref(),
        Some("owner")
    );

    // With a second owner, the first may step down and then leave.
    let (status, body) = add_member(&owner, "acme", "member@example.com", "owner").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = add_member(&owner, "acme", "owner@example.com", "admin").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = member
        .delete(&format!("/api/v1/tenants/acme/members/{owner_id}"))
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(role_of(&member, "acme", owner_id).await, None);
    let (status, body) = owner.get("/api/v1/tenants/acme").await;
    assert_error(status, &body, 404, "NotFound");
    let (status, body) = member
        .delete(&format!("/api/v1/tenants/acme/members/{owner_id}"))
        .await;
    assert_error(status, &body, 404, "NotFound");
    let (status, body) = member.delete("/api/v1/tenants/acme/members/x").await;
    assert_error(status, &body, 404, "NotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_admins_manage_members_within_their_rank_on_sqlite() {
    owners_and_admins_manage_members_within_their_rank(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_admins_manage_members_within_their_rank_on_postgres() {
    owners_and_admins_manage_members_within_their_rank(TestBackend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_acts_in_its_tenant_with_at_most_its_makers_role_until_revoked() {
    let platform = Platform::start(TestBackend::Sqlite).await;
    let owner = platform.user("owner@example.com").await;
    let admin = platform.user("admin@example.com").await;
    let viewer = platform.user("viewer@example.com").await;
    let stranger = platform.user("stranger@example.com").await;
    let admin_id = Platform::id_of(&admin).await;
    create_tenant(&owner, "acme").await;
    create_tenant(&owner, "globex").await;
    add_member(&owner, "acme", "admin@example.com", "admin").await;
    add_member(&owner, "acme", "viewer@example.com", "viewer").await;

    let (status, created) = admin
        .post(
            "/api/v1/tokens",
            json!({"tenant": "acme", "role": "editor", "name": "ci deploys"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["token"].as_str().expect("the secret").to_owned();
    assert!(
        secret.starts_with("berth_") && secret.len() > 40,
        "{secret}"
    );
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["role"], "editor");
    assert_eq!(created["name"], "ci deploys");
    assert_eq!(created["expiresAt"], Value::Null);
    let token_id = created["id"].as_i64().expect("an id");

    // The token signs requests in like a session, in its tenant only.
    let ci = platform.anonymous().with_token(&secret);
    let (status, me) = ci.get("/api/v1/users/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], admin_id);
    assert_eq!(me["apiToken"], token_id);
    assert_eq!(me["tenants"], json!([{"name": "acme", "role": "editor"}]));
    let (status, tenant) = ci.get("/api/v1/tenants/acme").await;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["role"], "editor");
    let (status, body) = ci.get("/api/v1/tenants/globex").await;
    assert_error(status, &body, 404, "NotFound");

    // A token makes no tenants and no tokens.
    let (status, body) = ci.post("/api/v1/tenants", json!({"name": "ci-made"})).await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = ci
        .post(
            "/api/v1/tokens",
            json!({"tenant": "acme", "role": "viewer", "name": "child"}),
        )
        .await;
    assert_error(status, &body, 403, "Forbidden");

    // Nobody hands a token more than their own role, or acts where they may
    // not.
    let (status, body) = admin
        .post(
            "/api/v1/tokens",
            json!({"tenant": "acme", "role": "owner", "name": "too strong"}),
        )
        .await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = viewer
        .post(
            "/api/v1/tokens",
            json!({"tenant": "acme", "role": "viewer", "name": "mine"}),
        )
        .await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = stranger
        .post(
            "/api/v1/tokens",
            json!({"tenant": "acme", "role": "viewer", "name": "mine"}),
        )
        .await;
    assert_error(status, &body, 404, "NotFound");
    let (status, body) = admin
        .post(
            "/api/v1/tokens",
            json!({"tenant": "acme", "role": "boss", "name": "", "expiresInSeconds": 30}),
        )
        .await;
    assert_error(status, &body, 400, "BadRequest");
    assert_eq!(detail_fields(&body), ["role", "name", "expiresInSeconds"]);

    let (status, expiring) = owner
        .post(
            "/api/v1/tokens",
            json!({"tenant": "acme", "role": "owner", "name": "short", "expiresInSeconds": 3600}),
        )
        .await;
    assert_eq!(status, 201, "{expiring}");
    let expires =
        chrono::DateTime::parse_from_rfc3339(expiring["expiresAt"].as_str().unwrap()).unwrap();
    let minutes = (expires.timestamp() - chrono::Utc::now().timestamp()) / 60;
    assert!((59..=60).contains(&minutes), "{expiring}");

    // Lists never show secrets, and only to the tenant's admins.
    let (status, tokens) = admin.get("/api/v1/tokens?tenant=acme").await;
    assert_eq!(status, 200, "{tokens}");
    let items = tokens["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{tokens}");
    assert!(
        items.iter().all(|t| t.get("token").is_none()),
        "no secrets: {tokens}"
    );
    let listed = tokens.to_string();
    assert!(!listed.contains(&secret), "no secrets: {tokens}");
    assert!(
        !listed.contains(expiring["token"].as_str().unwrap()),
        "no secrets: {tokens}"
    );
    let ci_token = items.iter().find(|t| t["id"] == token_id).expect("listed");
    assert_eq!(ci_token["userId"], admin_id);
    assert_eq!(ci_token["revoked"], false);
    let (status, body) = viewer.get("/api/v1/tokens?tenant=acme").await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = stranger.get("/api/v1/tokens?tenant=acme").await;
    assert_error(status, &body, 404, "NotFound");
    let (status, body) = admin.get("/api/v1/tokens").await;
    assert_error(status, &body, 400, "BadRequest");

    // Revoking: only the tenant's admins, and outsiders learn nothing.
    let (status, body) = stranger.delete(&format!("/api/v1/tokens/{token_id}")).await;
    assert_error(status, &body, 404, "NotFound");
    let (status, unknown) = stranger.delete("/api/v1/tokens/999999").await;
    assert_error(status, &unknown, 404, "NotFound");
    assert_eq!(
        body["error"]["message"]
            .as_str()
            .map(|m| m.replace(&token_id.to_string(), "ID")),
        unknown["error"]["message"]
            .as_str()
            .map(|m| m.replace("999999", "ID")),
        "an unknown token and another tenant's token look alike"
    );
    let (status, body) = viewer.delete(&format!("/api/v1/tokens/{token_id}")).await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = owner.delete(&format!("/api/v1/tokens/{token_id}")).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = ci.get("/api/v1/users/me").await;
    assert_error(status, &body, 401, "Unauthorized");
    let (_, tokens) = admin.get("/api/v1/tokens?tenant=acme").await;
    let revoked = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == token_id)
        .expect("still listed")
        .clone();
    assert_eq!(revoked["revoked"], true, "{tokens}");
}

async fn deleting_a_tenant_removes_its_objects_members_and_tokens(backend: TestBackend) {
    let platform = Platform::start(backend).await;
    let owner = platform.user("owner@example.com").await;
    let editor = platform.user("editor@example.com").await;
    create_tenant(&owner, "acme").await;
    create_tenant(&owner, "acme2").await;
    add_member(&owner, "acme", "editor@example.com", "editor").await;
    let (status, created) = owner
        .post(
            "/api/v1/tokens",
            json!({"tenant": "acme", "role": "admin", "name": "ci"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let ci = platform
        .anonymous()
        .with_token(created["token"].as_str().unwrap());
    assert_eq!(ci.get("/api/v1/tenants/acme").await.0, 200);

    // Objects of both tenants, straight through the etcd API.
    let mut etcd = Client::connect(
        [platform.server.etcd_endpoint()],
        Some(ConnectOptions::new().with_user(ADMIN, ADMIN_PASSWORD)),
    )
    .await
    .expect("connecting to the etcd API");
    for key in [
        "/registry/pods/acme/web",
        "/registry/configmaps/acme/settings",
        "/registry/pods/acme2/web",
    ] {
        etcd.put(key, "{}", None).await.expect("putting a key");
    }

    let (status, body) = editor.delete("/api/v1/tenants/acme").await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = ci.delete("/api/v1/tenants/acme").await;
    assert_error(status, &body, 403, "Forbidden");
    let (status, body) = owner.delete("/api/v1/tenants/acme").await;
    assert_eq!(status, 204, "{body}");

    for api in [&owner, &editor] {
        let (status, body) = api.get("/api/v1/tenants/acme").await;
        assert_error(status, &body, 404, "NotFound");
        let (_, me) = api.get("/api/v1/users/me").await;
        assert!(
            me["tenants"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["name"] != "acme"),
            "no membership survives: {me}"
        );
    }
    let (status, body) = platform.admin.get("/api/v1/tenants/acme").await;
    assert_error(status, &body, 404, "NotFound");
    let (status, body) = ci.get("/api/v1/users/me").await;
    assert_error(status, &body, 401, "Unauthorized");

    let remaining = etcd
        .get(
            "/registry/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("reading keys");
    let keys: Vec<&str> = remaining
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok())
        .collect();
    assert_eq!(keys, ["/registry/pods/acme2/web"]);

    // The name is free again, and the new tenant starts empty.
    create_tenant(&editor, "acme").await;
    let (status, members) = editor.get("/api/v1/tenants/acme/members").await;
    assert_eq!(status, 200, "{members}");
    assert_eq!(members["items"].as_array().unwrap().len(), 1, "{members}");
    let (status, tokens) = editor.get("/api/v1/tokens?tenant=acme").await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_removes_its_objects_members_and_tokens_on_sqlite() {
    deleting_a_tenant_removes_its_objects_members_and_tokens(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_removes_its_objects_members_and_tokens_on_postgres() {
    deleting_a_tenant_removes_its_objects_members_and_tokens(TestBackend::Postgres).await;
}
