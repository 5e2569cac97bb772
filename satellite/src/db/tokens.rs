//! Registration tokens.

use diesel::prelude::*;

use super::schema::{registration_tokens as t, virtual_accounts as va};
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = t)]
pub struct TokenRow {
    pub id: i64,
    pub va_id: i64,
    pub lookup_id: String,
    pub hint: String,
    pub description: String,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: i64,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub export_controlled: bool,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewTokenRow<'a> {
    pub va_id: i64,
    pub lookup_id: &'a str,
    pub hint: &'a str,
    pub description: &'a str,
    pub created_at: i64,
    pub created_by: &'a str,
    pub expires_at: i64,
    pub max_uses: Option<i64>,
    pub export_controlled: bool,
}

pub fn insert(conn: &mut SqliteConnection, n: &NewTokenRow<'_>) -> Result<i64> {
    diesel::insert_into(t::table)
        .values((
            t::va_id.eq(n.va_id),
            t::lookup_id.eq(n.lookup_id),
            t::hint.eq(n.hint),
            t::description.eq(n.description),
            t::created_at.eq(n.created_at),
            t::created_by.eq(n.created_by),
            t::expires_at.eq(n.expires_at),
            t::max_uses.eq(n.max_uses),
            t::export_controlled.eq(n.export_controlled),
        ))
        .execute(conn)?;
    Ok(t::table
        .select(t::id)
        .filter(t::lookup_id.eq(n.lookup_id))
        .first(conn)?)
}

pub fn by_lookup(conn: &mut SqliteConnection, lookup_id: &str) -> Result<Option<TokenRow>> {
    Ok(t::table
        .select(TokenRow::as_select())
        .filter(t::lookup_id.eq(lookup_id))
        .first(conn)
        .optional()?)
}

pub fn by_id(conn: &mut SqliteConnection, id: i64) -> Result<Option<TokenRow>> {
    Ok(t::table
        .select(TokenRow::as_select())
        .find(id)
        .first(conn)
        .optional()?)
}

/// Every token with its VA's name, newest first.
pub fn list(conn: &mut SqliteConnection) -> Result<Vec<(TokenRow, String)>> {
    Ok(t::table
        .inner_join(va::table)
        .select((TokenRow::as_select(), va::name))
        .order(t::id.desc())
        .load(conn)?)
}

/// One token with its VA's name.
pub fn with_va(conn: &mut SqliteConnection, id: i64) -> Result<Option<(TokenRow, String)>> {
    Ok(t::table
        .inner_join(va::table)
        .select((TokenRow::as_select(), va::name))
        .filter(t::id.eq(id))
        .first(conn)
        .optional()?)
}

pub fn add_use(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    diesel::update(t::table.find(id))
        .set(t::uses.eq(t::uses + 1))
        .execute(conn)?;
    Ok(())
}

pub fn revoke(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<()> {
    diesel::update(t::table.find(id))
        .set(t::revoked_at.eq(now))
        .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    diesel::delete(t::table.find(id)).execute(conn)?;
    Ok(())
}
