//! Signing in with an email and a password, the one way for every API: the
//! REST API's `POST /auth/login` and the etcd API's `Auth.Authenticate` both
//! come through [`sign_in`], so that they share one throttle.
//!
//! The throttle counts failed sign-ins per account and per client address
//! in the database (`sign_in_failures`), so that every server process on one
//! database sees the same counts: adding a replica adds nothing to an
//! attacker's budget. After a few free failures each one is answered more
//! slowly; at the limit the account (or the address) is locked for a while,
//! and a locked account is refused before its password is even checked, on
//! every path, so the right password does not open it either.

use std::time::Duration;

use crate::auth::{self, AuthError};
use crate::store::identity::User;
use crate::store::{Store, StoreError};

/// Failures within this window count together.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a locked account or address is refused.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Failures before an account is locked.
pub const MAX_ACCOUNT_FAILURES: i64 = 5;
/// Failures before an address is locked (several people may share one).
pub const MAX_ADDRESS_FAILURES: i64 = 20;
/// Failures answered at full speed; each one after adds [`DELAY_STEP`].
const FREE_FAILURES: i64 = 2;
const DELAY_STEP: Duration = Duration::from_millis(250);
/// The longest an answer is held back, so that a slow answer never looks
/// like a hung server.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Wrong email or password (never says which). The answer has already
    /// been held back as the throttle asks.
    #[error("authentication failed, invalid user ID or password")]
    BadCredentials,
    /// Too many failures: the account or the address is locked for
    /// `retry_after`.
    #[error("too many failed authentication attempts; retry in {} s", retry_after.as_secs().max(1))]
    Locked {
        /// How long until the lock ends.
        retry_after: Duration,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error("{0}")]
    Unexpected(String),
}

/// The throttle's counters for one attempt.
fn counters(email: &str, address: &str) -> [(String, i64); 2] {
    [
        (
            format!("account:{}", email.to_lowercase()),
            MAX_ACCOUNT_FAILURES,
        ),
        (format!("address:{address}"), MAX_ADDRESS_FAILURES),
    ]
}

/// Signs `email` in with `password`, from client `address` (an IP, or empty
/// when unknown). Refuses a locked account or address before checking the
/// password; counts a failure and holds the answer back as the throttle
/// asks; forgets the account's failures on success.
#[tracing::instrument(skip_all)]
pub async fn sign_in(
    store: &Store,
    email: &str,
    password: &str,
    address: &str,
) -> Result<User, SignInError> {
    let counters = counters(email, address);
    let keys = [counters[0].0.as_str(), counters[1].0.as_str()];
    let now = crate::store::now_ms();
    if let Some(locked_until) = store.sign_in_locked_until(&keys, now).await? {
        return Err(SignInError::Locked {
            retry_after: Duration::from_millis((locked_until - now).max(0) as u64),
        });
    }
    match auth::authenticate(store, email, password).await {
        Ok(user) => {
            store.clear_sign_in_failures(keys[0]).await?;
            Ok(user)
        }
        Err(AuthError::BadCredentials) => {
            let mut worst = 0;
            for (key, limit) in &counters {
                let failures = store
                    .record_sign_in_failure(
                        key,
                        *limit,
                        now,
                        WINDOW.as_millis() as i64,
                        LOCKOUT.as_millis() as i64,
                    )
                    .await?;
                worst = worst.max(failures);
            }
            tokio::time::sleep(delay_after(worst)).await;
            Err(SignInError::BadCredentials)
        }
        Err(AuthError::Store(error)) => Err(SignInError::Store(error)),
        Err(other) => Err(SignInError::Unexpected(other.to_string())),
    }
}

/// How long to hold back the answer to the `failures`th failure in a row.
fn delay_after(failures: i64) -> Duration {
    let slowed = u32::try_from((failures - FREE_FAILURES).max(0)).unwrap_or(u32::MAX);
    DELAY_STEP.saturating_mul(slowed).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failures_are_answered_at_once_and_later_ones_slower() {
        assert_eq!(delay_after(1), Duration::ZERO);
        assert_eq!(delay_after(2), Duration::ZERO);
        assert_eq!(delay_after(3), DELAY_STEP);
        assert_eq!(delay_after(4), DELAY_STEP * 2);
        assert_eq!(delay_after(1_000), MAX_DELAY);
    }

    #[test]
    fn accounts_are_counted_case_insensitively_and_apart_from_addresses() {
        let [(account, account_limit), (address, address_limit)] =
            counters("Alice@Acme.test", "10.0.0.1");
        assert_eq!(account, "account:alice@acme.test");
        assert_eq!(account_limit, MAX_ACCOUNT_FAILURES);
        assert_eq!(address, "address:10.0.0.1");
        assert_eq!(address_limit, MAX_ADDRESS_FAILURES);
    }

    #[tokio::test]
    async fn five_failures_lock_the_account_even_for_the_right_password() {
        let (_dir, store) = crate::store::temporary().await;
        let hash = auth::hash_password("right-password").unwrap();
        store.create_user("a@b.test", &hash, false).await.unwrap();
        for _ in 0..MAX_ACCOUNT_FAILURES {
            let refused = sign_in(&store, "a@b.test", "wrong", "192.0.2.1").await;
            assert!(matches!(refused, Err(SignInError::BadCredentials)));
        }
        // Another address does not help: the account itself is locked.
        match sign_in(&store, "A@b.test", "right-password", "192.0.2.2").await {
            Err(SignInError::Locked { retry_after }) => {
                assert!(retry_after > LOCKOUT - Duration::from_secs(60));
                assert!(retry_after <= LOCKOUT);
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_success_forgets_the_accounts_earlier_failures() {
        let (_dir, store) = crate::store::temporary().await;
        let hash = auth::hash_password("right-password").unwrap();
        store.create_user("a@b.test", &hash, false).await.unwrap();
        for round in 0..3 {
            for _ in 0..MAX_ACCOUNT_FAILURES - 1 {
                let refused =
                    sign_in(&store, "a@b.test", "wrong", &format!("192.0.2.{round}")).await;
                assert!(matches!(refused, Err(SignInError::BadCredentials)));
            }
            sign_in(&store, "a@b.test", "right-password", "192.0.2.9")
                .await
                .unwrap();
        }
    }
}
