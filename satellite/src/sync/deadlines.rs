//! The sync timers, on the injectable clock: a sync is due every 30 days ("Upcoming Sync
//! Deadline"), overdue after 66 ("Synchronization Overdue"), and after 90 days without a
//! successful sync the satellite removes itself ("Satellite Unregistered and Removed").
//!
//! The clock's high-water mark is kept in the store: a clock that goes back raises an alert
//! and the deadlines keep counting from the highest time seen, so setting the date back does
//! not extend the 90-day window.

use diesel::SqliteConnection;

use crate::catalogue::AlertKind;
use crate::catalogue::EventKind;
use crate::clock::{self, DAY, MINUTE};
use crate::db::identity::SatelliteRow;
use crate::db::{self, alerts, events, identity};
use crate::error::Result;

pub use crate::guards::{last_sync, past_removal, removal_at, REMOVAL_AFTER};

/// The cloud expects a sync at least this often.
pub const SYNC_INTERVAL: i64 = 30 * DAY;
/// After this long without a sync the satellite is overdue (seed 001: 66 days).
pub const OVERDUE_AFTER: i64 = 66 * DAY;
/// A clock this far behind the high-water mark has been set back (smaller steps are NTP).
pub const CLOCK_TOLERANCE: i64 = 5 * MINUTE;

/// What a run of the timers found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Checked {
    /// The time the deadlines were judged at: the clock, or the high-water mark when the
    /// clock is behind it.
    pub effective_now: i64,
    pub clock_behind: bool,
    /// Alerts raised (new) and whether the satellite removed itself in this run.
    pub raised: Vec<String>,
    pub removed: bool,
}

/// The time to judge deadlines at, without writing (see [`run`]).
pub fn effective_now(conn: &mut SqliteConnection, now: i64) -> Result<i64> {
    let (hw, last_clock) = db::clock::marks(conn)?;
    Ok(if hw == 0 || now >= hw {
        now
    } else {
        hw + (now - last_clock).max(0)
    })
}

/// The deadlines as of `now`, before a read that shows them. Outside the server they are
/// run (one short write). In the server a read never writes: the scheduler runs them every
/// tick, and this only works out the time they are judged at.
pub fn current(store: &crate::db::Store, now: i64) -> Result<Checked> {
    if !store.is_serving() {
        return store.write(move |c| run(c, now));
    }
    let effective = effective_now(&mut *store.conn()?, now)?;
    Ok(Checked {
        effective_now: effective,
        clock_behind: now + CLOCK_TOLERANCE < effective,
        ..Checked::default()
    })
}

/// Runs the timers at `now`, in the caller's write transaction. Idempotent: running it
/// again at the same time changes nothing.
pub fn run(conn: &mut SqliteConnection, now: i64) -> Result<Checked> {
    let mut out = Checked::default();
    let (hw, last_clock) = db::clock::marks(conn)?;
    // While the clock is behind the high-water mark, the deadlines' time advances by what
    // the clock advances, from the mark; once the clock is past the mark, it is the clock.
    let effective = if hw == 0 || now >= hw {
        now
    } else {
        hw + (now - last_clock).max(0)
    };
    db::clock::set_marks(conn, effective, now)?;
    out.effective_now = effective;
    if now + CLOCK_TOLERANCE < effective {
        out.clock_behind = true;
        let new = alerts::raise(
            conn,
            now,
            &alerts::NewAlert {
                kind: AlertKind::ClockBackwards,
                source_type: "satellite",
                source_id: None,
                va_id: None,
                message: format!(
                    "The system clock reads {}, behind {}, the time this satellite has counted \
                     since the latest time it saw. Sync deadlines keep counting from that time: \
                     setting the clock back does not delay the removal of the satellite. \
                     Correct the clock (NTP).",
                    clock::format(now),
                    clock::format(effective)
                ),
                action_due_at: None,
            },
        )?;
        if new {
            tracing::warn!(now = %clock::format(now), counted = %clock::format(effective), "the system clock went backwards");
            out.raised.push(AlertKind::ClockBackwards.to_string());
        }
    } else {
        alerts::clear(conn, now, AlertKind::ClockBackwards)?;
    }
    let at = out.effective_now;

    let Some(me) = identity::get(conn)? else {
        return Ok(out);
    };
    if !me.is_registered() {
        return Ok(out);
    }
    out.raised.extend(super::renewal::alerts(conn, &me, at)?);
    let Some(last) = last_sync(&me) else {
        return Ok(out);
    };
    let elapsed = at - last;
    let days = elapsed / DAY;
    if elapsed >= REMOVAL_AFTER {
        remove(conn, at, &me)?;
        out.removed = true;
        out.raised.push(AlertKind::SatelliteRemoved.to_string());
    } else if elapsed >= OVERDUE_AFTER {
        let new = alerts::raise(
            conn,
            at,
            &alerts::NewAlert {
                kind: AlertKind::SyncOverdue,
                source_type: "satellite",
                source_id: None,
                va_id: None,
                // Seed 001, "Synchronization Overdue", with our 90-day removal.
                message: format!(
                    "The Smart Software Manager satellite \"{}\" has not synchronized for {days} \
                     days. If it is not synchronized within {} days, this satellite will be \
                     removed from Smart Software Manager and all of the product instances \
                     registered through the satellite may run in a degraded state.",
                    me.name,
                    (REMOVAL_AFTER / DAY - days).max(0)
                ),
                action_due_at: Some(last + REMOVAL_AFTER),
            },
        )?;
        if new {
            alerts::clear(conn, at, AlertKind::SyncUpcoming)?;
            events::append(
                conn,
                at,
                &events::NewEvent {
                    message: "Satellite has not synchronized within the expected time period."
                        .into(),
                    actor: "system",
                    ..events::NewEvent::of(EventKind::SatelliteSyncOverdue)
                },
            )?;
            out.raised.push(AlertKind::SyncOverdue.to_string());
        }
    } else if elapsed >= SYNC_INTERVAL || me.next_sync_due_at.is_some_and(|d| at >= d) {
        let new = alerts::raise(
            conn,
            at,
            &alerts::NewAlert {
                kind: AlertKind::SyncUpcoming,
                source_type: "satellite",
                source_id: None,
                va_id: None,
                message: format!(
                    "The satellite \"{}\" is due to synchronize: it last synchronized on {} ({days} \
                     days ago). Synchronize it by {} or it will be removed and its product \
                     instances may run in a degraded state.",
                    me.name,
                    clock::format(last),
                    clock::format(last + REMOVAL_AFTER)
                ),
                action_due_at: Some(last + REMOVAL_AFTER),
            },
        )?;
        if new {
            out.raised.push(AlertKind::SyncUpcoming.to_string());
        }
    }
    Ok(out)
}

/// 90 days without a sync: the satellite stops authorizing devices and marks itself
/// removed. Its data stays for audit; it can be registered again.
fn remove(conn: &mut SqliteConnection, at: i64, me: &SatelliteRow) -> Result<()> {
    removed(
        conn,
        at,
        // Seed 001, "Alert Events".
        "Satellite failed to synchronize in 90 days and has been removed.",
        &events::NewEvent {
            message: format!(
                "The satellite \"{}\" failed to synchronize in 90 days and has been removed. \
                 Its data is kept; register it again to restore service.",
                me.name
            ),
            actor: "system",
            ..events::NewEvent::of(EventKind::SatelliteRemoved)
        },
    )?;
    tracing::error!(
        satellite = %me.name,
        "90 days without a successful sync: the satellite removed itself and no longer \
         authorizes devices; register it again"
    );
    Ok(())
}

/// The cloud removed this satellite (its operator's "Remove", or its own 90 days), as a sync
/// response said: the satellite stops serving devices, with the alert and an event.
pub fn removed_by_cloud(
    conn: &mut SqliteConnection,
    at: i64,
    me: &SatelliteRow,
    removal: &sync_format::payload::Removal,
) -> Result<()> {
    removed(
        conn,
        at,
        &format!(
            "The cloud removed this satellite at {} ({}); it no longer authorizes devices. \
             Register it again to restore service.",
            clock::format(removal.at),
            removal.reason
        ),
        &events::NewEvent {
            message: format!(
                "The satellite \"{}\" was removed by the cloud at {}: {}. Its data is kept; \
                 register it again to restore service.",
                me.name,
                clock::format(removal.at),
                removal.reason
            ),
            actor: "system",
            ..events::NewEvent::of(EventKind::SatelliteRemovedByCloud)
        },
    )?;
    tracing::error!(
        satellite = %me.name,
        reason = %removal.reason,
        "the cloud removed this satellite; it no longer authorizes devices; register it again"
    );
    Ok(())
}

/// The satellite is removed: its state, the alert (`alert` its text) and the event.
fn removed(
    conn: &mut SqliteConnection,
    at: i64,
    alert: &str,
    event: &events::NewEvent<'_>,
) -> Result<()> {
    db::sync::mark_removed(conn, at)?;
    alerts::clear(conn, at, AlertKind::SyncUpcoming)?;
    alerts::clear(conn, at, AlertKind::SyncOverdue)?;
    alerts::raise(
        conn,
        at,
        &alerts::NewAlert {
            kind: AlertKind::SatelliteRemoved,
            source_type: "satellite",
            source_id: None,
            va_id: None,
            message: alert.to_string(),
            action_due_at: None,
        },
    )?;
    events::append(conn, at, event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;

    fn registered(conn: &mut SqliteConnection, at: i64) {
        use crate::db::schema::satellite as s;
        use diesel::prelude::*;
        diesel::insert_into(s::table)
            .values((
                s::id.eq(1),
                s::satellite_id.eq("sat"),
                s::name.eq("site-a"),
                s::hostname.eq("h"),
                s::created_at.eq(at),
                s::state.eq(crate::states::SatelliteState::Registered),
                s::registered_at.eq(at),
                s::next_sync_due_at.eq(at + SYNC_INTERVAL),
            ))
            .execute(conn)
            .unwrap();
    }

    fn active(conn: &mut SqliteConnection) -> Vec<AlertKind> {
        let mut k: Vec<AlertKind> = alerts::active(conn)
            .unwrap()
            .into_iter()
            .map(|a| a.kind)
            .collect();
        k.sort();
        k
    }

    #[test]
    fn alerts_at_30_66_then_removal_at_90() {
        let (store, _dir) = testing::store();
        let mut c = store.conn().unwrap();
        let t0 = 1_800_000_000;
        registered(&mut c, t0);
        assert!(run(&mut c, t0 + 29 * DAY).unwrap().raised.is_empty());
        assert_eq!(
            run(&mut c, t0 + 30 * DAY).unwrap().raised,
            vec![AlertKind::SyncUpcoming.to_string()]
        );
        assert!(
            run(&mut c, t0 + 31 * DAY).unwrap().raised.is_empty(),
            "raised once"
        );
        assert_eq!(
            run(&mut c, t0 + 66 * DAY).unwrap().raised,
            vec![AlertKind::SyncOverdue.to_string()]
        );
        assert_eq!(active(&mut c), vec![AlertKind::SyncOverdue]);
        let msg = alerts::active(&mut c).unwrap()[0].message.clone();
        assert!(msg.contains("has not synchronized for 66 days"), "{msg}");
        assert!(msg.contains("within 24 days"), "{msg}");
        let me = identity::get(&mut c).unwrap().unwrap();
        assert!(!past_removal(&me, t0 + 90 * DAY - 1));
        assert!(past_removal(&me, t0 + 90 * DAY));
        let r = run(&mut c, t0 + 90 * DAY).unwrap();
        assert!(r.removed);
        assert_eq!(active(&mut c), vec![AlertKind::SatelliteRemoved]);
        let me = identity::get(&mut c).unwrap().unwrap();
        assert_eq!(me.state, crate::states::SatelliteState::Removed);
        assert!(run(&mut c, t0 + 91 * DAY).unwrap().raised.is_empty());
    }

    #[test]
    fn a_clock_set_back_raises_an_alert_and_does_not_extend_the_window() {
        let (store, _dir) = testing::store();
        let mut c = store.conn().unwrap();
        let t0 = 1_800_000_000;
        registered(&mut c, t0);
        run(&mut c, t0 + 80 * DAY).unwrap();
        // Back 30 days: judged at the high-water mark, alert raised.
        let r = run(&mut c, t0 + 50 * DAY).unwrap();
        assert!(r.clock_behind);
        assert_eq!(r.effective_now, t0 + 80 * DAY);
        assert!(r.raised.contains(&AlertKind::ClockBackwards.to_string()));
        assert_eq!(effective_now(&mut c, t0 + 55 * DAY).unwrap(), t0 + 85 * DAY);
        // Time goes on from the set-back clock: 9 days later it is day 89 for the
        // deadlines, 10 days later the satellite removes itself, as it would have.
        assert!(!run(&mut c, t0 + 59 * DAY).unwrap().removed);
        assert!(run(&mut c, t0 + 60 * DAY).unwrap().removed);
        // The clock is corrected: the deadlines' time is the clock again, the alert clears.
        let r = run(&mut c, t0 + 90 * DAY + 3600).unwrap();
        assert!(!r.clock_behind);
        assert_eq!(r.effective_now, t0 + 90 * DAY + 3600);
        assert!(!active(&mut c).contains(&AlertKind::ClockBackwards));
    }
}
