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

// ---- sync ----------------------------------------------------------------------------------

/// What applying one answer of the cloud did.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerOutcome {
    pub request_id: String,
    pub pi: String,
    pub tag: String,
    pub count: i64,
    /// "granted", "denied", "returned", or "ignored" (already answered, or unknown here).
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn licenses_text(count: i64, name: &str, kind: &str) -> String {
    format!("{count} \"{name}\" {kind}")
}

/// Applies one answer of a sync response (inside the import's transaction).
pub fn apply_answer(
    conn: &mut SqliteConnection,
    a: &ExportAnswer,
    at: i64,
) -> Result<AnswerOutcome> {
    let mut out = AnswerOutcome {
        request_id: a.id.clone(),
        pi: a.pi.clone(),
        tag: a.tag.clone(),
        count: a.count,
        result: "ignored".into(),
        reason: a.reason.clone(),
    };
    let Some(row) = db::by_uuid(conn, &a.id)? else {
        tracing::warn!(request = %a.id, "the cloud answered an export request this satellite does not know");
        return Ok(out);
    };
    if !row.state.waits() {
        return Ok(out);
    }
    let pi = dbdevices::by_id(conn, row.pi_id)?;
    if pi.uuid != a.pi || row.tag != a.tag {
        return Err(Error::invalid(format!(
            "the response answers export request {} for {} {:?}, but it was made for {} {:?}",
            a.id, a.pi, a.tag, pi.uuid, row.tag
        )));
    }
    let va = pools::va_name(conn, pi.va_id)?;
    let name = a.license_name.as_str();
    let kind = a.license_kind.as_str();
    let licenses = licenses_text(row.count, name, kind);
    match (row.direction.as_str(), a.status) {
        ("request", ExportStatus::Granted) => {
            db::answer(conn, row.id, ExportState::Granted, None, (name, kind), at)?;
            compliance::recompute(conn, pi.va_id, &row.tag, at)?;
            alerts::clear_source(
                conn,
                at,
                AlertKind::RestrictedNotAvailable,
                &alert_source(&pi, &row.tag),
            )?;
            events::append(
                conn,
                at,
                &events::NewEvent {
                    kind: EventKind::ExportSuccess,
                    va_name: Some(&va),
                    pi_uuid: Some(&pi.uuid),
                    license_tag: Some(&row.tag),
                    message: format!(
                        "Export restricted licenses were assigned to product instance \"{}\" in \
                         Virtual Account \"{va}\". Licenses: {licenses} licenses.",
                        pi.name
                    ),
                    actor: "system",
                },
            )?;
            if pi.state != PiState::Active {
                // Granted after the device left: give it straight back.
                let held = db::by_id(conn, row.id)?;
                queue_return(conn, &held, at)?;
            }
            out.result = "granted".into();
        }
        ("request", ExportStatus::Denied) => {
            let reason = a.reason.clone().unwrap_or_else(|| "no reason given".into());
            db::answer(
                conn,
                row.id,
                ExportState::Denied,
                Some(&reason),
                (name, kind),
                at,
            )?;
            let code = a.reason_code.as_deref().unwrap_or("");
            let not_available = matches!(code, "not_available" | "unknown_tag");
            let message = if not_available {
                format!(
                    "Restricted License Not Available \u{2013} The product instance \"{}\" in \
                     Virtual Account \"{va}\" has requested export restricted licenses that are \
                     not available. You must add these licenses to this Virtual Account or \
                     transfer the product instance to a Virtual Account that contains these \
                     licenses. Licenses: {licenses}.",
                    pi.name
                )
            } else {
                format!(
                    "Export authorization failed for the product instance \"{}\" in Virtual \
                     Account \"{va}\": {reason}. Licenses: {licenses}.",
                    pi.name
                )
            };
            events::append(
                conn,
                at,
                &events::NewEvent {
                    kind: EventKind::ExportFailure,
                    va_name: Some(&va),
                    pi_uuid: Some(&pi.uuid),
                    license_tag: Some(&row.tag),
                    message,
                    actor: "system",
                },
            )?;
            if not_available {
                alerts::raise(
                    conn,
                    at,
                    &alerts::NewAlert {
                        kind: AlertKind::RestrictedNotAvailable,
                        source_type: "pi",
                        source_id: Some(&alert_source(&pi, &row.tag)),
                        va_id: Some(pi.va_id),
                        message: format!(
                            "The product instance {} has requested license {name} which enables \
                             restricted encryption technology. This license is not available \
                             within the virtual account {va}.",
                            pi.name
                        ),
                        action_due_at: None,
                    },
                )?;
            }
            out.result = "denied".into();
            out.reason = Some(reason);
        }
        ("return", ExportStatus::Returned) => {
            db::answer(conn, row.id, ExportState::Returned, None, (name, kind), at)?;
            if let Some(of) = row.return_of {
                db::set_state(conn, of, ExportState::Returned, at)?;
            }
            compliance::recompute(conn, pi.va_id, &row.tag, at)?;
            events::append(
                conn,
                at,
                &events::NewEvent {
                    kind: EventKind::ExportReleased,
                    va_name: Some(&va),
                    pi_uuid: Some(&pi.uuid),
                    license_tag: Some(&row.tag),
                    message: format!(
                        "Export restricted licenses were removed from product instance \"{}\" in \
                         Virtual Account \"{va}\" and released back to the inventory for use by \
                         other product instances. Licenses: {licenses}.",
                        pi.name
                    ),
                    actor: "system",
                },
            )?;
            out.result = "returned".into();
        }
        ("return", ExportStatus::Denied) => {
            // The cloud kept the license: it stays held here too, and the operator sees why.
            let reason = a.reason.clone().unwrap_or_else(|| "no reason given".into());
            db::answer(
                conn,
                row.id,
                ExportState::Denied,
                Some(&reason),
                (name, kind),
                at,
            )?;
            out.result = "denied".into();
            out.reason = Some(reason);
        }
        (dir, status) => {
            return Err(Error::invalid(format!(
                "the response answers export {dir} {} with {status:?}, which does not fit",
                a.id
            )))
        }
    }
    Ok(out)
}

fn alert_source(pi: &PiRow, tag: &str) -> String {
    format!("{}/{tag}", pi.uuid)
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
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::db::devices as dbd;
    use crate::devices::tests::{register, site_with};
    use diesel::Connection;
    use sync_format::payload::{LicenseKind, LicenseLine};

    const HSEC: &str = "regid.hsec";

    fn line(tag: &str, name: &str, qty: i64, restricted: bool) -> LicenseLine {
        LicenseLine {
            tag: tag.into(),
            name: name.into(),
            description: String::new(),
            kind: LicenseKind::Perpetual,
            quantity: qty,
            start: None,
            end: None,
            restricted,
        }
    }

    struct T {
        store: crate::db::Store,
        _dir: tempfile::TempDir,
        token: String,
        key: crate::identity::TokenKey,
        ca: crate::identity::DeviceCa,
        counter: i64,
    }

    impl T {
        fn new() -> T {
            let (store, dir, token, key, ca) = site_with(
                &[
                    ("Ops", line(HSEC, "HSECK9", 2, true)),
                    ("Ops", line("regid.plain", "Plain", 5, false)),
                    ("Lab", line(HSEC, "HSECK9", 1, true)),
                ],
                true,
            );
            T {
                store,
                _dir: dir,
                token,
                key,
                ca,
                counter: 0,
            }
        }
        fn conn(&self) -> crate::db::Conn {
            self.store.conn().unwrap()
        }
        fn device(&self, sn: &str) -> String {
            register(&mut self.conn(), &self.key, &self.ca, &self.token, sn)
        }
        fn ask(&mut self, pi: &str, tag: &str, count: i64) -> Result<Queued> {
            self.counter += 1;
            let r = ExportRequest {
                pi_id: pi.into(),
                counter: self.counter,
                tag: tag.into(),
                count,
            };
            r.validate()?;
            let now = SystemClock.now();
            self.conn().transaction(|c| request(c, &r, now))
        }
        fn give_back(&mut self, pi: &str, tag: &str) -> Result<Queued> {
            self.counter += 1;
            let r = ExportReturn {
                pi_id: pi.into(),
                counter: self.counter,
                tag: tag.into(),
            };
            let now = SystemClock.now();
            self.conn().transaction(|c| give_back(c, &r, now))
        }
        fn answer(&self, q: &Queued, status: ExportStatus, code: Option<&str>) -> AnswerOutcome {
            let a = ExportAnswer {
                id: q.request_id.clone(),
                status,
                pi: q.pi_id.clone(),
                tag: q.tag.clone(),
                count: q.count,
                reason_code: code.map(str::to_string),
                reason: code.map(|c| format!("because {c}")),
                license_name: "HSECK9".into(),
                license_kind: "perpetual".into(),
            };
            let now = SystemClock.now();
            self.conn()
                .transaction(|c| apply_answer(c, &a, now))
                .unwrap()
        }
        fn in_use(&self, va: &str, tag: &str) -> i64 {
            let mut c = self.conn();
            let va = pools::va_id(&mut c, va).unwrap().unwrap();
            dbd::totals(&mut c, va, tag).unwrap().0
        }
        fn state(&self, id: &str) -> String {
            db::by_uuid(&mut self.conn(), id)
                .unwrap()
                .unwrap()
                .state
                .to_string()
        }
        fn pi(&self, uuid: &str) -> PiRow {
            dbd::by_uuid(&mut self.conn(), uuid).unwrap().unwrap()
        }
    }

    #[test]
    fn a_request_is_queued_granted_delivered_and_returned() {
        let mut t = T::new();
        let a = t.device("A");
        let q = t.ask(&a, HSEC, 2).unwrap();
        assert_eq!(q.status, "pending");
        assert_eq!(t.state(&q.request_id), "queued");
        // Not consumed before the cloud grants it.
        assert_eq!(t.in_use("Ops", HSEC), 0);
        let again = t.ask(&a, HSEC, 1).unwrap_err();
        assert!(again.to_string().contains("already waiting"), "{again}");

        assert_eq!(t.answer(&q, ExportStatus::Granted, None).result, "granted");
        assert_eq!(t.state(&q.request_id), "granted");
        assert_eq!(t.in_use("Ops", HSEC), 2);
        // The same answer again changes nothing.
        assert_eq!(t.answer(&q, ExportStatus::Granted, None).result, "ignored");
        assert_eq!(t.in_use("Ops", HSEC), 2);

        // The device is told once it connects, and the grant is delivered.
        let pi = t.pi(&a);
        let told = deliver(&mut t.conn(), &pi, SystemClock.now()).unwrap();
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].status, "GRANTED");
        assert_eq!(t.state(&q.request_id), "delivered");

        // A return stays consumed until the cloud acknowledges it.
        let r = t.give_back(&a, HSEC).unwrap();
        assert_eq!(r.direction, ExportDirection::Return);
        assert_eq!(t.in_use("Ops", HSEC), 2);
        let told = deliver(&mut t.conn(), &pi, SystemClock.now()).unwrap();
        assert_eq!(told[0].status, "RETURN_PENDING");
        assert!(t.give_back(&a, HSEC).is_err(), "a second return is refused");
        assert_eq!(
            t.answer(&r, ExportStatus::Returned, None).result,
            "returned"
        );
        assert_eq!(t.in_use("Ops", HSEC), 0);
        assert_eq!(t.state(&q.request_id), "returned");
        assert_eq!(t.state(&r.request_id), "returned");
        assert!(deliver(&mut t.conn(), &pi, SystemClock.now())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_denial_raises_the_alert_with_the_seed_text_and_is_told_once() {
        let mut t = T::new();
        let b = t.device("B");
        let q = t.ask(&b, HSEC, 5).unwrap();
        let out = t.answer(&q, ExportStatus::Denied, Some("not_available"));
        assert_eq!(out.result, "denied");
        assert_eq!(t.in_use("Ops", HSEC), 0);
        let pi = t.pi(&b);
        let alerts = crate::db::alerts::active(&mut t.conn()).unwrap();
        let a = alerts
            .iter()
            .find(|a| a.kind == AlertKind::RestrictedNotAvailable)
            .expect("alert");
        assert_eq!(a.severity.as_str(), "informational");
        assert_eq!(
            a.message,
            format!(
                "The product instance {} has requested license HSECK9 which enables restricted \
                 encryption technology. This license is not available within the virtual \
                 account Ops.",
                pi.name
            )
        );
        let told = deliver(&mut t.conn(), &pi, SystemClock.now()).unwrap();
        assert_eq!(told[0].status, "DENIED");
        assert_eq!(told[0].reason.as_deref(), Some("because not_available"));
        assert!(deliver(&mut t.conn(), &pi, SystemClock.now())
            .unwrap()
            .is_empty());
        // Another reason is reported, without the alert.
        let q2 = t.ask(&b, HSEC, 1).unwrap();
        t.answer(&q2, ExportStatus::Denied, Some("unknown_device"));
        let n = crate::db::alerts::active(&mut t.conn())
            .unwrap()
            .iter()
            .filter(|a| a.kind == AlertKind::RestrictedNotAvailable)
            .count();
        assert_eq!(n, 1);
    }

    #[test]
    fn an_answer_that_does_not_fit_its_request_is_refused() {
        let mut t = T::new();
        let a = t.device("A");
        let q = t.ask(&a, HSEC, 1).unwrap();
        let mut wrong = ExportAnswer {
            id: q.request_id.clone(),
            status: ExportStatus::Granted,
            pi: q.pi_id.clone(),
            tag: "regid.other".into(),
            count: 1,
            reason_code: None,
            reason: None,
            license_name: "Other".into(),
            license_kind: "perpetual".into(),
        };
        let now = SystemClock.now();
        let e = t
            .conn()
            .transaction(|c| apply_answer(c, &wrong, now))
            .unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        wrong.tag = HSEC.into();
        wrong.status = ExportStatus::Returned;
        assert!(t
            .conn()
            .transaction(|c| apply_answer(c, &wrong, now))
            .is_err());
        assert_eq!(t.state(&q.request_id), "queued");
        assert_eq!(t.in_use("Ops", HSEC), 0);
    }

    #[test]
    fn refusals_store_nothing() {
        let mut t = T::new();
        let a = t.device("A");
        let plain = t.ask(&a, "regid.plain", 1).unwrap_err();
        assert!(matches!(plain, Error::Invalid(_)), "{plain}");
        assert!(plain.to_string().contains("not a restricted"), "{plain}");
        assert!(matches!(t.ask(&a, HSEC, 0), Err(Error::Invalid(_))));
        assert!(matches!(t.ask(&a, "bad tag!", 1), Err(Error::Invalid(_))));
        assert!(matches!(t.give_back(&a, HSEC), Err(Error::NotFound(_))));
        // A device of an ordinary token.
        let now = SystemClock.now();
        let (ordinary, _) = crate::tokens::create(
            &mut t.conn(),
            &t.key,
            now,
            &crate::tokens::NewToken {
                va: "Ops".into(),
                days: 30,
                max_uses: None,
                export_controlled: false,
                description: String::new(),
                created_by: "t".into(),
            },
        )
        .unwrap();
        let o = register(&mut t.conn(), &t.key, &t.ca, &ordinary, "O");
        let e = t.ask(&o, HSEC, 1).unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{e}");
        assert!(db::list(&mut t.conn(), &db::Filter::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn restricted_licenses_follow_a_transfer_and_a_removal_queues_their_return() {
        let mut t = T::new();
        let a = t.device("A");
        let q = t.ask(&a, HSEC, 1).unwrap();
        t.answer(&q, ExportStatus::Granted, None);
        assert_eq!(t.in_use("Ops", HSEC), 1);
        let now = SystemClock.now();
        crate::devices::transfer(&mut t.conn(), &a, "Lab", now, "op").unwrap();
        assert_eq!(t.in_use("Ops", HSEC), 0);
        assert_eq!(t.in_use("Lab", HSEC), 1);
        crate::devices::remove(&mut t.conn(), &a, now, "op").unwrap();
        // Still consumed; the return waits for the next sync.
        assert_eq!(t.in_use("Lab", HSEC), 1);
        let waiting = db::waiting(&mut t.conn()).unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].row.direction, ExportDirection::Return);
    }

    #[test]
    fn an_ordinary_authorization_does_not_consume_a_restricted_license() {
        let mut t = T::new();
        let a = t.device("A");
        let pi = t.pi(&a);
        let ask = [compliance::Entitlement {
            tag: HSEC.into(),
            count: 1,
        }];
        let now = SystemClock.now();
        let got = compliance::report_usage(&mut t.conn(), &pi, &ask, now).unwrap();
        assert_eq!(got[0].status, compliance::EXPORT_RESTRICTED);
        assert_eq!(t.in_use("Ops", HSEC), 0);
        let q = t.ask(&a, HSEC, 1).unwrap();
        t.answer(&q, ExportStatus::Granted, None);
        let got = compliance::report_usage(&mut t.conn(), &pi, &ask, now).unwrap();
        assert_eq!(got[0].status, compliance::AUTHORIZED);
        assert_eq!(t.in_use("Ops", HSEC), 1);
    }
}
