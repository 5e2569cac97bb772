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
use crate::states::{plural, SyncMode};

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
        return removed_by_cloud(store, at, &me, &m, removal, dry_run);
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

    // Everything that needs no lock happens now, on this read snapshot: the records read
    // and checked, the license lines compared with the stored ones. The write that follows
    // only changes what differs, and recomputes only the pools it touched.
    let plan = prepare(
        &mut conn,
        at,
        Incoming {
            manifest: m.clone(),
            payload: resp,
            mode,
            renewed: renewed.clone(),
            rolled,
        },
        &mut bundle,
        outcome,
        progress,
    )?;
    drop(conn);
    let mut plan = plan;
    if !dry_run && plan.insert_at.len() + plan.delete.len() > STAGE_OVER {
        plan.stage(store, &mut bundle, progress)?;
    }
    let staged = plan.staged.clone();
    if dry_run {
        // The same write as the real thing, always rolled back.
        let mut outcome =
            store.write(move |conn| db::rolled_back(conn, |conn| plan.apply(conn)))?;
        outcome.status = "dry-run".into();
        outcome.message = "dry run: nothing was changed".into();
        return Ok(outcome);
    }
    let asked = request_id.clone();
    let applied = store.write(move |conn| {
        // Again inside the write: another import may have won the race.
        if let Some(applied_at) = check_order(conn, &plan.incoming.manifest, &asked)? {
            return Err(Error::Conflict(
                format!(
                    "this response was applied at {} by another import; nothing changed",
                    clock::format(applied_at)
                )
                .into(),
            ));
        }
        plan.apply(conn)
    });
    let mut outcome = match (applied, staged) {
        (Ok(o), _) => o,
        (Err(e), Some(name)) => {
            // A swap given up: its staging table goes (best effort; the next one drops it too).
            let _ = store.write(move |c| pools::stage_drop(c, &name));
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    };
    // The new certificate is stored: its key signs from now on.
    crate::identity::promote_renewal(store.data_dir(), renewed.as_ref().map(|r| r.0.as_str()))?;
    outcome.status = "applied".into();
    let answers = outcome
        .export_answers
        .iter()
        .filter(|a| a.result != "ignored")
        .count();
    outcome.message = format!(
        "applied sync response {}: {}, {}, {} refused by the cloud, {}; next sync due by {}",
        m.bundle_id,
        plural(
            outcome.license_lines as i64,
            "license line",
            "license lines"
        ),
        plural(
            outcome.license_changes.len() as i64,
            "license change",
            "license changes"
        ),
        plural(outcome.rejected.len() as i64, "record", "records"),
        plural(answers as i64, "export answer", "export answers"),
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
    store: &Store,
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
    let (me, removal) = (me.clone(), removal.clone());
    store.write(move |conn| deadlines::removed_by_cloud(conn, at, &me, &removal))?;
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

/// The verified response being applied: its manifest, its payload, how it came, and what
/// was checked of it before anything is written.
struct Incoming {
    manifest: Manifest,
    payload: SyncResponse,
    mode: SyncMode,
    /// The satellite's new certificate (checked) and its expiry, if the response has one.
    renewed: Option<(String, i64)>,
    /// A new cloud CA the pinned one vouched for, if the response announces one.
    rolled: Option<X509>,
}

/// Everything a response changes, worked out on a read snapshot: the write applies it
/// without reading the bundle again.
struct Plan {
    at: i64,
    incoming: Incoming,
    outcome: ImportOutcome,
    /// Stored license lines the response no longer has (by id).
    delete: Vec<i64>,
    /// License lines the store does not have yet: (VA name, line).
    insert: Vec<(String, sync_format::payload::LicenseLine)>,
    /// The (VA name, tag) pools whose lines change, or whose lines start or end in time:
    /// only these are recomputed.
    touched: std::collections::BTreeSet<(String, String)>,
    /// Quantity not yet ended per (VA, tag), before and after.
    before: Totals,
    after: Totals,
    /// Records the cloud refused: (pi, record, reason).
    rejected: Vec<(String, String, String)>,
    export_answers: Vec<ExportAnswer>,
    /// Where the new lines are in the response (inline lines first, then
    /// `licenses.ndjson`), counting from 0: all of them, also when `insert` holds none.
    insert_at: Vec<u32>,
    /// The stored lines as the snapshot saw them.
    mark: pools::LinesMark,
    /// The staging table holding the new lines, once [`Plan::stage`] built it.
    staged: Option<String>,
}

/// A license line's content, as a 128-bit digest: two lines with the same digest are the
/// same line.
fn line_digest(va: &str, l: &sync_format::payload::LicenseLine) -> (u64, u64) {
    use std::hash::{Hash, Hasher};
    let fields = |h: &mut std::collections::hash_map::DefaultHasher| {
        (va, &l.tag, &l.name, &l.description, l.kind.as_str()).hash(h);
        (l.quantity, l.start, l.end, l.restricted).hash(h);
    };
    let mut a = std::collections::hash_map::DefaultHasher::new();
    fields(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0x5a7e_u16.hash(&mut b);
    fields(&mut b);
    (a.finish(), b.finish())
}

/// A response changing more license lines than this stages the new lines beside the live
/// ones in short writes and swaps them in at the end (`pools::stage_*`); fewer are written
/// in the final write itself.
const STAGE_OVER: usize = 10_000;

/// License lines copied or inserted by one staging write: each holds the lock for tens of
/// milliseconds.
const STAGE_ROWS: usize = 2_500;

/// Reads and checks the response's records, and compares its license lines with the
/// stored ones, on `conn`'s snapshot; writes nothing.
fn prepare<R: Read + Seek>(
    conn: &mut SqliteConnection,
    at: i64,
    incoming: Incoming,
    bundle: &mut VerifiedBundle<R>,
    mut outcome: ImportOutcome,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan> {
    db::read_snapshot(conn, |conn| {
        let resp = &incoming.payload;
        // The stored lines, by content; and what is in force per pool, before.
        let mut stored: std::collections::HashMap<(u64, u64), Vec<i64>> = Default::default();
        let mut before: Totals = BTreeMap::new();
        pools::each_line(conn, |l, va| {
            let line = l.as_line();
            stored
                .entry(line_digest(&va, &line))
                .or_default()
                .push(l.id);
            let e = before.entry((va, l.tag)).or_insert((l.name, 0));
            if l.end_at.is_none_or(|end| end > at) {
                e.1 = e.1.saturating_add(l.quantity);
            }
        })?;
        let known: Vec<String> = pools::served_names(conn)?
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        for va in &resp.virtual_accounts {
            if va.name.trim().is_empty() {
                return Err(Error::invalid(
                    "the response lists a virtual account without a name",
                ));
            }
            if !known.contains(&va.name) {
                outcome.virtual_accounts_added.push(va.name.clone());
            }
        }

        // Every line of the response: kept when stored as it is, else inserted.
        let listed: std::collections::HashSet<&str> = resp
            .virtual_accounts
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        // The new lines themselves while they are few; their positions in the response
        // always (a staged apply reads them from the bundle again, in bounded memory).
        let mut insert = Vec::new();
        let mut insert_at: Vec<u32> = Vec::new();
        let mut position: u32 = 0;
        let mut touched = std::collections::BTreeSet::new();
        let mut after: Totals = BTreeMap::new();
        let mut checked = crate::compliance::LineTotals::default();
        let mut add = |rec: LicenseRecord| -> Result<()> {
            if !listed.contains(rec.va.as_str()) {
                return Err(Error::invalid(format!(
                    "the response has a license line for the virtual account {:?}, which it \
                     does not list",
                    rec.va
                )));
            }
            checked.add(&rec.va, &rec.line)?;
            let e = after
                .entry((rec.va.clone(), rec.line.tag.clone()))
                .or_insert((rec.line.name.clone(), 0));
            if rec.line.end.is_none_or(|end| end > at) {
                e.1 += rec.line.quantity;
            }
            if rec.line.start.is_some() || rec.line.end.is_some() {
                // Its pool changes with time: recomputed at every apply, as it comes.
                touched.insert((rec.va.clone(), rec.line.tag.clone()));
            }
            let kept = stored
                .get_mut(&line_digest(&rec.va, &rec.line))
                .and_then(|ids| ids.pop())
                .is_some();
            if !kept {
                touched.insert((rec.va.clone(), rec.line.tag.clone()));
                insert_at.push(position);
                if insert_at.len() <= STAGE_OVER {
                    insert.push((rec.va, rec.line));
                } else if !insert.is_empty() {
                    insert = Vec::new();
                }
            }
            position += 1;
            Ok(())
        };
        for va in &resp.virtual_accounts {
            for line in &va.licenses {
                add(LicenseRecord {
                    va: va.name.clone(),
                    line: line.clone(),
                })?;
                outcome.license_lines += 1;
            }
        }
        if bundle.has("licenses.ndjson") {
            for rec in &mut bundle.ndjson::<LicenseRecord>("licenses.ndjson")? {
                add(rec?)?;
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
        // What is stored and no longer sent goes; its pool is recomputed.
        let mut delete = Vec::new();
        let gone: std::collections::HashSet<i64> = stored
            .into_values()
            .flatten()
            .collect::<std::collections::HashSet<_>>();
        if !gone.is_empty() {
            pools::each_line(conn, |l, va| {
                if gone.contains(&l.id) {
                    delete.push(l.id);
                    touched.insert((va, l.tag));
                }
            })?;
        }

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
        let mut export_answers = Vec::new();
        if bundle.has("export_answers.ndjson") {
            for a in &mut bundle.ndjson::<ExportAnswer>("export_answers.ndjson")? {
                export_answers.push(a?);
            }
        }
        Ok(Plan {
            at,
            incoming,
            outcome,
            delete,
            insert,
            touched,
            before,
            after,
            rejected,
            export_answers,
            insert_at,
            mark: pools::lines_mark(conn)?,
            staged: None,
        })
    })
}

impl Plan {
    /// Builds the new license lines in a staging table, in short writes (devices are
    /// answered between them): the VAs first, then the stored lines kept, then the new ones.
    /// [`Plan::apply`] then swaps the table in.
    fn stage<R: Read + Seek>(
        &mut self,
        store: &Store,
        bundle: &mut VerifiedBundle<R>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let (at, name) = (self.at, pools::stage_name(self.incoming.manifest.sequence));
        let vas = self.incoming.payload.virtual_accounts.clone();
        let stage = name.clone();
        let va_ids = store.write(move |c| {
            let mut ids = std::collections::HashMap::new();
            for va in &vas {
                ids.insert(va.name.clone(), pools::upsert_va(c, at, va)?);
            }
            pools::stage_create(c, &stage)?;
            Ok(ids)
        })?;
        let staged = (|| {
            let step = STAGE_ROWS as i64 * 4;
            let mut from = 0;
            while from < self.mark.max_id {
                let (stage, upto) = (name.clone(), from + step);
                store.write(move |c| pools::stage_copy(c, &stage, from, upto))?;
                from = upto;
            }
            for ids in std::mem::take(&mut self.delete).chunks(STAGE_ROWS * 4) {
                let (stage, ids) = (name.clone(), ids.to_vec());
                store.write(move |c| pools::stage_delete(c, &stage, &ids))?;
            }
            // The new lines, read from the response again by position, a chunk a write.
            self.insert = Vec::new();
            let wanted = std::mem::take(&mut self.insert_at);
            let total = wanted.len() as u64;
            let mut next = wanted.iter().copied().peekable();
            let mut chunk: Vec<(i64, sync_format::payload::LicenseLine)> = Vec::new();
            let mut done = 0u64;
            let mut flush = |chunk: &mut Vec<(i64, sync_format::payload::LicenseLine)>| {
                let lines = std::mem::take(chunk);
                done += lines.len() as u64;
                let stage = name.clone();
                store.write(move |c| {
                    let rows: Vec<_> = lines.iter().map(|(v, l)| (*v, l)).collect();
                    pools::stage_insert(c, &stage, at, &rows)
                })?;
                progress(Progress {
                    what: "license lines staged",
                    done,
                    total: Some(total),
                });
                Ok::<_, Error>(())
            };
            let mut take = |position: u32,
                            va: &str,
                            line: sync_format::payload::LicenseLine,
                            chunk: &mut Vec<_>| {
                if next.peek() != Some(&position) {
                    return Ok(());
                }
                next.next();
                let id = *va_ids.get(va).ok_or_else(|| {
                    Error::Internal(format!("the virtual account {va:?} was not stored"))
                })?;
                chunk.push((id, line));
                Ok::<_, Error>(())
            };
            let mut position = 0u32;
            for va in &self.incoming.payload.virtual_accounts {
                for line in &va.licenses {
                    take(position, &va.name, line.clone(), &mut chunk)?;
                    position += 1;
                    if chunk.len() >= STAGE_ROWS {
                        flush(&mut chunk)?;
                    }
                }
            }
            if bundle.has("licenses.ndjson") {
                for rec in &mut bundle.ndjson::<LicenseRecord>("licenses.ndjson")? {
                    let rec = rec?;
                    take(position, &rec.va, rec.line, &mut chunk)?;
                    position += 1;
                    if chunk.len() >= STAGE_ROWS {
                        flush(&mut chunk)?;
                    }
                }
            }
            if !chunk.is_empty() {
                flush(&mut chunk)?;
            }
            if next.peek().is_some() {
                return Err(Error::Internal(
                    "the response's license lines changed between two readings".into(),
                ));
            }
            Ok(())
        })();
        match staged {
            Ok(()) => {
                self.staged = Some(name);
                Ok(())
            }
            Err(e) => {
                let _ = store.write(move |c| pools::stage_drop(c, &name));
                Err(e)
            }
        }
    }

    /// Applies the response, in the caller's write transaction; returns what it did.
    fn apply(self, conn: &mut SqliteConnection) -> Result<ImportOutcome> {
        let Plan {
            at,
            incoming,
            mut outcome,
            delete,
            insert,
            mut touched,
            before,
            after,
            rejected,
            export_answers,
            mark,
            staged,
            insert_at: _,
        } = self;
        let Incoming {
            manifest: m,
            payload: resp,
            mode,
            renewed,
            rolled,
        } = incoming;
        // Licenses that ended by now are logged as expired first (once), so what follows
        // sees only what the response changes.
        let mut timers = crate::alerts::Evaluated::default();
        crate::alerts::licenses(conn, at, &mut timers)?;
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

        // VAs, then the lines that changed, then the pools they touched.
        let mut va_ids = std::collections::HashMap::new();
        for va in &resp.virtual_accounts {
            va_ids.insert(va.name.clone(), pools::upsert_va(conn, at, va)?);
        }
        let changed = || {
            Error::Conflict(
                "the license pools changed while this response was read; nothing changed; \
                 import it again"
                    .into(),
            )
        };
        if let Some(name) = &staged {
            if !pools::stage_swap(conn, name, mark)? {
                return Err(changed());
            }
        } else {
            if pools::delete_lines_by_id(conn, &delete)? != delete.len() {
                return Err(changed());
            }
            let mut rows = Vec::with_capacity(insert.len());
            for (va, line) in &insert {
                let va_id = *va_ids.get(va).ok_or_else(|| {
                    Error::Internal(format!("the virtual account {va:?} was not stored"))
                })?;
                rows.push((va_id, line));
            }
            pools::insert_lines(conn, at, &rows)?;
        }
        // Pools whose lines do not change but count in time (a term line) are recomputed
        // too: `touched` has them. A VA no longer listed keeps no lines: its pools went with
        // the deleted lines.
        for (va, tag) in std::mem::take(&mut touched) {
            let va_id = match va_ids.get(&va) {
                Some(id) => *id,
                None => match pools::va_id(conn, &va)? {
                    Some(id) => id,
                    None => continue,
                },
            };
            crate::compliance::recompute_changed_pool(conn, va_id, &tag, at)?;
        }

        super::changes::log(conn, at, &before, &after, &mut outcome)?;

        db::sync::replace_rejections(conn, at, &m.bundle_id, &rejected)?;
        outcome.rejected = rejected
            .into_iter()
            .map(|(pi, record, reason)| Rejected { pi, record, reason })
            .collect();

        // Answers to export-controlled requests and returns (after the pools: a grant
        // counts in the pool as it now is).
        for a in &export_answers {
            outcome
                .export_answers
                .push(crate::export::apply_answer(conn, a, at)?);
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
        if let Some(new_ca) = &rolled {
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
        if let Some((pem, until)) = &renewed {
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
        Ok(outcome)
    }
}
