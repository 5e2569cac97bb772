//! The `satellite` row: who this satellite is and where it stands with the cloud.

use diesel::prelude::*;

use super::schema::satellite;
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = satellite)]
pub struct SatelliteRow {
    pub id: i64,
    pub satellite_id: String,
    pub name: String,
    pub hostname: String,
    pub created_at: i64,
    pub state: crate::states::SatelliteState,
    pub registered_at: Option<i64>,
    pub removed_at: Option<i64>,
    pub cloud_id: Option<String>,
    pub account_name: Option<String>,
    pub cloud_ca_pem: Option<String>,
    pub certificate_pem: Option<String>,
    pub export_controlled_allowed: bool,
    pub registration_request_id: Option<String>,
    pub last_sync_at: Option<i64>,
    pub next_sync_due_at: Option<i64>,
    /// The cloud CA pinned before the last rollover, trusted until it expires.
    pub cloud_ca_previous_pem: Option<String>,
}

impl SatelliteRow {
    /// Whether the satellite is registered with the cloud now (the one check of it; past
    /// its 90 days it is still `registered` until the scheduler marks it removed, see
    /// `sync::deadlines::past_removal`).
    pub fn is_registered(&self) -> bool {
        self.state == crate::states::SatelliteState::Registered
    }
}

/// The satellite row, if the satellite has been initialised.
pub fn get(conn: &mut SqliteConnection) -> Result<Option<SatelliteRow>> {
    Ok(satellite::table
        .select(SatelliteRow::as_select())
        .first(conn)
        .optional()?)
}

/// The satellite's row, which every command but the first start needs: a clear refusal
/// when the data directory holds no satellite yet.
pub fn require(conn: &mut SqliteConnection) -> Result<SatelliteRow> {
    get(conn)?
        .ok_or_else(|| crate::error::Error::State("the satellite has not been initialised".into()))
}

/// Creates the row on first start; a row that exists already is left as it is.
pub fn insert_if_missing(
    conn: &mut SqliteConnection,
    satellite_id: &str,
    name: &str,
    hostname: &str,
    now: i64,
) -> Result<SatelliteRow> {
    diesel::insert_or_ignore_into(satellite::table)
        .values((
            satellite::id.eq(1),
            satellite::satellite_id.eq(satellite_id),
            satellite::name.eq(name),
            satellite::hostname.eq(hostname),
            satellite::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(satellite::table
        .select(SatelliteRow::as_select())
        .first(conn)?)
}

/// Stores a renewed certificate of the satellite (in the transaction that applies the
/// sync response carrying it).
pub fn set_certificate(conn: &mut SqliteConnection, pem: &str) -> Result<()> {
    diesel::update(satellite::table.find(1))
        .set(satellite::certificate_pem.eq(pem))
        .execute(conn)?;
    Ok(())
}

/// Pins a new cloud CA (a rollover the cloud announced), keeping the one before it, which
/// stays trusted until it expires.
pub fn roll_cloud_ca(conn: &mut SqliteConnection, new_pem: &str, previous_pem: &str) -> Result<()> {
    diesel::update(satellite::table.find(1))
        .set((
            satellite::cloud_ca_pem.eq(new_pem),
            satellite::cloud_ca_previous_pem.eq(previous_pem),
        ))
        .execute(conn)?;
    Ok(())
}
