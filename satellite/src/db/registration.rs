//! Registration requests the satellite made, and its registration state.

use diesel::prelude::*;

use super::schema::{registration_requests, satellite};
use crate::error::Result;
use crate::states::SyncMode;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = registration_requests)]
pub struct RequestRow {
    pub bundle_id: String,
    pub created_at: i64,
    pub mode: SyncMode,
    pub cloud_url: Option<String>,
    pub answered_at: Option<i64>,
}

pub fn insert_request(
    conn: &mut SqliteConnection,
    bundle_id: &str,
    now: i64,
    mode: SyncMode,
    cloud_url: Option<&str>,
) -> Result<()> {
    diesel::insert_into(registration_requests::table)
        .values((
            registration_requests::bundle_id.eq(bundle_id),
            registration_requests::created_at.eq(now),
            registration_requests::mode.eq(mode),
            registration_requests::cloud_url.eq(cloud_url),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn request(conn: &mut SqliteConnection, bundle_id: &str) -> Result<Option<RequestRow>> {
    Ok(registration_requests::table
        .select(RequestRow::as_select())
        .find(bundle_id)
        .first(conn)
        .optional()?)
}

pub fn request_count(conn: &mut SqliteConnection) -> Result<i64> {
    Ok(registration_requests::table.count().get_result(conn)?)
}

pub fn mark_answered(conn: &mut SqliteConnection, bundle_id: &str, now: i64) -> Result<()> {
    diesel::update(registration_requests::table.find(bundle_id))
        .set(registration_requests::answered_at.eq(now))
        .execute(conn)?;
    Ok(())
}

/// What an authorization makes of the satellite.
#[derive(Debug, Clone)]
pub struct Registered<'a> {
    pub name: &'a str,
    pub cloud_id: &'a str,
    pub account_name: &'a str,
    pub cloud_ca_pem: &'a str,
    pub certificate_pem: &'a str,
    pub export_controlled_allowed: bool,
    pub next_sync_due_at: i64,
}

pub fn set_registered(conn: &mut SqliteConnection, now: i64, r: &Registered<'_>) -> Result<()> {
    diesel::update(satellite::table)
        .set((
            satellite::state.eq(crate::states::SatelliteState::Registered),
            satellite::name.eq(r.name),
            satellite::registered_at.eq(now),
            satellite::removed_at.eq(None::<i64>),
            // The 90-day count starts again from the registration.
            satellite::last_sync_at.eq(None::<i64>),
            satellite::cloud_id.eq(r.cloud_id),
            satellite::account_name.eq(r.account_name),
            satellite::cloud_ca_pem.eq(r.cloud_ca_pem),
            satellite::certificate_pem.eq(r.certificate_pem),
            satellite::export_controlled_allowed.eq(r.export_controlled_allowed),
            satellite::next_sync_due_at.eq(r.next_sync_due_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Waiting for the cloud to approve network request `request_id`.
pub fn set_pending(conn: &mut SqliteConnection, request_id: &str) -> Result<()> {
    diesel::update(satellite::table)
        .set((
            satellite::state.eq(crate::states::SatelliteState::Pending),
            satellite::registration_request_id.eq(request_id),
        ))
        .execute(conn)?;
    Ok(())
}
