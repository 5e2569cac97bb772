//! Product instances (devices) and their license usage, with the running totals per VA and
//! entitlement (`pool_usage`) kept in the same transactions.

use diesel::prelude::*;

use super::schema::{
    license_usage as u, licenses as l, pool_usage as p, product_instances as pi,
    virtual_accounts as va,
};
use crate::error::Result;
use crate::states::PiState;

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = pi)]
pub struct PiRow {
    pub id: i64,
    pub uuid: String,
    pub va_id: i64,
    pub pid: String,
    pub sn: String,
    pub udi_uuid: Option<String>,
    pub host_id: Option<String>,
    pub mac: Option<String>,
    pub name: String,
    pub token_id: Option<i64>,
    pub export_controlled: bool,
    pub public_key: String,
    pub cert_serial: Option<String>,
    pub cert_not_after: Option<i64>,
    pub registered_at: i64,
    pub last_contact_at: i64,
    pub last_counter: i64,
    pub state: PiState,
    pub removed_at: Option<i64>,
    /// Until when an operator lets the device register again without its current key.
    pub reregister_allowed_until: Option<i64>,
}

pub fn by_uuid(conn: &mut SqliteConnection, uuid: &str) -> Result<Option<PiRow>> {
    Ok(pi::table
        .select(PiRow::as_select())
        .filter(pi::uuid.eq(uuid))
        .first(conn)
        .optional()?)
}

/// Every (VA id, tag) some product instance has a usage row for.
pub fn usage_keys(conn: &mut SqliteConnection) -> Result<Vec<(i64, String)>> {
    Ok(u::table
        .inner_join(pi::table)
        .select((pi::va_id, u::tag))
        .distinct()
        .load(conn)?)
}

pub fn by_id(conn: &mut SqliteConnection, id: i64) -> Result<PiRow> {
    Ok(pi::table.select(PiRow::as_select()).find(id).first(conn)?)
}

pub fn by_udi(conn: &mut SqliteConnection, pid: &str, sn: &str) -> Result<Option<PiRow>> {
    Ok(pi::table
        .select(PiRow::as_select())
        .filter(pi::pid.eq(pid))
        .filter(pi::sn.eq(sn))
        .first(conn)
        .optional()?)
}

/// Product instances named `name` (at most `limit`).
pub fn by_name(conn: &mut SqliteConnection, name: &str, limit: i64) -> Result<Vec<PiRow>> {
    Ok(pi::table
        .select(PiRow::as_select())
        .filter(pi::name.eq(name))
        .order(pi::id)
        .limit(limit)
        .load(conn)?)
}

/// The identity fields a registration writes.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    pub uuid: &'a str,
    pub va_id: i64,
    pub pid: &'a str,
    pub sn: &'a str,
    pub udi_uuid: Option<&'a str>,
    pub host_id: Option<&'a str>,
    pub mac: Option<&'a str>,
    pub name: &'a str,
    pub token_id: i64,
    pub export_controlled: bool,
    pub public_key: &'a str,
    pub cert_serial: &'a str,
    pub cert_not_after: i64,
}

pub fn insert(conn: &mut SqliteConnection, d: &Identity<'_>, now: i64) -> Result<()> {
    diesel::insert_into(pi::table)
        .values((
            pi::uuid.eq(d.uuid),
            pi::va_id.eq(d.va_id),
            pi::pid.eq(d.pid),
            pi::sn.eq(d.sn),
            pi::udi_uuid.eq(d.udi_uuid),
            pi::host_id.eq(d.host_id),
            pi::mac.eq(d.mac),
            pi::name.eq(d.name),
            pi::token_id.eq(d.token_id),
            pi::export_controlled.eq(d.export_controlled),
            pi::public_key.eq(d.public_key),
            pi::cert_serial.eq(d.cert_serial),
            pi::cert_not_after.eq(d.cert_not_after),
            pi::registered_at.eq(now),
            pi::last_contact_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// A registration of a known UDI: new key and certificate, maybe a new VA, active again.
pub fn reregister(conn: &mut SqliteConnection, id: i64, d: &Identity<'_>, now: i64) -> Result<()> {
    diesel::update(pi::table.find(id))
        .set((
            pi::va_id.eq(d.va_id),
            pi::udi_uuid.eq(d.udi_uuid),
            pi::host_id.eq(d.host_id),
            pi::mac.eq(d.mac),
            pi::name.eq(d.name),
            pi::token_id.eq(d.token_id),
            pi::export_controlled.eq(d.export_controlled),
            pi::public_key.eq(d.public_key),
            pi::cert_serial.eq(d.cert_serial),
            pi::cert_not_after.eq(d.cert_not_after),
            pi::last_contact_at.eq(now),
            pi::state.eq(PiState::Active),
            pi::removed_at.eq(None::<i64>),
            pi::reregister_allowed_until.eq(None::<i64>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Lets the device register again without its current key until `until`.
pub fn allow_reregister(conn: &mut SqliteConnection, id: i64, until: i64) -> Result<()> {
    diesel::update(pi::table.find(id))
        .set(pi::reregister_allowed_until.eq(until))
        .execute(conn)?;
    Ok(())
}

pub fn renew_identity(
    conn: &mut SqliteConnection,
    id: i64,
    key_pem: &str,
    serial: &str,
    not_after: i64,
) -> Result<()> {
    diesel::update(pi::table.find(id))
        .set((
            pi::public_key.eq(key_pem),
            pi::cert_serial.eq(serial),
            pi::cert_not_after.eq(not_after),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records a signed request: contact time and the counter it carried.
pub fn touch(conn: &mut SqliteConnection, id: i64, now: i64, counter: i64) -> Result<()> {
    diesel::update(pi::table.find(id))
        .set((pi::last_contact_at.eq(now), pi::last_counter.eq(counter)))
        .execute(conn)?;
    Ok(())
}

pub fn set_va(conn: &mut SqliteConnection, id: i64, va_id: i64) -> Result<()> {
    diesel::update(pi::table.find(id))
        .set(pi::va_id.eq(va_id))
        .execute(conn)?;
    Ok(())
}

pub fn mark_removed(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<()> {
    diesel::update(pi::table.find(id))
        .set((pi::state.eq(PiState::Removed), pi::removed_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// Filters for listing devices.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Any of these virtual accounts (all when empty).
    pub vas: Vec<String>,
    /// Any of these product types (all when empty).
    pub pids: Vec<String>,
    pub name: Option<String>,
    pub state: Option<PiState>,
}

/// A page of a list: `limit` rows from `offset`, in the order `sort`; or, to walk a whole
/// list in registration order in linear time, the `limit` rows after the id `after`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub sort: crate::states::DeviceSort,
    pub offset: i64,
    pub limit: i64,
    pub after: Option<i64>,
}

/// The product instances joined with their VA's name, filtered by `f`, boxed.
macro_rules! filtered {
    ($query:expr, $f:expr) => {{
        let f: &Filter = $f;
        let mut q = $query.into_boxed();
        if !f.vas.is_empty() {
            q = q.filter(va::name.eq_any(f.vas.clone()));
        }
        if !f.pids.is_empty() {
            q = q.filter(pi::pid.eq_any(f.pids.clone()));
        }
        if let Some(n) = &f.name {
            q = q.filter(
                pi::name
                    .like(format!("%{}%", n.replace('%', "\\%").replace('_', "\\_")))
                    .escape('\\'),
            );
        }
        if let Some(s) = &f.state {
            q = q.filter(pi::state.eq(*s));
        }
        q
    }};
}

/// One page of the product instances `f` selects, each with its VA's name.
pub fn list(conn: &mut SqliteConnection, f: &Filter, page: Page) -> Result<Vec<(PiRow, String)>> {
    use crate::states::DeviceSort;
    let q = filtered!(
        pi::table
            .inner_join(va::table)
            .select((PiRow::as_select(), va::name)),
        f
    );
    let q = match page.after {
        Some(id) => q.filter(pi::id.gt(id)).order(pi::id),
        None => match page.sort {
            DeviceSort::Registered => q.order(pi::id),
            DeviceSort::Name => q.order((pi::name, pi::id)),
            DeviceSort::Serial => q.order((pi::sn, pi::id)),
            DeviceSort::LastContact => q.order((pi::last_contact_at, pi::id)),
        }
        .offset(page.offset),
    };
    Ok(q.limit(page.limit).load(conn)?)
}

/// How many product instances `f` selects, by state.
pub fn count_by_state(conn: &mut SqliteConnection, f: &Filter) -> Result<Vec<(PiState, i64)>> {
    Ok(filtered!(
        pi::table
            .inner_join(va::table)
            .group_by(pi::state)
            .select((pi::state, diesel::dsl::count_star())),
        f
    )
    .load(conn)?)
}

// ---- usage -------------------------------------------------------------------------

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = u)]
pub struct UsageRow {
    pub pi_id: i64,
    pub tag: String,
    pub count: i64,
    pub requested_at: i64,
    pub status: String,
}

pub fn usage_of(conn: &mut SqliteConnection, pi_id: i64) -> Result<Vec<UsageRow>> {
    Ok(u::table
        .select(UsageRow::as_select())
        .filter(u::pi_id.eq(pi_id))
        .order(u::tag)
        .load(conn)?)
}

pub fn upsert_usage(conn: &mut SqliteConnection, row: &UsageRow) -> Result<()> {
    diesel::insert_into(u::table)
        .values((
            u::pi_id.eq(row.pi_id),
            u::tag.eq(&row.tag),
            u::count.eq(row.count),
            u::requested_at.eq(row.requested_at),
            u::status.eq(&row.status),
        ))
        .on_conflict((u::pi_id, u::tag))
        .do_update()
        .set((
            u::count.eq(row.count),
            u::requested_at.eq(row.requested_at),
            u::status.eq(&row.status),
        ))
        .execute(conn)?;
    Ok(())
}

/// A new usage row (a plain INSERT, which SQLite keeps prepared).
pub fn insert_usage(conn: &mut SqliteConnection, row: &UsageRow) -> Result<()> {
    diesel::insert_into(u::table)
        .values((
            u::pi_id.eq(row.pi_id),
            u::tag.eq(&row.tag),
            u::count.eq(row.count),
            u::requested_at.eq(row.requested_at),
            u::status.eq(&row.status),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn delete_usage(conn: &mut SqliteConnection, pi_id: i64, tag: &str) -> Result<()> {
    diesel::delete(u::table.filter(u::pi_id.eq(pi_id)).filter(u::tag.eq(tag))).execute(conn)?;
    Ok(())
}

pub fn set_usage_status(
    conn: &mut SqliteConnection,
    pi_id: i64,
    tag: &str,
    status: &str,
) -> Result<()> {
    diesel::update(u::table.filter(u::pi_id.eq(pi_id)).filter(u::tag.eq(tag)))
        .set(u::status.eq(status))
        .execute(conn)?;
    Ok(())
}

/// The usage rows counted against a VA's pool of `tag`, in the order they came: up to
/// `limit` of them after the row `after` (requested at, pi id), so that a pool of a
/// million devices is walked in pages of bounded memory.
pub fn queue(
    conn: &mut SqliteConnection,
    va_id: i64,
    tag: &str,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<UsageRow>> {
    let (at, id) = after.unwrap_or((i64::MIN, i64::MIN));
    Ok(u::table
        .inner_join(pi::table)
        .select(UsageRow::as_select())
        .filter(pi::va_id.eq(va_id))
        .filter(pi::state.eq(PiState::Active))
        .filter(u::tag.eq(tag))
        .filter(u::status.ne("NOT_FOUND"))
        .filter(super::after_pair(
            "license_usage.requested_at",
            "license_usage.pi_id",
            (at, id),
        ))
        .order((u::requested_at, u::pi_id))
        .limit(limit)
        .load(conn)?)
}

/// Running totals of a VA's entitlement: (in use, authorized).
pub fn totals(conn: &mut SqliteConnection, va_id: i64, tag: &str) -> Result<(i64, i64)> {
    Ok(p::table
        .select((p::in_use, p::authorized))
        .filter(p::va_id.eq(va_id))
        .filter(p::tag.eq(tag))
        .first(conn)
        .optional()?
        .unwrap_or((0, 0)))
}

/// Adds to the running totals (negative to subtract).
pub fn add_totals(
    conn: &mut SqliteConnection,
    va_id: i64,
    tag: &str,
    in_use: i64,
    authorized: i64,
) -> Result<()> {
    if in_use == 0 && authorized == 0 {
        return Ok(());
    }
    // Update first: SQLite checks an upsert's CHECK constraints on the values to insert,
    // which are negative when taking away.
    let updated = diesel::update(p::table.filter(p::va_id.eq(va_id)).filter(p::tag.eq(tag)))
        .set((
            p::in_use.eq(p::in_use + in_use),
            p::authorized.eq(p::authorized + authorized),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(p::table)
            .values((
                p::va_id.eq(va_id),
                p::tag.eq(tag),
                p::in_use.eq(in_use),
                p::authorized.eq(authorized),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn set_totals(
    conn: &mut SqliteConnection,
    va_id: i64,
    tag: &str,
    in_use: i64,
    authorized: i64,
) -> Result<()> {
    diesel::insert_into(p::table)
        .values((
            p::va_id.eq(va_id),
            p::tag.eq(tag),
            p::in_use.eq(in_use),
            p::authorized.eq(authorized),
        ))
        .on_conflict((p::va_id, p::tag))
        .do_update()
        .set((p::in_use.eq(in_use), p::authorized.eq(authorized)))
        .execute(conn)?;
    Ok(())
}

/// Every (VA, tag) with running totals.
pub fn all_totals(conn: &mut SqliteConnection) -> Result<Vec<(i64, String, i64, i64)>> {
    Ok(p::table
        .select((p::va_id, p::tag, p::in_use, p::authorized))
        .load(conn)?)
}

/// License lines of a VA's entitlement: (name, kind, quantity, start, end).
/// (name, kind, quantity, start, end, restricted)
pub type Line = (String, String, i64, Option<i64>, Option<i64>, bool);

pub fn lines(conn: &mut SqliteConnection, va_id: i64, tag: &str) -> Result<Vec<Line>> {
    Ok(l::table
        .select((
            l::name,
            l::kind,
            l::quantity,
            l::start_at,
            l::end_at,
            l::restricted,
        ))
        .filter(l::va_id.eq(va_id))
        .filter(l::tag.eq(tag))
        .load(conn)?)
}

/// Active product instances not heard from since `before`, with their VA's name.
pub fn silent_since(conn: &mut SqliteConnection, before: i64) -> Result<Vec<(PiRow, String)>> {
    Ok(pi::table
        .inner_join(va::table)
        .select((PiRow::as_select(), va::name))
        .filter(pi::state.eq(PiState::Active))
        .filter(pi::last_contact_at.le(before))
        .order(pi::id)
        .load(conn)?)
}

/// The given product instances' rows (those that still exist).
pub fn by_uuids(conn: &mut SqliteConnection, uuids: &[String]) -> Result<Vec<PiRow>> {
    Ok(pi::table
        .select(PiRow::as_select())
        .filter(pi::uuid.eq_any(uuids))
        .load(conn)?)
}
