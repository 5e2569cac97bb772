//! Alerts for the operator, with seed 001's types, severities and texts.
//!
//! Most alerts are raised where their condition arises (Insufficient Licenses in
//! `compliance`, the sync deadlines in `sync::deadlines`, Restricted License Not Available in
//! `export`) and clear themselves when it ends. The warning timers live here, evaluated by
//! the server's scheduler on the injectable clock at every tick and at start
//! (`satellite alert check` runs them by hand):
//!
//! - **Licenses Expiring**, 90, 60, 30, 14, 7, 3 and 1 days before a term or demo license
//!   ends (minor). A new warning dismisses the one before it; "remind later" hides a warning
//!   until the next period.
//! - **Licenses Expired** when it ends (minor), with the event "Licenses Expired" and a
//!   compliance recount. Seed 001 shows it only if the Expiring warning was not dismissed:
//!   after an operator dismissed the warning it is recorded already dismissed.
//! - **Product Instance Failed to Connect** after 30 and 60 days without contact (minor,
//!   "Failure to Connect Detected" event).
//! - **Product Instance Failed to Renew** after 90 days (major): the licenses it used are
//!   released; restricted (export-controlled) ones are not, and the alert says so.
//!
//! A device that connects again clears its alerts at the next evaluation.
//!
//! The operator's actions: dismiss (refused for the alerts that clear themselves) and remind
//! later (for the warnings that come in periods). Each is an event with the operator's name.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use serde::Serialize;

use crate::catalogue::EventKind;
use crate::catalogue::{AlertKind, Severity};
use crate::clock::{self, DAY};
use crate::db::alerts::{self as db, AlertRow, NewAlert};
use crate::db::{self as store, events, pools};
use crate::error::{Error, Result};
use crate::states::PiState;

mod view;
pub use view::*;

/// Days before a license ends at which Licenses Expiring is raised (seed 001, "Alert
/// Events").
pub const EXPIRY_WARNINGS: [i64; 7] = [90, 60, 30, 14, 7, 3, 1];
/// Days without contact at which Product Instance Failed to Connect is raised.
pub const CONNECT_WARNINGS: [i64; 2] = [30, 60];
/// A device renewing on its 30-day schedule, even late within the same day, is healthy:
/// each Failed to Connect warning comes this long after its period (seed 000: "does not
/// contact ... for more than 30 days").
pub const CONNECT_GRACE: i64 = DAY;
/// After a year without contact a product instance is no longer valid and is removed
/// automatically, its licenses released (seed 000).
pub const REMOVE_AFTER_DAYS: i64 = 365;
/// Days without contact after which a device's licenses are released (Failed to Renew).
pub const RENEW_AFTER_DAYS: i64 = 90;

/// What one evaluation of the timers did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluated {
    /// Alerts raised, as "kind: message".
    pub raised: Vec<String>,
    /// Alerts cleared because their condition ended.
    pub cleared: usize,
    /// License lots that ended in this evaluation: (VA, tag, name, count).
    pub expired: Vec<(String, String, String, i64)>,
    /// Devices whose licenses were released (Failed to Renew).
    pub released: Vec<String>,
    /// Devices removed after a year without contact.
    pub removed: Vec<String>,
}

/// Runs every warning timer at `now`, in one transaction. Idempotent: running it again at
/// the same time changes nothing.
pub fn evaluate(conn: &mut SqliteConnection, now: i64) -> Result<Evaluated> {
    let mut out = Evaluated::default();
    licenses(conn, now, &mut out)?;
    devices(conn, now, &mut out)?;
    Ok(out)
}

fn date(ts: i64) -> String {
    clock::format(ts).chars().take(10).collect()
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

/// The timers of term and demo licenses: Licenses Expiring and Licenses Expired. Call
/// inside a transaction.
pub fn licenses(conn: &mut SqliteConnection, now: i64, out: &mut Evaluated) -> Result<()> {
    // One lot per VA, tag and end: the lines that end together.
    let mut lots: std::collections::BTreeMap<(String, String, i64), (i64, String, i64)> =
        Default::default();
    for (line, va) in pools::ending_lines(conn)? {
        let Some(end) = line.end_at else { continue };
        let lot =
            lots.entry((va, line.tag.clone(), end))
                .or_insert((line.va_id, line.name.clone(), 0));
        lot.2 += line.quantity;
    }
    let said = said_by_subject(
        conn,
        &[AlertKind::LicensesExpiring, AlertKind::LicensesExpired],
    )?;
    let mut subjects = HashSet::new();
    for ((va, tag, end), (va_id, name, count)) in lots {
        let subject = format!("{va}/{tag}/{}", clock::format(end));
        subjects.insert(subject.clone());
        let history = said.get(&subject).map(Vec::as_slice).unwrap_or_default();
        if now >= end {
            if history.iter().any(|a| a.kind == AlertKind::LicensesExpired) {
                continue;
            }
            // The warning before it ends; an operator's dismissal carries over (seed 001).
            let warning = history
                .iter()
                .rev()
                .find(|a| a.kind == AlertKind::LicensesExpiring);
            let dismissed_by = warning
                .and_then(|w| w.dismissed_by.clone())
                .filter(|by| by != "system");
            for w in history
                .iter()
                .filter(|a| a.kind == AlertKind::LicensesExpiring && a.state == "active")
            {
                db::end(conn, w.id, now, "dismissed", Some("system"))?;
            }
            let message = format!(
                "{count} {name} licenses in the virtual account \"{va}\" expired on {}.",
                date(end)
            );
            let id = db::raise_period(
                conn,
                now,
                &NewAlert {
                    kind: AlertKind::LicensesExpired,
                    source_type: "license",
                    source_id: Some(&tag),
                    va_id: Some(va_id),
                    message: message.clone(),
                    action_due_at: None,
                },
                &subject,
                "expired",
            )?;
            if let Some(by) = dismissed_by {
                db::end(conn, id, now, "dismissed", Some(&by))?;
            } else {
                out.raised
                    .push(format!("{}: {message}", AlertKind::LicensesExpired));
            }
            events::append(
                conn,
                now,
                &events::NewEvent {
                    va_name: Some(&va),
                    license_tag: Some(&tag),
                    message: format!(
                        "{count} \"{name}\" licenses expired and were removed from the Virtual \
                         Account \"{va}\"."
                    ),
                    actor: "system",
                    ..events::NewEvent::of(EventKind::LicensesExpired)
                },
            )?;
            // The pool shrank: devices beyond it are out of compliance now.
            crate::compliance::recompute(conn, va_id, &tag, now)?;
            out.expired.push((va, tag, name, count));
            continue;
        }
        let left = (end - now + DAY - 1) / DAY;
        let Some(period) = EXPIRY_WARNINGS.iter().rev().find(|p| left <= **p) else {
            continue;
        };
        let period_key = format!("{period}d");
        if history.iter().any(|a| {
            a.kind == AlertKind::LicensesExpiring && a.period.as_deref() == Some(&period_key)
        }) {
            continue;
        }
        // Seed 001: "<count> <license> licenses in the virtual account "<pool>" are set to
        // expire in 30 days on <date>."
        let message = format!(
            "{count} {name} licenses in the virtual account \"{va}\" are set to expire in {} \
             on {}.",
            days(left),
            date(end)
        );
        db::raise_period(
            conn,
            now,
            &NewAlert {
                kind: AlertKind::LicensesExpiring,
                source_type: "license",
                source_id: Some(&tag),
                va_id: Some(va_id),
                message: message.clone(),
                action_due_at: Some(end),
            },
            &subject,
            &period_key,
        )?;
        out.raised
            .push(format!("{}: {message}", AlertKind::LicensesExpiring));
    }
    // A warning about a lot that is no longer in the pool (renewed, moved, removed by the
    // cloud) has nothing left to warn about.
    for a in db::active_with_subject(conn, &[AlertKind::LicensesExpiring])? {
        if a.subject.as_ref().is_some_and(|s| !subjects.contains(s)) {
            db::end(conn, a.id, now, "cleared", None)?;
            out.cleared += 1;
        }
    }
    Ok(())
}

/// Every alert of `kinds` about a subject, grouped by subject, oldest first.
fn said_by_subject(
    conn: &mut SqliteConnection,
    kinds: &[AlertKind],
) -> Result<HashMap<String, Vec<AlertRow>>> {
    let mut by: HashMap<String, Vec<AlertRow>> = HashMap::new();
    for a in db::with_subject(conn, kinds)? {
        if let Some(s) = a.subject.clone() {
            by.entry(s).or_default().push(a);
        }
    }
    Ok(by)
}

/// The timers of devices not heard from: Failed to Connect (30, 60 days), Failed to Renew
/// (90 days, licenses released). Call inside a transaction.
fn devices(conn: &mut SqliteConnection, now: i64, out: &mut Evaluated) -> Result<()> {
    let kinds = [
        AlertKind::PiFailedToConnect,
        AlertKind::PiFailedToConnectRestricted,
        AlertKind::PiFailedToRenew,
    ];
    let connect_kinds = [
        AlertKind::PiFailedToConnect,
        AlertKind::PiFailedToConnectRestricted,
    ];
    // A device heard from since its alert was raised, or gone, clears it.
    let active = db::active_with_subject(conn, &kinds)?;
    if !active.is_empty() {
        let uuids: Vec<String> = active.iter().filter_map(|a| a.subject.clone()).collect();
        let rows: HashMap<String, store::devices::PiRow> = store::devices::by_uuids(conn, &uuids)?
            .into_iter()
            .map(|p| (p.uuid.clone(), p))
            .collect();
        for a in &active {
            let back = a
                .subject
                .as_ref()
                .and_then(|s| rows.get(s))
                .is_none_or(|p| p.state != PiState::Active || p.last_contact_at >= a.created_at);
            if back {
                db::end(conn, a.id, now, "cleared", None)?;
                out.cleared += 1;
            }
        }
    }

    let silent =
        store::devices::silent_since(conn, now - CONNECT_WARNINGS[0] * DAY - CONNECT_GRACE)?;
    if silent.is_empty() {
        return Ok(());
    }
    let said = said_by_subject(conn, &kinds)?;
    let holders: HashSet<i64> = store::export::holders(conn)?.into_iter().collect();
    for (pi, va) in silent {
        // Only what was said about this spell of silence counts.
        let spell: Vec<&AlertRow> = said
            .get(&pi.uuid)
            .map(|v| {
                v.iter()
                    .filter(|a| a.created_at > pi.last_contact_at)
                    .collect()
            })
            .unwrap_or_default();
        let silent_days = (now - pi.last_contact_at) / DAY;
        if silent_days >= REMOVE_AFTER_DAYS {
            crate::devices::remove_inactive(conn, &pi, &va, now)?;
            out.removed.push(pi.uuid.clone());
            continue;
        }
        if silent_days >= RENEW_AFTER_DAYS {
            if spell.iter().any(|a| a.kind == AlertKind::PiFailedToRenew) {
                continue;
            }
            failed_to_renew(conn, now, &pi, &va, holders.contains(&pi.id), &spell, out)?;
            continue;
        }
        let warned_days = (now - pi.last_contact_at - CONNECT_GRACE) / DAY;
        let Some(period) = CONNECT_WARNINGS.iter().rev().find(|p| warned_days >= **p) else {
            continue;
        };
        let period_key = format!("{period}d");
        if spell.iter().any(|a| {
            connect_kinds.contains(&a.kind) && a.period.as_deref() == Some(period_key.as_str())
        }) {
            continue;
        }
        let first = !spell.iter().any(|a| connect_kinds.contains(&a.kind));
        let release_at = pi.last_contact_at + RENEW_AFTER_DAYS * DAY;
        // Seed 001, "Product Instance Failed to Connect": the regular text (minor), or for a
        // device holding restricted licenses the export-restricted one (major).
        let (kind, message) = if holders.contains(&pi.id) {
            (
                AlertKind::PiFailedToConnectRestricted,
                format!(
                    "The product instance \"{}\" in the Virtual Account \"{va}\" failed to \
                     connect during its renewal period and may be running in a degraded state. \
                     It is using licenses which enable restricted encryption technology, and \
                     those licenses have not been released. The non-restricted licenses it was \
                     consuming will be released if it does not connect within the next {} days.",
                    pi.name,
                    (release_at - now + DAY - 1) / DAY
                ),
            )
        } else {
            (
                AlertKind::PiFailedToConnect,
                format!(
                    "The Product Instance \"{}\" in the Virtual Account \"{va}\" is not \
                     connected for its renewal period and the product instance may run in a \
                     degraded state if it does not connect within the next {} days. If the \
                     product is not going to connect, you can remove it to immediately release \
                     the license it is consuming.",
                    pi.name,
                    (release_at - now + DAY - 1) / DAY
                ),
            )
        };
        db::raise_period(
            conn,
            now,
            &NewAlert {
                kind,
                source_type: "pi",
                source_id: Some(&pi.uuid),
                va_id: Some(pi.va_id),
                message: message.clone(),
                action_due_at: Some(release_at),
            },
            &pi.uuid,
            &period_key,
        )?;
        out.raised.push(format!("{kind}: {message}"));
        if first {
            events::append(
                conn,
                now,
                &events::NewEvent::about_pi(
                    EventKind::PiFailedToConnect,
                    &va,
                    &pi.uuid,
                    format!(
                        "The product instance {} in the Virtual Account \"{va}\" failed to \
                         connect for its renewal period.",
                        pi.name
                    ),
                    "system",
                ),
            )?;
        }
    }
    Ok(())
}

fn failed_to_renew(
    conn: &mut SqliteConnection,
    now: i64,
    pi: &store::devices::PiRow,
    va: &str,
    restricted: bool,
    spell: &[&AlertRow],
    out: &mut Evaluated,
) -> Result<()> {
    crate::compliance::release_all(conn, pi, now)?;
    for a in spell.iter().filter(|a| {
        (a.kind == AlertKind::PiFailedToConnect || a.kind == AlertKind::PiFailedToConnectRestricted)
            && a.state == "active"
    }) {
        db::end(conn, a.id, now, "dismissed", Some("system"))?;
    }
    // Seed 001, "Product Instance Failed to Renew": regular and export-restricted texts.
    let message = if restricted {
        format!(
            "The product instance \"{}\" in the Virtual Account \"{va}\" failed to connect \
             during its renewal period and may be running in a degraded state. It is using \
             licenses which enable restricted encryption technology, and those licenses have \
             not been released. The non-restricted licenses it was consuming have been released \
             for use by other product instances.",
            pi.name
        )
    } else {
        format!(
            "The product instance \"{}\" in the Virtual Account \"{va}\" failed to connect \
             during its renewal period and may be running in a degraded state. The licenses it \
             was consuming have been released for use by other product instances.",
            pi.name
        )
    };
    db::raise_period(
        conn,
        now,
        &NewAlert {
            kind: AlertKind::PiFailedToRenew,
            source_type: "pi",
            source_id: Some(&pi.uuid),
            va_id: Some(pi.va_id),
            message: message.clone(),
            action_due_at: None,
        },
        &pi.uuid,
        "90d",
    )?;
    events::append(
        conn,
        now,
        &events::NewEvent::about_pi(
            EventKind::PiFailedToRenew,
            va,
            &pi.uuid,
            message.clone(),
            "system",
        ),
    )?;
    out.raised
        .push(format!("{}: {message}", AlertKind::PiFailedToRenew));
    out.released.push(pi.uuid.clone());
    Ok(())
}

#[cfg(test)]
mod tests;
