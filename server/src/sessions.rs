//! Dashboard sessions. A browser that signs in holds two HttpOnly cookies:
//! the session (a refresh token's secret, stored hashed) and an access
//! token (the same short-lived JWT the API hands out). When the access
//! token runs out, the next request renews it from the session and moves
//! the session's end on, so an active user is never signed out in the
//! middle of an edit, while the session is never spent: requests racing
//! each other all succeed.
//!
//! Every request that changes something must also carry the session's CSRF
//! token, which pages embed and a forged cross-site request cannot know.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::auth::{self, AuthError, Subject, Tokens};
use crate::store::Store;
use crate::store::identity::User;

/// The session cookie: the session's secret.
pub const SESSION_COOKIE: &str = "berth_session";
/// The access cookie: a JWT, renewed from the session when it runs out.
pub const ACCESS_COOKIE: &str = "berth_access";
/// The header scripts send the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field HTML forms send the CSRF token in.
pub const CSRF_FIELD: &str = "csrf";

/// A new session's cookies' values.
pub struct Started {
    /// The session's secret.
    pub session: String,
    /// The first access token.
    pub access: String,
}

/// Starts a session for `user` that ends after `idle` without a renewal.
pub async fn start(
    store: &Store,
    tokens: &Tokens,
    user: &User,
    idle: Duration,
) -> Result<Started, AuthError> {
    let session = auth::new_token_secret();
    store
        .create_refresh_token(&auth::hash_token_secret(&session), user.id, ends_at(idle))
        .await?;
    Ok(Started {
        session,
        access: tokens.issue(user)?,
    })
}

/// The caller of a session whose access token ran out, with a new access
/// token; `None` when the session has ended (signed out, idle too long,
/// or the user deleted).
pub async fn resume(
    store: &Store,
    tokens: &Tokens,
    session: &str,
    idle: Duration,
) -> Result<Option<(Subject, String)>, AuthError> {
    let Some(user_id) = store
        .extend_refresh_token(&auth::hash_token_secret(session), ends_at(idle))
        .await?
    else {
        return Ok(None);
    };
    let Some(user) = store.user_by_id(user_id).await? else {
        return Ok(None);
    };
    let access = tokens.issue(&user)?;
    Ok(Some((Subject::load(store, user_id).await?, access)))
}

/// Ends a session; its access token lives on until it expires, but the
/// browser drops both cookies.
pub async fn end(store: &Store, session: &str) -> Result<(), AuthError> {
    store
        .revoke_refresh_token(&auth::hash_token_secret(session))
        .await?;
    Ok(())
}

/// The CSRF token of a session: derived from its secret, which only the
/// browser holding the cookie (and never a script: it is HttpOnly) knows.
pub fn csrf_token(session: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"berth-csrf\0");
    hasher.update(session.as_bytes());
    hex::encode(hasher.finalize())
}

/// Whether `presented` is the session's CSRF token (in constant time).
pub fn csrf_matches(session: &str, presented: &str) -> bool {
    let expected = csrf_token(session);
    expected.len() == presented.len()
        && expected
            .bytes()
            .zip(presented.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn ends_at(idle: Duration) -> i64 {
    (chrono::Utc::now() + chrono::Duration::from_std(idle).unwrap_or_default()).timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_s_csrf_token_is_its_own() {
        let token = csrf_token("secret-a");
        assert!(csrf_matches("secret-a", &token));
        assert!(!csrf_matches("secret-b", &token));
        assert!(!csrf_matches("secret-a", ""));
        assert!(!csrf_matches("secret-a", &token[..10]));
    }
}
