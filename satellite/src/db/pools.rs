//! Virtual accounts and their license pools, as the cloud last told us.

use diesel::prelude::*;
use sync_format::payload::{LicenseLine, VirtualAccount};

use super::schema::{licenses, virtual_accounts};
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = virtual_accounts)]
pub struct VaRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_at: i64,
    /// Whether this satellite serves it (a registration again may leave it out).
    pub served: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = licenses)]
pub struct LicenseRow {
    pub id: i64,
    pub va_id: i64,
    pub tag: String,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub quantity: i64,
    pub start_at: Option<i64>,
    pub end_at: Option<i64>,
    pub restricted: bool,
    pub updated_at: i64,
}

/// Makes the store's VAs and pools exactly those of `vas` (a registration): VAs are added or
/// updated by name; the others are no longer served (never deleted: their devices and
/// history stay); every license line is replaced.
pub fn replace(conn: &mut SqliteConnection, now: i64, vas: &[VirtualAccount]) -> Result<()> {
    delete_lines(conn)?;
    diesel::update(virtual_accounts::table)
        .set(virtual_accounts::served.eq(false))
        .execute(conn)?;
    for va in vas {
        let va_id = upsert_va(conn, now, va)?;
        for l in &va.licenses {
            insert_line(conn, now, va_id, l)?;
        }
    }
    Ok(())
}

/// Whether the satellite serves the virtual account `id`.
pub fn served(conn: &mut SqliteConnection, id: i64) -> Result<bool> {
    Ok(virtual_accounts::table
        .select(virtual_accounts::served)
        .find(id)
        .first(conn)?)
}

pub fn insert_line(
    conn: &mut SqliteConnection,
    now: i64,
    va_id: i64,
    l: &LicenseLine,
) -> Result<()> {
    diesel::insert_into(licenses::table)
        .values((
            licenses::va_id.eq(va_id),
            licenses::tag.eq(&l.tag),
            licenses::name.eq(&l.name),
            licenses::description.eq(&l.description),
            licenses::kind.eq(l.kind.as_str()),
            licenses::quantity.eq(l.quantity),
            licenses::start_at.eq(l.start),
            licenses::end_at.eq(l.end),
            licenses::restricted.eq(l.restricted),
            licenses::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Adds a VA or brings its description up to date; returns its id.
pub fn upsert_va(conn: &mut SqliteConnection, now: i64, va: &VirtualAccount) -> Result<i64> {
    diesel::insert_into(virtual_accounts::table)
        .values((
            virtual_accounts::name.eq(&va.name),
            virtual_accounts::description.eq(&va.description),
            virtual_accounts::created_at.eq(now),
        ))
        .on_conflict(virtual_accounts::name)
        .do_update()
        .set((
            virtual_accounts::description.eq(&va.description),
            virtual_accounts::served.eq(true),
        ))
        .execute(conn)?;
    Ok(virtual_accounts::table
        .select(virtual_accounts::id)
        .filter(virtual_accounts::name.eq(&va.name))
        .first(conn)?)
}

/// Deletes every license line (a registration brings them all again).
pub fn delete_lines(conn: &mut SqliteConnection) -> Result<()> {
    diesel::delete(licenses::table).execute(conn)?;
    Ok(())
}

/// Deletes the license lines `ids`; returns how many there were.
pub fn delete_lines_by_id(conn: &mut SqliteConnection, ids: &[i64]) -> Result<usize> {
    let mut n = 0;
    for chunk in ids.chunks(10_000) {
        n += diesel::delete(licenses::table.filter(licenses::id.eq_any(chunk))).execute(conn)?;
    }
    Ok(n)
}

/// Inserts license lines, (VA id, line), many rows per statement.
pub fn insert_lines(
    conn: &mut SqliteConnection,
    now: i64,
    lines: &[(i64, &LicenseLine)],
) -> Result<()> {
    // Ten columns a row, well under SQLite's 32,766 parameters a statement.
    for chunk in lines.chunks(1_000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(va_id, l)| {
                (
                    licenses::va_id.eq(*va_id),
                    licenses::tag.eq(&l.tag),
                    licenses::name.eq(&l.name),
                    licenses::description.eq(&l.description),
                    licenses::kind.eq(l.kind.as_str()),
                    licenses::quantity.eq(l.quantity),
                    licenses::start_at.eq(l.start),
                    licenses::end_at.eq(l.end),
                    licenses::restricted.eq(l.restricted),
                    licenses::updated_at.eq(now),
                )
            })
            .collect();
        diesel::insert_into(licenses::table)
            .values(&rows)
            .execute(conn)?;
    }
    Ok(())
}

/// Up to `limit` license lines after the id `after`, by id, each with its VA's name.
pub fn lines_page(
    conn: &mut SqliteConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<(LicenseRow, String)>> {
    Ok(licenses::table
        .inner_join(virtual_accounts::table)
        .select((LicenseRow::as_select(), virtual_accounts::name))
        .filter(licenses::id.gt(after))
        .order(licenses::id)
        .limit(limit)
        .load(conn)?)
}

impl LicenseRow {
    /// The line as the cloud sends it.
    pub fn as_line(&self) -> LicenseLine {
        LicenseLine {
            tag: self.tag.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            // The column holds what `as_str` wrote.
            kind: sync_format::payload::LicenseKind::parse(&self.kind)
                .unwrap_or(sync_format::payload::LicenseKind::Perpetual),
            quantity: self.quantity,
            start: self.start_at,
            end: self.end_at,
            restricted: self.restricted,
        }
    }
}

/// Every VA the satellite serves, with its license lines, by name.
pub fn all(conn: &mut SqliteConnection) -> Result<Vec<(VaRow, Vec<LicenseRow>)>> {
    let vas: Vec<VaRow> = virtual_accounts::table
        .select(VaRow::as_select())
        .filter(virtual_accounts::served.eq(true))
        .order(virtual_accounts::name)
        .load(conn)?;
    let lines: Vec<LicenseRow> = licenses::table
        .select(LicenseRow::as_select())
        .order((licenses::tag, licenses::id))
        .load(conn)?;
    Ok(vas
        .into_iter()
        .map(|va| {
            let mine = lines.iter().filter(|l| l.va_id == va.id).cloned().collect();
            (va, mine)
        })
        .collect())
}

pub fn va_name(conn: &mut SqliteConnection, id: i64) -> Result<String> {
    Ok(virtual_accounts::table
        .select(virtual_accounts::name)
        .find(id)
        .first(conn)?)
}

pub fn va_id(conn: &mut SqliteConnection, name: &str) -> Result<Option<i64>> {
    Ok(virtual_accounts::table
        .select(virtual_accounts::id)
        .filter(virtual_accounts::name.eq(name))
        .first(conn)
        .optional()?)
}

/// Every license line that ends (term and demo), with its VA's name.
pub fn ending_lines(conn: &mut SqliteConnection) -> Result<Vec<(LicenseRow, String)>> {
    Ok(licenses::table
        .inner_join(virtual_accounts::table)
        .select((LicenseRow::as_select(), virtual_accounts::name))
        .filter(licenses::end_at.is_not_null())
        .order(licenses::id)
        .load(conn)?)
}

/// Every (VA id, tag) that has a license line.
pub fn line_keys(conn: &mut SqliteConnection) -> Result<Vec<(i64, String)>> {
    Ok(licenses::table
        .select((licenses::va_id, licenses::tag))
        .distinct()
        .load(conn)?)
}

/// Every virtual account's id and name (without their license lines), served or not.
pub fn va_names(conn: &mut SqliteConnection) -> Result<Vec<(i64, String)>> {
    Ok(virtual_accounts::table
        .select((virtual_accounts::id, virtual_accounts::name))
        .order(virtual_accounts::name)
        .load(conn)?)
}

/// The virtual accounts the satellite serves: id and name.
pub fn served_names(conn: &mut SqliteConnection) -> Result<Vec<(i64, String)>> {
    Ok(virtual_accounts::table
        .select((virtual_accounts::id, virtual_accounts::name))
        .filter(virtual_accounts::served.eq(true))
        .order(virtual_accounts::name)
        .load(conn)?)
}
