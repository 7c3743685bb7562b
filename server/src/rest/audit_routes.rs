//! The audit log over REST: how handlers record what they did, and
//! `GET /api/v1/tenants/{tenant}/audit` for the tenant's admins, newest
//! first, paged and filterable by user and kind.

use actix_web::{HttpResponse, get, web};

use super::caller::Caller;
use super::error::{ApiError, allowed};
use crate::auth::Subject;
use crate::authz::{Target, Verb, authorize};
use crate::rest::state::AppState;
use crate::store::audit::{AuditEntry, AuditQuery, AuditRecord, MAX_AUDIT_PAGE};

/// Who a caller is, as the audit log names them.
pub fn who(subject: &Subject) -> Option<(i64, &str)> {
    Some((subject.user_id, subject.email.as_str()))
}

/// Records one action: who (user id and email; `None`: anonymous), where,
/// what, on which object, with which HTTP status, from where.
pub fn record(
    state: &AppState,
    user: Option<(i64, &str)>,
    tenant: Option<&str>,
    verb: &str,
    kind: Option<&str>,
    name: Option<&str>,
    code: u16,
    source: &str,
) {
    state.audit.record(AuditRecord {
        at_ms: chrono::Utc::now().timestamp_millis(),
        user_id: user.map(|(id, _)| id),
        user_email: user.map_or_else(|| "anonymous".to_owned(), |(_, email)| email.to_owned()),
        tenant: tenant.map(str::to_owned),
        verb: verb.to_owned(),
        kind: kind.map(str::to_owned),
        name: name.map(str::to_owned),
        code: i32::from(code),
        source: source.to_owned(),
    });
}

/// The audit query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only actions by the user with this email.
    user: Option<String>,
    /// Only actions on this kind (`Deployment`, `Token`, …).
    kind: Option<String>,
    /// At most this many entries (default 100, at most 1000).
    limit: Option<i64>,
    /// The `continue` of the previous page.
    #[serde(rename = "continue")]
    #[param(rename = "continue")]
    continue_token: Option<String>,
}

/// A page of the audit log.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// The entries, newest first.
    pub items: Vec<AuditItem>,
    /// Pass as `continue` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#continue: Option<String>,
}

/// One recorded action.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditItem {
    /// Position in the log.
    pub id: i64,
    /// When (RFC 3339).
    pub time: String,
    /// The acting user's id, when signed in.
    pub user_id: Option<i64>,
    /// The acting user's email, or `anonymous`.
    pub user: String,
    /// The tenant.
    pub tenant: Option<String>,
    /// What was done.
    pub verb: String,
    /// On which kind.
    pub kind: Option<String>,
    /// On which object.
    pub name: Option<String>,
    /// The HTTP status it ended with.
    pub code: i32,
    /// The address the request came from.
    pub source: String,
}

impl From<AuditEntry> for AuditItem {
    fn from(entry: AuditEntry) -> Self {
        AuditItem {
            id: entry.id,
            time: chrono::DateTime::from_timestamp_millis(entry.at_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            user_id: entry.user_id,
            user: entry.user_email,
            tenant: entry.tenant,
            verb: entry.verb,
            kind: entry.kind,
            name: entry.name,
            code: entry.code,
            source: entry.source,
        }
    }
}

/// Reads the tenant's audit log (tenant admins and up).
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/audit",
    operation_id = "list_audit",
    tag = "audit",
    params(("tenant" = String, Path, description = "The tenant."), AuditParams),
    responses(
        (status = 200, description = "A page of entries, newest first.", body = AuditPage),
        (status = 400, description = "The query is invalid.", body = super::error::ErrorBody),
        (status = 401, description = "Not signed in.", body = super::error::ErrorBody),
        (status = 403, description = "Needs the admin role.", body = super::error::ErrorBody),
        (status = 404, description = "No such tenant, or not yours.", body = super::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/tenants/{tenant}/audit")]
#[tracing::instrument(skip_all, fields(tenant = %path))]
pub async fn list_audit(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    allowed(authorize(
        &caller.subject,
        Some(&tenant),
        Target::Audit,
        Verb::List,
    ))?;
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be between 1 and {MAX_AUDIT_PAGE}"),
        ));
    }
    let before_id = match query.continue_token.as_deref().filter(|c| !c.is_empty()) {
        Some(token) => Some(
            token
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| ApiError::field("continue", "not a continue token of this log"))?,
        ),
        None => None,
    };
    let entries = state
        .audit
        .page(&AuditQuery {
            tenant,
            user_email: query.user.filter(|u| !u.is_empty()),
            kind: query.kind.filter(|k| !k.is_empty()),
            before_id,
            limit: limit + 1,
        })
        .await?;
    let more = entries.len() as i64 > limit;
    let items: Vec<AuditItem> = entries
        .into_iter()
        .take(limit as usize)
        .map(AuditItem::from)
        .collect();
    let r#continue = more
        .then(|| items.last().map(|i| i.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(AuditPage { items, r#continue }))
}
