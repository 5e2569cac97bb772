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

/// The high-water mark (the latest time the satellite has counted) and the clock reading
/// at the last count.
pub fn marks(conn: &mut SqliteConnection) -> Result<(i64, i64)> {
    Ok(clock_state::table
        .select((clock_state::high_water, clock_state::last_clock))
        .first(conn)?)
}

/// Records a count; the caller never passes a mark below the current one.
pub fn set_marks(conn: &mut SqliteConnection, counted: i64, clock: i64) -> Result<()> {
    diesel::update(clock_state::table)
        .set((
            clock_state::high_water.eq(counted),
            clock_state::last_clock.eq(clock),
        ))
        .execute(conn)?;
    Ok(())
}
