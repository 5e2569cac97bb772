//! The `clock_state` row: the manual clock's offset and the high-water mark.

use diesel::prelude::*;

use super::schema::clock_state;
use crate::error::Result;

/// Seconds the manual clock is ahead of the system clock.
pub fn offset(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(clock_state::table
        .select(clock_state::offset_seconds)
        .first(conn)?)
}

pub fn set_offset(conn: &mut SqliteConnection, seconds: i64) -> Result<()> {
    diesel::update(clock_state::table)
        .set(clock_state::offset_seconds.eq(seconds))
        .execute(conn)?;
    Ok(())
}

/// Moves the offset by `delta` in one statement, so concurrent advances add up.
pub fn add_offset(conn: &mut SqliteConnection, delta: i64) -> Result<i64> {
    diesel::update(clock_state::table)
        .set(clock_state::offset_seconds.eq(clock_state::offset_seconds + delta))
        .execute(conn)?;
    offset(conn)
}
