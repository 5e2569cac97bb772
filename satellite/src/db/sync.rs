//! Where the exchange with the cloud stands (`sync_state`), the requests made and responses
//! applied (`sync_history`), the records the cloud refused (`sync_rejections`), and the
//! changed product instances and events a request carries.

use diesel::prelude::*;

use super::schema::{
    events, license_usage as u, product_instances as pi, satellite, sync_history as h,
    sync_rejections as r, sync_state as s, virtual_accounts as va,
};
use crate::error::Result;
use crate::states::SyncMode;

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = s)]
pub struct SyncState {
    pub id: i64,
    pub change_seq: i64,
    pub acked_change: i64,
    pub acked_event_id: i64,
    pub requests_made: i64,
    pub last_response_id: Option<String>,
    pub last_response_seq: i64,
    pub last_response_created_at: Option<i64>,
    pub last_mode: Option<SyncMode>,
    pub failures: i64,
    pub last_failure: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
}

pub fn state(conn: &mut SqliteConnection) -> Result<SyncState> {
    Ok(s::table.select(SyncState::as_select()).first(conn)?)
}

/// A request as `sync_history` keeps it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = h)]
pub struct HistoryRow {
    pub id: i64,
    pub bundle_id: String,
    pub direction: String,
    pub mode: SyncMode,
    pub sequence: i64,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub status: String,
    pub message: String,
    pub full: bool,
    pub to_change: i64,
    pub to_event: i64,
    pub records: i64,
}

/// A sync request just made.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    pub bundle_id: &'a str,
    pub mode: SyncMode,
    pub sequence: i64,
    pub full: bool,
    pub to_change: i64,
    pub to_event: i64,
    pub records: i64,
}

/// Records a request (status "sent") and counts it; returns its history id.
pub fn insert_request(conn: &mut SqliteConnection, now: i64, q: &NewRequest<'_>) -> Result<i64> {
    diesel::insert_into(h::table)
        .values((
            h::bundle_id.eq(q.bundle_id),
            h::direction.eq("request"),
            h::mode.eq(q.mode),
            h::sequence.eq(q.sequence),
            h::created_at.eq(now),
            h::status.eq("sent"),
            h::full.eq(q.full),
            h::to_change.eq(q.to_change),
            h::to_event.eq(q.to_event),
            h::records.eq(q.records),
        ))
        .execute(conn)?;
    diesel::update(s::table)
        .set(s::requests_made.eq(q.sequence))
        .execute(conn)?;
    Ok(h::table
        .select(h::id)
        .filter(h::bundle_id.eq(q.bundle_id))
        .filter(h::direction.eq("request"))
        .first(conn)?)
}

pub fn request(conn: &mut SqliteConnection, bundle_id: &str) -> Result<Option<HistoryRow>> {
    Ok(h::table
        .select(HistoryRow::as_select())
        .filter(h::bundle_id.eq(bundle_id))
        .filter(h::direction.eq("request"))
        .first(conn)
        .optional()?)
}

/// The bundle id of a sync history row.
pub fn bundle_of(conn: &mut SqliteConnection, id: i64) -> Result<Option<String>> {
    Ok(h::table
        .select(h::bundle_id)
        .find(id)
        .first(conn)
        .optional()?)
}

/// A response applied before, by bundle id.
pub fn response(conn: &mut SqliteConnection, bundle_id: &str) -> Result<Option<HistoryRow>> {
    Ok(h::table
        .select(HistoryRow::as_select())
        .filter(h::bundle_id.eq(bundle_id))
        .filter(h::direction.eq("response"))
        .first(conn)
        .optional()?)
}

/// The newest entries of the history, newest first.
pub fn history(conn: &mut SqliteConnection, limit: i64) -> Result<Vec<HistoryRow>> {
    Ok(h::table
        .select(HistoryRow::as_select())
        .order(h::id.desc())
        .limit(limit)
        .load(conn)?)
}

/// Requests still waiting for their answer are superseded (a new registration starts over).
pub fn supersede_requests(conn: &mut SqliteConnection, now: i64) -> Result<()> {
    diesel::update(
        h::table
            .filter(h::direction.eq("request"))
            .filter(h::status.eq("sent")),
    )
    .set((h::status.eq("superseded"), h::completed_at.eq(now)))
    .execute(conn)?;
    Ok(())
}

/// A response applied: what it acknowledged and where it came from.
#[derive(Debug, Clone)]
pub struct Applied<'a> {
    pub response_id: &'a str,
    pub request_id: &'a str,
    pub response_seq: i64,
    pub response_created_at: i64,
    pub mode: SyncMode,
    pub acked_change: i64,
    pub acked_event_id: i64,
    pub next_sync_due: i64,
    pub message: &'a str,
}

pub fn record_applied(conn: &mut SqliteConnection, now: i64, a: &Applied<'_>) -> Result<()> {
    diesel::update(s::table)
        .set((
            s::acked_change.eq(a.acked_change),
            s::acked_event_id.eq(a.acked_event_id),
            s::last_response_id.eq(a.response_id),
            s::last_response_seq.eq(a.response_seq),
            s::last_response_created_at.eq(a.response_created_at),
            s::last_mode.eq(a.mode),
            s::failures.eq(0),
            s::last_failure.eq(None::<String>),
        ))
        .execute(conn)?;
    diesel::update(
        h::table
            .filter(h::bundle_id.eq(a.request_id))
            .filter(h::direction.eq("request")),
    )
    .set((h::status.eq("answered"), h::completed_at.eq(now)))
    .execute(conn)?;
    diesel::insert_into(h::table)
        .values((
            h::bundle_id.eq(a.response_id),
            h::direction.eq("response"),
            h::mode.eq(a.mode),
            h::sequence.eq(a.response_seq),
            h::created_at.eq(a.response_created_at),
            h::completed_at.eq(now),
            h::status.eq("applied"),
            h::message.eq(a.message),
        ))
        .execute(conn)?;
    diesel::update(satellite::table)
        .set((
            satellite::last_sync_at.eq(now),
            satellite::next_sync_due_at.eq(a.next_sync_due),
        ))
        .execute(conn)?;
    Ok(())
}

/// Starts over with a cloud that knows nothing of us (a new registration): everything is
/// sent again at the next sync.
pub fn reset_for_registration(conn: &mut SqliteConnection, now: i64) -> Result<()> {
    diesel::update(s::table)
        .set((
            s::acked_change.eq(0),
            s::acked_event_id.eq(0),
            s::last_response_id.eq(None::<String>),
            s::last_response_seq.eq(0),
            s::last_response_created_at.eq(None::<i64>),
            s::failures.eq(0),
            s::last_failure.eq(None::<String>),
            s::next_attempt_at.eq(None::<i64>),
        ))
        .execute(conn)?;
    diesel::delete(r::table).execute(conn)?;
    supersede_requests(conn, now)
}

/// A failed network attempt: counts it and schedules the retry.
pub fn record_failure(
    conn: &mut SqliteConnection,
    now: i64,
    error: &str,
    next_attempt_at: i64,
) -> Result<i64> {
    diesel::update(s::table)
        .set((
            s::failures.eq(s::failures + 1),
            s::last_failure.eq(error),
            s::last_attempt_at.eq(now),
            s::next_attempt_at.eq(next_attempt_at),
        ))
        .execute(conn)?;
    Ok(state(conn)?.failures)
}

pub fn set_attempt(
    conn: &mut SqliteConnection,
    now: i64,
    next_attempt_at: Option<i64>,
) -> Result<()> {
    diesel::update(s::table)
        .set((
            s::last_attempt_at.eq(now),
            s::next_attempt_at.eq(next_attempt_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_next_attempt(conn: &mut SqliteConnection, at: Option<i64>) -> Result<()> {
    diesel::update(s::table)
        .set(s::next_attempt_at.eq(at))
        .execute(conn)?;
    Ok(())
}

// ---- what a request carries -----------------------------------------------------------

/// A product instance as a request carries it.
#[derive(Debug, Clone, Queryable)]
pub struct ChangedPi {
    pub id: i64,
    pub uuid: String,
    pub va: String,
    pub pid: String,
    pub sn: String,
    pub name: String,
    pub registered_at: i64,
    pub last_contact_at: i64,
    pub state: crate::states::PiState,
    pub change_seq: i64,
}

/// The columns of a [`ChangedPi`].
const CHANGED_PI: (
    pi::id,
    pi::uuid,
    va::name,
    pi::pid,
    pi::sn,
    pi::name,
    pi::registered_at,
    pi::last_contact_at,
    pi::state,
    pi::change_seq,
) = (
    pi::id,
    pi::uuid,
    va::name,
    pi::pid,
    pi::sn,
    pi::name,
    pi::registered_at,
    pi::last_contact_at,
    pi::state,
    pi::change_seq,
);

/// Product instances whose last change is up to `upto` and after the one at `from`
/// (change, id), at most `limit`, in the order of their change. Start from `(after,
/// i64::MAX)` for those changed after `after` (all of them when `after` is negative: a
/// full resync). Each page is one range of the `(change_seq, id)` index that starts at
/// `from` (no other lower bound, which SQLite might pick instead and rescan from): a
/// million product instances are read in linear time.
pub fn changed_pis(
    conn: &mut SqliteConnection,
    upto: i64,
    from: (i64, i64),
    limit: i64,
) -> Result<Vec<ChangedPi>> {
    let (seq, id) = from;
    Ok(pi::table
        .inner_join(va::table)
        .select(CHANGED_PI)
        .filter(pi::change_seq.le(upto))
        .filter(super::after_pair(
            "product_instances.change_seq",
            "product_instances.id",
            (seq, id),
        ))
        .order((pi::change_seq, pi::id))
        .limit(limit)
        .load(conn)?)
}

/// Product instances by id, by id.
pub fn pis_by_id(conn: &mut SqliteConnection, ids: &[i64]) -> Result<Vec<ChangedPi>> {
    Ok(pi::table
        .inner_join(va::table)
        .select(CHANGED_PI)
        .filter(pi::id.eq_any(ids))
        .order(pi::id)
        .load(conn)?)
}

/// The usage rows of product instances `ids`: (pi id, tag, count), by pi id.
pub fn usage_of(conn: &mut SqliteConnection, ids: &[i64]) -> Result<Vec<(i64, String, i64)>> {
    Ok(u::table
        .select((u::pi_id, u::tag, u::count))
        .filter(u::pi_id.eq_any(ids))
        .order((u::pi_id, u::tag))
        .load(conn)?)
}

/// Product instances the cloud refused last time, by uuid: sent again whatever their change.
pub fn rejected_pi_ids(conn: &mut SqliteConnection) -> Result<Vec<i64>> {
    Ok(pi::table
        .select(pi::id)
        .filter(pi::uuid.eq_any(r::table.select(r::pi_uuid)))
        .order(pi::id)
        .load(conn)?)
}

/// Counts what the next incremental request would carry.
pub fn pending_changes(conn: &mut SqliteConnection, acked: i64) -> Result<i64> {
    Ok(pi::table
        .filter(pi::change_seq.gt(acked))
        .count()
        .get_result(conn)?)
}

pub fn pending_events(conn: &mut SqliteConnection, acked: i64) -> Result<i64> {
    Ok(events::table
        .filter(events::id.gt(acked))
        .count()
        .get_result(conn)?)
}

pub fn last_event_id(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(events::table
        .select(diesel::dsl::max(events::id))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// A rejected record, as stored.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = r)]
pub struct Rejection {
    pub id: i64,
    pub pi_uuid: String,
    pub record: String,
    pub reason: String,
    pub response_id: String,
    pub at: i64,
}

/// Replaces the rejections with those of the response just applied.
pub fn replace_rejections(
    conn: &mut SqliteConnection,
    now: i64,
    response_id: &str,
    rejected: &[(String, String, String)],
) -> Result<()> {
    diesel::delete(r::table).execute(conn)?;
    for (uuid, record, reason) in rejected {
        diesel::insert_into(r::table)
            .values((
                r::pi_uuid.eq(uuid),
                r::record.eq(record),
                r::reason.eq(reason),
                r::response_id.eq(response_id),
                r::at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn rejections(conn: &mut SqliteConnection) -> Result<Vec<Rejection>> {
    Ok(r::table
        .select(Rejection::as_select())
        .order(r::id)
        .load(conn)?)
}

/// Marks the satellite removed (90 days without a sync); its data stays.
pub fn mark_removed(conn: &mut SqliteConnection, now: i64) -> Result<()> {
    diesel::update(satellite::table)
        .set((
            satellite::state.eq(crate::states::SatelliteState::Removed),
            satellite::removed_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}
