//! Network sync: the request posted to the cloud over HTTPS (port 443 by default), the
//! response applied, on demand (`satellite sync now`) or on the `[sync] schedule`, with
//! retry and exponential backoff, and the "Synchronization Failed" alert after
//! `[sync] failure_alert_after` failures in a row.

use std::io::Cursor;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::apply::{self, ImportOutcome};
use super::request::{self, RequestSummary};
use super::{deadlines, registered_with_cloud, Progress};
use crate::catalogue::AlertKind;
use crate::catalogue::EventKind;
use crate::clock::{self, Clock};
use crate::cloud_client::{Answer, CloudClient};
use crate::config::{Config, SyncConfig};
use crate::db::{self, alerts, identity, Store};
use crate::error::{Error, Result};
use crate::states::SyncMode;

/// The next time the schedule fires after `now`, if there is a schedule.
pub fn next_scheduled(config: &Config, now: i64) -> Option<i64> {
    if config.sync.schedule.is_empty() {
        return None;
    }
    let schedule = cron::Schedule::from_str(&config.sync.schedule).ok()?;
    let from = DateTime::<Utc>::from_timestamp(now, 0)?;
    schedule.after(&from).next().map(|t| t.timestamp())
}

/// Seconds to wait after the `failures`-th failure in a row: the initial delay, doubling,
/// capped.
pub fn backoff(sync: &SyncConfig, failures: i64) -> i64 {
    let initial = i64::from(sync.retry_initial_seconds);
    let max = i64::from(sync.retry_max_seconds);
    let doublings = u32::try_from((failures - 1).clamp(0, 30)).unwrap_or(30);
    initial.saturating_mul(1_i64 << doublings).min(max)
}

/// One network sync: request, post, apply. Failures are counted, scheduled for a retry
/// and alerted on; a success resets them.
pub fn sync_now(
    store: &Store,
    config: &Config,
    clock: &dyn Clock,
    full: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<(RequestSummary, ImportOutcome)> {
    let now = clock.now();
    store.write(move |c| deadlines::run(c, now))?;
    match attempt(store, config, clock, full, progress) {
        Ok(done) => {
            let next = next_scheduled(config, clock.now());
            store.write(move |c| db::sync::set_attempt(c, now, next))?;
            Ok(done)
        }
        Err(e) => {
            // Refusals of our own state (not registered, removed) are not failed attempts.
            if !matches!(e, Error::State(_) | Error::Removed(_) | Error::Invalid(_)) {
                record_failure(store, config, now, &e)?;
            }
            Err(e)
        }
    }
}

fn attempt(
    store: &Store,
    config: &Config,
    clock: &dyn Clock,
    full: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<(RequestSummary, ImportOutcome)> {
    let url = &config.cloud.url;
    if url.is_empty() {
        return Err(Error::invalid(
            "no cloud URL is configured ([cloud] url or SATELLITE_CLOUD_URL): this satellite \
             syncs by files (`satellite sync export`, then `satellite sync import`)",
        ));
    }
    let me = identity::require(&mut *store.conn()?)?;
    registered_with_cloud(&me)?;
    let ca_pem = match crate::registration::trusted_ca(config, me.cloud_ca_pem.as_deref())? {
        Some(ca) => ca.to_pem()?,
        None => return Err(Error::State("the satellite has no pinned cloud CA".into())),
    };
    let client = CloudClient::new(url, &ca_pem, &config.cloud.proxy)?;
    let (bytes, summary) = request::make(
        store,
        clock.now(),
        SyncMode::Network,
        full,
        Cursor::new(Vec::new()),
        progress,
    )?;
    let path = format!("/api/v1/satellites/{}/sync", me.satellite_id);
    let answer = client.post(&path, bytes.get_ref())?;
    let Answer::Bundle(response) = answer else {
        return Err(Error::Cloud(
            "the cloud accepted the sync request but sent no response".into(),
        ));
    };
    let outcome = apply::import(
        store,
        clock.now(),
        Cursor::new(response),
        SyncMode::Network,
        false,
        progress,
    )?;
    Ok((summary, outcome))
}

fn record_failure(store: &Store, config: &Config, now: i64, e: &Error) -> Result<()> {
    let (sync, message) = (config.sync.clone(), e.to_string());
    store.write(move |conn| record_failure_in(conn, &sync, now, message))
}

fn record_failure_in(
    conn: &mut diesel::SqliteConnection,
    sync: &SyncConfig,
    now: i64,
    message: String,
) -> Result<()> {
    let failures = db::sync::state(conn)?.failures + 1;
    let retry_at = now + backoff(sync, failures);
    db::sync::record_failure(conn, now, &message, retry_at)?;
    tracing::warn!(
        error = %message,
        failures,
        retry_at = %clock::format(retry_at),
        "network sync failed"
    );
    crate::db::events::append(
        conn,
        now,
        &crate::db::events::NewEvent {
            message: format!(
                "Synchronization with the cloud failed (attempt {failures} in a row): {message}. \
                 The next attempt is at {}.",
                clock::format(retry_at)
            ),
            actor: "system",
            ..crate::db::events::NewEvent::of(EventKind::SatelliteSyncFailed)
        },
    )?;
    if failures >= i64::from(sync.failure_alert_after) {
        alerts::raise(
            conn,
            now,
            &alerts::NewAlert {
                kind: AlertKind::SyncFailed,
                source_type: "satellite",
                source_id: None,
                va_id: None,
                // Seed 001, "Synchronization Failed", with what failed.
                message: format!(
                    "Synchronization with the cloud failed {failures} times in a row (last: \
                     {message}); the next attempt is at {}. Generate a new Synchronization File \
                     from your satellite and try the synchronization again. If the problem \
                     persists, contact Cisco Support.",
                    clock::format(retry_at)
                ),
                action_due_at: None,
            },
        )?;
    }
    Ok(())
}

/// One tick of the server's scheduler: the sync deadlines and the alert timers, then a
/// network sync if one is due.
pub fn tick(store: &Store, config: &Config, clock: &dyn Clock) -> Result<()> {
    let now = clock.now();
    let (checked, alerted) = store.write(move |c| {
        let checked = deadlines::run(c, now)?;
        let alerted = crate::alerts::evaluate(c, checked.effective_now)?;
        Ok((checked, alerted))
    })?;
    for raised in &alerted.raised {
        tracing::warn!(alert = %raised, "alert raised");
    }
    for pi in &alerted.released {
        tracing::warn!(%pi, "licenses released: no contact for 90 days");
    }
    if config.cloud.url.is_empty() || config.sync.schedule.is_empty() {
        return Ok(());
    }
    let mut conn = store.conn()?;
    let me = identity::get(&mut conn)?;
    if me.is_none_or(|m| !m.is_registered()) {
        return Ok(());
    }
    let st = db::sync::state(&mut conn)?;
    drop(conn);
    let at = checked.effective_now;
    match st.next_attempt_at {
        None => {
            let next = next_scheduled(config, at);
            store.write(move |c| db::sync::set_next_attempt(c, next))?;
        }
        Some(due) if at >= due => {
            tracing::info!("scheduled network sync");
            if let Err(e) = sync_now(store, config, clock, false, &mut |_| {}) {
                tracing::warn!(error = %e, "scheduled network sync did not complete");
            }
        }
        Some(_) => {}
    }
    Ok(())
}

/// The server's scheduler: a thread that runs [`tick`] every `[sync] tick_seconds`
/// (and once at start), until stopped.
pub struct Scheduler {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Scheduler {
    pub fn start(
        store: Store,
        config: std::sync::Arc<Config>,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Result<Scheduler> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let every = std::time::Duration::from_secs(u64::from(config.sync.tick_seconds));
        let thread = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || loop {
                if let Err(e) = tick(&store, &config, clock.as_ref()) {
                    tracing::error!(error = %e, "scheduler tick failed");
                }
                match stopped.recv_timeout(every) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the scheduler: {e}")))?;
        Ok(Scheduler { stop, thread })
    }

    /// Stops after the current tick.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut c = Config::load_from(None, &[]).unwrap();
        c.sync.retry_initial_seconds = 60;
        c.sync.retry_max_seconds = 3600;
        let b: Vec<i64> = (1..=8).map(|f| backoff(&c.sync, f)).collect();
        assert_eq!(b, vec![60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(&c.sync, 1000), 3600);
    }

    #[test]
    fn the_schedule_fires_at_the_next_cron_time() {
        let mut c = Config::load_from(None, &[]).unwrap();
        c.sync.schedule = "0 0 3 * * *".into();
        let t = clock::parse_time("2026-11-23T12:00:00Z").unwrap();
        assert_eq!(
            next_scheduled(&c, t).map(clock::format).as_deref(),
            Some("2026-11-24T03:00:00Z")
        );
        c.sync.schedule.clear();
        assert_eq!(next_scheduled(&c, t), None);
    }
}
