//! Prometheus metrics of the running server, served at `GET /metrics` on the console's
//! listener (docs/metrics.md). What the server counts as it runs (device requests by route
//! and status, with their latency) lives in [`Live`]; the rest is read from the store at
//! each scrape, so a scrape shows what `satellite status` and `license list` show.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::db::Store;
use crate::error::{Error, Result};

/// A device API request: its route (the pattern, not the path) and answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    virtual_account: String,
    entitlement: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabels {
    severity: String,
}

type Requests = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// What the running server measures itself. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Live {
    requests: Requests,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            requests: Family::new_with_constructor(request_histogram),
        }
    }
}

impl Live {
    /// Counts one device request of `route` answered `status` in `seconds`.
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                status: status.to_string(),
            })
            .observe(seconds);
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

/// Every metric, in the text exposition format: the store read at `now` (one read
/// snapshot), `live`, and the writer's queue.
pub fn render(
    store: &Store,
    config: &Config,
    now: i64,
    live: &Live,
    writer_queue: usize,
) -> Result<String> {
    let sync = crate::sync::status(store, config, now)?;
    let mut conn = store.conn()?;
    let (me, pools, devices, alerts) = crate::db::read_snapshot(&mut conn, |c| {
        Ok((
            crate::db::identity::require(c)?,
            crate::compliance::pool_report(c, now)?,
            crate::report::device_counts(c, &Default::default())?,
            crate::alerts::list(c, &Default::default(), now)?,
        ))
    })?;
    let mut r = Registry::with_prefix("satellite");

    let registered: Family<StateLabels, Gauge> = Family::default();
    registered
        .get_or_create(&StateLabels {
            state: me.state.as_str().to_string(),
        })
        .set(1);
    r.register(
        "state",
        "The satellite's registration state (1 for the current one)",
        registered,
    );
    if let Some(days) = sync.days_left_before_removal {
        gauge(
            &mut r,
            "days_until_removal",
            "Days left before the satellite removes itself for want of a sync",
            days,
        );
    }
    if let Some(at) = me.last_sync_at {
        gauge(
            &mut r,
            "last_sync_timestamp_seconds",
            "When the last sync with the cloud succeeded (Unix time)",
            at,
        );
    }
    gauge(
        &mut r,
        "sync_failures",
        "Network sync attempts that failed in a row",
        sync.failures,
    );
    gauge(
        &mut r,
        "sync_pending_product_instances",
        "Product instances changed since the last acknowledged sync",
        sync.pending_product_instances,
    );

    let by_state: Family<StateLabels, Gauge> = Family::default();
    for (state, n) in [("active", devices.active), ("removed", devices.removed)] {
        by_state
            .get_or_create(&StateLabels {
                state: state.into(),
            })
            .set(n);
    }
    r.register("product_instances", "Product instances by state", by_state);

    let (purchased, in_use, balance): (
        Family<PoolLabels, Gauge>,
        Family<PoolLabels, Gauge>,
        Family<PoolLabels, Gauge>,
    ) = Default::default();
    for p in &pools {
        let l = PoolLabels {
            virtual_account: p.virtual_account.clone(),
            entitlement: p.tag.clone(),
        };
        purchased.get_or_create(&l).set(p.purchased);
        in_use.get_or_create(&l).set(p.in_use);
        balance.get_or_create(&l).set(p.balance);
    }
    r.register(
        "licenses_purchased",
        "Licenses in force per virtual account and entitlement",
        purchased,
    );
    r.register(
        "licenses_in_use",
        "Licenses the devices use per virtual account and entitlement",
        in_use,
    );
    r.register(
        "licenses_balance",
        "Purchased minus in use (negative: a shortage)",
        balance,
    );

    let by_severity: Family<SeverityLabels, Gauge> = Family::default();
    for s in crate::catalogue::Severity::ALL {
        // Every severity is listed, at 0 when none is active.
        by_severity
            .get_or_create(&SeverityLabels {
                severity: s.as_str().to_string(),
            })
            .set(0);
    }
    for a in &alerts {
        by_severity
            .get_or_create(&SeverityLabels {
                severity: a.severity.as_str().to_string(),
            })
            .inc();
    }
    r.register("alerts_active", "Active alerts by severity", by_severity);

    r.register(
        "device_request_duration_seconds",
        "Device API requests by route and status, and how long they took",
        live.requests.clone(),
    );
    gauge(
        &mut r,
        "writer_queue",
        "Writes waiting for the database writer",
        i64::try_from(writer_queue).unwrap_or(i64::MAX),
    );

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r)
        .map_err(|e| Error::Internal(format!("cannot encode the metrics: {e}")))?;
    Ok(out)
}
