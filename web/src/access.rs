//! Who may do what in a tenant: its members and their roles, its API
//! tokens (made here, their secret shown once by the page's script), and
//! its audit log (filtered by user, kind and time, newest first, a hundred
//! at a time).
//!
//! The pages read the store's records directly; every change is a call to
//! the REST API (`/api/v1/tenants/{t}/members`, `/api/v1/tokens`), which
//! also enforces what the pages only show: nobody grants above their own
//! role, and the last owner stays.

use actix_web::{HttpResponse, web};
use askama::Template;
use berth_api::objects::Kind;
use berth_server::auth::Role;
use berth_server::authz::{self, Decision, Target, Verb};
use berth_server::store::audit::{AuditEntry, AuditQuery, MAX_AUDIT_PAGE};

use crate::page::{self, Chrome, PageError, Permission, Viewer};
use crate::view;

/// Mounts the members, tokens and audit pages.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/members", web::get().to(members))
        .route("/t/{tenant}/tokens", web::get().to(tokens))
        .route("/t/{tenant}/audit", web::get().to(audit));
}

/// A role in a form's choice: whether the viewer may hand it out.
struct RoleChoice {
    name: &'static str,
    allowed: bool,
}

/// The roles, each with whether the viewer may grant it in `tenant`.
fn role_choices(viewer: &Viewer, tenant: &str) -> Vec<RoleChoice> {
    Role::ALL
        .into_iter()
        .map(|role| RoleChoice {
            name: role.name(),
            allowed: authz::may_grant(viewer.subject(), tenant, role, "grant").allowed(),
        })
        .collect()
}

/// "you can grant roles up to admin" when some roles are above the
/// viewer's; empty when they may grant all, or none.
fn grant_limit(roles: &[RoleChoice]) -> String {
    match roles.iter().rev().find(|r| r.allowed) {
        Some(top) if roles.iter().any(|r| !r.allowed) => {
            format!("you can grant roles up to {}", top.name)
        }
        _ => String::new(),
    }
}

/// What a decision means for a control: allowed, or why not.
fn permission_of(decision: Decision) -> Permission {
    match decision {
        Decision::Allow => Permission {
            allowed: true,
            reason: String::new(),
        },
        Decision::Forbidden(reason) => Permission {
            allowed: false,
            reason,
        },
        Decision::Hidden => Permission {
            allowed: false,
            reason: "you are not a member of this tenant".into(),
        },
    }
}

/// The first of `permissions` that forbids, or the last one.
fn first_refusal(permissions: impl IntoIterator<Item = Permission>) -> Permission {
    let mut last = Permission {
        allowed: true,
        reason: String::new(),
    };
    for permission in permissions {
        if !permission.allowed {
            return permission;
        }
        last = permission;
    }
    last
}

/// One member.
struct MemberRow {
    user_id: i64,
    email: String,
    role: String,
    /// The viewer themselves.
    you: bool,
    change: Permission,
    remove: Permission,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    chrome: Chrome,
    members: Vec<MemberRow>,
    roles: Vec<RoleChoice>,
    grant_limit: String,
    invite: Permission,
    api: String,
}

/// Why the last owner cannot be changed or removed, if `role` is theirs.
fn last_owner(role: Option<Role>, owners: usize) -> Permission {
    if role == Some(Role::Owner) && owners <= 1 {
        Permission {
            allowed: false,
            reason: "the last owner stays an owner: make someone else owner first".into(),
        }
    } else {
        permission_of(Decision::Allow)
    }
}

async fn members(viewer: Viewer, tenant: web::Path<String>) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    viewer.check(t, Target::Members, Verb::List)?;
    let stored = viewer.state.store.tenant_members(&tenant).await?;
    let roles = role_choices(&viewer, &tenant);
    let owners = stored.iter().filter(|m| m.role == "owner").count();
    let change = viewer.permission(t, Target::Members, Verb::Update, "change roles");
    let remove = viewer.permission(t, Target::Members, Verb::Delete, "remove members");
    let members = stored
        .into_iter()
        .map(|m| {
            let role = Role::parse(&m.role);
            let rank = |what: &str| {
                permission_of(match role {
                    Some(role) => authz::may_grant(viewer.subject(), &tenant, role, what),
                    None => Decision::Allow,
                })
            };
            MemberRow {
                you: m.user_id == viewer.subject().user_id,
                change: first_refusal([
                    change.clone(),
                    rank("change the role of a member who is"),
                    last_owner(role, owners),
                ]),
                remove: first_refusal([
                    remove.clone(),
                    rank("remove a member who is"),
                    last_owner(role, owners),
                ]),
                user_id: m.user_id,
                email: m.email,
                role: m.role,
            }
        })
        .collect();
    page::render(&MembersPage {
        chrome: viewer
            .chrome(t, "members", format!("{tenant} · Members"))
            .await?,
        members,
        grant_limit: grant_limit(&roles),
        roles,
        invite: viewer.permission(t, Target::Members, Verb::Create, "add members"),
        api: format!("/api/v1/tenants/{tenant}/members"),
    })
}

/// One API token, without its secret.
struct TokenRow {
    id: i64,
    name: String,
    role: String,
    /// Who made it (whom it acts for).
    maker: String,
    created: String,
    created_age: String,
    /// When it stops working, or empty: never.
    expires: String,
    expired: bool,
    revoked: bool,
}

/// Milliseconds since the epoch as RFC 3339 to the second.
fn time_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    chrome: Chrome,
    /// `None` when the viewer may not see the tenant's tokens.
    tokens: Option<Vec<TokenRow>>,
    see: Permission,
    create: Permission,
    revoke: Permission,
    roles: Vec<RoleChoice>,
    grant_limit: String,
}

async fn tokens(viewer: Viewer, tenant: web::Path<String>) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    let see = viewer.permission(t, Target::Tokens, Verb::List, "see API tokens");
    let roles = role_choices(&viewer, &tenant);
    let tokens = if see.allowed {
        let store = &viewer.state.store;
        let makers = store.tenant_members(&tenant).await?;
        let now = chrono::Utc::now();
        Some(
            store
                .api_tokens(&tenant)
                .await?
                .into_iter()
                .map(|token| {
                    let created = time_of(token.created_at_ms);
                    TokenRow {
                        id: token.id,
                        maker: makers
                            .iter()
                            .find(|m| m.user_id == token.user_id)
                            .map_or_else(|| format!("user {}", token.user_id), |m| m.email.clone()),
                        created_age: view::age_since(&created, now),
                        created,
                        expires: token.expires_at_ms.map(time_of).unwrap_or_default(),
                        expired: token
                            .expires_at_ms
                            .is_some_and(|at| at <= now.timestamp_millis()),
                        revoked: token.revoked,
                        name: token.name,
                        role: token.role,
                    }
                })
                .collect(),
        )
    } else {
        None
    };
    page::render(&TokensPage {
        chrome: viewer
            .chrome(t, "tokens", format!("{tenant} · API tokens"))
            .await?,
        tokens,
        create: viewer.permission(t, Target::Tokens, Verb::Create, "make API tokens"),
        revoke: viewer.permission(t, Target::Tokens, Verb::Delete, "revoke API tokens"),
        see,
        grant_limit: grant_limit(&roles),
        roles,
    })
}

/// How many audit entries a page shows.
pub const AUDIT_PAGE: usize = 100;

/// How many entries one page request reads at most while looking for
/// those in a time range, before it offers to go on from there.
const AUDIT_SCAN: usize = 20_000;

/// The audit page's query.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Only this user's actions (their email).
    pub user: String,
    /// Only actions on this kind (`Deployment`, `Member`, `Token`…).
    pub kind: String,
    /// From this time on, as a `datetime-local` input gives it (UTC).
    pub from: String,
    /// Up to this time.
    pub to: String,
    /// Only entries older than this id (the next page).
    pub before: Option<i64>,
}

impl AuditFilter {
    /// The query string of this filter with `before`, for paging links.
    pub fn query(&self, before: Option<i64>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("user", &self.user),
            ("kind", &self.kind),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !value.trim().is_empty() {
                query.append_pair(key, value.trim());
            }
        }
        if let Some(before) = before {
            query.append_pair("before", &before.to_string());
        }
        query.finish()
    }

    /// Whether anything is filtered.
    pub fn active(&self) -> bool {
        [&self.user, &self.kind, &self.from, &self.to]
            .iter()
            .any(|v| !v.trim().is_empty())
    }
}

/// A time from a form (`2026-01-02T03:04`, with or without seconds, or
/// RFC 3339), as milliseconds since the epoch; a time without a zone is
/// UTC. `None` for an empty field.
pub fn parse_time(text: &str) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Some(time.timestamp_millis()));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(time.and_utc().timestamp_millis()));
        }
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis()));
    }
    Err(format!(
        "{text:?} is not a time: write it as 2026-01-31T14:05 (UTC)"
    ))
}

/// Gathers one page of entries in a time range from batches read newest
/// first. The log's ids follow the order actions were recorded in, so the
/// first entry older than the range ends the search.
#[derive(Debug, Default)]
pub struct AuditWindow {
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    /// The entries of the page so far.
    pub kept: Vec<AuditEntry>,
    /// Whether the page is complete.
    pub done: bool,
    /// Where the next (older) page starts, if there is one.
    pub next_before: Option<i64>,
    /// The oldest entry read so far.
    pub last_read: Option<i64>,
    /// How many entries were read.
    pub read: usize,
}

impl AuditWindow {
    /// A window over `[since_ms, until_ms]`; either end may be open.
    pub fn new(since_ms: Option<i64>, until_ms: Option<i64>) -> AuditWindow {
        AuditWindow {
            since_ms,
            until_ms,
            ..AuditWindow::default()
        }
    }

    /// Takes in the next batch; `last` when the log has nothing older.
    pub fn feed(&mut self, batch: Vec<AuditEntry>, last: bool) {
        for entry in batch {
            self.read += 1;
            self.last_read = Some(entry.id);
            if self.until_ms.is_some_and(|until| entry.at_ms > until) {
                continue;
            }
            if self.since_ms.is_some_and(|since| entry.at_ms < since) {
                self.done = true;
                return;
            }
            if self.kept.len() == AUDIT_PAGE {
                self.next_before = self.kept.last().map(|e| e.id);
                self.done = true;
                return;
            }
            self.kept.push(entry);
        }
        if last {
            self.done = true;
        }
    }
}

/// One entry as the page shows it.
struct AuditRow {
    id: i64,
    time: String,
    age: String,
    user: String,
    verb: String,
    kind: String,
    name: String,
    code: i32,
    tone: &'static str,
    source: String,
}

fn audit_row(entry: AuditEntry, now: chrono::DateTime<chrono::Utc>) -> AuditRow {
    let time = time_of(entry.at_ms);
    AuditRow {
        id: entry.id,
        age: view::age_since(&time, now),
        time,
        user: entry.user_email,
        verb: entry.verb,
        kind: entry.kind.unwrap_or_default(),
        name: entry.name.unwrap_or_default(),
        tone: view::tone(entry.code < 400, entry.code >= 500),
        code: entry.code,
        source: entry.source,
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    filter: AuditFilter,
    /// What is wrong with the filter's times.
    errors: Vec<String>,
    see: Permission,
    rows: Vec<AuditRow>,
    /// The link to older entries, if there are any.
    older: Option<String>,
    /// The search stopped after this many entries without filling the page.
    searched: Option<usize>,
    kinds: Vec<&'static str>,
}

async fn audit(
    viewer: Viewer,
    tenant: web::Path<String>,
    filter: web::Query<AuditFilter>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    let filter = filter.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    let see = viewer.permission(t, Target::Audit, Verb::List, "read the audit log");
    let mut errors = Vec::new();
    let mut bound = |text: &str, label: &str| {
        parse_time(text).unwrap_or_else(|e| {
            errors.push(format!("{label}: {e}"));
            None
        })
    };
    let since = bound(&filter.from, "From");
    let until = bound(&filter.to, "To");
    let mut rows = Vec::new();
    let mut older = None;
    let mut searched = None;
    if see.allowed && errors.is_empty() {
        let ranged = since.is_some() || until.is_some();
        let batch = if ranged {
            MAX_AUDIT_PAGE
        } else {
            AUDIT_PAGE as i64 + 1
        };
        let mut window = AuditWindow::new(since, until);
        let mut before = filter.before;
        while !window.done {
            let entries = viewer
                .state
                .audit
                .page(&AuditQuery {
                    tenant: tenant.clone(),
                    user_email: Some(filter.user.trim().to_owned()).filter(|u| !u.is_empty()),
                    kind: Some(filter.kind.trim().to_owned()).filter(|k| !k.is_empty()),
                    before_id: before,
                    limit: batch,
                })
                .await?;
            let last = (entries.len() as i64) < batch;
            window.feed(entries, last);
            before = window.last_read;
            if !window.done && window.read >= AUDIT_SCAN {
                searched = Some(window.read);
                window.next_before = window.last_read;
                break;
            }
        }
        older = window
            .next_before
            .map(|id| format!("/t/{tenant}/audit?{}", filter.query(Some(id))));
        let now = chrono::Utc::now();
        rows = window.kept.into_iter().map(|e| audit_row(e, now)).collect();
    }
    let mut kinds: Vec<&'static str> = Kind::all().iter().map(|k| k.name()).collect();
    kinds.extend([
        Target::Members.name(),
        Target::Tokens.name(),
        Target::Tenant.name(),
    ]);
    page::render(&AuditPage {
        chrome: viewer
            .chrome(t, "audit", format!("{tenant} · Audit log"))
            .await?,
        filter,
        errors,
        see,
        rows,
        older,
        searched,
        kinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, at_ms: i64) -> AuditEntry {
        AuditEntry {
            id,
            at_ms,
            user_id: Some(1),
            user_email: "a@example.com".into(),
            tenant: Some("acme".into()),
            verb: "create".into(),
            kind: Some("Deployment".into()),
            name: Some("web".into()),
            code: 201,
            source: "127.0.0.1".into(),
        }
    }

    #[test]
    fn times_from_the_form_are_utc() {
        assert_eq!(parse_time(""), Ok(None));
        assert_eq!(parse_time("1970-01-01T00:01"), Ok(Some(60_000)));
        assert_eq!(parse_time("1970-01-01T00:00:02"), Ok(Some(2_000)));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Ok(Some(0)));
        assert_eq!(parse_time("1970-01-02"), Ok(Some(86_400_000)));
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn the_window_keeps_entries_in_range_and_stops_at_the_first_older_one() {
        let mut window = AuditWindow::new(Some(200), Some(400));
        // Newest first: 500 is too new, 400..200 are in, 100 ends it.
        window.feed(
            vec![
                entry(6, 500),
                entry(5, 400),
                entry(4, 300),
                entry(3, 200),
                entry(2, 100),
                entry(1, 50),
            ],
            false,
        );
        assert!(window.done);
        assert_eq!(
            window.kept.iter().map(|e| e.id).collect::<Vec<_>>(),
            [5, 4, 3]
        );
        assert_eq!(window.next_before, None);
    }

    #[test]
    fn a_full_page_links_to_the_older_entries() {
        let mut window = AuditWindow::new(None, None);
        let batch: Vec<AuditEntry> = (1..=AUDIT_PAGE as i64 + 1)
            .rev()
            .map(|id| entry(id, id))
            .collect();
        window.feed(batch, false);
        assert!(window.done);
        assert_eq!(window.kept.len(), AUDIT_PAGE);
        assert_eq!(window.next_before, Some(2));
    }

    #[test]
    fn the_last_batch_ends_the_search_without_an_older_link() {
        let mut window = AuditWindow::new(None, Some(10));
        window.feed(vec![entry(3, 30), entry(2, 5)], true);
        assert!(window.done);
        assert_eq!(window.kept.len(), 1);
        assert_eq!(window.next_before, None);
    }

    #[test]
    fn paging_links_keep_the_filter() {
        let filter = AuditFilter {
            user: "a@example.com".into(),
            kind: "Token".into(),
            from: "2026-01-01T00:00".into(),
            ..Default::default()
        };
        assert_eq!(
            filter.query(Some(42)),
            "user=a%40example.com&kind=Token&from=2026-01-01T00%3A00&before=42"
        );
    }

    #[test]
    fn the_last_owner_can_be_neither_demoted_nor_removed() {
        assert!(!last_owner(Some(Role::Owner), 1).allowed);
        assert!(last_owner(Some(Role::Owner), 2).allowed);
        assert!(last_owner(Some(Role::Admin), 1).allowed);
    }
}
