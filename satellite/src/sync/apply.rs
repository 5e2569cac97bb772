//! Applying a sync response: verified, checked against what was applied before, then
//! applied in one transaction (all of it or none).
//!
//! Refused, with the store unchanged and the reason in one line: a response that does not
//! verify (tampered, expired, signed by another CA, for another satellite), one from
//! another cloud, one answering a request this satellite never made (or made before it
//! registered again), and one older than the last applied (anti-rollback, by the cloud's
//! sequence number). The same response again is a no-op that says so.

use std::collections::BTreeMap;
use std::io::{Read, Seek};

use diesel::SqliteConnection;
use openssl::x509::X509;
use sync_format::manifest::{BundleKind, Manifest};
use sync_format::payload::{ExportAnswer, ItemResult, LicenseRecord, SyncResponse};
use sync_format::{ReadOptions, Trust, VerifiedBundle};

use super::{deadlines, registered_with_cloud, Progress};
use crate::catalogue::AlertKind;
use crate::catalogue::EventKind;
use crate::clock;
use crate::db::{self, alerts, events, identity, pools, Store};
use crate::error::{Error, Result};
use crate::states::SyncMode;

pub use super::outcome::{ImportOutcome, LicenseChange, Rejected};

/// Imports a sync response. `mode` is "manual" (a file) or "network".
pub fn import<R: Read + Seek>(
    store: &Store,
    now: i64,
    input: R,
    mode: SyncMode,
    dry_run: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<ImportOutcome> {
    let mut conn = store.conn()?;
    let me = identity::require(&mut conn)?;
    let cloud_id = registered_with_cloud(&me)?.to_string();
    // Expiry is judged at the deadlines' time: a clock set back does not revive a response,
    // nor a satellite past its 90 days (which the scheduler marks removed at its next tick).
    let at = deadlines::effective_now(&mut conn, now)?;
    if deadlines::past_removal(&me, at) {
        return Err(Error::Removed(
            "this satellite is past its 90 days without a successful sync and is removed; \
             register it again"
                .into(),
        ));
    }
    let anchors = super::rollover::anchors(&me)?;
    let opts = ReadOptions::new(
        BundleKind::SyncResponse,
        Trust::Anchors(&anchors),
        Some(&me.satellite_id),
        at,
    );
    let mut bundle = sync_format::open(input, &opts)?;
    let m = bundle.manifest().clone();
    if m.sender != cloud_id {
        return Err(Error::Conflict(
            format!(
                "this response comes from the cloud {}, but this satellite is registered with {}; \
             nothing changed",
                m.sender, cloud_id
            )
            .into(),
        ));
    }
    let resp: SyncResponse = bundle.payload()?;
    if resp.satellite_id != me.satellite_id {
        return Err(Error::Conflict(
            format!(
                "this response is for satellite {}, not for this one ({}); nothing changed",
                resp.satellite_id, me.satellite_id
            )
            .into(),
        ));
    }
    // The cloud removed this satellite: nothing else of the response applies.
    if let Some(removal) = &resp.removed {
        return removed_by_cloud(&mut conn, at, &me, &m, removal, dry_run);
    }
    // A new cloud CA and a renewed certificate are checked before anything is written.
    let rolled = match &resp.cloud_ca {
        Some(r) => super::rollover::check(&anchors[0], r, at)?,
        None => None,
    };
    let renewed = match resp.satellite_certificate_pem.as_deref() {
        Some(pem) => Some(super::renewal::check(
            store.data_dir(),
            &me,
            pem,
            rolled.as_ref().unwrap_or(&anchors[0]),
            at,
        )?),
        None => None,
    };
    let request_id = m.in_reply_to.clone().ok_or_else(|| {
        Error::Conflict("this response does not answer any sync request; nothing changed".into())
    })?;
    if resp.acknowledged_request != request_id {
        return Err(Error::invalid(format!(
            "this response's manifest answers {request_id} but its payload acknowledges {}",
            resp.acknowledged_request
        )));
    }
    let mut outcome = ImportOutcome {
        status: String::new(),
        response_id: m.bundle_id.clone(),
        request_id: request_id.clone(),
        sequence: m.sequence,
        acknowledged_change: resp.acknowledged_change,
        acknowledged_event: resp.acknowledged_event,
        virtual_accounts_added: Vec::new(),
        license_changes: Vec::new(),
        license_lines: 0,
        rejected: Vec::new(),
        export_answers: Vec::new(),
        next_sync_due: clock::format(resp.next_sync_due),
        certificate_renewed_until: None,
        cloud_ca_pinned: None,
        message: String::new(),
    };
    if let Some(applied_at) = check_order(&mut conn, &m, &request_id)? {
        outcome.status = "already-applied".into();
        outcome.message = format!(
            "this response ({}) was already applied at {}; nothing changed",
            m.bundle_id,
            clock::format(applied_at)
        );
        return Ok(outcome);
    }

    // The one way a response is applied, for real or as a preview.
    let mut apply = |conn: &mut SqliteConnection| {
        apply_in(
            conn,
            at,
            Incoming {
                manifest: &m,
                payload: &resp,
                bundle: &mut bundle,
                mode,
                renewed: renewed.as_ref(),
                rolled: rolled.as_ref(),
            },
            Report {
                outcome: &mut outcome,
                progress: &mut *progress,
            },
        )
    };
    if dry_run {
        // The same reading as the real thing, inside a transaction that is always rolled
        // back: the closure's only way out is an error, the preview or a real one.
        let r = conn.immediate_transaction::<(), Rollback, _>(|conn| {
            apply(conn)?;
            Err(Rollback::Preview)
        });
        match r {
            Err(Rollback::Preview) | Ok(()) => {}
            Err(Rollback::Failed(e)) => return Err(e),
        }
        outcome.status = "dry-run".into();
        outcome.message = "dry run: nothing was changed".into();
        return Ok(outcome);
    }

    conn.immediate_transaction::<_, Error, _>(|conn| {
        // Again inside the transaction: another import may have won the race.
        if let Some(applied_at) = check_order(conn, &m, &request_id)? {
            return Err(Error::Conflict(
                format!(
                    "this response was applied at {} by another import; nothing changed",
                    clock::format(applied_at)
                )
                .into(),
            ));
        }
        apply(conn)
    })?;
    // The new certificate is stored: its key signs from now on.
    crate::identity::promote_renewal(store.data_dir(), renewed.as_ref().map(|r| r.0.as_str()))?;
    outcome.status = "applied".into();
    outcome.message = format!(
        "applied sync response {}: {} license lines, {} license changes, {} records refused \
         by the cloud, {} export answers; next sync due by {}",
        m.bundle_id,
        outcome.license_lines,
        outcome.license_changes.len(),
        outcome.rejected.len(),
        outcome
            .export_answers
            .iter()
            .filter(|a| a.result != "ignored")
            .count(),
        outcome.next_sync_due
    );
    tracing::info!(
        response = %m.bundle_id,
        request = %request_id,
        %mode,
        lines = outcome.license_lines,
        rejected = outcome.rejected.len(),
        "applied a sync response"
    );
    Ok(outcome)
}

/// Applies a response that says the cloud removed this satellite.
fn removed_by_cloud(
    conn: &mut SqliteConnection,
    at: i64,
    me: &crate::db::identity::SatelliteRow,
    m: &Manifest,
    removal: &sync_format::payload::Removal,
    dry_run: bool,
) -> Result<ImportOutcome> {
    let said = format!(
        "the cloud removed this satellite at {} ({}): it no longer authorizes devices; \
         register it again",
        clock::format(removal.at),
        removal.reason
    );
    let outcome = |status: &str, message: String| ImportOutcome {
        status: status.into(),
        response_id: m.bundle_id.clone(),
        request_id: m.in_reply_to.clone().unwrap_or_default(),
        sequence: m.sequence,
        acknowledged_change: 0,
        acknowledged_event: 0,
        virtual_accounts_added: Vec::new(),
        license_changes: Vec::new(),
        license_lines: 0,
        rejected: Vec::new(),
        export_answers: Vec::new(),
        next_sync_due: String::new(),
        certificate_renewed_until: None,
        cloud_ca_pinned: None,
        message,
    };
    if dry_run {
        return Ok(outcome("dry-run", format!("dry run: {said}")));
    }
    if me.state == crate::states::SatelliteState::Removed {
        return Ok(outcome(
            "already-applied",
            format!("{said} (already known)"),
        ));
    }
    conn.immediate_transaction::<_, Error, _>(|conn| {
        deadlines::removed_by_cloud(conn, at, me, removal)
    })?;
    Ok(outcome("removed", said))
}

/// `Some(applied_at)` when this response was applied before; an error when it must be
/// refused; `None` when it may be applied.
fn check_order(conn: &mut SqliteConnection, m: &Manifest, request_id: &str) -> Result<Option<i64>> {
    if let Some(done) = db::sync::response(conn, &m.bundle_id)? {
        return Ok(Some(done.completed_at.unwrap_or(done.created_at)));
    }
    let Some(req) = db::sync::request(conn, request_id)? else {
        return Err(Error::Conflict(
            format!(
                "this response answers sync request {request_id}, which this satellite never made \
             (made by another satellite or another data directory?); nothing changed"
            )
            .into(),
        ));
    };
    if req.status == "superseded" {
        return Err(Error::Conflict(
            format!(
                "this response answers sync request {request_id}, made before this satellite \
             registered again; make a new sync request; nothing changed"
            )
            .into(),
        ));
    }
    let st = db::sync::state(conn)?;
    if (m.sequence as i64) <= st.last_response_seq {
        return Err(Error::Conflict(
            format!(
            "this response (sequence {}, made {}) is older than the last one applied (sequence \
             {}, made {}): refusing to roll back; make a new sync request; nothing changed",
            m.sequence,
            clock::format(m.created_at),
            st.last_response_seq,
            st.last_response_created_at
                .map(clock::format)
                .unwrap_or_else(|| "?".into())
        )
            .into(),
        ));
    }
    Ok(None)
}

/// Quantity not yet ended per (VA, tag), with the name. Lines that ended are left out: their
/// expiry was logged when it happened (`crate::alerts::licenses`), so the cloud dropping them
/// later is no change.
use super::changes::Totals;

/// Why a dry run's transaction ends: always rolled back, for the preview or for a failure.
enum Rollback {
    Preview,
    Failed(Error),
}

impl From<Error> for Rollback {
    fn from(e: Error) -> Self {
        Rollback::Failed(e)
    }
}

impl From<diesel::result::Error> for Rollback {
    fn from(e: diesel::result::Error) -> Self {
        Rollback::Failed(e.into())
    }
}

/// The verified response being applied: its manifest, its payload, its record streams, and
/// how it came ("manual" or "network").
struct Incoming<'a, R: Read + Seek> {
    manifest: &'a Manifest,
    payload: &'a SyncResponse,
    bundle: &'a mut VerifiedBundle<R>,
    mode: SyncMode,
    /// The satellite's new certificate (checked) and its expiry, if the response has one.
    renewed: Option<&'a (String, i64)>,
    /// A new cloud CA the pinned one vouched for, if the response announces one.
    rolled: Option<&'a X509>,
}

/// Where applying tells what it did, and how far it got.
struct Report<'a, 'p> {
    outcome: &'a mut ImportOutcome,
    progress: &'a mut (dyn FnMut(Progress) + 'p),
}

fn apply_in<R: Read + Seek>(
    conn: &mut SqliteConnection,
    at: i64,
    incoming: Incoming<'_, R>,
    report: Report<'_, '_>,
) -> Result<()> {
    let Incoming {
        manifest: m,
        payload: resp,
        bundle,
        mode,
        renewed,
        rolled,
    } = incoming;
    let Report { outcome, progress } = report;
    // Licenses that ended by now are logged as expired first (once), so what follows sees
    // only what the response changes.
    let mut timers = crate::alerts::Evaluated::default();
    crate::alerts::licenses(conn, at, &mut timers)?;

    // Before.
    let mut before: Totals = BTreeMap::new();
    let known: Vec<String> = pools::all(conn)?
        .into_iter()
        .map(|(va, lines)| {
            for l in lines {
                let e = before
                    .entry((va.name.clone(), l.tag.clone()))
                    .or_insert((l.name.clone(), 0));
                if l.end_at.is_none_or(|end| end > at) {
                    e.1 = e.1.saturating_add(l.quantity);
                }
            }
            va.name
        })
        .collect();

    for (va, tag, name, count) in timers.expired {
        let left = before.get(&(va.clone(), tag.clone())).map_or(0, |e| e.1);
        outcome.license_changes.push(LicenseChange {
            virtual_account: va,
            tag,
            name,
            before: left + count,
            after: left,
            change: "expired".into(),
        });
    }

    // VAs, then every license line, streamed.
    let mut va_ids = std::collections::HashMap::new();
    for va in &resp.virtual_accounts {
        if va.name.trim().is_empty() {
            return Err(Error::invalid(
                "the response lists a virtual account without a name",
            ));
        }
        va_ids.insert(va.name.clone(), pools::upsert_va(conn, at, va)?);
        if !known.contains(&va.name) {
            outcome.virtual_accounts_added.push(va.name.clone());
        }
    }
    pools::delete_lines(conn)?;
    let mut after: Totals = BTreeMap::new();
    let mut checked = crate::compliance::LineTotals::default();
    let mut add = |conn: &mut SqliteConnection, rec: &LicenseRecord| -> Result<()> {
        let va_id = *va_ids.get(&rec.va).ok_or_else(|| {
            Error::invalid(format!(
                "the response has a license line for the virtual account {:?}, which it does \
                 not list",
                rec.va
            ))
        })?;
        checked.add(&rec.va, &rec.line)?;
        pools::insert_line(conn, at, va_id, &rec.line)?;
        let e = after
            .entry((rec.va.clone(), rec.line.tag.clone()))
            .or_insert((rec.line.name.clone(), 0));
        if rec.line.end.is_none_or(|end| end > at) {
            e.1 += rec.line.quantity;
        }
        Ok(())
    };
    for va in &resp.virtual_accounts {
        for line in &va.licenses {
            add(
                conn,
                &LicenseRecord {
                    va: va.name.clone(),
                    line: line.clone(),
                },
            )?;
            outcome.license_lines += 1;
        }
    }
    if bundle.has("licenses.ndjson") {
        let mut lines = bundle.ndjson::<LicenseRecord>("licenses.ndjson")?;
        for rec in &mut lines {
            add(conn, &rec?)?;
            outcome.license_lines += 1;
            if outcome.license_lines.is_multiple_of(10_000) {
                progress(Progress {
                    what: "license lines",
                    done: outcome.license_lines,
                    total: None,
                });
            }
        }
    }
    crate::compliance::recompute_all(conn, at)?;

    super::changes::log(conn, at, &before, &after, outcome)?;

    // Records the cloud refused stay pending.
    let mut rejected = Vec::new();
    if bundle.has("item_results.ndjson") {
        for r in &mut bundle.ndjson::<ItemResult>("item_results.ndjson")? {
            let r = r?;
            if r.status == "rejected" {
                rejected.push((r.pi, r.record, r.reason));
            }
        }
    }
    db::sync::replace_rejections(conn, at, &m.bundle_id, &rejected)?;
    outcome.rejected = rejected
        .into_iter()
        .map(|(pi, record, reason)| Rejected { pi, record, reason })
        .collect();

    // Answers to export-controlled requests and returns (after the pools: a grant counts in
    // the pool as it now is).
    if bundle.has("export_answers.ndjson") {
        for a in &mut bundle.ndjson::<ExportAnswer>("export_answers.ndjson")? {
            let a = a?;
            outcome
                .export_answers
                .push(crate::export::apply_answer(conn, &a, at)?);
        }
    }

    let st = db::sync::state(conn)?;
    db::sync::record_applied(
        conn,
        at,
        &db::sync::Applied {
            response_id: &m.bundle_id,
            request_id: &outcome.request_id,
            response_seq: m.sequence as i64,
            response_created_at: m.created_at,
            mode,
            acked_change: st.acked_change.max(resp.acknowledged_change as i64),
            acked_event_id: st.acked_event_id.max(resp.acknowledged_event as i64),
            next_sync_due: resp.next_sync_due,
            message: &format!(
                "{} license lines, {} refused records",
                outcome.license_lines,
                outcome.rejected.len()
            ),
        },
    )?;
    for kind in [
        AlertKind::SyncUpcoming,
        AlertKind::SyncOverdue,
        AlertKind::SyncFailed,
    ] {
        alerts::clear(conn, at, kind)?;
    }
    let me = identity::get(conn)?.map(|m| m.name).unwrap_or_default();
    if let Some(new_ca) = rolled {
        let me_row = identity::require(conn)?;
        let previous = me_row.cloud_ca_pem.unwrap_or_default();
        let new_pem = String::from_utf8(new_ca.to_pem()?)
            .map_err(|e| Error::Internal(format!("CA is not UTF-8: {e}")))?;
        identity::roll_cloud_ca(conn, &new_pem, &previous)?;
        let old = X509::from_pem(previous.as_bytes())?;
        let (new_fp, old_fp) = (
            sync_format::pki::sha256_fingerprint(new_ca)?,
            sync_format::pki::sha256_fingerprint(&old)?,
        );
        let old_until = clock::format(crate::identity::unix_of(old.not_after())?);
        outcome.cloud_ca_pinned = Some(new_fp.clone());
        events::append(
            conn,
            at,
            &events::NewEvent {
                message: format!(
                    "The cloud's CA {new_fp} is pinned in place of {old_fp}, which stays \
                     trusted until it expires at {old_until}."
                ),
                actor: "system",
                ..events::NewEvent::of(EventKind::CloudCaRolledOver)
            },
        )?;
    }
    if let Some((pem, until)) = renewed {
        identity::set_certificate(conn, pem)?;
        for kind in [
            AlertKind::CertificateExpiring,
            AlertKind::CertificateExpiringSoon,
        ] {
            alerts::clear(conn, at, kind)?;
        }
        outcome.certificate_renewed_until = Some(clock::format(*until));
        events::append(
            conn,
            at,
            &events::NewEvent {
                message: format!(
                    "The satellite \"{me}\" received a new certificate from the cloud, valid \
                     until {}.",
                    clock::format(*until)
                ),
                actor: "system",
                ..events::NewEvent::of(EventKind::SatelliteCertificateRenewed)
            },
        )?;
    }
    events::append(
        conn,
        at,
        &events::NewEvent {
            message: format!(
                "The satellite \"{me}\" synchronized with the cloud {}: {} license lines, {} \
                 records refused by the cloud.",
                if mode == SyncMode::Network {
                    "via network"
                } else {
                    "by file"
                },
                outcome.license_lines,
                outcome.rejected.len()
            ),
            actor: "system",
            ..events::NewEvent::of(if mode == SyncMode::Network {
                EventKind::SatelliteSynchronizedNetwork
            } else {
                EventKind::SatelliteSynchronizedFile
            })
        },
    )?;
    Ok(())
}
