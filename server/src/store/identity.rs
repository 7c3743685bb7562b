//! Accounts beside the revision log: users, tenants, memberships, and the
//! key that signs access tokens. Plain tables, no revisions.

use super::db::Db;
use super::error::{StoreError, StoreResult};
use super::{Store, now_ms};

/// A user account.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    /// The user's id.
    pub id: i64,
    /// The email the user signs in with (unique).
    pub email: String,
    /// The argon2id hash of the password (PHC string).
    pub password_hash: String,
    /// Whether the user administers the whole platform.
    pub platform_admin: bool,
}

impl std::fmt::Debug for User {
    // The hash stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("platform_admin", &self.platform_admin)
            .finish_non_exhaustive()
    }
}

/// A user's role in one tenant.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Membership {
    /// The tenant.
    pub tenant: String,
    /// `owner`, `admin`, `editor` or `viewer`.
    pub role: String,
}

const USER_COLUMNS: &str = "id, email, password_hash, platform_admin";

impl Store {
    /// Announces a change of the accounts on [`super::ACCOUNTS_KEY`], so
    /// that every cache of callers (on every server process) drops what it
    /// holds. The change itself is already committed: a failure here is
    /// logged, and the caches stop caching while the store fails.
    async fn accounts_changed(&self) {
        let announced = self
            .put(super::types::PutRequest {
                key: super::ACCOUNTS_KEY.into(),
                value: now_ms().to_string().into_bytes(),
                lease: 0,
                prev_kv: false,
                ignore_value: false,
                ignore_lease: false,
                lease_owner: None,
            })
            .await;
        if let Err(error) = announced {
            tracing::error!(%error, "announcing a change of the accounts failed");
        }
    }

    /// Creates a user; `Conflict` when the email is taken.
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        platform_admin: bool,
    ) -> StoreResult<User> {
        let inserted: Option<User> = on_db!(self.db()?, pool => sqlx::query_as(
            "INSERT INTO users (email, password_hash, platform_admin, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (email) DO NOTHING RETURNING id, email, password_hash, platform_admin")
            .bind(email).bind(password_hash).bind(platform_admin).bind(now_ms())
            .fetch_optional(pool).await?);
        inserted.ok_or_else(|| StoreError::Conflict {
            key: email.to_owned(),
            reason: "a user with this email exists".into(),
        })
    }

    /// The user with this email.
    pub async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"));
        Ok(on_db!(self.db()?, pool => sqlx::query_as(sql).bind(email).fetch_optional(pool).await?))
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));
        Ok(on_db!(self.db()?, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await?))
    }

    /// Deletes a user and their memberships; `NotFound` when absent.
    pub async fn delete_user(&self, id: i64) -> StoreResult<()> {
        let deleted = on_db!(self.db()?, pool => sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id).execute(pool).await?.rows_affected());
        if deleted == 0 {
            return Err(StoreError::NotFound {
                key: format!("user {id}"),
            });
        }
        self.accounts_changed().await;
        Ok(())
    }

    /// Whether any platform admin exists.
    pub async fn platform_admin_exists(&self) -> StoreResult<bool> {
        let count: i64 = on_db!(self.db()?, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE platform_admin").fetch_one(pool).await?);
        Ok(count > 0)
    }

    /// Creates a tenant; `Conflict` when the name is taken.
    pub async fn create_tenant(&self, name: &str) -> StoreResult<()> {
        let inserted = on_db!(self.db()?, pool => sqlx::query(
            "INSERT INTO tenants (name, created_at_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name).bind(now_ms()).execute(pool).await?.rows_affected());
        if inserted == 0 {
            return Err(StoreError::Conflict {
                key: name.to_owned(),
                reason: "the tenant exists".into(),
            });
        }
        Ok(())
    }

    /// Gives `user_id` `role` in `tenant` (replacing a role they had).
    pub async fn set_membership(&self, tenant: &str, user_id: i64, role: &str) -> StoreResult<()> {
        on_db!(self.db()?, pool => sqlx::query(
            "INSERT INTO memberships (tenant, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant, user_id) DO UPDATE SET role = excluded.role")
            .bind(tenant).bind(user_id).bind(role).execute(pool).await.map(|_| ())?);
        self.accounts_changed().await;
        Ok(())
    }

    /// The tenants a user belongs to, with their roles.
    pub async fn memberships(&self, user_id: i64) -> StoreResult<Vec<Membership>> {
        Ok(on_db!(self.db()?, pool => sqlx::query_as(
            "SELECT tenant, role FROM memberships WHERE user_id = $1 ORDER BY tenant")
            .bind(user_id).fetch_all(pool).await?))
    }

    /// The latest end of a lock on any of `keys` that still holds at
    /// `now_ms`, if one does.
    pub async fn sign_in_locked_until(
        &self,
        keys: &[&str; 2],
        now_ms: i64,
    ) -> StoreResult<Option<i64>> {
        Ok(on_db!(self.db()?, pool => sqlx::query_scalar(
            "SELECT MAX(locked_until_ms) FROM sign_in_failures \
             WHERE key IN ($1, $2) AND locked_until_ms > $3")
            .bind(keys[0]).bind(keys[1]).bind(now_ms).fetch_one(pool).await?))
    }

    /// Counts one failed sign-in against `key` at `now_ms`, in one statement
    /// so that concurrent failures on several server processes all count:
    /// failures older than `window_ms` are forgotten, and reaching `limit`
    /// locks the key for `lockout_ms`. Returns the failures in the window.
    pub async fn record_sign_in_failure(
        &self,
        key: &str,
        limit: i64,
        now_ms: i64,
        window_ms: i64,
        lockout_ms: i64,
    ) -> StoreResult<i64> {
        Ok(on_db!(self.db()?, pool => sqlx::query_scalar(
            "INSERT INTO sign_in_failures AS f (key, failures, window_start_ms, locked_until_ms) \
             VALUES ($1, 1, $2, CASE WHEN $3 <= 1 THEN $2 + $5 ELSE 0 END) \
             ON CONFLICT (key) DO UPDATE SET \
             failures = CASE WHEN f.window_start_ms <= $2 - $4 THEN 1 ELSE f.failures + 1 END, \
             window_start_ms = CASE WHEN f.window_start_ms <= $2 - $4 THEN $2 ELSE f.window_start_ms END, \
             locked_until_ms = CASE \
                 WHEN (CASE WHEN f.window_start_ms <= $2 - $4 THEN 1 ELSE f.failures + 1 END) >= $3 THEN $2 + $5 \
                 ELSE f.locked_until_ms END \
             RETURNING failures")
            .bind(key).bind(now_ms).bind(limit).bind(window_ms).bind(lockout_ms)
            .fetch_one(pool).await?))
    }

    /// Forgets the failed sign-ins counted against `key`.
    pub async fn clear_sign_in_failures(&self, key: &str) -> StoreResult<()> {
        on_db!(self.db()?, pool => sqlx::query("DELETE FROM sign_in_failures WHERE key = $1")
            .bind(key).execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// The secret that signs access tokens: made once, by whichever server
    /// process gets there first, and shared by all.
    pub async fn signing_secret(&self) -> StoreResult<Vec<u8>> {
        let fresh: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
        signing_secret(self.db()?, fresh).await
    }
}

async fn signing_secret(db: &Db, fresh: Vec<u8>) -> StoreResult<Vec<u8>> {
    on_db!(db, pool => {
        sqlx::query("INSERT INTO signing_keys (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(&fresh).execute(pool).await?;
        Ok(sqlx::query_scalar("SELECT secret FROM signing_keys WHERE id = 1").fetch_one(pool).await?)
    })
}

impl Store {
    /// Stores a refresh token's hash for `user_id` until `expires_at_ms`.
    pub async fn create_refresh_token(
        &self,
        token_hash: &str,
        user_id: i64,
        expires_at_ms: i64,
    ) -> StoreResult<()> {
        on_db!(self.db()?, pool => sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, expires_at_ms, revoked) VALUES ($1, $2, $3, false)")
            .bind(token_hash).bind(user_id).bind(expires_at_ms).execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// Spends a refresh token: revokes it and returns its user, if it was
    /// valid (known, unexpired, unrevoked). A token spends only once, also
    /// when two requests race with it.
    pub async fn spend_refresh_token(&self, token_hash: &str) -> StoreResult<Option<i64>> {
        Ok(on_db!(self.db()?, pool => sqlx::query_scalar(
            "UPDATE refresh_tokens SET revoked = true \
             WHERE token_hash = $1 AND NOT revoked AND expires_at_ms > $2 RETURNING user_id")
            .bind(token_hash).bind(now_ms()).fetch_optional(pool).await?))
    }

    /// Moves a valid (known, unexpired, unrevoked) refresh token's expiry
    /// to `expires_at_ms` without spending it, and returns its user.
    pub async fn extend_refresh_token(
        &self,
        token_hash: &str,
        expires_at_ms: i64,
    ) -> StoreResult<Option<i64>> {
        Ok(on_db!(self.db()?, pool => sqlx::query_scalar(
            "UPDATE refresh_tokens SET expires_at_ms = $3 \
             WHERE token_hash = $1 AND NOT revoked AND expires_at_ms > $2 RETURNING user_id")
            .bind(token_hash).bind(now_ms()).bind(expires_at_ms).fetch_optional(pool).await?))
    }

    /// Revokes a refresh token; false when it was unknown or spent.
    pub async fn revoke_refresh_token(&self, token_hash: &str) -> StoreResult<bool> {
        let revoked = on_db!(self.db()?, pool => sqlx::query(
            "UPDATE refresh_tokens SET revoked = true WHERE token_hash = $1 AND NOT revoked")
            .bind(token_hash).execute(pool).await?.rows_affected());
        Ok(revoked > 0)
    }
}

/// An API token as stored (its secret only as a hash).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiToken {
    /// The token's id.
    pub id: i64,
    /// What its maker called it.
    pub name: String,
    /// The user it acts for.
    pub user_id: i64,
    /// The one tenant it acts in.
    pub tenant: String,
    /// Its role there (never above its maker's).
    pub role: String,
    /// When it was made, ms since the epoch.
    pub created_at_ms: i64,
    /// When it stops working, if ever.
    pub expires_at_ms: Option<i64>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A new API token's fields.
#[derive(Clone, Debug)]
pub struct NewApiToken<'a> {
    /// SHA-256 of the secret, hex.
    pub token_hash: &'a str,
    /// What its maker calls it.
    pub name: &'a str,
    /// The user it acts for.
    pub user_id: i64,
    /// The tenant it acts in.
    pub tenant: &'a str,
    /// Its role there.
    pub role: &'a str,
    /// When it stops working, if ever.
    pub expires_at_ms: Option<i64>,
}

const TOKEN_COLUMNS: &str =
    "id, name, user_id, tenant, role, created_at_ms, expires_at_ms, revoked";

impl Store {
    /// Stores a new API token.
    pub async fn create_api_token(&self, token: &NewApiToken<'_>) -> StoreResult<ApiToken> {
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO api_tokens (token_hash, name, user_id, tenant, role, created_at_ms, expires_at_ms, revoked) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, false) RETURNING {TOKEN_COLUMNS}"
        ));
        Ok(on_db!(self.db()?, pool => sqlx::query_as(sql)
            .bind(token.token_hash).bind(token.name).bind(token.user_id).bind(token.tenant)
            .bind(token.role).bind(now_ms()).bind(token.expires_at_ms)
            .fetch_one(pool).await?))
    }

    /// The live API token with this hash: known, unrevoked, unexpired.
    pub async fn live_api_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND NOT revoked \
             AND (expires_at_ms IS NULL OR expires_at_ms > $2)"
        ));
        Ok(on_db!(self.db()?, pool => sqlx::query_as(sql)
            .bind(token_hash).bind(now_ms()).fetch_optional(pool).await?))
    }

    /// The API tokens of `tenant`, newest first (revoked ones included).
    pub async fn api_tokens(&self, tenant: &str) -> StoreResult<Vec<ApiToken>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE tenant = $1 ORDER BY id DESC"
        ));
        Ok(on_db!(self.db()?, pool => sqlx::query_as(sql).bind(tenant).fetch_all(pool).await?))
    }

    /// The API token with this id, live or not.
    pub async fn api_token(&self, id: i64) -> StoreResult<Option<ApiToken>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
        ));
        Ok(on_db!(self.db()?, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await?))
    }

    /// Revokes an API token; false when it was unknown or revoked already.
    pub async fn revoke_api_token(&self, id: i64) -> StoreResult<bool> {
        let revoked = on_db!(self.db()?, pool => sqlx::query(
            "UPDATE api_tokens SET revoked = true WHERE id = $1 AND NOT revoked")
            .bind(id).execute(pool).await?.rows_affected());
        Ok(revoked > 0)
    }
}

/// A tenant as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Tenant {
    /// Its name (a DNS-1123 label).
    pub name: String,
    /// When it was made, ms since the epoch.
    pub created_at_ms: i64,
    /// Its Pod Security level: `privileged`, `baseline` or `restricted`
    /// (the schema allows no other).
    pub pod_security: String,
}

/// A member of a tenant, with the account's email.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantMember {
    /// The member's user id.
    pub user_id: i64,
    /// The member's email.
    pub email: String,
    /// `owner`, `admin`, `editor` or `viewer`.
    pub role: String,
}

/// What [`Store::put_tenant_member`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberWrite {
    /// The user was not a member before.
    Added,
    /// The user was a member and now has the new role.
    Changed,
}

/// Runs `$body` in a transaction that no other membership change of the
/// same tenant runs beside, so that "is there another owner?" stays true
/// until the commit. SQLite has one writer at a time (`BEGIN IMMEDIATE`
/// takes the write lock up front); PostgreSQL locks the tenant's row.
/// `$body` reads and writes through `&mut *$tx` and may return early with
/// an error, which rolls the transaction back.
macro_rules! in_tenant_tx {
    ($db:expr, $tenant:expr, $tx:ident => $body:expr) => {
        match $db {
            Db::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let outcome = $body;
                $tx.commit().await?;
                outcome
            }
            Db::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                sqlx::query("SELECT name FROM tenants WHERE name = $1 FOR UPDATE")
                    .bind($tenant)
                    .execute(&mut *$tx)
                    .await?;
                let outcome = $body;
                $tx.commit().await?;
                outcome
            }
        }
    };
}

/// The `Conflict` a membership change answers when the member's role is not
/// what the caller read moments before.
fn member_changed(tenant: &str, user_id: i64) -> StoreError {
    StoreError::Conflict {
        key: format!("{tenant}/{user_id}"),
        reason: "the membership changed meanwhile; read it again and retry".into(),
    }
}

/// The `Conflict` a membership change answers when it would leave the tenant
/// without an owner.
fn last_owner(tenant: &str, user_id: i64) -> StoreError {
    StoreError::Conflict {
        key: format!("{tenant}/{user_id}"),
        reason: format!(
            "user {user_id} is the last owner of tenant {tenant}; make someone else owner first"
        ),
    }
}

impl Store {
    /// Every user, by id.
    pub async fn users(&self) -> StoreResult<Vec<User>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"));
        Ok(on_db!(self.db()?, pool => sqlx::query_as(sql).fetch_all(pool).await?))
    }

    /// Every tenant, by name.
    pub async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        Ok(on_db!(self.db()?, pool => sqlx::query_as(
            "SELECT name, created_at_ms, pod_security FROM tenants ORDER BY name").fetch_all(pool).await?))
    }

    /// The tenant with this name.
    pub async fn tenant(&self, name: &str) -> StoreResult<Option<Tenant>> {
        Ok(on_db!(self.db()?, pool => sqlx::query_as(
            "SELECT name, created_at_ms, pod_security FROM tenants WHERE name = $1")
            .bind(name).fetch_optional(pool).await?))
    }

    /// Sets a tenant's Pod Security level (`privileged`, `baseline` or
    /// `restricted`); `NotFound` when there is no such tenant.
    pub async fn set_tenant_pod_security(&self, name: &str, level: &str) -> StoreResult<()> {
        let updated = on_db!(self.db()?, pool => sqlx::query(
            "UPDATE tenants SET pod_security = $2 WHERE name = $1")
            .bind(name).bind(level).execute(pool).await?.rows_affected());
        if updated == 0 {
            return Err(StoreError::NotFound {
                key: format!("tenant {name}"),
            });
        }
        Ok(())
    }

    /// Creates a tenant with `owner` as its owner: both or neither.
    /// `Conflict` when the name is taken.
    pub async fn create_tenant_owned_by(&self, name: &str, owner: i64) -> StoreResult<Tenant> {
        let tenant = on_db!(self.db()?, pool => {
            let mut tx = pool.begin().await?;
            let tenant: Option<Tenant> = sqlx::query_as(
                "INSERT INTO tenants (name, created_at_ms) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING RETURNING name, created_at_ms, pod_security")
                .bind(name).bind(now_ms()).fetch_optional(&mut *tx).await?;
            let Some(tenant) = tenant else {
                return Err(StoreError::Conflict {
                    key: name.to_owned(),
                    reason: "the tenant exists".into(),
                });
            };
            sqlx::query("INSERT INTO memberships (tenant, user_id, role) VALUES ($1, $2, 'owner')")
                .bind(name).bind(owner).execute(&mut *tx).await?;
            tx.commit().await?;
            tenant
        });
        self.accounts_changed().await;
        Ok(tenant)
    }

    /// The members of a tenant, by email.
    pub async fn tenant_members(&self, tenant: &str) -> StoreResult<Vec<TenantMember>> {
        Ok(on_db!(self.db()?, pool => sqlx::query_as(
            "SELECT m.user_id, u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.tenant = $1 ORDER BY u.email")
            .bind(tenant).fetch_all(pool).await?))
    }

    /// One member of a tenant.
    pub async fn tenant_member(
        &self,
        tenant: &str,
        user_id: i64,
    ) -> StoreResult<Option<TenantMember>> {
        Ok(on_db!(self.db()?, pool => sqlx::query_as(
            "SELECT m.user_id, u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.tenant = $1 AND m.user_id = $2")
            .bind(tenant).bind(user_id).fetch_optional(pool).await?))
    }

    /// Gives `user_id` `role` in `tenant`, provided their role is still
    /// `expected` (`None`: not a member), as the caller read it to decide.
    /// `Conflict` when it changed meanwhile, or when the change would leave
    /// the tenant without an owner.
    pub async fn put_tenant_member(
        &self,
        tenant: &str,
        user_id: i64,
        role: &str,
        expected: Option<&str>,
    ) -> StoreResult<MemberWrite> {
        let write = in_tenant_tx!(self.db()?, tenant, tx => {
            let current: Option<String> = sqlx::query_scalar(
                "SELECT role FROM memberships WHERE tenant = $1 AND user_id = $2")
                .bind(tenant).bind(user_id).fetch_optional(&mut *tx).await?;
            if current.as_deref() != expected {
                return Err(member_changed(tenant, user_id));
            }
            if current.as_deref() == Some("owner") && role != "owner" {
                let owners: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM memberships WHERE tenant = $1 AND role = 'owner'")
                    .bind(tenant).fetch_one(&mut *tx).await?;
                if owners <= 1 {
                    return Err(last_owner(tenant, user_id));
                }
            }
            sqlx::query(
                "INSERT INTO memberships (tenant, user_id, role) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, user_id) DO UPDATE SET role = excluded.role")
                .bind(tenant).bind(user_id).bind(role).execute(&mut *tx).await?;
            if current.is_some() { MemberWrite::Changed } else { MemberWrite::Added }
        });
        self.accounts_changed().await;
        Ok(write)
    }

    /// Removes `user_id` from `tenant`, provided their role is still
    /// `expected`, as the caller read it to decide. `NotFound` when they are
    /// not a member; `Conflict` when their role changed meanwhile, or when
    /// they are the tenant's last owner.
    pub async fn remove_tenant_member(
        &self,
        tenant: &str,
        user_id: i64,
        expected: &str,
    ) -> StoreResult<()> {
        in_tenant_tx!(self.db()?, tenant, tx => {
            let current: Option<String> = sqlx::query_scalar(
                "SELECT role FROM memberships WHERE tenant = $1 AND user_id = $2")
                .bind(tenant).bind(user_id).fetch_optional(&mut *tx).await?;
            match current.as_deref() {
                None => {
                    return Err(StoreError::NotFound {
                        key: format!("{tenant}/{user_id}"),
                    });
                }
                Some(role) if role != expected => return Err(member_changed(tenant, user_id)),
                Some(role) => {
                    if role == "owner" {
                        let owners: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM memberships WHERE tenant = $1 AND role = 'owner'")
                            .bind(tenant).fetch_one(&mut *tx).await?;
                        if owners <= 1 {
                            return Err(last_owner(tenant, user_id));
                        }
                    }
                }
            }
            sqlx::query("DELETE FROM memberships WHERE tenant = $1 AND user_id = $2")
                .bind(tenant).bind(user_id).execute(&mut *tx).await?;
        });
        self.accounts_changed().await;
        Ok(())
    }

    /// Deletes a tenant's row; its memberships and API tokens go with it
    /// (the foreign keys cascade). Its objects live in the revision log and
    /// are the caller's to delete first. `NotFound` when absent.
    pub async fn delete_tenant(&self, name: &str) -> StoreResult<()> {
        let deleted = on_db!(self.db()?, pool => sqlx::query("DELETE FROM tenants WHERE name = $1")
            .bind(name).execute(pool).await?.rows_affected());
        if deleted == 0 {
            return Err(StoreError::NotFound {
                key: format!("tenant {name}"),
            });
        }
        self.accounts_changed().await;
        Ok(())
    }
}
