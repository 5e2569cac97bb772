//! The mock cloud's half of synchronization: process a satellite's sync request (record its
//! product instances, usage and events; flag shortages; refuse what it cannot accept) and
//! answer with a sync response: the VAs and pools as the cloud now sees them, the
//! acknowledgement, the refused records and the next sync due. Also the 90-day rule: a
//! satellite without a sync for 90 days is removed and its devices' licenses released.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read, Seek};

use diesel::prelude::*;
use openssl::pkey::PKey;
use serde::Serialize;
use sync_format::manifest::{BundleKind, Header};
use sync_format::payload::{
    Account, EventRecord, ExportAnswer, ExportRecord, ExportStatus, ItemResult, LicenseRecord,
    PiOp, PiRecord, SyncRequest, SyncResponse, UsageRecord, VirtualAccount,
};
use sync_format::{BundleWriter, ReadOptions, Trust};

use super::schema::{
    accounts, licenses, pi_usage, product_instances as pis, satellite_events, satellite_vas,
    satellites, shortages, syncs, virtual_accounts,
};
use super::service::{pools, SYNC_INTERVAL_DAYS};
use super::{Cloud, CloudError, Result};
use satellite::clock::{format as fmt_time, DAY};

/// A satellite that has not synced for this long is removed.
pub const REMOVAL_DAYS: i64 = 90;

/// What processing a request did.
#[derive(Debug, Clone, Serialize)]
pub struct Processed {
    pub satellite: String,
    pub request_id: String,
    pub response_id: String,
    pub sequence: i64,
    pub full: bool,
    pub product_instances: u64,
    pub usage: u64,
    pub events: u64,
    /// Breaks found in the satellite's event chain (see [`Chain`]).
    pub chain_breaks: u64,
    pub rejected: u64,
    /// Export-controlled requests and returns answered: granted, denied, returned.
    pub export_granted: u64,
    pub export_denied: u64,
    pub export_returned: u64,
    /// The same request was processed before: this is the response made then.
    pub repeated: bool,
}

/// Processes a sync request; returns the response bundle and what happened. Over HTTPS,
/// `posted_for` is the satellite of the URL, which must be the request's sender.
pub fn process<R: Read + Seek>(
    cloud: &Cloud,
    input: R,
    posted_for: Option<&str>,
) -> Result<(Vec<u8>, Processed)> {
    let now = cloud.now()?;
    sweep(cloud, now)?;
    let anchors = cloud.anchors();
    let opts = ReadOptions::new(
        BundleKind::SyncRequest,
        Trust::Anchors(&anchors),
        Some(&cloud.cloud_id),
        now,
    );
    let mut b = sync_format::open(input, &opts)?;
    let m = b.manifest().clone();
    if posted_for.is_some_and(|p| p != m.sender) {
        return Err(CloudError::Invalid(format!(
            "the request was posted for satellite {} but sent by {}",
            posted_for.unwrap_or_default(),
            m.sender
        )));
    }
    let req: SyncRequest = b.payload()?;
    if req.satellite_id != m.sender {
        return Err(CloudError::Invalid(
            "the request's payload names another satellite than its sender".into(),
        ));
    }
    let mut c = cloud.conn()?;
    if let Some((account, removal)) = super::lifecycle::removed(&mut c, &m.sender)? {
        // A satellite the cloud removed learns it from its next sync, by file or network.
        let bytes = super::lifecycle::removal_response(cloud, &m, account, removal, now)?;
        return Ok((
            bytes,
            Processed {
                satellite: m.sender.clone(),
                request_id: m.bundle_id.clone(),
                response_id: String::new(),
                sequence: 0,
                full: req.full,
                product_instances: 0,
                usage: 0,
                events: 0,
                chain_breaks: 0,
                rejected: 0,
                export_granted: 0,
                export_denied: 0,
                export_returned: 0,
                repeated: false,
            },
        ));
    }
    let row = active_row(&mut c, &m.sender)?;
    let (name, key_pem, renewed_pem, account_id): (String, String, Option<String>, Option<i64>) =
        satellites::table
            .select((
                satellites::name,
                satellites::public_key_pem,
                satellites::renewed_key_pem,
                satellites::account_id,
            ))
            .find(row)
            .first(&mut c)?;
    // Signed by the key the cloud certified, or by the one it certified at a renewal (the
    // satellite switched to it): from then on that one is the satellite's key.
    let signer = b.signer().public_key()?;
    let by_renewed = match &renewed_pem {
        Some(p) => signer.public_eq(&*PKey::public_key_from_pem(p.as_bytes())?),
        None => false,
    };
    if by_renewed {
        diesel::update(satellites::table.find(row))
            .set((
                satellites::public_key_pem.eq(renewed_pem.clone().unwrap_or_default()),
                satellites::renewed_key_pem.eq(None::<String>),
            ))
            .execute(&mut c)?;
    } else if !signer.public_eq(&*PKey::public_key_from_pem(key_pem.as_bytes())?) {
        return Err(CloudError::Invalid(format!(
            "the request is not signed by the key of satellite {name:?}"
        )));
    }
    let seen: Option<(Vec<u8>, String, i64, bool, i64, i64)> = syncs::table
        .select((
            syncs::response,
            syncs::response_id,
            syncs::id,
            syncs::full,
            syncs::records,
            syncs::rejected,
        ))
        .filter(syncs::request_id.eq(&m.bundle_id))
        .first(&mut c)
        .optional()?;
    if let Some((bytes, response_id, id, full, records, rejected)) = seen {
        return Ok((
            bytes,
            Processed {
                satellite: name,
                request_id: m.bundle_id,
                response_id,
                sequence: id,
                full,
                product_instances: records as u64,
                usage: 0,
                events: 0,
                chain_breaks: 0,
                rejected: rejected as u64,
                export_granted: 0,
                export_denied: 0,
                export_returned: 0,
                repeated: true,
            },
        ));
    }

    c.immediate_transaction(|c| {
        let va_ids: HashMap<String, i64> = satellite_vas::table
            .inner_join(virtual_accounts::table)
            .select((virtual_accounts::name, virtual_accounts::id))
            .filter(satellite_vas::satellite_row.eq(row))
            .load::<(String, i64)>(c)?
            .into_iter()
            .collect();
        if req.full {
            release_satellite(c, row, now)?;
        }
        let mut out = Processed {
            satellite: name.clone(),
            request_id: m.bundle_id.clone(),
            response_id: uuid::Uuid::new_v4().to_string(),
            sequence: 0,
            full: req.full,
            product_instances: 0,
            usage: 0,
            events: 0,
            chain_breaks: 0,
            rejected: 0,
            export_granted: 0,
            export_denied: 0,
            export_returned: 0,
            repeated: false,
        };
        let mut rejected: Vec<ItemResult> = Vec::new();
        let mut refused: HashSet<String> = HashSet::new();
        let mut ids: HashMap<String, i64> = HashMap::new();
        for rec in b.ndjson::<PiRecord>("product_instances.ndjson")? {
            let rec = rec?;
            out.product_instances += 1;
            match apply_pi(c, row, &va_ids, &rec, now)? {
                Ok(Some(id)) => {
                    ids.insert(rec.pi.clone(), id);
                }
                Ok(None) => {}
                Err(reason) => {
                    refused.insert(rec.pi.clone());
                    rejected.push(ItemResult {
                        pi: rec.pi,
                        record: "product_instance".into(),
                        status: "rejected".into(),
                        reason,
                    });
                }
            }
        }
        for u in b.ndjson::<UsageRecord>("usage.ndjson")? {
            let u = u?;
            out.usage += 1;
            if refused.contains(&u.pi) {
                continue;
            }
            let Some(&pi_id) = ids.get(&u.pi) else {
                rejected.push(ItemResult {
                    pi: u.pi.clone(),
                    record: "usage".into(),
                    status: "rejected".into(),
                    reason: format!(
                        "usage of {:?} for a product instance the request does not list",
                        u.tag
                    ),
                });
                continue;
            };
            // A device reports 0 to 1,000,000 of an entitlement (the satellite's own bound);
            // anything else is refused, never summed (the cloud's totals cannot wrap).
            if !(0..=1_000_000).contains(&u.count) {
                rejected.push(ItemResult {
                    pi: u.pi.clone(),
                    record: "usage".into(),
                    status: "rejected".into(),
                    reason: format!("count {} of {:?} is not 0 to 1000000", u.count, u.tag),
                });
                continue;
            }
            diesel::insert_into(pi_usage::table)
                .values((
                    pi_usage::pi_id.eq(pi_id),
                    pi_usage::tag.eq(&u.tag),
                    pi_usage::count.eq(u.count),
                ))
                .on_conflict((pi_usage::pi_id, pi_usage::tag))
                .do_update()
                .set(pi_usage::count.eq(u.count))
                .execute(c)?;
        }
        // Export-controlled requests and returns, after the devices they name.
        let mut answers: Vec<ExportAnswer> = Vec::new();
        if b.has("export_requests.ndjson") {
            for r in b.ndjson::<ExportRecord>("export_requests.ndjson")? {
                let a = super::export::answer(c, row, &r?, now)?;
                match a.status {
                    ExportStatus::Granted => out.export_granted += 1,
                    ExportStatus::Denied => out.export_denied += 1,
                    ExportStatus::Returned => out.export_returned += 1,
                }
                answers.push(a);
            }
        }
        let mut chain = Chain::default();
        for e in b.ndjson::<EventRecord>("events.ndjson")? {
            let e = e?;
            out.events += 1;
            chain.check(c, row, &e, now)?;
            diesel::insert_or_ignore_into(satellite_events::table)
                .values((
                    satellite_events::satellite_row.eq(row),
                    satellite_events::event_id.eq(e.id),
                    satellite_events::at.eq(e.at),
                    satellite_events::kind.eq(&e.kind),
                    satellite_events::message.eq(&e.message),
                    satellite_events::prev_hash.eq(&e.prev_hash),
                    satellite_events::hash.eq(&e.hash),
                ))
                .execute(c)?;
        }
        out.chain_breaks = chain.breaks;
        flag_shortages(c, now)?;
        out.rejected = rejected.len() as u64;

        // The response.
        let va_list: Vec<i64> = va_ids.values().copied().collect();
        let vas = pools(c, &va_list, now)?;
        let account = match account_id {
            Some(a) => {
                let (name, export_controlled): (String, bool) = accounts::table
                    .select((accounts::name, accounts::export_controlled))
                    .find(a)
                    .first(c)?;
                Account {
                    name,
                    export_controlled_allowed: export_controlled,
                }
            }
            None => return Err(CloudError::Internal("satellite without account".into())),
        };
        // Reserve the sequence number first (the row is completed below).
        diesel::insert_into(syncs::table)
            .values((
                syncs::satellite_row.eq(row),
                syncs::request_id.eq(&m.bundle_id),
                syncs::response_id.eq(&out.response_id),
                syncs::response.eq(Vec::<u8>::new()),
                syncs::received_at.eq(now),
                syncs::full.eq(req.full),
                syncs::records.eq(out.product_instances as i64),
                syncs::rejected.eq(out.rejected as i64),
            ))
            .execute(c)?;
        out.sequence = syncs::table
            .select(syncs::id)
            .filter(syncs::request_id.eq(&m.bundle_id))
            .first(c)?;
        let next_due = now + SYNC_INTERVAL_DAYS * DAY;
        let renewed = match &req.renewal_csr_pem {
            Some(csr) => Some(super::lifecycle::renew(
                cloud,
                c,
                row,
                &name,
                &account.name,
                &m.sender,
                csr,
                now,
            )?),
            None => None,
        };
        let bytes = response(
            cloud,
            &m.sender,
            &m.bundle_id,
            &out,
            &req,
            account,
            vas,
            &rejected,
            &answers,
            renewed,
            now,
            next_due,
        )?;
        diesel::update(syncs::table.find(out.sequence))
            .set(syncs::response.eq(&bytes))
            .execute(c)?;
        diesel::update(satellites::table.find(row))
            .set((
                satellites::last_sync_at.eq(now),
                satellites::next_sync_due.eq(next_due),
            ))
            .execute(c)?;
        tracing::info!(
            satellite = %name,
            request = %m.bundle_id,
            pis = out.product_instances,
            rejected = out.rejected,
            export_granted = out.export_granted,
            export_denied = out.export_denied,
            export_returned = out.export_returned,
            "processed a sync request"
        );
        Ok((bytes, out))
    })
}

#[allow(clippy::too_many_arguments)]
fn response(
    cloud: &Cloud,
    satellite_id: &str,
    request_id: &str,
    out: &Processed,
    req: &SyncRequest,
    account: Account,
    vas: Vec<VirtualAccount>,
    rejected: &[ItemResult],
    answers: &[ExportAnswer],
    renewed: Option<String>,
    now: i64,
    next_due: i64,
) -> Result<Vec<u8>> {
    let header = Header {
        kind: BundleKind::SyncResponse,
        bundle_id: out.response_id.clone(),
        sender: cloud.cloud_id.clone(),
        receiver: satellite_id.to_string(),
        sequence: out.sequence as u64,
        created_at: now,
        not_after: now + SYNC_INTERVAL_DAYS * DAY,
        in_reply_to: Some(request_id.to_string()),
    };
    let mut w = BundleWriter::new(Cursor::new(Vec::new()), header)?;
    {
        let mut l = w.ndjson("licenses.ndjson")?;
        for va in &vas {
            for line in &va.licenses {
                l.write(&LicenseRecord {
                    va: va.name.clone(),
                    line: line.clone(),
                })?;
            }
        }
        l.finish();
    }
    {
        let mut x = w.ndjson("export_answers.ndjson")?;
        for a in answers {
            x.write(a)?;
        }
        x.finish();
    }
    {
        let mut r = w.ndjson("item_results.ndjson")?;
        for i in rejected {
            r.write(i)?;
        }
        r.finish();
    }
    w.payload(&SyncResponse {
        payload_version: 1,
        satellite_id: satellite_id.to_string(),
        acknowledged_request: request_id.to_string(),
        acknowledged_change: req.to_change,
        acknowledged_event: req.to_event,
        rejected: rejected.len() as u64,
        account,
        virtual_accounts: vas
            .into_iter()
            .map(|v| VirtualAccount {
                licenses: Vec::new(),
                ..v
            })
            .collect(),
        next_sync_due: next_due,
        satellite_certificate_pem: renewed,
        removed: None,
        cloud_ca: cloud.rollover()?,
    })?;
    Ok(w.finish(cloud.sync_signer())?.0.into_inner())
}

/// The authorized row of a satellite; a clear refusal when it was removed or is unknown.
fn active_row(c: &mut SqliteConnection, satellite_id: &str) -> Result<i64> {
    let rows: Vec<(i64, String, Option<i64>)> = satellites::table
        .select((satellites::id, satellites::state, satellites::removed_at))
        .filter(satellites::satellite_id.eq(satellite_id))
        .order(satellites::id.desc())
        .load(c)?;
    if let Some((id, _, _)) = rows.iter().find(|(_, s, _)| s == "authorized") {
        return Ok(*id);
    }
    match rows.iter().find(|(_, s, _)| s == "removed") {
        Some((_, _, at)) => Err(CloudError::Conflict(format!(
            "the satellite {satellite_id} was removed at {} ({REMOVAL_DAYS} days without a \
             sync) and its licenses released; register it again",
            at.map(fmt_time).unwrap_or_default()
        ))),
        None => Err(CloudError::NotFound(format!(
            "no registered satellite {satellite_id}"
        ))),
    }
}

/// Applies one product-instance record. `Ok(Ok(Some(id)))`: accepted and active (its usage
/// follows); `Ok(Ok(None))`: accepted removal; `Ok(Err(reason))`: refused.
fn apply_pi(
    c: &mut SqliteConnection,
    row: i64,
    va_ids: &HashMap<String, i64>,
    rec: &PiRecord,
    now: i64,
) -> Result<std::result::Result<Option<i64>, String>> {
    let Some(&va_id) = va_ids.get(&rec.va) else {
        return Ok(Err(format!(
            "the virtual account {:?} is not served by this satellite",
            rec.va
        )));
    };
    // The same device held elsewhere (registered directly, or through another satellite).
    let other: Option<(String, Option<i64>, String)> = pis::table
        .inner_join(virtual_accounts::table)
        .select((pis::uuid, pis::satellite_row, virtual_accounts::name))
        .filter(pis::pid.eq(&rec.pid))
        .filter(pis::sn.eq(&rec.sn))
        .filter(pis::state.eq("active"))
        .filter(pis::uuid.ne(&rec.pi))
        .first(c)
        .optional()?;
    if let (Some((_, holder, va)), PiOp::Upsert) = (&other, rec.op) {
        if *holder != Some(row) {
            return Ok(Err(format!(
                "the product instance PID:{} SN:{} is already registered {} in the Virtual \
                 Account \"{va}\"",
                rec.pid,
                rec.sn,
                if holder.is_none() {
                    "directly"
                } else {
                    "through another satellite"
                }
            )));
        }
    }
    let existing: Option<(i64, Option<i64>, String)> = pis::table
        .select((pis::id, pis::satellite_row, pis::state))
        .filter(pis::uuid.eq(&rec.pi))
        .first(c)
        .optional()?;
    // A device released with its satellite (removed, then registered again) is taken over.
    if let Some((_, holder, state)) = &existing {
        if *holder != Some(row) && state == "active" {
            return Ok(Err(format!(
                "the product instance {} belongs to another satellite",
                rec.pi
            )));
        }
    }
    let state = match rec.op {
        PiOp::Upsert => "active",
        PiOp::Removed => "removed",
    };
    let id = match existing {
        Some((id, _, _)) => {
            diesel::update(pis::table.find(id))
                .set((
                    pis::satellite_row.eq(row),
                    pis::va_id.eq(va_id),
                    pis::pid.eq(&rec.pid),
                    pis::sn.eq(&rec.sn),
                    pis::name.eq(&rec.name),
                    pis::last_contact_at.eq(rec.last_contact_at),
                    pis::state.eq(state),
                    pis::updated_at.eq(now),
                ))
                .execute(c)?;
            id
        }
        None => {
            diesel::insert_into(pis::table)
                .values((
                    pis::uuid.eq(&rec.pi),
                    pis::satellite_row.eq(row),
                    pis::va_id.eq(va_id),
                    pis::pid.eq(&rec.pid),
                    pis::sn.eq(&rec.sn),
                    pis::name.eq(&rec.name),
                    pis::registered_at.eq(rec.registered_at),
                    pis::last_contact_at.eq(rec.last_contact_at),
                    pis::state.eq(state),
                    pis::updated_at.eq(now),
                ))
                .execute(c)?;
            pis::table
                .select(pis::id)
                .filter(pis::uuid.eq(&rec.pi))
                .first(c)?
        }
    };
    // The request carries a listed device's whole usage: what it no longer lists is gone.
    diesel::delete(pi_usage::table.filter(pi_usage::pi_id.eq(id))).execute(c)?;
    Ok(Ok(match rec.op {
        PiOp::Upsert => Some(id),
        PiOp::Removed => None,
    }))
}

/// Marks every device of a satellite removed and releases its licenses.
pub(crate) fn release_satellite(c: &mut SqliteConnection, row: i64, now: i64) -> Result<usize> {
    let ids: Vec<i64> = pis::table
        .select(pis::id)
        .filter(pis::satellite_row.eq(row))
        .filter(pis::state.eq("active"))
        .load(c)?;
    for chunk in ids.chunks(10_000) {
        diesel::delete(pi_usage::table.filter(pi_usage::pi_id.eq_any(chunk))).execute(c)?;
        diesel::update(pis::table.filter(pis::id.eq_any(chunk)))
            .set((pis::state.eq("removed"), pis::updated_at.eq(now)))
            .execute(c)?;
    }
    Ok(ids.len())
}

/// The cloud's 90-day rule: satellites without a sync (or, before their first, since their
/// authorization) for 90 days are removed and their devices' licenses released.
pub fn sweep(cloud: &Cloud, now: i64) -> Result<Vec<String>> {
    let mut c = cloud.conn()?;
    c.immediate_transaction(|c| {
        let due: Vec<(i64, String, Option<i64>, Option<i64>)> = satellites::table
            .select((
                satellites::id,
                satellites::name,
                satellites::last_sync_at,
                satellites::authorized_at,
            ))
            .filter(satellites::state.eq("authorized"))
            .load(c)?;
        let mut removed = Vec::new();
        for (row, name, synced, authorized) in due {
            let Some(since) = synced.or(authorized) else {
                continue;
            };
            if now < since + REMOVAL_DAYS * DAY {
                continue;
            }
            let released = release_satellite(c, row, now)?;
            super::export::release_satellite(c, row, now)?;
            diesel::update(satellites::table.find(row))
                .set((
                    satellites::state.eq("removed"),
                    satellites::removed_at.eq(now),
                    satellites::removal_reason.eq(format!("{REMOVAL_DAYS} days without a sync")),
                ))
                .execute(c)?;
            tracing::warn!(satellite = %name, released, "satellite removed: 90 days without a sync");
            removed.push(name);
        }
        if !removed.is_empty() {
            flag_shortages(c, now)?;
        }
        Ok(removed)
    })
}

/// Recomputes the shortages: purchased (lines valid now; reporting-only lines never run
/// short) against in use (active devices' usage), per VA and entitlement.
pub(crate) fn flag_shortages(c: &mut SqliteConnection, now: i64) -> Result<()> {
    let usage = usage_report(c, now)?;
    diesel::delete(shortages::table).execute(c)?;
    for u in usage.iter().filter(|u| u.balance < 0) {
        diesel::insert_into(shortages::table)
            .values((
                shortages::va_id.eq(u.va_id),
                shortages::tag.eq(&u.tag),
                shortages::purchased.eq(u.purchased),
                shortages::in_use.eq(u.in_use),
                shortages::flagged_at.eq(now),
            ))
            .execute(c)?;
    }
    Ok(())
}

/// `mock-cloud usage`: per VA and entitlement, purchased, in use, balance.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    #[serde(skip)]
    pub va_id: i64,
    pub va: String,
    pub tag: String,
    pub purchased: i64,
    pub in_use: i64,
    pub balance: i64,
    pub shortage: bool,
}

pub(crate) fn usage_report(c: &mut SqliteConnection, now: i64) -> Result<Vec<Usage>> {
    let used: Vec<(i64, String, i64)> = pi_usage::table
        .inner_join(pis::table)
        .select((pis::va_id, pi_usage::tag, pi_usage::count))
        .filter(pis::state.eq("active"))
        .load(c)?;
    let lines: Vec<(i64, String, String, i64)> = licenses::table
        .select((
            licenses::va_id,
            licenses::tag,
            licenses::kind,
            licenses::quantity,
        ))
        .filter(licenses::end_at.is_null().or(licenses::end_at.gt(now)))
        .filter(licenses::start_at.is_null().or(licenses::start_at.le(now)))
        .load(c)?;
    let mut map: std::collections::BTreeMap<(i64, String), (i64, i64, bool)> = Default::default();
    for (va, tag, count) in used {
        let e = map.entry((va, tag)).or_default();
        e.1 = e.1.saturating_add(count);
    }
    for (va, tag, kind, qty) in lines {
        let e = map.entry((va, tag)).or_default();
        e.0 = e.0.saturating_add(qty);
        e.2 |= kind == "reporting-only";
    }
    // Restricted licenses locked to devices are in use too.
    for (key, n) in super::export::locked(c)? {
        map.entry(key).or_default().1 += n;
    }
    let names: HashMap<i64, String> = virtual_accounts::table
        .select((virtual_accounts::id, virtual_accounts::name))
        .load::<(i64, String)>(c)?
        .into_iter()
        .collect();
    Ok(map
        .into_iter()
        .map(|((va_id, tag), (purchased, in_use, reporting))| {
            let purchased = if reporting { in_use } else { purchased };
            Usage {
                va_id,
                va: names.get(&va_id).cloned().unwrap_or_default(),
                tag,
                purchased,
                in_use,
                balance: purchased - in_use,
                shortage: purchased < in_use,
            }
        })
        .collect())
}

pub fn usage(cloud: &Cloud, va: Option<&str>) -> Result<Vec<Usage>> {
    let now = cloud.now()?;
    sweep(cloud, now)?;
    let mut rows = usage_report(&mut *cloud.conn()?, now)?;
    if let Some(va) = va {
        rows.retain(|r| r.va == va);
    }
    rows.sort_by(|a, b| (&a.va, &a.tag).cmp(&(&b.va, &b.tag)));
    Ok(rows)
}

/// `mock-cloud pi list`: devices the cloud knows.
#[derive(Debug, Clone, Serialize)]
pub struct PiListing {
    pub pi: String,
    pub va: String,
    pub pid: String,
    pub sn: String,
    pub name: String,
    pub state: String,
    /// The satellite that reports it; None for a device registered directly.
    pub satellite: Option<String>,
    pub usage: Vec<(String, i64)>,
}

pub fn pi_list(cloud: &Cloud, va: Option<&str>) -> Result<Vec<PiListing>> {
    let now = cloud.now()?;
    sweep(cloud, now)?;
    let mut c = cloud.conn()?;
    type Row = (
        i64,
        String,
        String,
        String,
        String,
        String,
        String,
        Option<i64>,
    );
    let rows: Vec<Row> = pis::table
        .inner_join(virtual_accounts::table)
        .select((
            pis::id,
            pis::uuid,
            virtual_accounts::name,
            pis::pid,
            pis::sn,
            pis::name,
            pis::state,
            pis::satellite_row,
        ))
        .order(pis::id)
        .load(&mut c)?;
    let mut out = Vec::new();
    for (id, uuid, va_name, pid, sn, name, state, sat) in rows {
        if va.is_some_and(|v| v != va_name) {
            continue;
        }
        let satellite = match sat {
            Some(r) => Some(
                satellites::table
                    .select(satellites::name)
                    .find(r)
                    .first::<String>(&mut c)?,
            ),
            None => None,
        };
        let usage = pi_usage::table
            .select((pi_usage::tag, pi_usage::count))
            .filter(pi_usage::pi_id.eq(id))
            .order(pi_usage::tag)
            .load(&mut c)?;
        out.push(PiListing {
            pi: uuid,
            va: va_name,
            pid,
            sn,
            name,
            state,
            satellite,
            usage,
        });
    }
    Ok(out)
}

/// A device registered directly with the cloud (not through a satellite).
pub fn pi_add_direct(cloud: &Cloud, va: &str, pid: &str, sn: &str, name: &str) -> Result<String> {
    let pid = super::service::non_empty("--pid", pid)?;
    let sn = super::service::non_empty("--sn", sn)?;
    let now = cloud.now()?;
    let mut c = cloud.conn()?;
    c.immediate_transaction(|c| {
        let va_id = super::service::va_id(c, va)?;
        let held: Option<String> = pis::table
            .select(pis::uuid)
            .filter(pis::pid.eq(pid))
            .filter(pis::sn.eq(sn))
            .filter(pis::state.eq("active"))
            .first(c)
            .optional()?;
        if let Some(uuid) = held {
            return Err(CloudError::Conflict(format!(
                "PID:{pid} SN:{sn} is already registered ({uuid})"
            )));
        }
        let uuid = uuid::Uuid::new_v4().to_string();
        diesel::insert_into(pis::table)
            .values((
                pis::uuid.eq(&uuid),
                pis::va_id.eq(va_id),
                pis::pid.eq(pid),
                pis::sn.eq(sn),
                pis::name.eq(if name.is_empty() {
                    format!("PID:{pid} SN:{sn}")
                } else {
                    name.to_string()
                }),
                pis::registered_at.eq(now),
                pis::last_contact_at.eq(now),
                pis::state.eq("active"),
                pis::updated_at.eq(now),
            ))
            .execute(c)?;
        Ok(uuid)
    })
}

/// Removes a device registered directly.
pub fn pi_remove_direct(cloud: &Cloud, pid: &str, sn: &str) -> Result<()> {
    let now = cloud.now()?;
    let mut c = cloud.conn()?;
    let n = diesel::update(
        pis::table
            .filter(pis::pid.eq(pid))
            .filter(pis::sn.eq(sn))
            .filter(pis::satellite_row.is_null())
            .filter(pis::state.eq("active")),
    )
    .set((pis::state.eq("removed"), pis::updated_at.eq(now)))
    .execute(&mut c)?;
    if n == 0 {
        return Err(CloudError::NotFound(format!(
            "no device PID:{pid} SN:{sn} registered directly"
        )));
    }
    Ok(())
}

/// Checks a satellite's event chain as its events arrive: each event's hash is recomputed
/// from its fields, it must name the hash of the event before it (the previous one in this
/// request, or the last one the cloud holds), and an event sent again must be the one sent
/// before. A break is recorded (`event_chain_breaks`, `mock-cloud satellite events`), not
/// refused: the sync still goes through, and the break stays on record.
#[derive(Debug, Default)]
struct Chain {
    prev: Option<(i64, String)>,
    breaks: u64,
}

impl Chain {
    fn check(
        &mut self,
        c: &mut SqliteConnection,
        row: i64,
        e: &EventRecord,
        now: i64,
    ) -> Result<()> {
        use super::schema::event_chain_breaks as b;
        let mut reasons = Vec::new();
        if e.expected_hash() != e.hash {
            reasons.push(format!(
                "event {} does not hash to what it carries: edited after it was written",
                e.id
            ));
        }
        let before = match self.prev.take() {
            Some(p) => Some(p),
            None => satellite_events::table
                .select((satellite_events::event_id, satellite_events::hash))
                .filter(satellite_events::satellite_row.eq(row))
                .filter(satellite_events::event_id.lt(e.id))
                .order(satellite_events::event_id.desc())
                .first::<(i64, String)>(c)
                .optional()?,
        };
        match &before {
            Some((id, hash)) if *hash != e.prev_hash || *id + 1 != e.id => {
                reasons.push(format!(
                    "event {} does not follow event {id}: events between them were removed or \
                     one was edited",
                    e.id
                ));
            }
            None if !e.prev_hash.is_empty() && e.id == 1 => {
                reasons.push("the first event names an event before it".into());
            }
            _ => {}
        }
        let known: Option<String> = satellite_events::table
            .select(satellite_events::hash)
            .filter(satellite_events::satellite_row.eq(row))
            .filter(satellite_events::event_id.eq(e.id))
            .first(c)
            .optional()?;
        if known.is_some_and(|h| !h.is_empty() && h != e.hash) {
            reasons.push(format!(
                "event {} differs from the event {} sent before: edited after it was synchronized",
                e.id, e.id
            ));
        }
        for reason in reasons {
            self.breaks += 1;
            diesel::insert_or_ignore_into(b::table)
                .values((
                    b::satellite_row.eq(row),
                    b::event_id.eq(e.id),
                    b::reason.eq(&reason),
                    b::detected_at.eq(now),
                ))
                .execute(c)?;
        }
        self.prev = Some((e.id, e.hash.clone()));
        Ok(())
    }
}
