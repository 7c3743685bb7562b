//! Who is looking at a page and how a page is answered.
//!
//! [`Viewer`] is the signed-in user of a dashboard request (through
//! [`Caller`], the REST API's own authentication, so a page and the API
//! calls its script makes see the same user). Without a session a page
//! answers with a redirect to the sign-in page. Every page carries the
//! same security headers: a Content-Security-Policy that allows no inline
//! script or style, no framing, no sniffing.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, dev::Payload, web};
use askama::Template;
use berth_api::labels::Selector;
use berth_api::objects::Kind;
use berth_server::auth::{Role, Subject};
use berth_server::authz::{self, Decision, Target, Verb};
use berth_server::http::AppState;
use berth_server::objects::{ObjectRef, SecretValues};
use berth_server::rest::caller::Caller;
use berth_server::rest::error::ApiError;
use serde_json::Value;

/// The Content-Security-Policy of every page: scripts, styles and
/// connections only from the server itself, nothing inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    base-uri 'none'; frame-ancestors 'none'";

/// The signed-in user of a page request.
pub struct Viewer {
    /// The user as the REST API sees them.
    pub caller: Caller,
    /// What every handler reaches.
    pub state: web::Data<AppState>,
    /// The path and query asked for, to come back to after signing in.
    pub path: String,
}

impl FromRequest for Viewer {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Viewer, PageError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(request, payload);
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let path = request
            .uri()
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        Box::pin(async move {
            let state =
                state.ok_or_else(|| PageError::Internal("the app state is missing".into()))?;
            match caller.await {
                Ok(caller) => Ok(Viewer {
                    caller,
                    state,
                    path,
                }),
                Err(ApiError::Unauthorized(_)) => Err(PageError::SignIn { next: path }),
                Err(error) => Err(PageError::from(error)),
            }
        })
    }
}

impl Viewer {
    /// Who.
    pub fn subject(&self) -> &Subject {
        &self.caller.subject
    }

    /// The tenants the viewer may open, with their role (the platform
    /// admin opens every tenant, as owner where not a member).
    pub async fn tenants(&self) -> Result<Vec<(String, Role)>, PageError> {
        let subject = self.subject();
        if !subject.platform_admin {
            let mut tenants = subject.tenants.clone();
            tenants.sort();
            return Ok(tenants);
        }
        let all = self.state.store.tenants().await.map_err(ApiError::from)?;
        Ok(all
            .into_iter()
            .map(|tenant| {
                let role = subject.role_in(&tenant.name).unwrap_or(Role::Owner);
                (tenant.name, role)
            })
            .collect())
    }

    /// Fails with "not found" unless the viewer may open `tenant`.
    pub fn open(&self, tenant: &str) -> Result<(), PageError> {
        match authz::authorize(self.subject(), Some(tenant), Target::Tenant, Verb::Get) {
            Decision::Allow => Ok(()),
            _ => Err(PageError::NotFound(format!(
                "there is no tenant {tenant:?}"
            ))),
        }
    }

    /// The objects of `kind` in `tenant` the viewer may list, and the
    /// revision they were read at (the live stream follows on from it).
    pub async fn list(
        &self,
        kind: Kind,
        tenant: Option<&str>,
    ) -> Result<(Vec<Value>, i64), PageError> {
        self.check(tenant, Target::Object(kind), Verb::List)?;
        let page = self
            .state
            .objects
            .list(
                kind,
                tenant,
                &Selector::default(),
                0,
                None,
                SecretValues::Redact,
            )
            .await?;
        Ok((page.items, page.revision))
    }

    /// The objects of `kind` in `tenant` whose names start with
    /// `name_prefix` (a ReplicaSet's pods, an object's events), read as one
    /// key range, and the revision they were read at.
    pub async fn list_named(
        &self,
        kind: Kind,
        tenant: &str,
        name_prefix: &str,
    ) -> Result<(Vec<Value>, i64), PageError> {
        self.check(Some(tenant), Target::Object(kind), Verb::List)?;
        let page = self
            .state
            .objects
            .list_named(
                kind,
                Some(tenant),
                name_prefix,
                &Selector::default(),
                0,
                None,
                SecretValues::Redact,
            )
            .await?;
        Ok((page.items, page.revision))
    }

    /// One object the viewer may read (Secret values redacted).
    pub async fn get(
        &self,
        kind: Kind,
        tenant: Option<&str>,
        name: &str,
    ) -> Result<Value, PageError> {
        self.check(tenant, Target::Object(kind), Verb::Get)?;
        let at = ObjectRef {
            kind,
            tenant: tenant.map(str::to_owned),
            name: name.to_owned(),
        };
        Ok(self.state.objects.get(&at, SecretValues::Redact).await?)
    }

    /// Fails unless the viewer may `verb` `target` in `tenant`: 404 when
    /// they may not know of the tenant, 403 otherwise.
    pub fn check(&self, tenant: Option<&str>, target: Target, verb: Verb) -> Result<(), PageError> {
        match authz::authorize(self.subject(), tenant, target, verb) {
            Decision::Allow => Ok(()),
            Decision::Forbidden(message) => Err(PageError::Forbidden(message)),
            Decision::Hidden => Err(PageError::NotFound("no such tenant, or not yours".into())),
        }
    }

    /// Whether the viewer may `verb` `target` in `tenant`, and if not, why,
    /// in words about `action` ("scale").
    pub fn permission(
        &self,
        tenant: Option<&str>,
        target: Target,
        verb: Verb,
        action: &str,
    ) -> Permission {
        if authz::authorize(self.subject(), tenant, target, verb).allowed() {
            return Permission::allowed();
        }
        let needed = tenant.and_then(|tenant| {
            Role::ALL.into_iter().find(|role| {
                let member = Subject {
                    user_id: self.subject().user_id,
                    email: String::new(),
                    api_token: None,
                    platform_admin: false,
                    tenants: vec![(tenant.to_owned(), *role)],
                };
                authz::authorize(&member, Some(tenant), target, verb).allowed()
            })
        });
        Permission {
            allowed: false,
            reason: match needed {
                Some(Role::Owner) => format!("only owners can {action}"),
                Some(role) => format!("{}s and above can {action}", role.name()),
                None => format!("only the platform admin can {action}"),
            },
        }
    }

    /// The page chrome: who is signed in, the tenant switcher, the menu.
    pub async fn chrome(
        &self,
        tenant: Option<&str>,
        section: &'static str,
        title: impl Into<String>,
    ) -> Result<Chrome, PageError> {
        let tenants = self.tenants().await?;
        let role = tenant
            .and_then(|t| tenants.iter().find(|(name, _)| name == t))
            .map(|(_, role)| role.name().to_owned())
            .unwrap_or_default();
        Ok(Chrome {
            title: title.into(),
            email: self.subject().email.clone(),
            platform_admin: self.subject().platform_admin,
            role,
            tenant: tenant.unwrap_or_default().to_owned(),
            tenants: tenants
                .into_iter()
                .map(|(name, role)| TenantChoice {
                    selected: Some(name.as_str()) == tenant,
                    name,
                    role: role.name(),
                })
                .collect(),
            section,
            csrf: self.caller.csrf_token.clone().unwrap_or_default(),
            css: crate::assets::url("app.css"),
            js: crate::assets::url("app.js"),
            icon: crate::assets::url("icon.svg"),
        })
    }
}

/// Whether an action is open to the viewer, and why not.
#[derive(Clone, Debug)]
pub struct Permission {
    /// Whether they may.
    pub allowed: bool,
    /// Why not, in words ("editors and above can scale"); empty if they may.
    pub reason: String,
}

impl Permission {
    fn allowed() -> Permission {
        Permission {
            allowed: true,
            reason: String::new(),
        }
    }
}

/// A tenant in the switcher.
pub struct TenantChoice {
    /// Its name.
    pub name: String,
    /// The viewer's role in it.
    pub role: &'static str,
    /// Whether it is the page's tenant.
    pub selected: bool,
}

/// What every page's frame shows.
pub struct Chrome {
    /// The page's title.
    pub title: String,
    /// Who is signed in.
    pub email: String,
    /// Whether they are the platform admin (the Nodes page).
    pub platform_admin: bool,
    /// Their role in the page's tenant, if any.
    pub role: String,
    /// The page's tenant, or empty.
    pub tenant: String,
    /// The tenants they may switch to.
    pub tenants: Vec<TenantChoice>,
    /// The menu entry the page belongs to.
    pub section: &'static str,
    /// The session's CSRF token, for the script and forms.
    pub csrf: String,
    /// The stylesheet's URL.
    pub css: String,
    /// The script's URL.
    pub js: String,
    /// The icon's URL.
    pub icon: String,
}

impl Chrome {
    /// The chrome of a page nobody is signed in to (sign-in, errors).
    pub fn anonymous(title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            email: String::new(),
            platform_admin: false,
            role: String::new(),
            tenant: String::new(),
            tenants: Vec::new(),
            section: "",
            csrf: String::new(),
            css: crate::assets::url("app.css"),
            js: crate::assets::url("app.js"),
            icon: crate::assets::url("icon.svg"),
        }
    }

    /// The menu: (section, label, href) in the page's tenant.
    pub fn menu(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut menu = Vec::new();
        if !self.tenant.is_empty() {
            let t = &self.tenant;
            for (section, label, path) in [
                ("overview", "Overview", ""),
                ("deployments", "Deployments", "/deployments"),
                ("pods", "Pods", "/pods"),
                ("services", "Services", "/services"),
                ("configmaps", "ConfigMaps", "/configmaps"),
                ("secrets", "Secrets", "/secrets"),
                ("volumes", "Volumes", "/volumes"),
                ("autoscalers", "Autoscalers", "/autoscalers"),
                ("events", "Events", "/events"),
                ("members", "Members", "/members"),
                ("tokens", "API tokens", "/tokens"),
                ("audit", "Audit log", "/audit"),
            ] {
                menu.push((section, label, format!("/t/{t}{path}")));
            }
        }
        if self.platform_admin {
            menu.push(("nodes", "Nodes", "/nodes".to_owned()));
        }
        menu
    }
}

/// Answers with a rendered page and the dashboard's security headers.
pub fn render(template: &impl Template) -> Result<HttpResponse, PageError> {
    let body = template
        .render()
        .map_err(|e| PageError::Internal(format!("rendering the page: {e}")))?;
    Ok(html(StatusCode::OK, body))
}

/// An HTML answer with the dashboard's security headers.
pub fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// A redirect to `location` (after a form).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: go to the sign-in page, then back to `next`.
    SignIn {
        /// Where to come back to.
        next: String,
    },
    /// Nothing there, or nothing the viewer may know of (404).
    NotFound(String),
    /// The viewer may not (403).
    Forbidden(String),
    /// The store cannot be reached (503).
    Unavailable(String),
    /// Anything else (500).
    Internal(String),
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::SignIn { .. } => f.write_str("sign in first"),
            PageError::NotFound(m)
            | PageError::Forbidden(m)
            | PageError::Unavailable(m)
            | PageError::Internal(m) => f.write_str(m),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> PageError {
        match error {
            ApiError::Unauthorized(_) => PageError::SignIn { next: "/".into() },
            ApiError::NotFound(m) => PageError::NotFound(m),
            ApiError::Forbidden(m) => PageError::Forbidden(m),
            ApiError::Unavailable(m) => PageError::Unavailable(m),
            other => PageError::Internal(other.to_string()),
        }
    }
}

impl From<berth_server::objects::ObjectError> for PageError {
    fn from(error: berth_server::objects::ObjectError) -> PageError {
        PageError::from(berth_server::rest::object_error(error))
    }
}

impl From<berth_server::store::StoreError> for PageError {
    fn from(error: berth_server::store::StoreError) -> PageError {
        PageError::from(ApiError::from(error))
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    message: String,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::SignIn { .. } => StatusCode::SEE_OTHER,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let PageError::SignIn { next } = self {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", next)
                .finish();
            return see_other(&format!("/login?{query}"));
        }
        if let PageError::Internal(message) = self {
            tracing::error!(%message, "a dashboard page failed");
        }
        let status = self.status_code();
        let page = ErrorPage {
            chrome: Chrome::anonymous(status.canonical_reason().unwrap_or("Error")),
            status: status.as_u16(),
            message: self.to_string(),
        };
        match page.render() {
            Ok(body) => html(status, body),
            Err(_) => HttpResponse::build(status).body(self.to_string()),
        }
    }
}
