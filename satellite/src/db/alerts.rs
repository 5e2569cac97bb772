//! Alerts for the operator: raised once per kind and source, cleared when the condition ends.

use diesel::prelude::*;

use super::schema::alerts;
use crate::catalogue::{AlertKind, Severity};
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = alerts)]
pub struct AlertRow {
    pub id: i64,
    pub kind: AlertKind,
    pub severity: Severity,
    pub source_type: String,
    pub source_id: Option<String>,
    pub va_id: Option<i64>,
    pub message: String,
    pub action_due_at: Option<i64>,
    pub state: String,
    pub remind_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// What a warning-period alert is about (a license lot, a product instance).
    pub subject: Option<String>,
    /// The warning period that raised it ("90d", "30d", "expired").
    pub period: Option<String>,
    /// Who dismissed it: an operator, or "system" when a newer warning replaced it.
    pub dismissed_by: Option<String>,
}

/// An alert to raise.
#[derive(Debug, Clone)]
pub struct NewAlert<'a> {
    /// Its severity is the kind's.
    pub kind: AlertKind,
    pub source_type: &'a str,
    pub source_id: Option<&'a str>,
    pub va_id: Option<i64>,
    pub message: String,
    pub action_due_at: Option<i64>,
}

/// Raises an alert unless the same kind is already active for the same source (then its
/// message is brought up to date). Returns whether it is new.
pub fn raise(conn: &mut SqliteConnection, now: i64, a: &NewAlert<'_>) -> Result<bool> {
    let existing: Option<i64> = alerts::table
        .select(alerts::id)
        .filter(alerts::kind.eq(a.kind))
        .filter(alerts::source_type.eq(a.source_type))
        .filter(alerts::source_id.is(a.source_id))
        .filter(alerts::state.eq("active"))
        .first(conn)
        .optional()?;
    match existing {
        Some(id) => {
            diesel::update(alerts::table.find(id))
                .set((
                    alerts::message.eq(&a.message),
                    alerts::action_due_at.eq(a.action_due_at),
                    alerts::updated_at.eq(now),
                ))
                .execute(conn)?;
            Ok(false)
        }
        None => {
            insert(conn, now, a, None, None)?;
            Ok(true)
        }
    }
}

/// Inserts an active alert; returns its id.
fn insert(
    conn: &mut SqliteConnection,
    now: i64,
    a: &NewAlert<'_>,
    subject: Option<&str>,
    period: Option<&str>,
) -> Result<i64> {
    diesel::insert_into(alerts::table)
        .values((
            alerts::kind.eq(a.kind),
            alerts::severity.eq(a.kind.severity()),
            alerts::source_type.eq(a.source_type),
            alerts::source_id.eq(a.source_id),
            alerts::va_id.eq(a.va_id),
            alerts::message.eq(&a.message),
            alerts::action_due_at.eq(a.action_due_at),
            alerts::subject.eq(subject),
            alerts::period.eq(period),
            alerts::created_at.eq(now),
            alerts::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(alerts::table
        .select(alerts::id)
        .order(alerts::id.desc())
        .first(conn)?)
}

/// Clears the active alert of `kind` for one source. Looks first, so the common case (no
/// such alert) writes nothing.
pub fn clear_source(
    conn: &mut SqliteConnection,
    now: i64,
    kind: AlertKind,
    source_id: &str,
) -> Result<usize> {
    let active: Option<i64> = alerts::table
        .select(alerts::id)
        .filter(alerts::kind.eq(kind))
        .filter(alerts::source_id.eq(source_id))
        .filter(alerts::state.eq("active"))
        .first(conn)
        .optional()?;
    if active.is_none() {
        return Ok(0);
    }
    Ok(diesel::update(
        alerts::table
            .filter(alerts::kind.eq(kind))
            .filter(alerts::source_id.eq(source_id))
            .filter(alerts::state.eq("active")),
    )
    .set((alerts::state.eq("cleared"), alerts::updated_at.eq(now)))
    .execute(conn)?)
}

/// Clears every active alert about one source (a product instance that is removed), and
/// about its parts (`SOURCE/...`, such as one of its restricted licenses).
pub fn clear_about(conn: &mut SqliteConnection, now: i64, source_id: &str) -> Result<usize> {
    Ok(diesel::update(
        alerts::table
            .filter(
                alerts::source_id
                    .eq(source_id)
                    .or(alerts::source_id.like(format!("{source_id}/%"))),
            )
            .filter(alerts::state.eq("active")),
    )
    .set((alerts::state.eq("cleared"), alerts::updated_at.eq(now)))
    .execute(conn)?)
}

/// Clears the active alerts of `kind` (all sources).
pub fn clear(conn: &mut SqliteConnection, now: i64, kind: AlertKind) -> Result<usize> {
    Ok(diesel::update(
        alerts::table
            .filter(alerts::kind.eq(kind))
            .filter(alerts::state.eq("active")),
    )
    .set((alerts::state.eq("cleared"), alerts::updated_at.eq(now)))
    .execute(conn)?)
}

/// Active alerts, newest first.
pub fn active(conn: &mut SqliteConnection) -> Result<Vec<AlertRow>> {
    Ok(alerts::table
        .select(AlertRow::as_select())
        .filter(alerts::state.eq("active"))
        .order(alerts::id.desc())
        .load(conn)?)
}

/// One alert.
pub fn by_id(conn: &mut SqliteConnection, id: i64) -> Result<Option<AlertRow>> {
    Ok(alerts::table
        .select(AlertRow::as_select())
        .find(id)
        .first(conn)
        .optional()?)
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub va_id: Option<i64>,
    pub severity: Option<Severity>,
    /// States to include; empty means every state.
    pub states: Vec<String>,
    pub kind: Option<AlertKind>,
}

/// Alerts matching `f`, newest first.
pub fn list(conn: &mut SqliteConnection, f: &Filter) -> Result<Vec<AlertRow>> {
    let mut q = alerts::table.select(AlertRow::as_select()).into_boxed();
    if let Some(va) = f.va_id {
        q = q.filter(alerts::va_id.eq(va));
    }
    if let Some(s) = &f.severity {
        q = q.filter(alerts::severity.eq(*s));
    }
    if !f.states.is_empty() {
        q = q.filter(alerts::state.eq_any(f.states.clone()));
    }
    if let Some(k) = &f.kind {
        q = q.filter(alerts::kind.eq(*k));
    }
    Ok(q.order(alerts::id.desc()).load(conn)?)
}

/// Active alerts of some kinds that are about a subject (warning-period alerts).
pub fn active_with_subject(
    conn: &mut SqliteConnection,
    kinds: &[AlertKind],
) -> Result<Vec<AlertRow>> {
    Ok(alerts::table
        .select(AlertRow::as_select())
        .filter(alerts::state.eq("active"))
        .filter(alerts::kind.eq_any(kinds))
        .filter(alerts::subject.is_not_null())
        .load(conn)?)
}

/// Every alert of some kinds about a subject, oldest first (what the warning timers have
/// already said).
pub fn with_subject(conn: &mut SqliteConnection, kinds: &[AlertKind]) -> Result<Vec<AlertRow>> {
    Ok(alerts::table
        .select(AlertRow::as_select())
        .filter(alerts::kind.eq_any(kinds))
        .filter(alerts::subject.is_not_null())
        .order(alerts::id)
        .load(conn)?)
}

/// Raises a warning-period alert about `subject`: the active warning of the same kind and
/// subject is dismissed by "system" (a new warning replaces the one before), then the new
/// one is inserted. The caller checks first that this period was not raised already.
pub fn raise_period(
    conn: &mut SqliteConnection,
    now: i64,
    a: &NewAlert<'_>,
    subject: &str,
    period: &str,
) -> Result<i64> {
    diesel::update(
        alerts::table
            .filter(alerts::kind.eq(a.kind))
            .filter(alerts::subject.eq(subject))
            .filter(alerts::state.eq("active")),
    )
    .set((
        alerts::state.eq("dismissed"),
        alerts::dismissed_by.eq("system"),
        alerts::updated_at.eq(now),
    ))
    .execute(conn)?;
    insert(conn, now, a, Some(subject), Some(period))
}

/// Ends one alert: `dismissed` (by `by`) or `cleared` (the condition ended).
pub fn end(
    conn: &mut SqliteConnection,
    id: i64,
    now: i64,
    state: &str,
    by: Option<&str>,
) -> Result<()> {
    diesel::update(alerts::table.find(id))
        .set((
            alerts::state.eq(state),
            alerts::dismissed_by.eq(by),
            alerts::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Hides an active alert until `until` (remind later).
pub fn snooze(conn: &mut SqliteConnection, id: i64, now: i64, until: i64) -> Result<()> {
    diesel::update(alerts::table.find(id))
        .set((alerts::remind_at.eq(until), alerts::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}
