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

/// Days before a license ends at which Licenses Expiring is raised (seed 001, "Alert
/// Events").
pub const EXPIRY_WARNINGS: [i64; 7] = [90, 60, 30, 14, 7, 3, 1];
/// Days without contact at which Product Instance Failed to Connect is raised.
pub const CONNECT_WARNINGS: [i64; 2] = [30, 60];
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
}

/// Runs every warning timer at `now`, in one transaction. Idempotent: running it again at
/// the same time changes nothing.
pub fn evaluate(conn: &mut SqliteConnection, now: i64) -> Result<Evaluated> {
    conn.immediate_transaction::<_, Error, _>(|conn| {
        let mut out = Evaluated::default();
        licenses(conn, now, &mut out)?;
        devices(conn, now, &mut out)?;
        Ok(out)
    })
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
    let kinds = [AlertKind::PiFailedToConnect, AlertKind::PiFailedToRenew];
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

    let silent = store::devices::silent_since(conn, now - CONNECT_WARNINGS[0] * DAY)?;
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
        if silent_days >= RENEW_AFTER_DAYS {
            if spell.iter().any(|a| a.kind == AlertKind::PiFailedToRenew) {
                continue;
            }
            failed_to_renew(conn, now, &pi, &va, holders.contains(&pi.id), &spell, out)?;
            continue;
        }
        let Some(period) = CONNECT_WARNINGS.iter().rev().find(|p| silent_days >= **p) else {
            continue;
        };
        let period_key = format!("{period}d");
        if spell.iter().any(|a| {
            a.kind == AlertKind::PiFailedToConnect
                && a.period.as_deref() == Some(period_key.as_str())
        }) {
            continue;
        }
        let first = !spell.iter().any(|a| a.kind == AlertKind::PiFailedToConnect);
        let release_at = pi.last_contact_at + RENEW_AFTER_DAYS * DAY;
        // Seed 001, "Product Instance Failed to Connect", regular licenses.
        let message = format!(
            "The Product Instance \"{}\" in the Virtual Account \"{va}\" is not connected for its \
             renewal period and the product instance may run in a degraded state if it does not \
             connect within the next {} days. If the product is not going to connect, you can \
             remove it to immediately release the license it is consuming.",
            pi.name,
            (release_at - now + DAY - 1) / DAY
        );
        db::raise_period(
            conn,
            now,
            &NewAlert {
                kind: AlertKind::PiFailedToConnect,
                source_type: "pi",
                source_id: Some(&pi.uuid),
                va_id: Some(pi.va_id),
                message: message.clone(),
                action_due_at: Some(release_at),
            },
            &pi.uuid,
            &period_key,
        )?;
        out.raised
            .push(format!("{}: {message}", AlertKind::PiFailedToConnect));
        if first {
            events::append(
                conn,
                now,
                &events::NewEvent {
                    va_name: Some(&va),
                    pi_uuid: Some(&pi.uuid),
                    message: format!(
                        "The product instance {} in the Virtual Account \"{va}\" failed to \
                         connect for its renewal period.",
                        pi.name
                    ),
                    actor: "system",
                    ..events::NewEvent::of(EventKind::PiFailedToConnect)
                },
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
    for a in spell
        .iter()
        .filter(|a| a.kind == AlertKind::PiFailedToConnect && a.state == "active")
    {
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
        &events::NewEvent {
            va_name: Some(va),
            pi_uuid: Some(&pi.uuid),
            message: message.clone(),
            actor: "system",
            ..events::NewEvent::of(EventKind::PiFailedToRenew)
        },
    )?;
    out.raised
        .push(format!("{}: {message}", AlertKind::PiFailedToRenew));
    out.released.push(pi.uuid.clone());
    Ok(())
}

// ---- the operator's view and actions ------------------------------------------------

/// An alert as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub severity: Severity,
    /// account, va, pi, license or satellite.
    pub source_type: String,
    /// The license tag, the PI id, "VA/tag" (empty for the satellite).
    pub source: String,
    pub virtual_account: Option<String>,
    pub message: String,
    pub action_due: Option<String>,
    /// active, snoozed (remind later), dismissed or cleared.
    pub state: String,
    pub remind_at: Option<String>,
    pub dismissed_by: Option<String>,
    pub created: String,
    pub updated: String,
    /// What the operator may do with it: "dismiss", "remind-later".
    pub actions: Vec<&'static str>,
}

/// The state an operator sees at `now`: an active alert hidden by "remind later" is
/// snoozed until its time.
fn shown_state(a: &AlertRow, now: i64) -> &str {
    if a.state == "active" && a.remind_at.is_some_and(|t| t > now) {
        "snoozed"
    } else {
        &a.state
    }
}

fn view(a: AlertRow, va_names: &HashMap<i64, String>, now: i64) -> AlertView {
    let state = shown_state(&a, now).to_string();
    let mut actions = Vec::new();
    if a.state == "active" {
        if a.kind.not_dismissable().is_none() {
            actions.push("dismiss");
        }
        if remind_until(&a).is_some() && state == "active" {
            actions.push("remind-later");
        }
    }
    AlertView {
        id: a.id,
        virtual_account: a.va_id.and_then(|v| va_names.get(&v).cloned()),
        source: a.source_id.unwrap_or_default(),
        source_type: a.source_type,
        severity: a.severity,
        message: a.message,
        action_due: a.action_due_at.map(clock::format),
        state,
        remind_at: a.remind_at.filter(|t| *t > now).map(clock::format),
        dismissed_by: a.dismissed_by,
        created: clock::format(a.created_at),
        updated: clock::format(a.updated_at),
        kind: a.kind,
        actions,
    }
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub va: Option<String>,
    pub severity: Option<Severity>,
    /// active (the default: not snoozed), snoozed, dismissed, cleared, or all.
    pub state: Option<String>,
    pub kind: Option<AlertKind>,
}

pub const STATES: [&str; 5] = ["active", "snoozed", "dismissed", "cleared", "all"];

/// Alerts, in seed 001's default order: by severity, then action due (none last).
pub fn list(conn: &mut SqliteConnection, f: &Filter, now: i64) -> Result<Vec<AlertView>> {
    let want = f.state.clone().unwrap_or_else(|| "active".into());
    if !STATES.contains(&want.as_str()) {
        return Err(Error::invalid(format!(
            "unknown alert state {want:?}: use active, snoozed, dismissed, cleared or all"
        )));
    }
    let va_names: HashMap<i64, String> = pools::va_names(conn)?.into_iter().collect();
    let va_id = match &f.va {
        Some(name) => Some(
            va_names
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(id, _)| *id)
                .ok_or_else(|| {
                    Error::NotFound(format!("no virtual account named {name:?}").into())
                })?,
        ),
        None => None,
    };
    let rows = db::list(
        conn,
        &db::Filter {
            va_id,
            severity: f.severity,
            states: match want.as_str() {
                "all" => vec![],
                "snoozed" => vec!["active".into()],
                s => vec![s.to_string()],
            },
            kind: f.kind,
        },
    )?;
    let mut out: Vec<AlertView> = rows
        .into_iter()
        .map(|a| view(a, &va_names, now))
        .filter(|v| want == "all" || v.state == want)
        .collect();
    out.sort_by(|a, b| {
        (a.severity, a.action_due.is_none(), &a.action_due, b.id).cmp(&(
            b.severity,
            b.action_due.is_none(),
            &b.action_due,
            a.id,
        ))
    });
    Ok(out)
}

fn get(conn: &mut SqliteConnection, id: i64) -> Result<AlertRow> {
    db::by_id(conn, id)?.ok_or_else(|| Error::NotFound(format!("no alert with id {id}").into()))
}

fn require_active(a: &AlertRow, what: &str) -> Result<()> {
    if a.state != "active" {
        return Err(Error::State(
            format!(
                "alert {} ({}) is {} already; only an active alert can be {what}",
                a.id, a.kind, a.state
            )
            .into(),
        ));
    }
    Ok(())
}

fn action_event(
    conn: &mut SqliteConnection,
    now: i64,
    a: &AlertRow,
    message: String,
    actor: &str,
) -> Result<()> {
    let va = match a.va_id {
        Some(id) => Some(pools::va_name(conn, id)?),
        None => None,
    };
    events::append(
        conn,
        now,
        &events::NewEvent {
            kind: EventKind::AlertAction,
            va_name: va.as_deref(),
            pi_uuid: (a.source_type == "pi")
                .then_some(a.source_id.as_deref())
                .flatten(),
            license_tag: (a.source_type == "license")
                .then_some(a.source_id.as_deref())
                .flatten(),
            message,
            actor,
        },
    )
}

/// Dismisses an active alert (refused for the alerts that clear themselves).
pub fn dismiss(conn: &mut SqliteConnection, id: i64, now: i64, actor: &str) -> Result<AlertView> {
    conn.immediate_transaction::<_, Error, _>(|conn| {
        let a = get(conn, id)?;
        require_active(&a, "dismissed")?;
        if let Some(why) = a.kind.not_dismissable() {
            return Err(Error::State(
                format!("alert {id} ({}) cannot be dismissed: {why}", a.kind).into(),
            ));
        }
        db::end(conn, id, now, "dismissed", Some(actor))?;
        action_event(
            conn,
            now,
            &a,
            format!("The alert \"{}\" was dismissed: {}", a.kind, a.message),
            actor,
        )?;
        let names = va_names_of(conn, &a)?;
        Ok(view(get(conn, id)?, &names, now))
    })
}

/// Until when "remind later" hides an alert: the start of its next warning period.
fn remind_until(a: &AlertRow) -> Option<i64> {
    let due = a.action_due_at?;
    let period: i64 = a.period.as_deref()?.strip_suffix('d')?.parse().ok()?;
    match a.kind {
        // Days before the end: the next, smaller period starts that many days before it.
        AlertKind::LicensesExpiring => Some(
            EXPIRY_WARNINGS
                .iter()
                .find(|p| **p < period)
                .map_or(due, |next| due - next * DAY),
        ),
        // Days since contact: the next period, or the release at 90 days.
        AlertKind::PiFailedToConnect => {
            let contact = due - RENEW_AFTER_DAYS * DAY;
            Some(
                CONNECT_WARNINGS
                    .iter()
                    .find(|p| **p > period)
                    .map_or(due, |next| contact + next * DAY),
            )
        }
        _ => None,
    }
}

/// Hides an active warning until its next warning period (seed 001's "remind later").
pub fn remind_later(
    conn: &mut SqliteConnection,
    id: i64,
    now: i64,
    actor: &str,
) -> Result<AlertView> {
    conn.immediate_transaction::<_, Error, _>(|conn| {
        let a = get(conn, id)?;
        require_active(&a, "reminded later")?;
        let Some(until) = remind_until(&a) else {
            return Err(Error::State(
                format!(
                    "alert {id} ({}) has no next warning period to be reminded at: only Licenses \
                 Expiring and Product Instance Failed to Connect can be reminded later{}",
                    a.kind,
                    if a.kind.not_dismissable().is_none() {
                        "; dismiss it instead"
                    } else {
                        ""
                    }
                )
                .into(),
            ));
        };
        db::snooze(conn, id, now, until)?;
        action_event(
            conn,
            now,
            &a,
            format!(
                "The alert \"{}\" is hidden until {}: {}",
                a.kind,
                clock::format(until),
                a.message
            ),
            actor,
        )?;
        let names = va_names_of(conn, &a)?;
        Ok(view(get(conn, id)?, &names, now))
    })
}

fn va_names_of(conn: &mut SqliteConnection, a: &AlertRow) -> Result<HashMap<i64, String>> {
    Ok(match a.va_id {
        Some(id) => HashMap::from([(id, pools::va_name(conn, id)?)]),
        None => HashMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::devices::tests::{register, site_with};
    use sync_format::payload::{LicenseKind, LicenseLine};

    fn line(tag: &str, qty: i64, kind: LicenseKind, end: Option<i64>) -> LicenseLine {
        LicenseLine {
            tag: tag.into(),
            name: format!("{tag} License"),
            description: String::new(),
            kind,
            quantity: qty,
            start: None,
            end,
            restricted: false,
        }
    }

    fn shown(c: &mut SqliteConnection, now: i64, state: &str) -> Vec<(String, String, String)> {
        let f = Filter {
            state: Some(state.into()),
            ..Default::default()
        };
        list(c, &f, now)
            .unwrap()
            .into_iter()
            .map(|a| (a.kind.to_string(), a.severity.to_string(), a.message))
            .collect()
    }

    fn event_kinds(c: &mut SqliteConnection) -> Vec<String> {
        crate::db::events::list(c, &Default::default())
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    #[test]
    fn licenses_expiring_warns_at_each_period_and_a_new_warning_dismisses_the_last() {
        let t0 = SystemClock.now();
        let end = t0 + 100 * DAY;
        let (store, _d, _t, _k, _ca) = site_with(
            &[
                ("Lab", line("term", 5, LicenseKind::Term, Some(end))),
                ("Lab", line("perm", 5, LicenseKind::Perpetual, None)),
            ],
            false,
        );
        let c = &mut *store.conn().unwrap();
        // 100 days out: nothing yet.
        assert!(evaluate(c, t0).unwrap().raised.is_empty());
        let mut seen = Vec::new();
        for days_left in [90, 89, 60, 30, 14, 7, 3, 2, 1] {
            let now = end - days_left * DAY;
            let out = evaluate(c, now).unwrap();
            let active = shown(c, now, "active");
            assert_eq!(active.len(), 1, "{days_left}: {active:?}");
            let (kind, sev, msg) = &active[0];
            assert_eq!(
                (kind.as_str(), sev.as_str()),
                (AlertKind::LicensesExpiring.as_str(), "minor")
            );
            let date = clock::format(end)[..10].to_string();
            let when = if days_left == 1 {
                "1 day".to_string()
            } else {
                format!("{days_left} days")
            };
            if out.raised.is_empty() {
                // 89 and 2 days: inside the 90- and 3-day periods already warned about.
                assert!([89, 2].contains(&days_left), "{days_left}");
            } else {
                assert_eq!(
                    msg,
                    &format!(
                        "5 term License licenses in the virtual account \"Lab\" are set to \
                         expire in {when} on {date}."
                    )
                );
                seen.push(days_left);
            }
        }
        assert_eq!(seen, EXPIRY_WARNINGS.to_vec());
        // Each earlier warning was dismissed by the next one, by the system.
        let dismissed = list(
            c,
            &Filter {
                state: Some("dismissed".into()),
                ..Default::default()
            },
            end,
        )
        .unwrap();
        assert_eq!(dismissed.len(), 6);
        assert!(dismissed
            .iter()
            .all(|a| a.dismissed_by.as_deref() == Some("system")));

        // It ends: Licenses Expired, the event with the seed's text, and the pool shrinks.
        let out = evaluate(c, end).unwrap();
        assert_eq!(out.expired.len(), 1);
        assert_eq!(
            shown(c, end, "active"),
            vec![(
                AlertKind::LicensesExpired.to_string(),
                "minor".to_string(),
                format!(
                    "5 term License licenses in the virtual account \"Lab\" expired on {}.",
                    &clock::format(end)[..10]
                )
            )]
        );
        let ev = crate::db::events::list(
            c,
            &crate::db::events::Filter {
                kind: Some("licenses_expired".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(
            ev[0].message,
            "5 \"term License\" licenses expired and were removed from the Virtual Account \"Lab\"."
        );
        // Idempotent.
        let again = evaluate(c, end + DAY).unwrap();
        assert!(again.raised.is_empty() && again.expired.is_empty());
        assert_eq!(
            event_kinds(c)
                .iter()
                .filter(|k| *k == "licenses_expired")
                .count(),
            1
        );
    }

    #[test]
    fn remind_later_hides_a_warning_until_the_next_period_and_dismiss_carries_to_expired() {
        let t0 = SystemClock.now();
        let end = t0 + 40 * DAY;
        let (store, _d, _t, _k, _ca) = site_with(
            &[
                ("Lab", line("a", 2, LicenseKind::Term, Some(end))),
                ("Lab", line("b", 3, LicenseKind::Demo, Some(end))),
            ],
            false,
        );
        let c = &mut *store.conn().unwrap();
        let now = end - 30 * DAY;
        evaluate(c, now).unwrap();
        let active = list(c, &Filter::default(), now).unwrap();
        assert_eq!(active.len(), 2);
        let a = active.iter().find(|v| v.source == "a").unwrap().id;
        let b = active.iter().find(|v| v.source == "b").unwrap().id;
        assert!(active
            .iter()
            .all(|v| v.actions == vec!["dismiss", "remind-later"]));

        // "a": remind later, hidden until the 14-day warning.
        let v = remind_later(c, a, now, "cli:ops").unwrap();
        assert_eq!(v.state, "snoozed");
        assert_eq!(v.remind_at, Some(clock::format(end - 14 * DAY)));
        assert_eq!(list(c, &Filter::default(), now).unwrap().len(), 1);
        assert_eq!(shown(c, now, "snoozed").len(), 1);
        // "b": dismissed by the operator.
        dismiss(c, b, now, "cli:ops").unwrap();
        let err = dismiss(c, b, now, "cli:ops").unwrap_err();
        assert!(err.to_string().contains("dismissed already"), "{err}");
        assert!(list(c, &Filter::default(), now).unwrap().is_empty());

        // Nothing comes back inside the period; at 14 days both warn again.
        evaluate(c, now + 10 * DAY).unwrap();
        let l = list(c, &Filter::default(), now + 10 * DAY).unwrap();
        assert!(l.is_empty(), "{l:?}");
        let at14 = end - 14 * DAY;
        evaluate(c, at14).unwrap();
        assert_eq!(list(c, &Filter::default(), at14).unwrap().len(), 2);

        // "b" dismissed again at 1 day: its Expired alert is recorded already dismissed
        // (seed 001: shown only if the Expiring warning was not dismissed).
        let at1 = end - DAY;
        evaluate(c, at1).unwrap();
        let b1 = list(c, &Filter::default(), at1)
            .unwrap()
            .into_iter()
            .find(|v| v.source == "b")
            .unwrap();
        dismiss(c, b1.id, at1, "cli:ops").unwrap();
        evaluate(c, end + 10).unwrap();
        let shown_now = shown(c, end + 10, "active");
        assert_eq!(shown_now.len(), 1, "{shown_now:?}");
        assert!(shown_now[0].2.starts_with("2 a License"), "{shown_now:?}");
        let all = list(
            c,
            &Filter {
                state: Some("all".into()),
                kind: Some(AlertKind::LicensesExpired),
                ..Default::default()
            },
            end + 10,
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        let b_expired = all.iter().find(|v| v.source == "b").unwrap();
        assert_eq!(b_expired.state, "dismissed");
        assert_eq!(b_expired.dismissed_by.as_deref(), Some("cli:ops"));
        // Operator actions are events with the operator's name.
        let actions = crate::db::events::list(
            c,
            &crate::db::events::Filter {
                kind: Some("alert_action".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(actions.len(), 3);
        assert!(actions.iter().all(|e| e.actor == "cli:ops"));
    }

    #[test]
    fn alerts_that_clear_themselves_cannot_be_dismissed_nor_reminded() {
        let (store, _d, _t, _k, _ca) = site_with(
            &[("Lab", line("p", 1, LicenseKind::Perpetual, None))],
            false,
        );
        let c = &mut *store.conn().unwrap();
        let now = SystemClock.now();
        db::raise(
            c,
            now,
            &NewAlert {
                kind: AlertKind::InsufficientLicenses,
                source_type: "license",
                source_id: Some("Lab/p"),
                va_id: None,
                message: "short".into(),
                action_due_at: None,
            },
        )
        .unwrap();
        let a = list(c, &Filter::default(), now).unwrap();
        assert!(a[0].actions.is_empty());
        let e = dismiss(c, a[0].id, now, "x").unwrap_err();
        assert!(e.to_string().contains("compliant again"), "{e}");
        let e = remind_later(c, a[0].id, now, "x").unwrap_err();
        assert!(e.to_string().contains("no next warning period"), "{e}");
        assert!(dismiss(c, 999, now, "x")
            .unwrap_err()
            .to_string()
            .contains("no alert"));
        // Nothing was written by the refusals.
        assert_eq!(list(c, &Filter::default(), now).unwrap()[0].state, "active");
        assert!(event_kinds(c).iter().all(|k| k != "alert_action"));
        assert!(Severity::parse_named("severity", "huge")
            .unwrap_err()
            .to_string()
            .contains("use major, minor or informational"));
    }

    #[test]
    fn silent_devices_warn_at_30_and_60_days_then_lose_their_licenses_at_90() {
        let (store, _d, token, key, ca) = site_with(
            &[("Lab", line("tag", 10, LicenseKind::Perpetual, None))],
            false,
        );
        let c = &mut *store.conn().unwrap();
        let quiet = register(c, &key, &ca, &token, "SN-Q");
        let busy = register(c, &key, &ca, &token, "SN-B");
        let t0 = SystemClock.now();
        for pi in [&quiet, &busy] {
            diesel::sql_query(format!(
                "INSERT INTO license_usage (pi_id, tag, count, requested_at, status) \
                 SELECT id, 'tag', 3, {t0}, 'AUTHORIZED' FROM product_instances WHERE uuid = '{pi}'"
            ))
            .execute(c)
            .unwrap();
        }
        crate::compliance::recompute_all(c, t0).unwrap();
        let contact = |c: &mut SqliteConnection, pi: &str, at: i64| {
            diesel::sql_query(format!(
                "UPDATE product_instances SET last_contact_at = {at} WHERE uuid = '{pi}'"
            ))
            .execute(c)
            .unwrap();
        };
        let in_use = |c: &mut SqliteConnection| crate::db::devices::totals(c, 1, "tag").unwrap().0;
        assert_eq!(in_use(c), 6);

        evaluate(c, t0 + 29 * DAY).unwrap();
        assert!(list(c, &Filter::default(), t0 + 29 * DAY)
            .unwrap()
            .is_empty());
        contact(c, &busy, t0 + 29 * DAY);

        let at30 = t0 + 30 * DAY;
        evaluate(c, at30).unwrap();
        let a = list(c, &Filter::default(), at30).unwrap();
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(
            (a[0].kind.as_str(), a[0].severity.as_str()),
            (AlertKind::PiFailedToConnect.as_str(), "minor")
        );
        assert_eq!(a[0].source, quiet);
        assert_eq!(a[0].action_due, Some(clock::format(t0 + 90 * DAY)));
        assert!(a[0].message.starts_with("The Product Instance \"PID:P SN:SN-Q\" in the Virtual Account \"Lab\" is not connected for its renewal period"), "{}", a[0].message);
        assert!(
            a[0].message.contains("within the next 60 days"),
            "{}",
            a[0].message
        );
        assert_eq!(
            event_kinds(c)
                .iter()
                .filter(|k| *k == "pi_failed_to_connect")
                .count(),
            1
        );

        // Remind later: hidden until the 60-day warning, which replaces it.
        let v = remind_later(c, a[0].id, at30, "cli:ops").unwrap();
        assert_eq!(v.remind_at, Some(clock::format(t0 + 60 * DAY)));
        let at60 = t0 + 60 * DAY;
        contact(c, &busy, at60 - DAY);
        evaluate(c, at60).unwrap();
        let a = list(c, &Filter::default(), at60).unwrap();
        assert_eq!(a.len(), 1);
        assert!(
            a[0].message.contains("within the next 30 days"),
            "{}",
            a[0].message
        );
        assert_eq!(
            event_kinds(c)
                .iter()
                .filter(|k| *k == "pi_failed_to_connect")
                .count(),
            1
        );
        assert_eq!(in_use(c), 6);

        // 90 days: Failed to Renew, major; its licenses are released, the other device's stay.
        let at90 = t0 + 90 * DAY;
        contact(c, &busy, at90 - DAY);
        let out = evaluate(c, at90).unwrap();
        assert_eq!(out.released, vec![quiet.clone()]);
        let a = list(c, &Filter::default(), at90).unwrap();
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(
            (a[0].kind.as_str(), a[0].severity.as_str()),
            (AlertKind::PiFailedToRenew.as_str(), "major")
        );
        assert_eq!(
            a[0].message,
            "The product instance \"PID:P SN:SN-Q\" in the Virtual Account \"Lab\" failed to connect \
             during its renewal period and may be running in a degraded state. The licenses it \
             was consuming have been released for use by other product instances."
        );
        assert_eq!(in_use(c), 3);
        assert!(evaluate(c, at90 + DAY).unwrap().raised.is_empty());

        // It connects again: its alert clears at the next evaluation.
        contact(c, &quiet, at90 + 2 * DAY);
        let out = evaluate(c, at90 + 2 * DAY).unwrap();
        assert_eq!(out.cleared, 1);
        assert!(list(c, &Filter::default(), at90 + 2 * DAY)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_silent_device_holding_restricted_licenses_keeps_them_and_the_alert_says_so() {
        let (store, _d, token, key, ca) = site_with(
            &[("Lab", line("tag", 10, LicenseKind::Perpetual, None))],
            true,
        );
        let c = &mut *store.conn().unwrap();
        let pi = register(c, &key, &ca, &token, "SN-X");
        let t0 = SystemClock.now();
        diesel::sql_query(format!(
            "INSERT INTO export_requests (request_uuid, pi_id, tag, count, direction, state, \
             created_at, updated_at) SELECT 'r1', id, 'crypto', 1, 'request', 'delivered', {t0}, \
             {t0} FROM product_instances WHERE uuid = '{pi}'"
        ))
        .execute(c)
        .unwrap();
        evaluate(c, t0 + 91 * DAY).unwrap();
        let a = list(c, &Filter::default(), t0 + 91 * DAY).unwrap();
        assert_eq!(a.len(), 1);
        assert!(
            a[0].message.contains(
                "It is using licenses which enable restricted encryption technology, and those \
                 licenses have not been released."
            ),
            "{}",
            a[0].message
        );
        // The restricted license is still held.
        assert_eq!(crate::db::export::held_by(c, 1, "crypto").unwrap(), 1);
    }
}
