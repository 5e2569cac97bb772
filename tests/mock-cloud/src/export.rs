//! The mock cloud's half of the export-controlled flow: each request or return a satellite
//! sends is answered once and the answer kept, so the same record sent again (a sync that
//! failed half-way) gets the same answer and locks nothing twice.
//!
//! A request is granted when the device is an active device of that satellite and its VA
//! has the restricted license in force in that quantity beyond what is already locked;
//! otherwise it is denied with a reason: `unknown_device`, `unknown_tag`, `not_restricted`
//! or `not_available`. A grant locks the licenses to the device (they follow it to another
//! VA); a return releases them.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde::Serialize;
use sync_format::payload::{ExportAnswer, ExportOp, ExportRecord, ExportStatus};

use super::schema::{
    export_answers as ans, export_locks as locks, licenses, product_instances as pis, satellites,
    virtual_accounts,
};
use super::{Cloud, Result};
use satellite::clock::format as fmt_time;

fn stored(c: &mut SqliteConnection, id: &str) -> Result<Option<ExportAnswer>> {
    type Row = (
        String,
        String,
        i64,
        String,
        Option<String>,
        Option<String>,
        String,
        String,
    );
    let row: Option<Row> = ans::table
        .select((
            ans::pi_uuid,
            ans::tag,
            ans::count,
            ans::status,
            ans::reason_code,
            ans::reason,
            ans::license_name,
            ans::license_kind,
        ))
        .find(id)
        .first(c)
        .optional()?;
    Ok(row.map(
        |(pi, tag, count, status, reason_code, reason, license_name, license_kind)| ExportAnswer {
            id: id.to_string(),
            status: match status.as_str() {
                "granted" => ExportStatus::Granted,
                "returned" => ExportStatus::Returned,
                _ => ExportStatus::Denied,
            },
            pi,
            tag,
            count,
            reason_code,
            reason,
            license_name,
            license_kind,
        },
    ))
}

/// A restricted line: (name, kind, quantity in force now).
type RestrictedLine = (String, String, i64);

/// The restricted lines of a VA's entitlement, and whether the VA has any line of that tag
/// at all.
fn restricted_lines(
    c: &mut SqliteConnection,
    va_id: i64,
    tag: &str,
    now: i64,
) -> Result<(bool, Vec<RestrictedLine>)> {
    type Row = (String, String, i64, Option<i64>, Option<i64>, bool);
    let all: Vec<Row> = licenses::table
        .select((
            licenses::name,
            licenses::kind,
            licenses::quantity,
            licenses::start_at,
            licenses::end_at,
            licenses::restricted,
        ))
        .filter(licenses::va_id.eq(va_id))
        .filter(licenses::tag.eq(tag))
        .load(c)?;
    let any = !all.is_empty();
    Ok((
        any,
        all.into_iter()
            .filter(|l| l.5)
            .map(|(name, kind, qty, start, end, _)| {
                let in_force = start.is_none_or(|s| s <= now) && end.is_none_or(|e| now < e);
                (name, kind, if in_force { qty } else { 0 })
            })
            .collect(),
    ))
}

/// The seeds' `<term/perpetual>`.
fn kind_word(lines: &[RestrictedLine]) -> String {
    if lines.iter().any(|l| l.1 == "term" || l.1 == "demo") {
        "term".into()
    } else {
        "perpetual".into()
    }
}

/// Restricted licenses of a tag locked to the devices of a VA.
fn locked_in_va(c: &mut SqliteConnection, va_id: i64, tag: &str) -> Result<i64> {
    let counts: Vec<i64> = locks::table
        .inner_join(pis::table)
        .select(locks::count)
        .filter(pis::va_id.eq(va_id))
        .filter(locks::tag.eq(tag))
        .filter(locks::released_at.is_null())
        .load(c)?;
    Ok(counts.into_iter().sum())
}

/// Answers one record of a satellite's `export_requests.ndjson` (inside the sync's
/// transaction, after its product instances were applied).
pub fn answer(
    c: &mut SqliteConnection,
    satellite_row: i64,
    rec: &ExportRecord,
    now: i64,
) -> Result<ExportAnswer> {
    if let Some(a) = stored(c, &rec.id)? {
        return Ok(a);
    }
    let device: Option<(i64, i64, String, String, Option<i64>)> = pis::table
        .inner_join(virtual_accounts::table)
        .select((
            pis::id,
            pis::va_id,
            virtual_accounts::name,
            pis::state,
            pis::satellite_row,
        ))
        .filter(pis::uuid.eq(&rec.pi))
        .first(c)
        .optional()?;
    let mut a = ExportAnswer {
        id: rec.id.clone(),
        status: ExportStatus::Denied,
        pi: rec.pi.clone(),
        tag: rec.tag.clone(),
        count: rec.count,
        reason_code: None,
        reason: None,
        license_name: rec.tag.clone(),
        license_kind: "perpetual".into(),
    };
    let deny = |a: &mut ExportAnswer, code: &str, reason: String| {
        a.status = ExportStatus::Denied;
        a.reason_code = Some(code.into());
        a.reason = Some(reason);
    };
    let mut grant_to = None;
    match rec.op {
        ExportOp::Request => match device {
            Some((pi_id, va_id, va, state, holder))
                if state == "active" && holder == Some(satellite_row) =>
            {
                let (any, lines) = restricted_lines(c, va_id, &rec.tag, now)?;
                if let Some(l) = lines.first() {
                    a.license_name = l.0.clone();
                }
                a.license_kind = kind_word(&lines);
                if !any {
                    deny(
                        &mut a,
                        "unknown_tag",
                        format!(
                            "there is no license {:?} in the Virtual Account \"{va}\"",
                            rec.tag
                        ),
                    );
                } else if lines.is_empty() {
                    deny(
                        &mut a,
                        "not_restricted",
                        format!(
                            "{:?} is not a restricted (export-controlled) license",
                            rec.tag
                        ),
                    );
                } else {
                    let purchased: i64 = lines.iter().map(|l| l.2).sum();
                    let available = purchased - locked_in_va(c, va_id, &rec.tag)?;
                    if rec.count > available {
                        let name = a.license_name.clone();
                        deny(
                            &mut a,
                            "not_available",
                            format!(
                                "{} \"{}\" requested, {} available in the Virtual Account \
                                 \"{va}\"",
                                rec.count,
                                name,
                                available.max(0)
                            ),
                        );
                    } else {
                        a.status = ExportStatus::Granted;
                        grant_to = Some(pi_id);
                    }
                }
            }
            _ => deny(
                &mut a,
                "unknown_device",
                format!(
                    "the product instance {} is not an active device of this satellite",
                    rec.pi
                ),
            ),
        },
        ExportOp::Return => {
            a.status = ExportStatus::Returned;
            if let Some((_, va_id, _, _, _)) = device {
                let (_, lines) = restricted_lines(c, va_id, &rec.tag, now)?;
                if let Some(l) = lines.first() {
                    a.license_name = l.0.clone();
                }
                a.license_kind = kind_word(&lines);
            }
            let released = match &rec.returns {
                Some(of) => diesel::update(
                    locks::table
                        .filter(locks::request_id.eq(of))
                        .filter(locks::released_at.is_null()),
                )
                .set(locks::released_at.eq(now))
                .execute(c)?,
                None => match device {
                    Some((pi_id, ..)) => diesel::update(
                        locks::table
                            .filter(locks::pi_id.eq(pi_id))
                            .filter(locks::tag.eq(&rec.tag))
                            .filter(locks::released_at.is_null()),
                    )
                    .set(locks::released_at.eq(now))
                    .execute(c)?,
                    None => 0,
                },
            };
            if released == 0 {
                a.reason = Some("nothing was held".into());
            }
        }
    }
    if let Some(pi_id) = grant_to {
        diesel::insert_into(locks::table)
            .values((
                locks::request_id.eq(&rec.id),
                locks::pi_id.eq(pi_id),
                locks::tag.eq(&rec.tag),
                locks::count.eq(rec.count),
                locks::granted_at.eq(now),
            ))
            .execute(c)?;
    }
    diesel::insert_into(ans::table)
        .values((
            ans::request_id.eq(&a.id),
            ans::satellite_row.eq(satellite_row),
            ans::op.eq(match rec.op {
                ExportOp::Request => "request",
                ExportOp::Return => "return",
            }),
            ans::pi_uuid.eq(&a.pi),
            ans::tag.eq(&a.tag),
            ans::count.eq(a.count),
            ans::status.eq(match a.status {
                ExportStatus::Granted => "granted",
                ExportStatus::Denied => "denied",
                ExportStatus::Returned => "returned",
            }),
            ans::reason_code.eq(&a.reason_code),
            ans::reason.eq(&a.reason),
            ans::license_name.eq(&a.license_name),
            ans::license_kind.eq(&a.license_kind),
            ans::answered_at.eq(now),
        ))
        .execute(c)?;
    Ok(a)
}

/// Releases every lock of a satellite's devices (the satellite was removed).
pub fn release_satellite(c: &mut SqliteConnection, satellite_row: i64, now: i64) -> Result<usize> {
    let ids: Vec<i64> = pis::table
        .select(pis::id)
        .filter(pis::satellite_row.eq(satellite_row))
        .load(c)?;
    let mut n = 0;
    for chunk in ids.chunks(10_000) {
        n += diesel::update(
            locks::table
                .filter(locks::pi_id.eq_any(chunk))
                .filter(locks::released_at.is_null()),
        )
        .set(locks::released_at.eq(now))
        .execute(c)?;
    }
    Ok(n)
}

/// Locked restricted licenses per (VA, tag), for the usage report.
pub fn locked(c: &mut SqliteConnection) -> Result<BTreeMap<(i64, String), i64>> {
    let rows: Vec<(i64, String, i64)> = locks::table
        .inner_join(pis::table)
        .select((pis::va_id, locks::tag, locks::count))
        .filter(locks::released_at.is_null())
        .load(c)?;
    let mut out = BTreeMap::new();
    for (va, tag, n) in rows {
        *out.entry((va, tag)).or_default() += n;
    }
    Ok(out)
}

/// `mock-cloud export list`: every export request and return answered, with its lock.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub request_id: String,
    pub satellite: String,
    pub op: String,
    pub pi: String,
    pub tag: String,
    pub count: i64,
    pub status: String,
    pub reason: Option<String>,
    /// For a grant: "held" or "released".
    pub lock: Option<String>,
    pub answered_at: String,
}

pub fn list(cloud: &Cloud) -> Result<Vec<Listing>> {
    let mut c = cloud.conn()?;
    type Row = (
        String,
        String,
        String,
        String,
        String,
        i64,
        String,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = ans::table
        .inner_join(satellites::table)
        .select((
            ans::request_id,
            satellites::name,
            ans::op,
            ans::pi_uuid,
            ans::tag,
            ans::count,
            ans::status,
            ans::reason,
            ans::answered_at,
        ))
        .order(ans::answered_at)
        .load(&mut c)?;
    let mut out = Vec::with_capacity(rows.len());
    for (request_id, satellite, op, pi, tag, count, status, reason, at) in rows {
        let lock = locks::table
            .select(locks::released_at)
            .filter(locks::request_id.eq(&request_id))
            .first::<Option<i64>>(&mut c)
            .optional()?
            .map(|r| if r.is_some() { "released" } else { "held" }.to_string());
        out.push(Listing {
            request_id,
            satellite,
            op,
            pi,
            tag,
            count,
            status,
            reason,
            lock,
            answered_at: fmt_time(at),
        });
    }
    Ok(out)
}
