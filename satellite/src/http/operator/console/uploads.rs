//! Uploaded sync responses waiting for "Apply", and the console's login limiter.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::web;

use crate::error::Result;
use crate::operators;

/// What the console keeps in memory: the failed-login counter and uploaded sync responses
/// waiting for "Apply".
#[derive(Debug, Default)]
pub struct ConsoleState {
    pub logins: operators::LoginLimiter,
    uploads: Mutex<HashMap<String, Pending>>,
    arrivals: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Pending {
    session: String,
    filename: String,
    data: web::Bytes,
    /// Order of arrival, so the oldest goes first.
    seq: u64,
}

/// Uploads kept at most (one per session; beyond, the oldest goes).
const MAX_PENDING: usize = 8;

impl ConsoleState {
    pub(super) fn keep(&self, session: &str, filename: &str, data: web::Bytes) -> Result<String> {
        let id = operators::random_hex(16)?;
        let seq = self
            .arrivals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, p| p.session != session);
        if m.len() >= MAX_PENDING {
            let oldest = m.iter().min_by_key(|(_, p)| p.seq).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        m.insert(
            id.clone(),
            Pending {
                session: session.to_string(),
                filename: filename.to_string(),
                data,
                seq,
            },
        );
        Ok(id)
    }

    pub(super) fn take(&self, id: &str, session: &str) -> Option<(String, web::Bytes)> {
        let mut m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(id) {
            Some(p) if p.session == session => m.remove(id).map(|p| (p.filename, p.data)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_wait_for_their_own_session_and_the_oldest_goes() {
        let c = ConsoleState::default();
        let a = c
            .keep("session-a", "r.zip", web::Bytes::from_static(b"a"))
            .unwrap();
        assert!(
            c.take(&a, "session-b").is_none(),
            "another session cannot apply it"
        );
        let a2 = c
            .keep("session-a", "r2.zip", web::Bytes::from_static(b"a2"))
            .unwrap();
        assert!(
            c.take(&a, "session-a").is_none(),
            "a new upload replaces the session's last"
        );
        let mut ids: Vec<String> = (0..MAX_PENDING)
            .map(|i| {
                c.keep(&format!("s{i}"), "x.zip", web::Bytes::from_static(b"x"))
                    .unwrap()
            })
            .collect();
        assert!(c.take(&a2, "session-a").is_none(), "the oldest went");
        let last = ids.pop().unwrap();
        assert_eq!(
            c.take(&last, &format!("s{}", MAX_PENDING - 1)).unwrap().0,
            "x.zip"
        );
        assert!(
            c.take(&last, &format!("s{}", MAX_PENDING - 1)).is_none(),
            "taken once"
        );
    }
}
