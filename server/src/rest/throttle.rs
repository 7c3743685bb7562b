//! Slows and then refuses repeated failed sign-ins, per account and per
//! address. Kept in memory per server process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures within this window count together.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a locked account or address is refused.
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Failures before an account is locked.
const MAX_ACCOUNT_FAILURES: u32 = 5;
/// Failures before an address is locked (several people may share one).
const MAX_ADDRESS_FAILURES: u32 = 20;
/// Failures answered at full speed; each one after adds this much delay.
const FREE_FAILURES: u32 = 2;
const DELAY_STEP: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

/// The failed sign-ins seen by this process.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    fn keys(email: &str, address: &str) -> [(String, u32); 2] {
        [
            (
                format!("account:{}", email.to_lowercase()),
                MAX_ACCOUNT_FAILURES,
            ),
            (format!("address:{address}"), MAX_ADDRESS_FAILURES),
        ]
    }

    /// `Err(retry_after)` while the account or the address is locked.
    pub fn check(&self, email: &str, address: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for (key, _) in Self::keys(email, address) {
            if let Some(until) = failures.get(&key).and_then(|f| f.locked_until)
                && until > now
            {
                return Err(until - now);
            }
        }
        Ok(())
    }

    /// Records a failure; returns how long to hold the answer back.
    pub fn failed(&self, email: &str, address: &str) -> Duration {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut delay = Duration::ZERO;
        for (key, limit) in Self::keys(email, address) {
            let entry = failures.entry(key).or_insert(Failures {
                count: 0,
                since: now,
                locked_until: None,
            });
            if now.duration_since(entry.since) > WINDOW {
                *entry = Failures {
                    count: 0,
                    since: now,
                    locked_until: None,
                };
            }
            entry.count += 1;
            if entry.count >= limit {
                entry.locked_until = Some(now + LOCKOUT);
            }
            delay = delay.max(DELAY_STEP * entry.count.saturating_sub(FREE_FAILURES));
        }
        delay
    }

    /// Forgets an account's failures after a successful sign-in.
    pub fn succeeded(&self, email: &str) {
        let key = format!("account:{}", email.to_lowercase());
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}
