//! Export-controlled (restricted) license requests and returns, queued for the next sync.

use diesel::prelude::*;

use super::schema::{export_requests as x, product_instances as pi, virtual_accounts as va};
use crate::error::Result;

pub use crate::states::{ExportDirection, ExportState};
const HOLDING: [ExportState; 2] = ExportState::HOLDING;
const WAITING: [ExportState; 2] = ExportState::WAITING;

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = x)]
pub struct ExportRow {
    pub id: i64,
    pub request_uuid: String,
    pub pi_id: i64,
    pub tag: String,
    pub count: i64,
    pub direction: ExportDirection,
    pub state: ExportState,
    pub sync_id: Option<i64>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub return_of: Option<i64>,
    pub license_name: Option<String>,
    pub license_kind: Option<String>,
    pub answered_at: Option<i64>,
    pub delivered_at: Option<i64>,
}

/// A row with its device and VA, for operators and for the sync request.
#[derive(Debug, Clone)]
pub struct Listed {
    pub row: ExportRow,
    pub pi_uuid: String,
    pub pi_name: String,
    pub va_name: String,
}

pub struct NewExport<'a> {
    pub uuid: &'a str,
    pub pi_id: i64,
    pub tag: &'a str,
    pub count: i64,
    pub direction: ExportDirection,
    pub return_of: Option<i64>,
}

pub fn insert(conn: &mut SqliteConnection, now: i64, n: &NewExport<'_>) -> Result<ExportRow> {
    diesel::insert_into(x::table)
        .values((
            x::request_uuid.eq(n.uuid),
            x::pi_id.eq(n.pi_id),
            x::tag.eq(n.tag),
            x::count.eq(n.count),
            x::direction.eq(n.direction),
            x::state.eq(ExportState::Queued),
            x::return_of.eq(n.return_of),
            x::created_at.eq(now),
            x::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(x::table
        .select(ExportRow::as_select())
        .filter(x::request_uuid.eq(n.uuid))
        .first(conn)?)
}

pub fn by_uuid(conn: &mut SqliteConnection, uuid: &str) -> Result<Option<ExportRow>> {
    Ok(x::table
        .select(ExportRow::as_select())
        .filter(x::request_uuid.eq(uuid))
        .first(conn)
        .optional()?)
}

pub fn by_id(conn: &mut SqliteConnection, id: i64) -> Result<ExportRow> {
    Ok(x::table
        .select(ExportRow::as_select())
        .find(id)
        .first(conn)?)
}

/// Every row of one device, oldest first.
pub fn of_pi(conn: &mut SqliteConnection, pi_id: i64) -> Result<Vec<ExportRow>> {
    Ok(x::table
        .select(ExportRow::as_select())
        .filter(x::pi_id.eq(pi_id))
        .order(x::id)
        .load(conn)?)
}

/// Operators' filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<ExportState>,
    pub va: Option<String>,
    pub pi: Option<String>,
    pub tag: Option<String>,
    /// One row, by its request id.
    pub request: Option<String>,
}

pub fn list(conn: &mut SqliteConnection, f: &Filter) -> Result<Vec<Listed>> {
    let states: Vec<ExportState> = f.state.into_iter().collect();
    load(conn, f, &states)
}

/// Rows matching `f`, in one of `states` (any state when empty), oldest first.
fn load(conn: &mut SqliteConnection, f: &Filter, states: &[ExportState]) -> Result<Vec<Listed>> {
    let mut q = x::table
        .inner_join(pi::table.inner_join(va::table))
        .select((ExportRow::as_select(), pi::uuid, pi::name, va::name))
        .order(x::id)
        .into_boxed();
    if !states.is_empty() {
        q = q.filter(x::state.eq_any(states.to_vec()));
    }
    if let Some(r) = &f.request {
        q = q.filter(x::request_uuid.eq(r.clone()));
    }
    if let Some(v) = &f.va {
        q = q.filter(va::name.eq(v.clone()));
    }
    if let Some(p) = &f.pi {
        q = q.filter(pi::uuid.eq(p.clone()));
    }
    if let Some(t) = &f.tag {
        q = q.filter(x::tag.eq(t.clone()));
    }
    Ok(q.load::<(ExportRow, String, String, String)>(conn)?
        .into_iter()
        .map(|(row, pi_uuid, pi_name, va_name)| Listed {
            row,
            pi_uuid,
            pi_name,
            va_name,
        })
        .collect())
}

/// Rows waiting for the cloud (queued, or sent and not answered yet), oldest first.
pub fn waiting(conn: &mut SqliteConnection) -> Result<Vec<Listed>> {
    load(conn, &Filter::default(), &WAITING)
}

pub fn count_waiting(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(x::table
        .filter(x::state.eq_any(WAITING))
        .count()
        .get_result(conn)?)
}

/// Marks rows as sent in the sync request `sync_id` (those still waiting: an answer
/// applied meanwhile is not undone).
pub fn mark_sent(conn: &mut SqliteConnection, ids: &[i64], sync_id: i64, now: i64) -> Result<()> {
    for chunk in ids.chunks(10_000) {
        diesel::update(
            x::table
                .filter(x::id.eq_any(chunk))
                .filter(x::state.eq_any(WAITING)),
        )
        .set((
            x::state.eq(ExportState::Sent),
            x::sync_id.eq(sync_id),
            x::updated_at.eq(now),
        ))
        .execute(conn)?;
    }
    Ok(())
}

/// Records the cloud's answer on a row.
pub fn answer(
    conn: &mut SqliteConnection,
    id: i64,
    state: ExportState,
    reason: Option<&str>,
    license: (&str, &str),
    now: i64,
) -> Result<()> {
    diesel::update(x::table.find(id))
        .set((
            x::state.eq(state),
            x::reason.eq(reason),
            x::license_name.eq(license.0),
            x::license_kind.eq(license.1),
            x::answered_at.eq(now),
            x::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_state(conn: &mut SqliteConnection, id: i64, state: ExportState, now: i64) -> Result<()> {
    diesel::update(x::table.find(id))
        .set((x::state.eq(state), x::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// The device was given its answers: a grant becomes delivered; any answer gets its time.
pub fn mark_delivered(conn: &mut SqliteConnection, ids: &[i64], now: i64) -> Result<()> {
    diesel::update(
        x::table
            .filter(x::id.eq_any(ids))
            .filter(x::state.eq(ExportState::Granted)),
    )
    .set(x::state.eq(ExportState::Delivered))
    .execute(conn)?;
    diesel::update(x::table.filter(x::id.eq_any(ids)))
        .set((x::delivered_at.eq(now), x::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// Restricted licenses of one entitlement held by the devices of a VA.
pub fn held_in_va(conn: &mut SqliteConnection, va_id: i64, tag: &str) -> Result<i64> {
    let counts: Vec<i64> = x::table
        .inner_join(pi::table)
        .select(x::count)
        .filter(pi::va_id.eq(va_id))
        .filter(x::tag.eq(tag))
        .filter(x::direction.eq(ExportDirection::Request))
        .filter(x::state.eq_any(HOLDING))
        .load(conn)?;
    Ok(counts.into_iter().sum())
}

/// Restricted licenses of one entitlement held by one device.
pub fn held_by(conn: &mut SqliteConnection, pi_id: i64, tag: &str) -> Result<i64> {
    let counts: Vec<i64> = x::table
        .select(x::count)
        .filter(x::pi_id.eq(pi_id))
        .filter(x::tag.eq(tag))
        .filter(x::direction.eq(ExportDirection::Request))
        .filter(x::state.eq_any(HOLDING))
        .load(conn)?;
    Ok(counts.into_iter().sum())
}

/// Every (VA, tag) with a restricted license held.
pub fn held_keys(conn: &mut SqliteConnection) -> Result<Vec<(i64, String)>> {
    Ok(x::table
        .inner_join(pi::table)
        .select((pi::va_id, x::tag))
        .filter(x::direction.eq(ExportDirection::Request))
        .filter(x::state.eq_any(HOLDING))
        .distinct()
        .load(conn)?)
}

/// The product instances that hold restricted licenses.
pub fn holders(conn: &mut SqliteConnection) -> Result<Vec<i64>> {
    Ok(x::table
        .select(x::pi_id)
        .filter(x::direction.eq(ExportDirection::Request))
        .filter(x::state.eq_any(HOLDING))
        .distinct()
        .load(conn)?)
}
