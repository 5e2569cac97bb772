//! Counting password attempts: failed logins and own-password changes per user name and client
//! address.

use super::*;

pub const MAX_FAILURES: u32 = 5;
pub const LOCKOUT_SECONDS: i64 = 300;
/// Keys remembered at most (oldest windows are forgotten first).
const MAX_KEYS: usize = 10_000;

/// Counts password attempts (logins, and changes of one's own password) per key (user name,
/// client address) in fixed windows. An attempt is counted *before* its password is checked,
/// under one lock, so attempts made at once can never check more than [`MAX_FAILURES`]
/// passwords per key and window; a successful one gives its count back.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl LoginLimiter {
    /// Counts one attempt for each of `keys`, or refuses (counting nothing) when any of them
    /// has used its attempts in its window, naming how long to wait.
    pub fn attempt(&self, keys: &[String], now: i64) -> Result<()> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            if let Some((start, n)) = w.get(k) {
                let left = start + LOCKOUT_SECONDS - now;
                if *n >= MAX_FAILURES && left > 0 {
                    return Err(Error::TooManyRequests(format!(
                        "too many failed logins or password attempts: try again in {left} s"
                    )));
                }
            }
        }
        if w.len() >= MAX_KEYS {
            w.retain(|_, (start, _)| *start + LOCKOUT_SECONDS > now);
        }
        for k in keys {
            let e = w.entry(k.clone()).or_insert((now, 0));
            if e.0 + LOCKOUT_SECONDS <= now {
                *e = (now, 0);
            }
            e.1 += 1;
        }
        Ok(())
    }

    /// The attempt counted for `keys` succeeded: the first key (the account) starts again;
    /// the others (the address) only get that attempt back, so one valid account does not
    /// buy more guesses at the others.
    pub fn succeeded(&self, keys: &[String]) {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((first, rest)) = keys.split_first() {
            w.remove(first);
            for k in rest {
                if let Some(e) = w.get_mut(k) {
                    e.1 = e.1.saturating_sub(1);
                }
            }
        }
    }
}
