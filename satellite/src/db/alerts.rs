//! Alerts for the operator: raised once per kind and source, cleared when the condition ends.

use diesel::prelude::*;

use super::schema::alerts;
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = alerts)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    pub severity: String,
    pub source_type: String,
    pub source_id: Option<String>,
    pub va_id: Option<i64>,
    pub message: String,
    pub action_due_at: Option<i64>,
    pub state: String,
    pub remind_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An alert to raise.
#[derive(Debug, Clone)]
pub struct NewAlert<'a> {
    pub kind: &'a str,
    pub severity: &'a str,
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
            diesel::insert_into(alerts::table)
                .values((
                    alerts::kind.eq(a.kind),
                    alerts::severity.eq(a.severity),
                    alerts::source_type.eq(a.source_type),
                    alerts::source_id.eq(a.source_id),
                    alerts::va_id.eq(a.va_id),
                    alerts::message.eq(&a.message),
                    alerts::action_due_at.eq(a.action_due_at),
                    alerts::created_at.eq(now),
                    alerts::updated_at.eq(now),
                ))
                .execute(conn)?;
            Ok(true)
        }
    }
}

/// Clears the active alert of `kind` for one source. Looks first, so the common case (no
/// such alert) writes nothing.
pub fn clear_source(
    conn: &mut SqliteConnection,
    now: i64,
    kind: &str,
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

/// Clears the active alerts of `kind` (all sources).
pub fn clear(conn: &mut SqliteConnection, now: i64, kind: &str) -> Result<usize> {
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
