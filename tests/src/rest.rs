//! A small client for Berth's REST API, as tests use it: every call answers
//! the status and the JSON body (`Null` when the body is not JSON).

use serde_json::{Value, json};

/// A client for one server, signed in or not.
#[derive(Clone)]
pub struct Api {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Api {
    /// An anonymous client for the server at `base` (`http://host:port`).
    pub fn new(base: impl Into<String>) -> Api {
        Api {
            base: base.into(),
            client: reqwest::Client::new(),
            token: None,
        }
    }

    /// The same server, with `token` as the bearer.
    pub fn with_token(&self, token: impl Into<String>) -> Api {
        Api {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// Signs in; panics when the server refuses.
    pub async fn login(&self, email: &str, password: &str) -> Api {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "signing in as {email}: {body}");
        self.with_token(body["token"].as_str().expect("a token"))
    }

    /// The bearer token, when signed in.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request builder with the bearer set.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends a built request; answers status and JSON body.
    pub async fn send(builder: reqwest::RequestBuilder) -> (u16, Value) {
        let response = builder.send().await.expect("sending a request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        Api::send(self.request(reqwest::Method::GET, path)).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        Api::send(self.request(reqwest::Method::POST, path).json(&body)).await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        Api::send(self.request(reqwest::Method::PUT, path).json(&body)).await
    }

    /// PATCH with a JSON merge patch.
    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        Api::send(
            self.request(reqwest::Method::PATCH, path)
                .header("Content-Type", "application/merge-patch+json")
                .body(body.to_string()),
        )
        .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        Api::send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// As the platform admin: makes `tenant` unless it exists, a user
    /// `email` with `password`, and gives them `role` in the tenant.
    pub async fn add_member(&self, tenant: &str, email: &str, password: &str, role: &str) {
        let (status, body) = self.post("/api/v1/tenants", json!({"name": tenant})).await;
        assert!(
            status == 201 || status == 409,
            "creating tenant {tenant}: {body}"
        );
        let (status, body) = self
            .post(
                "/api/v1/users",
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, 201, "creating user {email}: {body}");
        let (status, body) = self
            .post(
                &format!("/api/v1/tenants/{tenant}/members"),
                json!({"email": email, "role": role}),
            )
            .await;
        assert!(
            status == 201 || status == 200,
            "adding {email} to {tenant}: {body}"
        );
    }

    /// GETs `path` every 200 ms until it answers 200 with a body for which
    /// `check` holds, and answers that body; panics with `what` and the
    /// last answer after `seconds`.
    pub async fn eventually(
        &self,
        path: &str,
        seconds: u64,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let (status, body) = self.get(path).await;
            if status == 200 && check(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {status} {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// The names of the nodes whose `Ready` condition is `True` in the answer
/// to `GET /api/v1/nodes`.
pub fn ready_node_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|node| {
            node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|node| node["metadata"]["name"].as_str())
        .map(str::to_owned)
        .collect()
}
