//! The sync request: what changed on the satellite since the cloud last acknowledged.
//!
//! Every change to a product instance (registered, moved, removed, its usage changed) gets
//! the next number of the change sequence (triggers in the store keep it). A request
//! carries the product instances whose change is after the last one the cloud acknowledged
//! (all of them with `full`), each with its whole usage, the records the cloud refused last
//! time, and the events after the last acknowledged one. It reads one snapshot of the store
//! and streams, so a million devices never sit in memory.

use std::io::{Read, Seek, Write};

use diesel::SqliteConnection;
use openssl::x509::X509;
use sync_format::manifest::{BundleKind, Header};
use sync_format::payload::{
    EventRecord, ExportOp, ExportRecord, PiOp, PiRecord, SyncCounts, SyncRequest, UsageRecord,
};
use sync_format::pki::Signer;
use sync_format::BundleWriter;

use super::{registered_with_cloud, Progress};
use crate::clock::DAY;
use crate::db::{self, identity, Store};
use crate::error::{Error, Result};
use crate::states::plural;
use crate::states::PiState;
use crate::states::SyncMode;

/// How long a request may travel before the cloud refuses it.
pub const REQUEST_VALID_DAYS: i64 = 30;
/// Product instances read per query.
const CHUNK: i64 = 5_000;

/// What a request carries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestSummary {
    pub bundle_id: String,
    pub sequence: i64,
    pub mode: SyncMode,
    pub full: bool,
    pub from_change: i64,
    pub to_change: i64,
    pub to_event: i64,
    pub product_instances: u64,
    pub usage: u64,
    pub events: u64,
    /// Export-controlled requests and returns waiting for the cloud (sent until answered).
    pub export_requests: u64,
    /// Product instances sent again because the cloud refused them last time.
    pub resent_rejected: u64,
    /// Whether it asks the cloud for a new satellite certificate.
    pub renewal_requested: bool,
}

impl RequestSummary {
    /// One line saying what the request carries.
    pub fn text(&self) -> String {
        format!(
            "sync request {} (sequence {}, {}): {}, {}, {}, {}{}{}",
            self.bundle_id,
            self.sequence,
            if self.full {
                "full".to_string()
            } else if self.to_change > self.from_change {
                format!("changes {} to {}", self.from_change + 1, self.to_change)
            } else {
                "no new changes".to_string()
            },
            plural(
                self.product_instances as i64,
                "product instance",
                "product instances"
            ),
            plural(self.usage as i64, "usage record", "usage records"),
            plural(
                self.export_requests as i64,
                "export request or return",
                "export requests and returns"
            ),
            plural(self.events as i64, "event", "events"),
            if self.resent_rejected > 0 {
                format!(
                    " ({} sent again after the cloud refused them)",
                    self.resent_rejected
                )
            } else {
                String::new()
            },
            if self.renewal_requested {
                "; asks for a new satellite certificate"
            } else {
                ""
            }
        )
    }
}

/// Writes a sync request into `out` and records it. `mode` is "manual" or "network".
pub fn make<W: Read + Write + Seek>(
    store: &Store,
    now: i64,
    mode: SyncMode,
    full: bool,
    out: W,
    progress: &mut dyn FnMut(Progress),
) -> Result<(W, RequestSummary)> {
    let mut conn = store.conn()?;
    let me = identity::require(&mut conn)?;
    let cloud_id = registered_with_cloud(&me)?;
    let key = crate::identity::signing_key(store.data_dir())?;
    let cert_pem = me
        .certificate_pem
        .as_deref()
        .ok_or_else(|| Error::State("the satellite has no certificate from the cloud".into()))?;
    let cert = X509::from_pem(cert_pem.as_bytes())?;
    let signer = Signer::new(key, vec![cert])?;
    let renewal_csr_pem = super::renewal::request(store.data_dir(), &me, now)?;

    // One read snapshot for everything the request carries.
    let (w, summary, exports) = db::read_snapshot(&mut conn, |conn| {
        let st = db::sync::state(conn)?;
        let to_change = st.change_seq;
        let to_event = db::sync::last_event_id(conn)?;
        let after = if full { -1 } else { st.acked_change };
        let from_event = if full { 0 } else { st.acked_event_id };
        let sequence = st.requests_made + 1;
        let header = Header {
            kind: BundleKind::SyncRequest,
            bundle_id: uuid::Uuid::new_v4().to_string(),
            sender: me.satellite_id.clone(),
            receiver: cloud_id.to_string(),
            sequence: sequence as u64,
            created_at: now,
            not_after: now + REQUEST_VALID_DAYS * DAY,
            in_reply_to: None,
        };
        let mut summary = RequestSummary {
            bundle_id: header.bundle_id.clone(),
            sequence,
            mode,
            full,
            from_change: after.max(0),
            to_change,
            to_event,
            product_instances: 0,
            usage: 0,
            events: 0,
            export_requests: 0,
            resent_rejected: 0,
            renewal_requested: renewal_csr_pem.is_some(),
        };
        let mut w = BundleWriter::new(out, header)?;
        write_pis(conn, &mut w, after, to_change, &mut summary, progress)?;
        let exports = write_exports(conn, &mut w, &mut summary)?;
        write_events(conn, &mut w, from_event, to_event, &mut summary)?;
        w.payload(&SyncRequest {
            payload_version: 1,
            satellite_id: me.satellite_id.clone(),
            full,
            from_change: after.max(0) as u64,
            to_change: to_change as u64,
            from_event: from_event as u64,
            to_event: to_event as u64,
            counts: SyncCounts {
                product_instances: summary.product_instances,
                usage: summary.usage,
                export_requests: summary.export_requests,
                events: summary.events,
            },
            renewal_csr_pem: renewal_csr_pem.clone(),
        })?;
        let (w, _) = w.finish(&signer)?;
        Ok((w, summary, exports))
    })?;
    drop(conn);
    let s = summary.clone();
    store.write(move |conn| {
        let id = db::sync::insert_request(
            conn,
            now,
            &db::sync::NewRequest {
                bundle_id: &s.bundle_id,
                mode,
                sequence: s.sequence,
                full,
                to_change: s.to_change,
                to_event: s.to_event,
                records: s.product_instances as i64,
            },
        )?;
        // Still waiting until answered: a request lost on the way goes again next time.
        db::export::mark_sent(conn, &exports, id, now)
    })?;
    tracing::info!(
        bundle_id = %summary.bundle_id,
        %mode,
        full,
        product_instances = summary.product_instances,
        events = summary.events,
        export_requests = summary.export_requests,
        "made a sync request"
    );
    Ok((w, summary))
}

fn pi_record(p: &db::sync::ChangedPi) -> PiRecord {
    PiRecord {
        change: p.change_seq.max(0) as u64,
        op: if p.state == PiState::Removed {
            PiOp::Removed
        } else {
            PiOp::Upsert
        },
        pi: p.uuid.clone(),
        va: p.va.clone(),
        pid: p.pid.clone(),
        sn: p.sn.clone(),
        name: p.name.clone(),
        registered_at: p.registered_at,
        last_contact_at: p.last_contact_at,
    }
}

/// Calls `f` with each chunk of the product instances the request carries: those changed
/// in (after, upto], then those the cloud refused last time and not changed since.
fn for_each_chunk(
    conn: &mut SqliteConnection,
    after: i64,
    upto: i64,
    mut f: impl FnMut(&mut SqliteConnection, &[db::sync::ChangedPi], bool) -> Result<()>,
) -> Result<()> {
    let mut from = (after, i64::MAX);
    loop {
        let chunk = db::sync::changed_pis(conn, upto, from, CHUNK)?;
        let Some(last) = chunk.last() else { break };
        from = (last.change_seq, last.id);
        f(conn, &chunk, false)?;
    }
    let rejected = db::sync::rejected_pi_ids(conn)?;
    for ids in rejected.chunks(CHUNK as usize) {
        let chunk: Vec<db::sync::ChangedPi> = db::sync::pis_by_id(conn, ids)?
            .into_iter()
            .filter(|p| p.change_seq <= after || p.change_seq > upto)
            .collect();
        f(conn, &chunk, true)?;
    }
    Ok(())
}

fn write_pis<W: Read + Write + Seek>(
    conn: &mut SqliteConnection,
    w: &mut BundleWriter<W>,
    after: i64,
    upto: i64,
    summary: &mut RequestSummary,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    // A zip archive writes one entry at a time: product instances first, then a second
    // pass over the same snapshot for their usage.
    let mut pis = w.ndjson("product_instances.ndjson")?;
    for_each_chunk(conn, after, upto, |_, chunk, resent| {
        for p in chunk {
            pis.write(&pi_record(p))?;
        }
        summary.product_instances += chunk.len() as u64;
        if resent {
            summary.resent_rejected += chunk.len() as u64;
        }
        progress(Progress {
            what: "product instances",
            done: summary.product_instances,
            total: None,
        });
        Ok(())
    })?;
    pis.finish();
    let mut usage = w.ndjson("usage.ndjson")?;
    for_each_chunk(conn, after, upto, |conn, chunk, _| {
        let ids: Vec<i64> = chunk
            .iter()
            .filter(|p| p.state != PiState::Removed)
            .map(|p| p.id)
            .collect();
        let by_id: std::collections::HashMap<i64, &db::sync::ChangedPi> =
            chunk.iter().map(|p| (p.id, p)).collect();
        for (pi_id, tag, count) in db::sync::usage_of(conn, &ids)? {
            if let Some(p) = by_id.get(&pi_id) {
                usage.write(&UsageRecord {
                    pi: p.uuid.clone(),
                    va: p.va.clone(),
                    tag,
                    count,
                })?;
                summary.usage += 1;
            }
        }
        Ok(())
    })?;
    usage.finish();
    Ok(())
}

/// Writes the export-controlled requests and returns waiting for the cloud; returns their
/// row ids.
fn write_exports<W: Read + Write + Seek>(
    conn: &mut SqliteConnection,
    w: &mut BundleWriter<W>,
    summary: &mut RequestSummary,
) -> Result<Vec<i64>> {
    let rows = db::export::waiting(conn)?;
    let mut e = w.ndjson("export_requests.ndjson")?;
    let mut ids = Vec::with_capacity(rows.len());
    for l in rows {
        let returns = match l.row.return_of {
            Some(id) => Some(db::export::by_id(conn, id)?.request_uuid),
            None => None,
        };
        e.write(&ExportRecord {
            id: l.row.request_uuid,
            op: if l.row.direction == crate::states::ExportDirection::Return {
                ExportOp::Return
            } else {
                ExportOp::Request
            },
            pi: l.pi_uuid,
            va: l.va_name,
            tag: l.row.tag,
            count: l.row.count,
            returns,
            requested_at: l.row.created_at,
        })?;
        ids.push(l.row.id);
        summary.export_requests += 1;
    }
    e.finish();
    Ok(ids)
}

fn write_events<W: Read + Write + Seek>(
    conn: &mut SqliteConnection,
    w: &mut BundleWriter<W>,
    after: i64,
    upto: i64,
    summary: &mut RequestSummary,
) -> Result<()> {
    let mut e = w.ndjson("events.ndjson")?;
    let mut last = after;
    loop {
        let rows = db::events::range(conn, last, upto, CHUNK)?;
        let Some(l) = rows.last() else { break };
        last = l.id;
        for r in rows {
            e.write(&EventRecord {
                id: r.id,
                at: r.at,
                kind: r.kind,
                va: r.va_name,
                pi: r.pi_uuid,
                license: r.license_tag,
                message: r.message,
                actor: r.actor,
                prev_hash: r.prev_hash,
                hash: r.hash,
            })?;
            summary.events += 1;
        }
    }
    e.finish();
    Ok(())
}
