//! Compliance: what each VA's pool holds, what its devices use, and the answer each device
//! gets per entitlement.
//!
//! Per VA and entitlement tag: *purchased* is the sum of the license lines in force (term and
//! demo lines count only between their start and end; reporting-only pools always equal
//! what is in use), *in use* is what the VA's active devices report, *balance* is their
//! difference. Requests are served in the order they came: a request is AUTHORIZED when it
//! fits in what the pool has left after the authorized requests, else OUT_OF_COMPLIANCE (the
//! device keeps working, and is AUTHORIZED at a later request once licenses free up). A tag
//! the VA has no license line for is NOT_FOUND. Running totals live in `pool_usage`, changed
//! in the same transaction as the usage, so they never double-count; [`recompute`] rebuilds
//! them from the usage rows when the pool itself changes.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::catalogue::AlertKind;
use crate::catalogue::EventKind;
use crate::db::devices::{self as db, PiRow, UsageRow};
use crate::db::{alerts, events, pools};
use crate::error::Result;

pub const AUTHORIZED: &str = "AUTHORIZED";
pub const OUT_OF_COMPLIANCE: &str = "OUT_OF_COMPLIANCE";
pub const NOT_FOUND: &str = "NOT_FOUND";
/// A restricted (export-controlled) entitlement the device does not hold: it must ask for
/// it through the export flow (`POST /api/v1/devices/export/request`).
pub const EXPORT_RESTRICTED: &str = "EXPORT_RESTRICTED";

/// The most licenses of one entitlement one VA may hold, over all its lines: far beyond any
/// real pool, and far enough below `i64::MAX` that no sum of counts can wrap.
pub const MAX_QUANTITY: i64 = 1_000_000_000_000;

/// Checks license lines as they come from the cloud (an authorization, a sync response): each
/// quantity is 0..=[`MAX_QUANTITY`] and the lines of one VA and tag add up to no more, with
/// checked arithmetic. A response that breaks it is refused whole, never wrapped.
#[derive(Debug, Default)]
pub struct LineTotals {
    totals: std::collections::HashMap<(String, String), i64>,
}

impl LineTotals {
    pub fn add(&mut self, va: &str, line: &sync_format::payload::LicenseLine) -> Result<()> {
        if line.tag.trim().is_empty() || !(0..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(crate::error::Error::invalid(format!(
                "the cloud sent an invalid license line for {:?} in {:?}: a tag and a \
                 quantity of 0 to {MAX_QUANTITY} are needed, got {}",
                line.tag, va, line.quantity
            )));
        }
        let total = self
            .totals
            .entry((va.to_string(), line.tag.clone()))
            .or_insert(0);
        *total = total
            .checked_add(line.quantity)
            .filter(|t| *t <= MAX_QUANTITY)
            .ok_or_else(|| {
                crate::error::Error::invalid(format!(
                    "the cloud's license lines for {:?} in {:?} add up to more than \
                     {MAX_QUANTITY}; refusing them",
                    line.tag, va
                ))
            })?;
        Ok(())
    }
}

/// A VA's pool of one entitlement at a time.
#[derive(Debug, Clone)]
pub struct Pool {
    pub found: bool,
    pub purchased: i64,
    pub reporting_only: bool,
    /// Export-controlled: handed out only through the export flow (`crate::export`), with
    /// the cloud's consent. A tag with any restricted line is restricted, and only its
    /// restricted lines count.
    pub restricted: bool,
    /// The license's display name (the tag if there is no line).
    pub name: String,
}

pub fn pool(conn: &mut SqliteConnection, va_id: i64, tag: &str, now: i64) -> Result<Pool> {
    let mut lines = db::lines(conn, va_id, tag)?;
    let found = !lines.is_empty();
    let restricted = lines.iter().any(|l| l.5);
    if restricted {
        lines.retain(|l| l.5);
    }
    let reporting_only = found && lines.iter().all(|l| l.1 == "reporting-only");
    let purchased = lines
        .iter()
        .filter(|l| match l.1.as_str() {
            "term" | "demo" => l.3.is_none_or(|s| s <= now) && l.4.is_none_or(|e| now < e),
            _ => true,
        })
        .map(|l| l.2)
        .fold(0i64, i64::saturating_add);
    Ok(Pool {
        found,
        purchased,
        reporting_only,
        restricted,
        name: lines
            .first()
            .map_or_else(|| tag.to_string(), |l| l.0.clone()),
    })
}

/// One entitlement a device asks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entitlement {
    pub tag: String,
    pub count: i64,
}

/// The answer for one entitlement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntitlementStatus {
    pub tag: String,
    pub count: i64,
    pub status: String,
}

/// What a usage row counts in its pool's totals: (in use, authorized).
fn contribution(status: &str, count: i64) -> (i64, i64) {
    match status {
        AUTHORIZED => (count, count),
        OUT_OF_COMPLIANCE => (count, 0),
        _ => (0, 0),
    }
}

/// Takes back what a usage row counted in its pool's totals.
fn uncount(conn: &mut SqliteConnection, va_id: i64, row: &UsageRow) -> Result<()> {
    let (in_use, authorized) = contribution(&row.status, row.count);
    db::add_totals(conn, va_id, &row.tag, -in_use, -authorized)
}

/// Applies a device's report of everything it uses now and answers per entitlement.
/// Entitlements it used before and no longer reports are released.
///
/// The common case, a device asking again for what it has, writes nothing but its contact
/// time: totals change by the net difference only, and an unchanged usage row is left alone
/// (SQLite compiles every UPDATE anew, so the writes that are skipped matter).
pub fn report_usage(
    conn: &mut SqliteConnection,
    pi: &PiRow,
    requested: &[Entitlement],
    now: i64,
) -> Result<Vec<EntitlementStatus>> {
    let va_name = pools::va_name(conn, pi.va_id)?;
    let mut old: BTreeMap<String, UsageRow> = db::usage_of(conn, pi.id)?
        .into_iter()
        .map(|r| (r.tag.clone(), r))
        .collect();
    let mut answers = Vec::with_capacity(requested.len());
    for e in requested {
        let previous = old.remove(&e.tag);
        let (old_in_use, old_authorized) = previous
            .as_ref()
            .map_or((0, 0), |p| contribution(&p.status, p.count));
        let pool = pool(conn, pi.va_id, &e.tag, now)?;
        if pool.restricted {
            // Not consumed from the pool here: the device holds what the cloud granted.
            if let Some(p) = &previous {
                release_row(conn, pi.va_id, &va_name, p, now)?;
            }
            let held = crate::db::export::held_by(conn, pi.id, &e.tag)?;
            answers.push(EntitlementStatus {
                tag: e.tag.clone(),
                count: e.count,
                status: if e.count <= held {
                    AUTHORIZED
                } else {
                    EXPORT_RESTRICTED
                }
                .to_string(),
            });
            continue;
        }
        let requested_at = match &previous {
            Some(p) if p.count == e.count => p.requested_at,
            _ => now,
        };
        let status = if !pool.found {
            NOT_FOUND
        } else if e.count == 0 {
            AUTHORIZED
        } else {
            let (_, authorized) = db::totals(conn, pi.va_id, &e.tag)?;
            if pool.reporting_only || authorized - old_authorized + e.count <= pool.purchased {
                AUTHORIZED
            } else {
                OUT_OF_COMPLIANCE
            }
        };
        let (new_in_use, new_authorized) = if e.count == 0 {
            (0, 0)
        } else {
            contribution(status, e.count)
        };
        db::add_totals(
            conn,
            pi.va_id,
            &e.tag,
            new_in_use - old_in_use,
            new_authorized - old_authorized,
        )?;
        let row = UsageRow {
            pi_id: pi.id,
            tag: e.tag.clone(),
            count: e.count,
            requested_at,
            status: status.to_string(),
        };
        match &previous {
            _ if e.count == 0 => {
                if previous.is_some() {
                    db::delete_usage(conn, pi.id, &e.tag)?;
                }
            }
            Some(p)
                if p.count == row.count
                    && p.requested_at == row.requested_at
                    && p.status == row.status => {}
            Some(_) => db::upsert_usage(conn, &row)?,
            None => db::insert_usage(conn, &row)?,
        }
        let changed =
            previous.as_ref().map(|p| (p.count, p.status.as_str())) != Some((e.count, status));
        if previous.as_ref().map(|p| p.count) != Some(e.count) && e.count > 0 {
            events::append(
                conn,
                now,
                &events::NewEvent {
                    kind: EventKind::PiRequestedLicense,
                    va_name: Some(&va_name),
                    pi_uuid: Some(&pi.uuid),
                    license_tag: Some(&e.tag),
                    message: format!(
                        "The product instance {} in the Virtual Account \"{va_name}\" requested {} \"{}\".",
                        pi.name, e.count, pool.name
                    ),
                    actor: "system",
                },
            )?;
        }
        if pool.found && changed {
            check_shortage(conn, pi.va_id, &va_name, &e.tag, &pool, now)?;
        }
        answers.push(EntitlementStatus {
            tag: e.tag.clone(),
            count: e.count,
            status: status.to_string(),
        });
    }
    for (_, row) in old {
        release_row(conn, pi.va_id, &va_name, &row, now)?;
    }
    Ok(answers)
}

fn release_row(
    conn: &mut SqliteConnection,
    va_id: i64,
    va_name: &str,
    row: &UsageRow,
    now: i64,
) -> Result<()> {
    uncount(conn, va_id, row)?;
    db::delete_usage(conn, row.pi_id, &row.tag)?;
    let pool = pool(conn, va_id, &row.tag, now)?;
    if pool.found {
        check_shortage(conn, va_id, va_name, &row.tag, &pool, now)?;
    }
    Ok(())
}

/// Releases everything a device uses in its VA's pools (deregistration, removal, transfer).
pub fn release_all(conn: &mut SqliteConnection, pi: &PiRow, now: i64) -> Result<()> {
    let va_name = pools::va_name(conn, pi.va_id)?;
    for row in db::usage_of(conn, pi.id)? {
        release_row(conn, pi.va_id, &va_name, &row, now)?;
    }
    Ok(())
}

/// Raises or clears the Insufficient Licenses alert of a VA's entitlement (seed 001: it
/// cannot be dismissed, and clears itself when the VA is compliant again).
fn check_shortage(
    conn: &mut SqliteConnection,
    va_id: i64,
    va_name: &str,
    tag: &str,
    pool: &Pool,
    now: i64,
) -> Result<()> {
    let (in_use, _) = db::totals(conn, va_id, tag)?;
    let source = format!("{va_name}/{tag}");
    if pool.reporting_only || in_use <= pool.purchased {
        alerts::clear_source(conn, now, AlertKind::InsufficientLicenses, &source)?;
        return Ok(());
    }
    let short = in_use - pool.purchased;
    let new = alerts::raise(
        conn,
        now,
        &alerts::NewAlert {
            kind: AlertKind::InsufficientLicenses,
            source_type: "license",
            source_id: Some(&source),
            va_id: Some(va_id),
            // Seed 001's text, with the verb agreeing with the count.
            message: format!(
                "The Virtual Account \"{va_name}\" has a shortage of {} licenses. {} to return to compliance.",
                pool.name,
                if short == 1 {
                    "1 license is required".to_string()
                } else {
                    format!("{short} licenses are required")
                }
            ),
            action_due_at: None,
        },
    )?;
    if new {
        events::append(
            conn,
            now,
            &events::NewEvent {
                va_name: Some(va_name),
                license_tag: Some(tag),
                message: format!(
                    "The Virtual Account \"{va_name}\" reported a shortage of {short} {} licenses.",
                    pool.name
                ),
                actor: "system",
                ..events::NewEvent::of(EventKind::InsufficientLicenses)
            },
        )?;
    }
    Ok(())
}

/// Rebuilds the statuses and totals of one VA's entitlement from its usage rows, in the
/// order the requests came (after the pool changed).
/// Usage rows read at a time when a pool is recomputed.
const QUEUE_PAGE: i64 = 10_000;

/// A pool's lines changed (a sync response): recomputes it, unless its running totals say
/// that every request is authorized and all of them still fit, in which case no answer
/// changes, whether the pool grew or shrank, and its queue (a million rows, maybe) is not
/// read. The totals are kept in the same transactions as the usage rows, so they can be
/// trusted here; [`recompute`] rebuilds them from the rows.
pub fn recompute_changed_pool(
    conn: &mut SqliteConnection,
    va_id: i64,
    tag: &str,
    now: i64,
) -> Result<()> {
    let pool = pool(conn, va_id, tag, now)?;
    let (in_use, authorized) = db::totals(conn, va_id, tag)?;
    if pool.found
        && !pool.restricted
        && authorized == in_use
        && (pool.reporting_only || in_use <= pool.purchased)
    {
        let va_name = pools::va_name(conn, va_id)?;
        return check_shortage(conn, va_id, &va_name, tag, &pool, now);
    }
    recompute(conn, va_id, tag, now)
}

pub fn recompute(conn: &mut SqliteConnection, va_id: i64, tag: &str, now: i64) -> Result<()> {
    let pool = pool(conn, va_id, tag, now)?;
    let mut in_use = 0;
    let mut authorized = 0;
    let mut after = None;
    loop {
        let page = db::queue(conn, va_id, tag, after, QUEUE_PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some((last.requested_at, last.pi_id));
        for row in &page {
            let status = if !pool.found {
                NOT_FOUND
            } else if pool.restricted {
                EXPORT_RESTRICTED
            } else if pool.reporting_only || authorized + row.count <= pool.purchased {
                authorized += row.count;
                AUTHORIZED
            } else {
                OUT_OF_COMPLIANCE
            };
            in_use += contribution(status, row.count).0;
            if status != row.status {
                db::set_usage_status(conn, row.pi_id, tag, status)?;
            }
        }
    }
    if pool.found && pool.restricted {
        // Restricted licenses in use are those locked to the VA's devices.
        let held = crate::db::export::held_in_va(conn, va_id, tag)?;
        in_use += held;
        authorized += held;
    }
    db::set_totals(conn, va_id, tag, in_use, authorized)?;
    if pool.found {
        let va_name = pools::va_name(conn, va_id)?;
        check_shortage(conn, va_id, &va_name, tag, &pool, now)?;
    }
    Ok(())
}

/// Every (VA, tag) that has a license line, a usage row or running totals.
fn pool_keys(conn: &mut SqliteConnection) -> Result<Vec<(i64, String)>> {
    let mut keys = pools::line_keys(conn)?;
    keys.extend(db::usage_keys(conn)?);
    keys.extend(db::all_totals(conn)?.into_iter().map(|(v, t, _, _)| (v, t)));
    keys.extend(crate::db::export::held_keys(conn)?);
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// [`recompute`] for every VA and entitlement in use or in a pool.
pub fn recompute_all(conn: &mut SqliteConnection, now: i64) -> Result<()> {
    for (va_id, tag) in pool_keys(conn)? {
        recompute(conn, va_id, &tag, now)?;
    }
    Ok(())
}

/// Purchased, in use and balance of one VA's entitlement, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub virtual_account: String,
    pub tag: String,
    pub name: String,
    pub purchased: i64,
    pub in_use: i64,
    /// purchased - in use: negative is a shortage.
    pub balance: i64,
    pub authorized: i64,
    pub reporting_only: bool,
    /// Export-controlled: in use is what is locked to devices with the cloud's consent.
    pub restricted: bool,
}

pub fn pool_report(conn: &mut SqliteConnection, now: i64) -> Result<Vec<PoolStatus>> {
    let mut out = Vec::new();
    for (va_id, tag) in pool_keys(conn)? {
        let pool = pool(conn, va_id, &tag, now)?;
        if !pool.found {
            continue;
        }
        let (in_use, authorized) = db::totals(conn, va_id, &tag)?;
        let purchased = if pool.reporting_only {
            in_use
        } else {
            pool.purchased
        };
        out.push(PoolStatus {
            virtual_account: pools::va_name(conn, va_id)?,
            tag,
            name: pool.name,
            purchased,
            in_use,
            balance: purchased - in_use,
            authorized,
            reporting_only: pool.reporting_only,
            restricted: pool.restricted,
        });
    }
    out.sort_by(|a, b| (&a.virtual_account, &a.tag).cmp(&(&b.virtual_account, &b.tag)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn license_lines_that_would_wrap_the_total_are_refused() {
        use sync_format::payload::{LicenseKind, LicenseLine};
        let line = |q: i64| LicenseLine {
            tag: "t".into(),
            name: "T".into(),
            description: String::new(),
            kind: LicenseKind::Perpetual,
            quantity: q,
            start: None,
            end: None,
            restricted: false,
        };
        let mut t = super::LineTotals::default();
        for bad in [-1, i64::MAX, super::MAX_QUANTITY + 1] {
            assert!(t.add("Lab", &line(bad)).is_err(), "{bad}");
        }
        t.add("Lab", &line(super::MAX_QUANTITY - 1)).unwrap();
        t.add("Ops", &line(super::MAX_QUANTITY)).unwrap();
        t.add("Lab", &line(1)).unwrap();
        let e = t.add("Lab", &line(1)).unwrap_err();
        assert!(e.to_string().contains("add up to more than"), "{e}");
    }
}
