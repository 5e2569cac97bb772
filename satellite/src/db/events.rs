//! The event log: append-only (triggers refuse UPDATE and DELETE), each event chained to the
//! one before by SHA-256, so a gap or an edit shows.

use diesel::prelude::*;

use super::schema::events;
use crate::catalogue::EventKind;
use crate::error::Result;

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub kind: EventKind,
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

impl<'a> NewEvent<'a> {
    /// An event about a product instance of a virtual account.
    pub fn about_pi(
        kind: EventKind,
        va_name: &'a str,
        pi_uuid: &'a str,
        message: String,
        actor: &'a str,
    ) -> NewEvent<'a> {
        NewEvent {
            kind,
            va_name: Some(va_name),
            pi_uuid: Some(pi_uuid),
            license_tag: None,
            message,
            actor,
        }
    }

    /// An event of `kind` with nothing else filled in (for `..NewEvent::of(kind)`).
    pub fn of(kind: EventKind) -> NewEvent<'a> {
        NewEvent {
            kind,
            va_name: None,
            pi_uuid: None,
            license_tag: None,
            message: String::new(),
            actor: "",
        }
    }
}

/// The hash of an event (see [`sync_format::payload::event_hash`]).
pub fn hash(prev_hash: &str, at: i64, e: &NewEvent<'_>) -> String {
    hash_fields(
        prev_hash,
        at,
        [
            e.kind.as_str(),
            e.va_name.unwrap_or(""),
            e.pi_uuid.unwrap_or(""),
            e.license_tag.unwrap_or(""),
            e.message.as_str(),
            actor(e),
        ],
    )
}

/// The hash over an event's fields: kind, VA, PI, license, message, actor.
fn hash_fields(prev_hash: &str, at: i64, fields: [&str; 6]) -> String {
    sync_format::payload::event_hash(prev_hash, at, &fields)
}

fn actor<'a>(e: &NewEvent<'a>) -> &'a str {
    if e.actor.is_empty() {
        "system"
    } else {
        e.actor
    }
}

/// Appends an event at time `at`. Call inside the transaction that makes the change.
pub fn append(conn: &mut SqliteConnection, at: i64, e: &NewEvent<'_>) -> Result<()> {
    let prev: Option<String> = events::table
        .select(events::hash)
        .order(events::id.desc())
        .first(conn)
        .optional()?;
    let prev = prev.unwrap_or_default();
    let actor = actor(e);
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

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub va_name: Option<String>,
    pub pi_uuid: Option<String>,
    pub license_tag: Option<String>,
    pub kind: Option<String>,
    /// Times in [since, until).
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// The newest `limit` of them (all when None)...
    pub limit: Option<i64>,
    /// ... after skipping the newest `offset`.
    pub offset: i64,
}

/// The events `f` selects, boxed.
macro_rules! filtered {
    ($query:expr, $f:expr) => {{
        let f: &Filter = $f;
        let mut q = $query.into_boxed();
        if let Some(v) = &f.va_name {
            q = q.filter(events::va_name.eq(v.clone()));
        }
        if let Some(v) = &f.pi_uuid {
            q = q.filter(events::pi_uuid.eq(v.clone()));
        }
        if let Some(v) = &f.license_tag {
            q = q.filter(events::license_tag.eq(v.clone()));
        }
        if let Some(v) = &f.kind {
            q = q.filter(events::kind.eq(v.clone()));
        }
        if let Some(t) = f.since {
            q = q.filter(events::at.ge(t));
        }
        if let Some(t) = f.until {
            q = q.filter(events::at.lt(t));
        }
        q
    }};
}

/// Events matching `f`, oldest first.
pub fn list(conn: &mut SqliteConnection, f: &Filter) -> Result<Vec<EventRow>> {
    let mut q = filtered!(events::table.select(EventRow::as_select()), f)
        .order(events::id.desc())
        .offset(f.offset);
    if let Some(n) = f.limit {
        q = q.limit(n);
    }
    let mut rows = q.load(conn)?;
    rows.reverse();
    Ok(rows)
}

/// Up to `limit` events matching `f` (its limit and offset aside) with ids above `after`,
/// oldest first: the whole log walked in pages.
pub fn page_after(
    conn: &mut SqliteConnection,
    f: &Filter,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>> {
    Ok(filtered!(events::table.select(EventRow::as_select()), f)
        .filter(events::id.gt(after))
        .order(events::id)
        .limit(limit)
        .load(conn)?)
}

/// How many events match `f` (its limit and offset aside).
pub fn count(conn: &mut SqliteConnection, f: &Filter) -> Result<i64> {
    Ok(filtered!(events::table.count(), f).get_result(conn)?)
}

/// What checking the chain found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verified {
    pub events: u64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    /// The hash of the last event: the head of the chain.
    pub head: String,
    /// Where the chain breaks first, and why (None: it holds).
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}

/// Walks the whole log in id order and checks that each event carries the hash of the one
/// before it and its own hash recomputed from its fields: an edited, inserted or deleted
/// event breaks the chain there.
pub fn verify(conn: &mut SqliteConnection) -> Result<Verified> {
    const CHUNK: i64 = 5_000;
    let mut out = Verified::default();
    let mut prev = String::new();
    let mut last_id = 0;
    loop {
        let rows = range(conn, last_id, i64::MAX, CHUNK)?;
        let Some(last) = rows.last() else { break };
        last_id = last.id;
        for r in rows {
            out.events += 1;
            out.first_id.get_or_insert(r.id);
            out.last_id = Some(r.id);
            let reason = if r.prev_hash != prev {
                Some(format!(
                    "event {} names {} as the hash of the event before it, but that event's \
                     hash is {}: an event before it was removed, inserted or edited",
                    r.id,
                    short(&r.prev_hash),
                    short(&prev)
                ))
            } else {
                let again = hash_fields(
                    &r.prev_hash,
                    r.at,
                    [
                        &r.kind,
                        r.va_name.as_deref().unwrap_or(""),
                        r.pi_uuid.as_deref().unwrap_or(""),
                        r.license_tag.as_deref().unwrap_or(""),
                        &r.message,
                        if r.actor.is_empty() {
                            "system"
                        } else {
                            &r.actor
                        },
                    ],
                );
                (again != r.hash).then(|| {
                    format!(
                        "event {} was changed after it was written: its fields hash to {}, it \
                         carries {}",
                        r.id,
                        short(&again),
                        short(&r.hash)
                    )
                })
            };
            if let Some(reason) = reason {
                out.broken_at = Some(r.id);
                out.reason = Some(reason);
                out.head = r.hash;
                return Ok(out);
            }
            prev = r.hash;
        }
    }
    out.head = prev;
    Ok(out)
}

fn short(h: &str) -> String {
    if h.is_empty() {
        "(none)".into()
    } else {
        h.chars().take(16).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(c: &mut SqliteConnection, at: i64, msg: &str) {
        append(
            c,
            at,
            &NewEvent {
                va_name: Some("Lab"),
                message: msg.into(),
                actor: "",
                ..NewEvent::of(EventKind::AlertAction)
            },
        )
        .unwrap();
    }

    fn unlocked(c: &mut SqliteConnection, sql: &str) {
        for s in [
            "DROP TRIGGER events_append_only_update",
            "DROP TRIGGER events_append_only_delete",
            sql,
        ] {
            diesel::sql_query(s).execute(c).unwrap();
        }
    }

    #[test]
    fn verify_finds_an_edit_and_a_removal_and_the_log_refuses_both() {
        let (store, _d) = crate::db::testing::store();
        let c = &mut *store.conn().unwrap();
        assert_eq!(verify(c).unwrap().events, 0);
        for (i, m) in ["one", "two, with \"quotes\"", "drei – ü"]
            .iter()
            .enumerate()
        {
            add(c, 100 + i as i64, m);
        }
        let v = verify(c).unwrap();
        assert_eq!((v.events, v.broken_at), (3, None));
        assert_eq!(v.head, recent(c, 1).unwrap()[0].hash);
        // The triggers refuse edits and deletions.
        assert!(
            diesel::sql_query("UPDATE events SET message = 'x' WHERE id = 2")
                .execute(c)
                .is_err()
        );
        assert!(diesel::sql_query("DELETE FROM events WHERE id = 2")
            .execute(c)
            .is_err());
        // Past them (someone with the database file): an edit shows at the event...
        unlocked(c, "UPDATE events SET message = 'two' WHERE id = 2");
        let v = verify(c).unwrap();
        assert_eq!(v.broken_at, Some(2));
        assert!(v.reason.unwrap().contains("changed after it was written"));
        // ...and a removal at the event after it.
        diesel::sql_query("UPDATE events SET message = 'two, with \"quotes\"' WHERE id = 2")
            .execute(c)
            .unwrap();
        assert_eq!(verify(c).unwrap().broken_at, None);
        diesel::sql_query("DELETE FROM events WHERE id = 2")
            .execute(c)
            .unwrap();
        let v = verify(c).unwrap();
        assert_eq!(v.broken_at, Some(3));
        assert!(v.reason.unwrap().contains("removed, inserted or edited"));
    }
}
