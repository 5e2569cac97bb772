//! The event log: append-only (triggers refuse UPDATE and DELETE), each event chained to the
//! one before by SHA-256, so a gap or an edit shows.

use diesel::prelude::*;

use super::schema::events;
use crate::error::Result;

/// An event to record.
#[derive(Debug, Clone, Default)]
pub struct NewEvent<'a> {
    pub kind: &'a str,
    pub va_name: Option<&'a str>,
    pub pi_uuid: Option<&'a str>,
    pub license_tag: Option<&'a str>,
    pub message: String,
    /// The user, or "system".
    pub actor: &'a str,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub va_name: Option<String>,
    pub pi_uuid: Option<String>,
    pub license_tag: Option<String>,
    pub message: String,
    pub actor: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an event: SHA-256 over the previous hash and every field, each
/// length-prefixed so no two different events hash alike.
pub fn hash(prev_hash: &str, at: i64, e: &NewEvent<'_>) -> String {
    let mut h = openssl::sha::Sha256::new();
    let at = at.to_string();
    for field in [
        prev_hash,
        at.as_str(),
        e.kind,
        e.va_name.unwrap_or(""),
        e.pi_uuid.unwrap_or(""),
        e.license_tag.unwrap_or(""),
        e.message.as_str(),
        if e.actor.is_empty() {
            "system"
        } else {
            e.actor
        },
    ] {
        h.update(&(field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finish())
}

/// Appends an event at time `at`. Call inside the transaction that makes the change.
pub fn append(conn: &mut SqliteConnection, at: i64, e: &NewEvent<'_>) -> Result<()> {
    let prev: Option<String> = events::table
        .select(events::hash)
        .order(events::id.desc())
        .first(conn)
        .optional()?;
    let prev = prev.unwrap_or_default();
    let actor = if e.actor.is_empty() {
        "system"
    } else {
        e.actor
    };
    diesel::insert_into(events::table)
        .values((
            events::at.eq(at),
            events::kind.eq(e.kind),
            events::va_name.eq(e.va_name),
            events::pi_uuid.eq(e.pi_uuid),
            events::license_tag.eq(e.license_tag),
            events::message.eq(&e.message),
            events::actor.eq(actor),
            events::hash.eq(hash(&prev, at, e)),
            events::prev_hash.eq(&prev),
        ))
        .execute(conn)?;
    Ok(())
}

/// The most recent events, newest first.
pub fn recent(conn: &mut SqliteConnection, limit: i64) -> Result<Vec<EventRow>> {
    Ok(events::table
        .select(EventRow::as_select())
        .order(events::id.desc())
        .limit(limit)
        .load(conn)?)
}

/// Events with id in (`after`, `upto`], at most `limit`, oldest first.
pub fn range(
    conn: &mut SqliteConnection,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<EventRow>> {
    Ok(events::table
        .select(EventRow::as_select())
        .filter(events::id.gt(after))
        .filter(events::id.le(upto))
        .order(events::id)
        .limit(limit)
        .load(conn)?)
}
