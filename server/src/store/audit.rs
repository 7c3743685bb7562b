//! The audit log beside the revision log: one row per API action (who, in
//! which tenant, what, on which object, with what result). Plain,
//! append-only table; read newest first, one tenant at a time.

use super::Store;
use super::db::Db;
use super::error::{StoreError, StoreResult};

/// The most entries one [`Store::audit_page`] call returns.
pub const MAX_AUDIT_PAGE: i64 = 1000;

/// One recorded action, as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Position in the log; later actions have larger ids.
    pub id: i64,
    /// When the action happened, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The acting user, when one was signed in.
    pub user_id: Option<i64>,
    /// The acting user's email, or `anonymous`.
    pub user_email: String,
    /// The tenant acted in; `None` for platform-wide actions such as login.
    pub tenant: Option<String>,
    /// What was done: `create`, `delete`, `login`, `revoke_token`, …
    pub verb: String,
    /// The kind of object acted on (`Deployment`, `Token`, …), if any.
    pub kind: Option<String>,
    /// The name of the object acted on, if any.
    pub name: Option<String>,
    /// The HTTP status the action ended with.
    pub code: i32,
    /// The address the request came from.
    pub source: String,
}

/// One action to record: an [`AuditEntry`] before the log gives it an id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// When the action happened, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The acting user, when one was signed in.
    pub user_id: Option<i64>,
    /// The acting user's email, or `anonymous`.
    pub user_email: String,
    /// The tenant acted in; `None` for platform-wide actions such as login.
    pub tenant: Option<String>,
    /// What was done: `create`, `delete`, `login`, `revoke_token`, …
    pub verb: String,
    /// The kind of object acted on (`Deployment`, `Token`, …), if any.
    pub kind: Option<String>,
    /// The name of the object acted on, if any.
    pub name: Option<String>,
    /// The HTTP status the action ended with.
    pub code: i32,
    /// The address the request came from.
    pub source: String,
}

/// Which entries of one tenant's log to read, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    /// The tenant whose entries to read.
    pub tenant: String,
    /// Only the actions of the user with this email.
    pub user_email: Option<String>,
    /// Only actions on objects of this kind.
    pub kind: Option<String>,
    /// Only entries older than this id: the smallest id of the previous page.
    pub before_id: Option<i64>,
    /// At most this many entries, between 1 and [`MAX_AUDIT_PAGE`].
    pub limit: i64,
}

// Rows go in as one JSON (SQLite) or one set of arrays (PostgreSQL), so the
// statement text stays the same whatever the batch size and is prepared once.
// The ORDER BY keeps ids in the order the actions were recorded.
const INSERT_AUDIT_SQLITE: &str = "INSERT INTO audit_log \
     (at_ms, user_id, user_email, tenant, verb, kind, name, code, source) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
     value ->> 5, value ->> 6, value ->> 7, value ->> 8 FROM json_each($1) ORDER BY key";

const INSERT_AUDIT_PG: &str = "INSERT INTO audit_log \
     (at_ms, user_id, user_email, tenant, verb, kind, name, code, source) \
     SELECT at_ms, user_id, user_email, tenant, verb, kind, name, code, source \
     FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::int4[], $9::text[]) WITH ORDINALITY \
     AS r (at_ms, user_id, user_email, tenant, verb, kind, name, code, source, n) ORDER BY n";

// `id < $2` is always bound (to i64::MAX for the first page) so the index on
// (tenant, id) bounds the scan instead of filtering from the newest entry on.
const AUDIT_PAGE: &str = "SELECT id, at_ms, user_id, user_email, tenant, verb, kind, name, code, source \
     FROM audit_log WHERE tenant = $1 AND id < $2 \
     AND ($3 IS NULL OR user_email = $3) AND ($4 IS NULL OR kind = $4) \
     ORDER BY id DESC LIMIT ";

impl Store {
    /// Appends `records` to the audit log in one statement: all of them or
    /// none, with ids in the order given.
    #[tracing::instrument(skip_all, fields(records = records.len()))]
    pub async fn append_audit(&self, records: &[AuditRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        match self.db()? {
            Db::Sqlite(pool) => {
                let rows: Vec<_> = records
                    .iter()
                    .map(|r| {
                        (
                            r.at_ms,
                            r.user_id,
                            &r.user_email,
                            &r.tenant,
                            &r.verb,
                            &r.kind,
                            &r.name,
                            r.code,
                            &r.source,
                        )
                    })
                    .collect();
                let rows = serde_json::to_string(&rows)
                    .map_err(|e| StoreError::Database(format!("encoding audit records: {e}")))?;
                sqlx::query(INSERT_AUDIT_SQLITE)
                    .bind(rows)
                    .execute(pool)
                    .await?;
            }
            Db::Postgres(pool) => {
                sqlx::query(INSERT_AUDIT_PG)
                    .bind(records.iter().map(|r| r.at_ms).collect::<Vec<_>>())
                    .bind(records.iter().map(|r| r.user_id).collect::<Vec<_>>())
                    .bind(
                        records
                            .iter()
                            .map(|r| r.user_email.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        records
                            .iter()
                            .map(|r| r.tenant.as_deref())
                            .collect::<Vec<_>>(),
                    )
                    .bind(records.iter().map(|r| r.verb.as_str()).collect::<Vec<_>>())
                    .bind(
                        records
                            .iter()
                            .map(|r| r.kind.as_deref())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        records
                            .iter()
                            .map(|r| r.name.as_deref())
                            .collect::<Vec<_>>(),
                    )
                    .bind(records.iter().map(|r| r.code).collect::<Vec<_>>())
                    .bind(
                        records
                            .iter()
                            .map(|r| r.source.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// One page of a tenant's audit log, newest first. `InvalidRequest` when
    /// the limit is out of range.
    #[tracing::instrument(skip_all, fields(tenant = %query.tenant))]
    pub async fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        if !(1..=MAX_AUDIT_PAGE).contains(&query.limit) {
            return Err(StoreError::InvalidRequest(format!(
                "limit {} is out of range; it must be between 1 and {MAX_AUDIT_PAGE}",
                query.limit
            )));
        }
        // A bound LIMIT would make SQLite plan the statement anew each time;
        // the number is checked above, so it is safe in the text.
        let sql = sqlx::AssertSqlSafe(format!("{AUDIT_PAGE}{}", query.limit));
        let before_id = query.before_id.unwrap_or(i64::MAX);
        Ok(on_db!(self.db()?, pool => sqlx::query_as(sql)
            .bind(&query.tenant).bind(before_id).bind(&query.user_email).bind(&query.kind)
            .fetch_all(pool).await?))
    }
}
