//! The checks every device request goes through, below both the device flows (`devices`)
//! and the export-controlled ones (`export`), which both use them: field syntax, the
//! satellite's registration and its removal deadline, and a signed request's product
//! instance and counter.

use diesel::SqliteConnection;

use crate::db::devices::{self as db, PiRow};
use crate::db::identity::{self, SatelliteRow};
use crate::error::{Error, Reason, Result};
use crate::states::PiState;
use crate::states::SatelliteState;

/// Whether `v` is 1 to `max` bytes of ASCII letters, digits or `extra`.
pub fn field_ok(v: &str, max: usize, extra: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= max
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// The satellite must be registered, and not past its 90-day sync deadline, to serve
/// devices. Past the deadline it refuses at once, even before the scheduler has marked it
/// removed.
pub fn require_registered(conn: &mut SqliteConnection, now: i64) -> Result<identity::SatelliteRow> {
    let me = identity::require(conn)?;
    let removed = || {
        Error::Removed(
            "this satellite has been removed (90 days without a sync with the cloud) and no \
             longer authorizes devices: keep the current authorization until it expires, then \
             run in the grace period; the satellite must be registered again"
                .into(),
        )
    };
    match me.state {
        SatelliteState::Registered if past_removal(&me, now) => Err(removed()),
        SatelliteState::Registered => Ok(me),
        SatelliteState::Removed => Err(removed()),
        other => Err(Error::State(Reason::new(
            "not_registered",
            format!(
                "this satellite is {other}: it serves devices once it is registered with the cloud"
            ),
        ))),
    }
}

/// After this long without a successful sync the satellite removes itself (seed 001: 90
/// days). The sync timers ([`crate::sync::deadlines`]) act on it; devices are refused past it.
pub const REMOVAL_AFTER: i64 = 90 * crate::clock::DAY;

/// When the satellite last synchronized (or registered, before its first sync).
pub fn last_sync(me: &SatelliteRow) -> Option<i64> {
    me.last_sync_at.or(me.registered_at)
}

/// When a registered satellite will remove itself.
pub fn removal_at(me: &SatelliteRow) -> Option<i64> {
    last_sync(me).map(|t| t + REMOVAL_AFTER)
}

/// Whether a registered satellite is past its removal deadline at `now`.
pub fn past_removal(me: &SatelliteRow, now: i64) -> bool {
    me.is_registered() && removal_at(me).is_some_and(|at| now >= at)
}

/// How far a counter may run ahead of the greater of the device's last counter and the
/// satellite's time in milliseconds: enough for any count of requests or clock skew (about
/// 49 days in milliseconds), and a device can never push its counter to where no later
/// request could follow it (such as `i64::MAX`).
pub const COUNTER_STEP: i64 = 1 << 32;

/// The highest counter a device may send now.
pub fn counter_ceiling(last: i64, now: i64) -> i64 {
    last.max(now.saturating_mul(1000))
        .saturating_add(COUNTER_STEP)
}

/// In the writer: the instance as it is now, still active, and the counter higher than
/// any before (a replayed or reordered request is refused) but not beyond
/// [`counter_ceiling`]. Records the contact.
pub fn fresh(conn: &mut SqliteConnection, pi_uuid: &str, counter: i64, now: i64) -> Result<PiRow> {
    let pi = db::by_uuid(conn, pi_uuid)?
        .filter(|p| p.state == PiState::Active)
        .ok_or_else(|| {
            Error::Unauthorized(Reason::new(
                "device_removed",
                format!("unknown or removed product instance {pi_uuid:?}"),
            ))
        })?;
    if counter <= pi.last_counter {
        return Err(Error::Conflict(Reason::new(
            "replayed",
            format!(
                "replayed or out-of-order request: counter {counter} is not above {}",
                pi.last_counter
            ),
        )));
    }
    let ceiling = counter_ceiling(pi.last_counter, now);
    if counter > ceiling {
        return Err(Error::Invalid(Reason::new(
            "counter_too_far",
            format!(
            "counter {counter} jumps too far ahead: at most {ceiling} now (the last counter or \
             the time in milliseconds, plus {COUNTER_STEP}); nothing was recorded"
        ),
        )));
    }
    db::touch(conn, pi.id, now, counter)?;
    Ok(pi)
}
