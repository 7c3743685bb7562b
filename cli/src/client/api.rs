//! The HTTP client every verb uses: it knows the server, the tenant and
//! the credentials (`BERTH_TOKEN`, or the context's session, renewed with
//! its refresh token when the access token has expired), and turns the
//! API's error envelope into a [`CliError`] that says what happened.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::GlobalArgs;
use super::config::{ConfigFile, Context};
use super::error::{CliError, FieldDetail};

/// What a request carries.
pub enum Body {
    /// Nothing.
    Empty,
    /// A JSON document.
    Json(Value),
    /// A JSON merge patch.
    MergePatch(Value),
    /// A file as the user wrote it, with its content type.
    Bytes(Vec<u8>, &'static str),
}

/// How requests are signed.
#[derive(Clone)]
enum Credentials {
    /// Nobody is signed in.
    None,
    /// `BERTH_TOKEN`: an API token or an access token, used as it is.
    Environment(String),
    /// A context's session.
    Session {
        /// The context the session is kept in.
        context: String,
        token: Option<String>,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        refresh_token: Option<String>,
    },
}

/// A client of one server, in one tenant.
pub struct Client {
    http: reqwest::Client,
    server: String,
    tenant: Option<String>,
    credentials: Mutex<Credentials>,
}

/// A session as `/auth/login` and `/auth/refresh` answer it.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionTokens {
    /// The access token.
    pub token: String,
    /// When it expires.
    pub expires_at: String,
    /// What renews it.
    pub refresh_token: String,
}

/// The server's URL without a trailing slash, with `http://` when no
/// scheme is given.
pub fn normalize_server(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

fn parse_time(text: Option<&str>) -> Option<chrono::DateTime<chrono::Utc>> {
    text.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The HTTP client with the settings every command wants.
pub fn http_client() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .user_agent(concat!("berth-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CliError::Failed(format!("cannot set up HTTP: {e}")))
}

impl Client {
    /// The client the options and the config file describe. A context's
    /// session is used only with the context's own server: a `--server`
    /// elsewhere never receives it.
    pub fn new(global: &GlobalArgs) -> Result<Client, CliError> {
        let (_, file) = ConfigFile::load()?;
        let context = file.context(global.context.as_deref());
        if let (Some(wanted), None) = (&global.context, &context) {
            return Err(CliError::Usage(format!(
                "there is no context {wanted:?} in the config file; `berth context list` shows them"
            )));
        }
        let server = match (&global.server, &context) {
            (Some(server), _) => normalize_server(server),
            (None, Some((_, context))) => normalize_server(&context.server),
            (None, None) => {
                return Err(CliError::NotSignedIn(
                    "no server: sign in with `berth login --server URL`, or set BERTH_SERVER"
                        .into(),
                ));
            }
        };
        let own_context = context.filter(|(_, c)| normalize_server(&c.server) == server);
        let tenant = global
            .tenant
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| own_context.and_then(|(_, c)| c.tenant.clone()));
        let credentials = match std::env::var("BERTH_TOKEN") {
            Ok(token) if !token.trim().is_empty() => Credentials::Environment(token.trim().into()),
            _ => match own_context {
                Some((name, context)) => Credentials::Session {
                    context: name.to_owned(),
                    token: context.token.clone(),
                    expires_at: parse_time(context.expires_at.as_deref()),
                    refresh_token: context.refresh_token.clone(),
                },
                None => Credentials::None,
            },
        };
        Ok(Client {
            http: http_client()?,
            server,
            tenant,
            credentials: Mutex::new(credentials),
        })
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The tenant commands act in.
    pub fn tenant(&self) -> Result<&str, CliError> {
        self.tenant.as_deref().ok_or_else(|| {
            CliError::Usage(
                "no tenant chosen: run `berth tenant use NAME` (or `berth tenant list`), \
                 pass --tenant, or set BERTH_TENANT"
                    .into(),
            )
        })
    }

    /// `/api/v1/tenants/{tenant}` followed by `rest`.
    pub fn tenant_path(&self, rest: &str) -> Result<String, CliError> {
        Ok(format!("/api/v1/tenants/{}{rest}", self.tenant()?))
    }

    /// The full URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// The `Authorization` header's value, renewing an expired session
    /// first.
    pub async fn bearer(&self) -> Result<Option<String>, CliError> {
        let mut credentials = self.credentials.lock().await;
        if let Credentials::Session {
            expires_at: Some(expires_at),
            refresh_token: Some(_),
            ..
        } = &*credentials
            && *expires_at <= chrono::Utc::now() + chrono::Duration::seconds(5)
        {
            self.renew(&mut credentials).await?;
        }
        Ok(match &*credentials {
            Credentials::None => None,
            Credentials::Environment(token) => Some(format!("Bearer {token}")),
            Credentials::Session { token, .. } => token.as_ref().map(|t| format!("Bearer {t}")),
        })
    }

    /// Trades the refresh token for a new session and keeps it in the
    /// context. Another `berth` may have spent the token a moment ago:
    /// then the context already holds the new session.
    async fn renew(&self, credentials: &mut Credentials) -> Result<(), CliError> {
        let Credentials::Session {
            context,
            refresh_token: Some(refresh_token),
            ..
        } = credentials.clone()
        else {
            return Err(self.session_ended());
        };
        let response = self
            .http
            .post(self.url("/api/v1/auth/refresh"))
            .json(&json!({ "refreshToken": refresh_token }))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let (path, mut file) = ConfigFile::load()?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let renewed = file
                .contexts
                .get(&context)
                .filter(|c| c.refresh_token.as_deref() != Some(refresh_token.as_str()))
                .filter(|c| c.refresh_token.is_some());
            return match renewed {
                Some(stored) => {
                    *credentials = session_credentials(&context, stored);
                    Ok(())
                }
                None => Err(self.session_ended()),
            };
        }
        let session: SessionTokens = json_of(response).await.and_then(|v| {
            serde_json::from_value(v)
                .map_err(|e| CliError::Failed(format!("the server's session is unreadable: {e}")))
        })?;
        if let Some(stored) = file.contexts.get_mut(&context) {
            stored.token = Some(session.token.clone());
            stored.expires_at = Some(session.expires_at.clone());
            stored.refresh_token = Some(session.refresh_token.clone());
            file.save(&path)?;
        }
        *credentials = Credentials::Session {
            context,
            token: Some(session.token),
            expires_at: parse_time(Some(&session.expires_at)),
            refresh_token: Some(session.refresh_token),
        };
        Ok(())
    }

    fn session_ended(&self) -> CliError {
        CliError::NotSignedIn(format!(
            "your session with {} has expired or was signed out: sign in again with `berth login`",
            self.server
        ))
    }

    /// The error for a request the server refused as unauthenticated.
    async fn refused(&self, message: String) -> CliError {
        match &*self.credentials.lock().await {
            Credentials::None => CliError::NotSignedIn(format!(
                "not signed in to {}: run `berth login --server {}`",
                self.server, self.server
            )),
            Credentials::Environment(_) => {
                CliError::NotSignedIn(format!("the token in BERTH_TOKEN was refused: {message}"))
            }
            Credentials::Session { .. } => self.session_ended(),
        }
    }

    /// The error for a request that never reached the server.
    pub fn unreachable(&self, error: reqwest::Error) -> CliError {
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            reason = cause.to_string();
            source = cause.source();
        }
        CliError::Unreachable {
            server: self.server.clone(),
            reason,
        }
    }

    /// Sends a request, renewing the session once if the server says the
    /// access token has expired. Answers the response, whatever its
    /// status, except 401, which becomes [`CliError::NotSignedIn`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Body,
    ) -> Result<reqwest::Response, CliError> {
        let mut renewed = false;
        loop {
            let mut request = self.http.request(method.clone(), self.url(path));
            if let Some(bearer) = self.bearer().await? {
                request = request.header("Authorization", bearer);
            }
            request = match body {
                Body::Empty => request,
                Body::Json(value) => request.json(value),
                Body::MergePatch(value) => request
                    .header("Content-Type", "application/merge-patch+json")
                    .body(value.to_string()),
                Body::Bytes(bytes, content_type) => request
                    .header("Content-Type", *content_type)
                    .body(bytes.clone()),
            };
            let response = request.send().await.map_err(|e| self.unreachable(e))?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            let message = api_error(status, &body).to_string();
            let mut credentials = self.credentials.lock().await;
            let renewable = matches!(
                &*credentials,
                Credentials::Session {
                    refresh_token: Some(_),
                    ..
                }
            );
            if renewed || !renewable {
                drop(credentials);
                return Err(self.refused(message).await);
            }
            self.renew(&mut credentials).await?;
            renewed = true;
        }
    }

    /// Sends a request and answers its JSON body; an error status becomes
    /// the envelope's [`CliError::Api`].
    pub async fn json(&self, method: Method, path: &str, body: &Body) -> Result<Value, CliError> {
        json_of(self.send(method, path, body).await?).await
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.json(Method::GET, path, &Body::Empty).await
    }
}

fn session_credentials(context: &str, stored: &Context) -> Credentials {
    Credentials::Session {
        context: context.to_owned(),
        token: stored.token.clone(),
        expires_at: parse_time(stored.expires_at.as_deref()),
        refresh_token: stored.refresh_token.clone(),
    }
}

/// A response's JSON body when its status is a success; the error
/// envelope as [`CliError::Api`] otherwise.
pub async fn json_of(response: reqwest::Response) -> Result<Value, CliError> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| CliError::Failed(format!("reading the server's answer: {e}")))?;
    if status.is_success() {
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Failed(format!("the server's answer is not JSON ({status}): {e}"))
        });
    }
    Err(api_error(status, &bytes))
}

/// The error envelope of a failed response, or its status and text when
/// it has none.
pub fn api_error(status: StatusCode, body: &[u8]) -> CliError {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        details: Vec<FieldDetail>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => CliError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            details: error.details,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            CliError::Api {
                status: status.as_u16(),
                code: String::new(),
                message: if text.is_empty() {
                    format!("the server answered {status}")
                } else {
                    format!("the server answered {status}: {text}")
                },
                details: vec![],
            }
        }
    }
}
