//! Operator accounts, their browser sessions and their API tokens.

use diesel::prelude::*;

use super::schema::{operator_api_tokens as tk, operator_sessions as se, operators as op};
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = op)]
pub struct OperatorRow {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub password_hash: String,
    pub created_at: i64,
    pub password_changed_at: i64,
    pub last_login_at: Option<i64>,
}

pub fn count(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(op::table.count().get_result(conn)?)
}

pub fn all(conn: &mut SqliteConnection) -> Result<Vec<OperatorRow>> {
    Ok(op::table
        .select(OperatorRow::as_select())
        .order(op::username)
        .load(conn)?)
}

pub fn by_name(conn: &mut SqliteConnection, username: &str) -> Result<Option<OperatorRow>> {
    Ok(op::table
        .select(OperatorRow::as_select())
        .filter(op::username.eq(username))
        .first(conn)
        .optional()?)
}

pub fn by_id(conn: &mut SqliteConnection, id: i64) -> Result<Option<OperatorRow>> {
    Ok(op::table
        .select(OperatorRow::as_select())
        .find(id)
        .first(conn)
        .optional()?)
}

pub fn insert(
    conn: &mut SqliteConnection,
    username: &str,
    role: &str,
    password_hash: &str,
    now: i64,
) -> Result<i64> {
    diesel::insert_into(op::table)
        .values((
            op::username.eq(username),
            op::role.eq(role),
            op::password_hash.eq(password_hash),
            op::created_at.eq(now),
            op::password_changed_at.eq(now),
        ))
        .execute(conn)?;
    Ok(op::table
        .select(op::id)
        .filter(op::username.eq(username))
        .first(conn)?)
}

pub fn set_password(conn: &mut SqliteConnection, id: i64, hash: &str, now: i64) -> Result<()> {
    diesel::update(op::table.find(id))
        .set((op::password_hash.eq(hash), op::password_changed_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

pub fn set_role(conn: &mut SqliteConnection, id: i64, role: &str) -> Result<()> {
    diesel::update(op::table.find(id))
        .set(op::role.eq(role))
        .execute(conn)?;
    Ok(())
}

pub fn logged_in(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<()> {
    diesel::update(op::table.find(id))
        .set(op::last_login_at.eq(now))
        .execute(conn)?;
    Ok(())
}

/// Removes an operator with its sessions and API tokens.
pub fn delete(conn: &mut SqliteConnection, id: i64) -> Result<()> {
    diesel::delete(se::table.filter(se::operator_id.eq(id))).execute(conn)?;
    diesel::delete(tk::table.filter(tk::operator_id.eq(id))).execute(conn)?;
    diesel::delete(op::table.find(id)).execute(conn)?;
    Ok(())
}

/// Admins left, for the rule that the last one cannot go.
pub fn admins(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(op::table
        .filter(op::role.eq("admin"))
        .count()
        .get_result(conn)?)
}

// --- sessions ---

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = se)]
pub struct SessionRow {
    pub id_hash: String,
    pub operator_id: i64,
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn insert_session(conn: &mut SqliteConnection, s: &SessionRow) -> Result<()> {
    diesel::insert_into(se::table)
        .values((
            se::id_hash.eq(&s.id_hash),
            se::operator_id.eq(s.operator_id),
            se::csrf.eq(&s.csrf),
            se::created_at.eq(s.created_at),
            se::expires_at.eq(s.expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// The session and its operator, if the session exists and has not expired.
pub fn session(
    conn: &mut SqliteConnection,
    id_hash: &str,
    now: i64,
) -> Result<Option<(SessionRow, OperatorRow)>> {
    Ok(se::table
        .inner_join(op::table)
        .select((SessionRow::as_select(), OperatorRow::as_select()))
        .filter(se::id_hash.eq(id_hash))
        .filter(se::expires_at.gt(now))
        .first(conn)
        .optional()?)
}

pub fn delete_session(conn: &mut SqliteConnection, id_hash: &str) -> Result<()> {
    diesel::delete(se::table.find(id_hash)).execute(conn)?;
    Ok(())
}

/// Ends every session of an operator (password changed, role changed).
pub fn delete_sessions_of(conn: &mut SqliteConnection, operator_id: i64) -> Result<()> {
    diesel::delete(se::table.filter(se::operator_id.eq(operator_id))).execute(conn)?;
    Ok(())
}

pub fn delete_expired_sessions(conn: &mut SqliteConnection, now: i64) -> Result<usize> {
    Ok(diesel::delete(se::table.filter(se::expires_at.le(now))).execute(conn)?)
}

// --- API tokens ---

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tk)]
pub struct ApiTokenRow {
    pub id: i64,
    pub operator_id: i64,
    pub description: String,
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub fn insert_api_token(
    conn: &mut SqliteConnection,
    operator_id: i64,
    description: &str,
    token_hash: &str,
    now: i64,
    expires_at: Option<i64>,
) -> Result<i64> {
    diesel::insert_into(tk::table)
        .values((
            tk::operator_id.eq(operator_id),
            tk::description.eq(description),
            tk::token_hash.eq(token_hash),
            tk::created_at.eq(now),
            tk::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(tk::table
        .select(tk::id)
        .filter(tk::token_hash.eq(token_hash))
        .first(conn)?)
}

/// The API tokens with their owners' names, newest first; of one operator if given.
pub fn api_tokens(
    conn: &mut SqliteConnection,
    operator_id: Option<i64>,
) -> Result<Vec<(ApiTokenRow, String)>> {
    let mut q = tk::table
        .inner_join(op::table)
        .select((ApiTokenRow::as_select(), op::username))
        .order(tk::id.desc())
        .into_boxed();
    if let Some(id) = operator_id {
        q = q.filter(tk::operator_id.eq(id));
    }
    Ok(q.load(conn)?)
}

pub fn api_token(conn: &mut SqliteConnection, id: i64) -> Result<Option<ApiTokenRow>> {
    Ok(tk::table
        .select(ApiTokenRow::as_select())
        .find(id)
        .first(conn)
        .optional()?)
}

/// The token with this hash and its operator, whatever the token's state.
pub fn api_token_by_hash(
    conn: &mut SqliteConnection,
    token_hash: &str,
) -> Result<Option<(ApiTokenRow, OperatorRow)>> {
    Ok(tk::table
        .inner_join(op::table)
        .select((ApiTokenRow::as_select(), OperatorRow::as_select()))
        .filter(tk::token_hash.eq(token_hash))
        .first(conn)
        .optional()?)
}

/// When API token `id` was last noted as used.
pub fn api_token_last_used(conn: &mut SqliteConnection, id: i64) -> Result<Option<i64>> {
    Ok(tk::table
        .select(tk::last_used_at)
        .find(id)
        .first::<Option<i64>>(conn)
        .optional()?
        .flatten())
}

pub fn api_token_used(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<()> {
    diesel::update(tk::table.find(id))
        .set(tk::last_used_at.eq(now))
        .execute(conn)?;
    Ok(())
}

pub fn revoke_api_token(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<()> {
    diesel::update(tk::table.find(id).filter(tk::revoked_at.is_null()))
        .set(tk::revoked_at.eq(now))
        .execute(conn)?;
    Ok(())
}
