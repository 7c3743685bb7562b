//! Signing in and out of the dashboard, and the front door (`/`), which
//! leads to the first tenant.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use berth_server::http::AppState;
use berth_server::rest::caller::{removal_cookie, session_cookie, source_of};
use berth_server::rest::error::ApiError;
use berth_server::rest::sign_in_recorded;
use berth_server::sessions::{self, ACCESS_COOKIE, CSRF_FIELD, SESSION_COOKIE};

use crate::page::{self, Chrome, PageError, Viewer};

/// Mounts `/`, `/login` and `/logout`.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(front_door))
        .route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout));
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    next: String,
    email: String,
    error: String,
}

#[derive(Template)]
#[template(path = "no_tenant.html")]
struct NoTenantPage {
    chrome: Chrome,
}

/// Where to go after signing in: a path on this site only, never another
/// site (`//host`) that a crafted link could name.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") =>
        {
            next.to_owned()
        }
        _ => "/".to_owned(),
    }
}

async fn front_door(viewer: Viewer) -> Result<HttpResponse, PageError> {
    let tenants = viewer.tenants().await?;
    match tenants.first() {
        Some((tenant, _)) => Ok(page::see_other(&format!("/t/{tenant}"))),
        None => page::render(&NoTenantPage {
            chrome: viewer.chrome(None, "", "No tenant yet").await?,
        }),
    }
}

#[derive(serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(query: web::Query<NextQuery>) -> Result<HttpResponse, PageError> {
    page::render(&LoginPage {
        chrome: Chrome::anonymous("Sign in"),
        next: safe_next(query.next.as_deref()),
        email: String::new(),
        error: String::new(),
    })
}

#[derive(serde::Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

async fn login(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    let LoginForm {
        email,
        password,
        next,
    } = form.into_inner();
    let next = safe_next(next.as_deref());
    let source = source_of(&request);
    let refuse = |status: StatusCode, error: String| -> Result<HttpResponse, PageError> {
        let page = LoginPage {
            chrome: Chrome::anonymous("Sign in"),
            next: next.clone(),
            email: email.clone(),
            error,
        };
        let body = page
            .render()
            .map_err(|e| PageError::Internal(e.to_string()))?;
        Ok(page::html(status, body))
    };
    let user = match sign_in_recorded(&state, &email, &password, &source).await {
        Ok(user) => user,
        Err(ApiError::Unauthorized(_)) => {
            return refuse(StatusCode::UNAUTHORIZED, "Wrong email or password.".into());
        }
        Err(ApiError::TooManyRequests { retry_after_secs }) => {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed sign-ins. Try again in {} minutes.",
                    retry_after_secs.div_ceil(60).max(1)
                ),
            );
        }
        Err(error) => return Err(error.into()),
    };
    let started = sessions::start(
        &state.store,
        &state.tokens,
        &user,
        state.session_idle_timeout,
    )
    .await
    .map_err(|e| PageError::Internal(e.to_string()))?;
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", next))
        .cookie(session_cookie(&request, SESSION_COOKIE, started.session))
        .cookie(session_cookie(&request, ACCESS_COOKIE, started.access))
        .finish())
}

async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, PageError> {
    if let Some(session) = request.cookie(SESSION_COOKIE) {
        let presented = form.get(CSRF_FIELD).map(String::as_str).unwrap_or_default();
        if !sessions::csrf_matches(session.value(), presented) {
            return Err(PageError::Forbidden(
                "signing out needs the session's CSRF token; reload the page and try again".into(),
            ));
        }
        sessions::end(&state.store, session.value())
            .await
            .map_err(|e| PageError::Internal(e.to_string()))?;
    }
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", "/login"))
        .cookie(removal_cookie(&request, SESSION_COOKIE))
        .cookie(removal_cookie(&request, ACCESS_COOKIE))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn sign_in_returns_only_to_paths_on_this_site() {
        assert_eq!(safe_next(Some("/t/acme/pods?x=1")), "/t/acme/pods?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
