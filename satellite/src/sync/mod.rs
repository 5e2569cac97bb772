//! Synchronization with the cloud: the same signed bundles over HTTPS ("network sync") or
//! as files an operator carries ("manual sync").
//!
//! - [`request`]: what changed since the cloud's last acknowledgement, as a sync request.
//! - [`apply`]: a sync response, verified and applied all-or-nothing, with anti-rollback.
//! - [`network`]: `sync now` and the scheduled sync, with retry, backoff and the
//!   "Synchronization Failed" alert.
//! - [`deadlines`]: the 30/66/90-day timers and the clock's high-water mark.
//!
//! The CLI (and later the web console) call these; they take a store and a time, never
//! HTTP or terminal types.

pub mod apply;
mod changes;
pub mod deadlines;
pub mod network;
pub mod outcome;
pub mod renewal;
pub mod request;
pub mod rollover;

use crate::clock;
use crate::db::identity::SatelliteRow;
use crate::db::{self, Store};
use crate::error::{Error, Reason, Result};
use crate::states::SatelliteState;
use crate::states::SyncMode;

/// Progress of long work, for the CLI to show.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub what: &'static str,
    pub done: u64,
    pub total: Option<u64>,
}

/// The cloud a registered satellite syncs with; a clear refusal otherwise.
pub fn registered_with_cloud(me: &SatelliteRow) -> Result<&str> {
    match me.state {
        SatelliteState::Registered => me
            .cloud_id
            .as_deref()
            .ok_or_else(|| Error::State("the satellite has no cloud id".into())),
        SatelliteState::Removed => Err(Error::Removed(
            format!(
                "this satellite was removed at {} (90 days without a successful sync) and can no \
             longer sync; register it again (by files or over the network)",
                me.removed_at.map(clock::format).unwrap_or_default()
            )
            .into(),
        )),
        other => Err(Error::State(Reason::new(
            "not_registered",
            format!(
                "this satellite is {other}: it syncs once it is registered with the cloud \
             (by files or over the network)"
            ),
        ))),
    }
}

/// `satellite sync status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncStatus {
    pub state: SatelliteState,
    /// Network when a cloud URL is configured, else manual.
    pub mode: SyncMode,
    pub last_sync: Option<String>,
    pub last_sync_mode: Option<SyncMode>,
    pub next_sync_due: Option<String>,
    pub next_scheduled: Option<String>,
    pub removal_at: Option<String>,
    pub days_left_before_removal: Option<i64>,
    /// When the satellite's certificate ends, and whether the next sync asks for a new one.
    pub certificate_expires_at: Option<String>,
    pub certificate_renewal_due: bool,
    pub pending_product_instances: i64,
    pub pending_events: i64,
    /// Export-controlled requests and returns waiting for the cloud.
    pub pending_export_requests: i64,
    pub change_sequence: i64,
    pub acknowledged_change: i64,
    pub failures: i64,
    pub last_failure: Option<String>,
    pub rejected: Vec<db::sync::Rejection>,
    pub clock_behind: bool,
}

/// Runs the timers (so what it shows is current) and reports where the sync stands.
pub fn status(store: &Store, config: &crate::config::Config, now: i64) -> Result<SyncStatus> {
    let checked = deadlines::current(store, now)?;
    let mut conn = store.conn()?;
    let at = checked.effective_now;
    let me = db::identity::require(&mut conn)?;
    let st = db::sync::state(&mut conn)?;
    let registered = me.is_registered();
    let removal = if registered {
        deadlines::removal_at(&me)
    } else {
        None
    };
    let network = !config.cloud.url.is_empty();
    let certificate = renewal::validity(&me)?;
    Ok(SyncStatus {
        state: me.state,
        mode: if network {
            SyncMode::Network
        } else {
            SyncMode::Manual
        },
        last_sync: me.last_sync_at.map(clock::format),
        last_sync_mode: st.last_mode,
        next_sync_due: me.next_sync_due_at.map(clock::format),
        next_scheduled: if network && registered {
            st.next_attempt_at
                .or_else(|| network::next_scheduled(config, at))
                .map(clock::format)
        } else {
            None
        },
        removal_at: removal.map(clock::format),
        days_left_before_removal: removal.map(|r| ((r - at).max(0) + clock::DAY - 1) / clock::DAY),
        certificate_expires_at: certificate.map(|(_, to)| clock::format(to)),
        certificate_renewal_due: certificate.is_some_and(|(from, to)| renewal::due(from, to, at)),
        pending_product_instances: db::sync::pending_changes(&mut conn, st.acked_change)?,
        pending_events: db::sync::pending_events(&mut conn, st.acked_event_id)?,
        pending_export_requests: db::export::count_waiting(&mut conn)?,
        change_sequence: st.change_seq,
        acknowledged_change: st.acked_change,
        failures: st.failures,
        last_failure: st.last_failure.clone(),
        rejected: db::sync::rejections(&mut conn)?,
        clock_behind: checked.clock_behind,
    })
}

impl SyncStatus {
    pub fn to_text(&self) -> String {
        let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
        let mut s = format!(
            "State:                 {}\n\
             Sync mode:             {}\n\
             Last sync:             {}{}\n\
             Next sync due:         {}\n\
             Next scheduled sync:   {}\n\
             Removal if not synced: {}{}\n\
             Pending changes:       {}, {}, {}\n",
            self.state,
            self.mode,
            or(&self.last_sync, "never"),
            self.last_sync_mode
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default(),
            or(&self.next_sync_due, "-"),
            or(&self.next_scheduled, "-"),
            or(&self.removal_at, "-"),
            self.days_left_before_removal
                .map(|d| format!(" ({d} days left)"))
                .unwrap_or_default(),
            crate::states::plural(
                self.pending_product_instances,
                "product instance",
                "product instances"
            ),
            crate::states::plural(self.pending_events, "event", "events"),
            crate::states::plural(
                self.pending_export_requests,
                "export request",
                "export requests"
            ),
        );
        if let Some(until) = &self.certificate_expires_at {
            s.push_str(&format!(
                "Certificate until:     {until}{}\n",
                if self.certificate_renewal_due {
                    " (renewal asked at every sync until it arrives)"
                } else {
                    ""
                }
            ));
        }
        if self.failures > 0 {
            s.push_str(&format!(
                "Failed attempts:       {} in a row; last: {}\n",
                self.failures,
                or(&self.last_failure, "")
            ));
        }
        if self.clock_behind {
            s.push_str("Clock:                 behind the latest time seen (see alerts)\n");
        }
        if !self.rejected.is_empty() {
            s.push_str(&format!(
                "Refused by the cloud:  {} records, sent again at the next sync:\n",
                self.rejected.len()
            ));
            for r in &self.rejected {
                s.push_str(&format!("  {} {}: {}\n", r.pi_uuid, r.record, r.reason));
            }
        }
        s
    }
}
