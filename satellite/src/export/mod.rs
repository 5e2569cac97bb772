//! Export-controlled (restricted) licenses: the queued authorization flow through sync
//! (seed 001, "Using Export Controlled Licenses"; seed 003, "Smart Licensing Export
//! Compliance").
//!
//! A device registered with an export-controlled token asks for a restricted license; the
//! satellite queues the request whether or not its copy of the pool has the license, and
//! answers "pending". The next sync (file or network) carries every request still waiting
//! for the cloud; the cloud grants (the license is locked to the device) or denies with a
//! reason. A grant counts in the VA's pool from then on and reaches the device, signed, in
//! its next authorization answer; a denial raises "Restricted License Not Available".
//! Returns (the device gives a license back, or deregisters, or an operator removes it)
//! are queued the same way, and the license stays consumed until the cloud acknowledges.
//!
//! A row waiting for the cloud is sent in every sync request until answered, and the cloud
//! answers each request id once (the same answer if it comes again): a failed or
//! half-finished sync loses nothing and grants nothing twice.

use diesel::SqliteConnection;
use serde::{Deserialize, Serialize};
use sync_format::payload::{ExportAnswer, ExportStatus};

/// Which export-controlled requests to list.
pub use crate::db::export::Filter;

use crate::catalogue::AlertKind;
use crate::catalogue::EventKind;
use crate::clock;
use crate::compliance;
use crate::db::devices::{self as dbdevices, PiRow};
use crate::db::export::{self as db, ExportRow};
use crate::db::{alerts, events, pools};
use crate::error::{Error, Reason, Result};
use crate::guards::{field_ok, fresh, require_registered};
use crate::states::PiState;
use crate::states::{ExportDirection, ExportState};

mod sync;
pub use sync::*;

/// Most restricted licenses of one tag one request may ask for.
pub const MAX_COUNT: i64 = 1_000_000;

/// `POST /api/v1/devices/export/request`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    pub pi_id: String,
    pub counter: i64,
    pub tag: String,
    pub count: i64,
}

/// `POST /api/v1/devices/export/return`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportReturn {
    pub pi_id: String,
    pub counter: i64,
    pub tag: String,
}

fn check_tag(tag: &str) -> Result<()> {
    if field_ok(tag, 200, b"-_.:/+") {
        Ok(())
    } else {
        Err(Error::invalid(
            "an entitlement tag must be 1 to 200 of A-Z a-z 0-9 - _ . : / +",
        ))
    }
}

impl ExportRequest {
    pub fn validate(&self) -> Result<()> {
        check_tag(&self.tag)?;
        if !(1..=MAX_COUNT).contains(&self.count) {
            return Err(Error::invalid(format!(
                "count must be 1 to {MAX_COUNT}, not {}",
                self.count
            )));
        }
        Ok(())
    }
}

/// The answer to a request or a return: queued, pending the next sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Queued {
    pub request_id: String,
    pub pi_id: String,
    pub tag: String,
    pub count: i64,
    pub direction: ExportDirection,
    /// Always "pending": the cloud decides at the next sync.
    pub status: String,
    pub message: String,
}

/// What a device is told about its restricted licenses, in every authorization answer
/// (so it is signed with the rest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestrictedStatus {
    pub request_id: String,
    pub tag: String,
    pub count: i64,
    /// PENDING (waiting for the cloud), GRANTED (locked to this device), DENIED (once,
    /// with the reason), RETURN_PENDING (given back, waiting for the cloud).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn rows_for(conn: &mut SqliteConnection, pi_id: i64, tag: &str) -> Result<Vec<ExportRow>> {
    Ok(db::of_pi(conn, pi_id)?
        .into_iter()
        .filter(|r| r.tag == tag)
        .collect())
}

fn queued(row: &ExportRow, pi: &PiRow, message: String) -> Queued {
    Queued {
        request_id: row.request_uuid.clone(),
        pi_id: pi.uuid.clone(),
        tag: row.tag.clone(),
        count: row.count,
        direction: row.direction,
        status: "pending".into(),
        message,
    }
}

/// In the writer: queues a device's request for a restricted license.
pub fn request(conn: &mut SqliteConnection, req: &ExportRequest, now: i64) -> Result<Queued> {
    require_registered(conn, now)?;
    let pi = fresh(conn, &req.pi_id, req.counter, now)?;
    if !pi.export_controlled {
        return Err(Error::Forbidden(Reason::new(
            "export_not_allowed",
            format!(
                "the product instance {} was registered with a token that does not allow \
             export-controlled functionality, so it may not use restricted licenses; register \
             it again with an export-controlled token",
                pi.uuid
            ),
        )));
    }
    let va = pools::va_name(conn, pi.va_id)?;
    let pool = compliance::pool(conn, pi.va_id, &req.tag, now)?;
    if pool.found && !pool.restricted {
        return Err(Error::invalid(format!(
            "{:?} is not a restricted (export-controlled) license in the Virtual Account \
             \"{va}\": ask for it in an ordinary authorization request",
            req.tag
        )));
    }
    for r in rows_for(conn, pi.id, &req.tag)? {
        let waiting = r.state.waits();
        if r.direction == ExportDirection::Request && waiting {
            return Err(Error::Conflict(Reason::new(
                "request_pending",
                format!(
                    "a request for {:?} ({}) is already waiting for the cloud",
                    req.tag, r.request_uuid
                ),
            )));
        }
        if r.direction == ExportDirection::Request && r.state.holds() {
            return Err(Error::Conflict(Reason::new(
                "already_held",
                format!(
                    "this product instance already holds {} {:?} ({}); return it before asking \
                 for a different quantity",
                    r.count, req.tag, r.request_uuid
                ),
            )));
        }
        if r.direction == ExportDirection::Return && waiting {
            return Err(Error::Conflict(Reason::new(
                "return_pending",
                format!(
                    "the return of {:?} ({}) is still waiting for the cloud; ask again once it \
                 is acknowledged",
                    req.tag, r.request_uuid
                ),
            )));
        }
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    let row = db::insert(
        conn,
        now,
        &db::NewExport {
            uuid: &uuid,
            pi_id: pi.id,
            tag: &req.tag,
            count: req.count,
            direction: ExportDirection::Request,
            return_of: None,
        },
    )?;
    events::append(
        conn,
        now,
        &events::NewEvent {
            kind: EventKind::PiRequestedLicense,
            va_name: Some(&va),
            pi_uuid: Some(&pi.uuid),
            license_tag: Some(&req.tag),
            message: format!(
                "The product instance {} in the Virtual Account \"{va}\" requested {} \"{}\".",
                pi.name, req.count, pool.name
            ),
            actor: "system",
        },
    )?;
    tracing::info!(pi = %pi.uuid, tag = %req.tag, count = req.count, request = %uuid, "export request queued");
    Ok(queued(
        &row,
        &pi,
        "queued: the cloud decides at the next synchronization; the answer comes with a later \
         authorization"
            .into(),
    ))
}

/// Queues the return of a held restricted license (the license stays consumed until the
/// cloud acknowledges). `None` when a return of it is already waiting.
fn queue_return(
    conn: &mut SqliteConnection,
    held: &ExportRow,
    now: i64,
) -> Result<Option<ExportRow>> {
    let pending = db::of_pi(conn, held.pi_id)?.into_iter().any(|r| {
        r.direction == ExportDirection::Return && r.return_of == Some(held.id) && r.state.waits()
    });
    if pending {
        return Ok(None);
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    Ok(Some(db::insert(
        conn,
        now,
        &db::NewExport {
            uuid: &uuid,
            pi_id: held.pi_id,
            tag: &held.tag,
            count: held.count,
            direction: ExportDirection::Return,
            return_of: Some(held.id),
        },
    )?))
}

/// In the writer: queues a device's return of a restricted license it holds.
pub fn give_back(conn: &mut SqliteConnection, req: &ExportReturn, now: i64) -> Result<Queued> {
    check_tag(&req.tag)?;
    require_registered(conn, now)?;
    let pi = fresh(conn, &req.pi_id, req.counter, now)?;
    let rows = rows_for(conn, pi.id, &req.tag)?;
    let Some(held) = rows
        .iter()
        .find(|r| r.direction == ExportDirection::Request && r.state.holds())
    else {
        if let Some(w) = rows
            .iter()
            .find(|r| r.direction == ExportDirection::Request && r.state.waits())
        {
            return Err(Error::Conflict(Reason::new(
                "request_pending",
                format!(
                    "the request for {:?} ({}) is still waiting for the cloud: nothing is held \
                 yet to return",
                    req.tag, w.request_uuid
                ),
            )));
        }
        return Err(Error::NotFound(Reason::new(
            "nothing_to_return",
            format!("this product instance holds no restricted {:?}", req.tag),
        )));
    };
    let row = match queue_return(conn, held, now)? {
        Some(r) => r,
        None => {
            return Err(Error::Conflict(Reason::new(
                "return_pending",
                format!(
                    "the return of {:?} is already waiting for the cloud",
                    req.tag
                ),
            )))
        }
    };
    tracing::info!(pi = %pi.uuid, tag = %req.tag, request = %row.request_uuid, "export return queued");
    Ok(queued(
        &row,
        &pi,
        "queued: the license stays consumed until the cloud acknowledges the return at the \
         next synchronization"
            .into(),
    ))
}

/// A device leaves (deregistration, operator removal): the returns of everything it holds
/// are queued. Returns how many.
pub fn return_all(conn: &mut SqliteConnection, pi: &PiRow, now: i64) -> Result<usize> {
    let mut n = 0;
    for r in db::of_pi(conn, pi.id)? {
        if r.direction == ExportDirection::Request
            && r.state.holds()
            && queue_return(conn, &r, now)?.is_some()
        {
            n += 1;
        }
    }
    Ok(n)
}

/// A device moved from one VA to another: its restricted licenses go with it (seed 001).
pub fn moved(conn: &mut SqliteConnection, pi_id: i64, from: i64, to: i64, now: i64) -> Result<()> {
    let mut tags: Vec<String> = db::of_pi(conn, pi_id)?
        .into_iter()
        .filter(|r| r.direction == ExportDirection::Request && r.state.holds())
        .map(|r| r.tag)
        .collect();
    tags.sort();
    tags.dedup();
    for tag in tags {
        compliance::recompute(conn, from, &tag, now)?;
        compliance::recompute(conn, to, &tag, now)?;
    }
    Ok(())
}

/// What a device is told about its restricted licenses, and which rows that delivers
/// (a grant or a denial not given before).
fn statuses(rows: &[ExportRow]) -> (Vec<RestrictedStatus>, Vec<i64>) {
    let mut out = Vec::new();
    let mut delivers = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.direction == ExportDirection::Request)
    {
        let returning = rows.iter().any(|x| {
            x.direction == ExportDirection::Return && x.return_of == Some(r.id) && x.state.waits()
        });
        let status = match r.state.as_str() {
            "queued" | "sent" => "PENDING",
            "granted" | "delivered" if returning => "RETURN_PENDING",
            "granted" | "delivered" => "GRANTED",
            "denied" if r.delivered_at.is_none() => "DENIED",
            _ => continue,
        };
        if (status == "GRANTED" && r.state == ExportState::Granted) || status == "DENIED" {
            delivers.push(r.id);
        }
        out.push(RestrictedStatus {
            request_id: r.request_uuid.clone(),
            tag: r.tag.clone(),
            count: r.count,
            status: status.into(),
            reason: r.reason.clone(),
        });
    }
    (out, delivers)
}

/// A device's restricted licenses as its next authorization would tell them.
pub fn of_device(conn: &mut SqliteConnection, pi_id: i64) -> Result<Vec<RestrictedStatus>> {
    Ok(statuses(&db::of_pi(conn, pi_id)?).0)
}

/// In the writer, with an authorization: what the device is told about its restricted
/// licenses. Grants and denials given here are marked delivered.
pub fn deliver(conn: &mut SqliteConnection, pi: &PiRow, now: i64) -> Result<Vec<RestrictedStatus>> {
    let (out, delivers) = statuses(&db::of_pi(conn, pi.id)?);
    if !delivers.is_empty() {
        db::mark_delivered(conn, &delivers, now)?;
    }
    Ok(out)
}

// ---- operators -----------------------------------------------------------------------------

/// An export request or return as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct ExportView {
    pub request_id: String,
    pub direction: ExportDirection,
    pub state: ExportState,
    pub pi_id: String,
    pub product_instance: String,
    pub virtual_account: String,
    pub tag: String,
    pub count: i64,
    /// The sync request (bundle id) that last carried it.
    pub sent_in: Option<String>,
    pub reason: Option<String>,
    pub license_name: Option<String>,
    pub created_at: String,
    pub answered_at: Option<String>,
    pub delivered_at: Option<String>,
    /// For a return: the request whose grant it gives back.
    pub returns: Option<String>,
}

pub fn list(conn: &mut SqliteConnection, f: &db::Filter) -> Result<Vec<ExportView>> {
    let rows = db::list(conn, f)?;
    let mut out = Vec::with_capacity(rows.len());
    for l in rows {
        let sent_in = match l.row.sync_id {
            Some(id) => crate::db::sync::bundle_of(conn, id)?,
            None => None,
        };
        let returns = match l.row.return_of {
            Some(id) => Some(db::by_id(conn, id)?.request_uuid),
            None => None,
        };
        out.push(ExportView {
            request_id: l.row.request_uuid,
            direction: l.row.direction,
            state: l.row.state,
            pi_id: l.pi_uuid,
            product_instance: l.pi_name,
            virtual_account: l.va_name,
            tag: l.row.tag,
            count: l.row.count,
            sent_in,
            reason: l.row.reason,
            license_name: l.row.license_name,
            created_at: clock::format(l.row.created_at),
            answered_at: l.row.answered_at.map(clock::format),
            delivered_at: l.row.delivered_at.map(clock::format),
            returns,
        });
    }
    Ok(out)
}

pub fn show(conn: &mut SqliteConnection, request_id: &str) -> Result<ExportView> {
    list(
        conn,
        &db::Filter {
            request: Some(request_id.to_string()),
            ..db::Filter::default()
        },
    )?
    .into_iter()
    .next()
    .ok_or_else(|| Error::NotFound(format!("no export request {request_id:?}").into()))
}

#[cfg(test)]
mod tests;
