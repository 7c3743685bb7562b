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
    /// Creates a user; `Conflict` when the email is taken.
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        platform_admin: bool,
    ) -> StoreResult<User> {
        let inserted: Option<User> = on_db!(&self.inner.db, pool => sqlx::query_as(
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
        Ok(
            on_db!(&self.inner.db, pool => sqlx::query_as(sql).bind(email).fetch_optional(pool).await?),
        )
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));
        Ok(on_db!(&self.inner.db, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await?))
    }

    /// Deletes a user and their memberships; `NotFound` when absent.
    pub async fn delete_user(&self, id: i64) -> StoreResult<()> {
        let deleted = on_db!(&self.inner.db, pool => sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id).execute(pool).await?.rows_affected());
        if deleted == 0 {
            return Err(StoreError::NotFound {
                key: format!("user {id}"),
            });
        }
        Ok(())
    }

    /// Whether any platform admin exists.
    pub async fn platform_admin_exists(&self) -> StoreResult<bool> {
        let count: i64 = on_db!(&self.inner.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE platform_admin").fetch_one(pool).await?);
        Ok(count > 0)
    }

    /// Creates a tenant; `Conflict` when the name is taken.
    pub async fn create_tenant(&self, name: &str) -> StoreResult<()> {
        let inserted = on_db!(&self.inner.db, pool => sqlx::query(
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
        on_db!(&self.inner.db, pool => sqlx::query(
            "INSERT INTO memberships (tenant, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant, user_id) DO UPDATE SET role = excluded.role")
            .bind(tenant).bind(user_id).bind(role).execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// The tenants a user belongs to, with their roles.
    pub async fn memberships(&self, user_id: i64) -> StoreResult<Vec<Membership>> {
        Ok(on_db!(&self.inner.db, pool => sqlx::query_as(
            "SELECT tenant, role FROM memberships WHERE user_id = $1 ORDER BY tenant")
            .bind(user_id).fetch_all(pool).await?))
    }

    /// The secret that signs access tokens: made once, by whichever server
    /// process gets there first, and shared by all.
    pub async fn signing_secret(&self) -> StoreResult<Vec<u8>> {
        let fresh: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
        signing_secret(&self.inner.db, fresh).await
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
        on_db!(&self.inner.db, pool => sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, expires_at_ms, revoked) VALUES ($1, $2, $3, false)")
            .bind(token_hash).bind(user_id).bind(expires_at_ms).execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// Spends a refresh token: revokes it and returns its user, if it was
    /// valid (known, unexpired, unrevoked). A token spends only once, also
    /// when two requests race with it.
    pub async fn spend_refresh_token(&self, token_hash: &str) -> StoreResult<Option<i64>> {
        Ok(on_db!(&self.inner.db, pool => sqlx::query_scalar(
            "UPDATE refresh_tokens SET revoked = true \
             WHERE token_hash = $1 AND NOT revoked AND expires_at_ms > $2 RETURNING user_id")
            .bind(token_hash).bind(now_ms()).fetch_optional(pool).await?))
    }

    /// Revokes a refresh token; false when it was unknown or spent.
    pub async fn revoke_refresh_token(&self, token_hash: &str) -> StoreResult<bool> {
        let revoked = on_db!(&self.inner.db, pool => sqlx::query(
            "UPDATE refresh_tokens SET revoked = true WHERE token_hash = $1 AND NOT revoked")
            .bind(token_hash).execute(pool).await?.rows_affected());
        Ok(revoked > 0)
    }
}
