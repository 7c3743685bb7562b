//! The credentials of the node API beside the revision log: join tokens
//! (with which an agent registers) and node credentials (which a registered
//! agent then presents). Plain tables, no revisions; secrets only as
//! SHA-256 hashes.

use super::db::Db;
use super::error::StoreResult;
use super::{Store, now_ms};

/// A join token as stored (its secret only as a hash).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct JoinToken {
    /// The token's id.
    pub id: i64,
    /// What its maker calls it (`bootstrap` for the one made at first start).
    pub name: String,
    /// When it was made, ms since the epoch.
    pub created_at_ms: i64,
    /// When it stops working, if ever.
    pub expires_at_ms: Option<i64>,
    /// Whether it was revoked.
    pub revoked: bool,
}

const JOIN_TOKEN_COLUMNS: &str = "id, name, created_at_ms, expires_at_ms, revoked";

impl Store {
    /// Stores a join token's hash. Storing a hash that is there already
    /// changes nothing (a restarted server re-announces its `node-token`)
    /// and answers the stored token.
    pub async fn create_join_token(
        &self,
        token_hash: &str,
        name: &str,
        expires_at_ms: Option<i64>,
    ) -> StoreResult<JoinToken> {
        let insert = "INSERT INTO node_join_tokens (token_hash, name, created_at_ms, expires_at_ms, revoked) \
             VALUES ($1, $2, $3, $4, false) ON CONFLICT (token_hash) DO NOTHING";
        let select = sqlx::AssertSqlSafe(format!(
            "SELECT {JOIN_TOKEN_COLUMNS} FROM node_join_tokens WHERE token_hash = $1"
        ));
        Ok(on_db!(self.db()?, pool => {
            sqlx::query(insert)
                .bind(token_hash).bind(name).bind(now_ms()).bind(expires_at_ms)
                .execute(pool).await?;
            sqlx::query_as(select).bind(token_hash).fetch_one(pool).await?
        }))
    }

    /// Whether a join token with this hash is live: known, unrevoked,
    /// unexpired.
    pub async fn join_token_is_live(&self, token_hash: &str) -> StoreResult<bool> {
        let found: Option<i64> = on_db!(self.db()?, pool => sqlx::query_scalar(
            "SELECT id FROM node_join_tokens WHERE token_hash = $1 AND NOT revoked \
             AND (expires_at_ms IS NULL OR expires_at_ms > $2)")
            .bind(token_hash).bind(now_ms()).fetch_optional(pool).await?);
        Ok(found.is_some())
    }

    /// Every join token, newest first (revoked ones included).
    pub async fn join_tokens(&self) -> StoreResult<Vec<JoinToken>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {JOIN_TOKEN_COLUMNS} FROM node_join_tokens ORDER BY id DESC"
        ));
        Ok(on_db!(self.db()?, pool => sqlx::query_as(sql).fetch_all(pool).await?))
    }

    /// Revokes a join token; false when it was unknown or revoked already.
    /// Nodes registered with it keep their credentials.
    pub async fn revoke_join_token(&self, id: i64) -> StoreResult<bool> {
        let revoked = on_db!(self.db()?, pool => sqlx::query(
            "UPDATE node_join_tokens SET revoked = true WHERE id = $1 AND NOT revoked")
            .bind(id).execute(pool).await?.rows_affected());
        Ok(revoked > 0)
    }

    /// Makes `token_hash` the credential of `node_name`, replacing any
    /// earlier one.
    pub async fn set_node_credential(&self, node_name: &str, token_hash: &str) -> StoreResult<()> {
        on_db!(self.db()?, pool => sqlx::query(
            "INSERT INTO node_credentials (node_name, token_hash, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (node_name) DO UPDATE SET token_hash = excluded.token_hash, \
             created_at_ms = excluded.created_at_ms")
            .bind(node_name).bind(token_hash).bind(now_ms()).execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// The node whose credential has this hash, if any.
    pub async fn node_for_credential(&self, token_hash: &str) -> StoreResult<Option<String>> {
        Ok(on_db!(self.db()?, pool => sqlx::query_scalar(
            "SELECT node_name FROM node_credentials WHERE token_hash = $1")
            .bind(token_hash).fetch_optional(pool).await?))
    }

    /// Forgets a node's credential; false when it had none.
    pub async fn delete_node_credential(&self, node_name: &str) -> StoreResult<bool> {
        let deleted = on_db!(self.db()?, pool => sqlx::query(
            "DELETE FROM node_credentials WHERE node_name = $1")
            .bind(node_name).execute(pool).await?.rows_affected());
        Ok(deleted > 0)
    }
}
