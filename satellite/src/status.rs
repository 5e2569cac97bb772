//! `satellite status`: where the satellite stands, as text or JSON.

use serde::Serialize;

use crate::clock::{self, Clock};
use crate::db::{alerts, identity, pools, stats, Store};
use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// unregistered, pending, registered or removed.
    pub state: crate::states::SatelliteState,
    pub satellite_id: String,
    pub name: String,
    pub hostname: String,
    pub version: &'static str,
    pub account: Option<String>,
    pub registered_at: Option<String>,
    pub last_sync_at: Option<String>,
    pub next_sync_due_at: Option<String>,
    /// When the satellite's certificate from the cloud ends (a sync renews it).
    pub certificate_expires_at: Option<String>,
    pub now: String,
    pub manual_clock: bool,
    pub export_controlled_allowed: bool,
    pub counts: stats::Counts,
    /// Kinds of the active alerts.
    pub alerts: Vec<String>,
    pub virtual_accounts: Vec<VaStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VaStatus {
    pub name: String,
    pub licenses: Vec<LicenseStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LicenseStatus {
    pub tag: String,
    pub name: String,
    pub kind: String,
    pub quantity: i64,
    pub start: Option<String>,
    pub end: Option<String>,
    pub restricted: bool,
}

pub fn status(store: &Store, clock: &dyn Clock) -> Result<Status> {
    let mut conn = store.conn()?;
    let row = identity::require(&mut conn)?;
    let certificate = crate::sync::renewal::validity(&row)?;
    Ok(Status {
        state: row.state,
        satellite_id: row.satellite_id,
        name: row.name,
        hostname: row.hostname,
        version: env!("CARGO_PKG_VERSION"),
        account: row.account_name,
        registered_at: row.registered_at.map(clock::format),
        last_sync_at: row.last_sync_at.map(clock::format),
        next_sync_due_at: row.next_sync_due_at.map(clock::format),
        certificate_expires_at: certificate.map(|(_, to)| clock::format(to)),
        now: clock::format(clock.now()),
        manual_clock: clock.is_manual(),
        export_controlled_allowed: row.export_controlled_allowed,
        counts: stats::counts(&mut conn)?,
        alerts: alerts::active(&mut conn)?
            .into_iter()
            .map(|a| a.kind.to_string())
            .collect(),
        virtual_accounts: pools::all(&mut conn)?
            .into_iter()
            .map(|(va, lines)| VaStatus {
                name: va.name,
                licenses: lines
                    .into_iter()
                    .map(|l| LicenseStatus {
                        tag: l.tag,
                        name: l.name,
                        kind: l.kind,
                        quantity: l.quantity,
                        start: l.start_at.map(clock::format),
                        end: l.end_at.map(clock::format),
                        restricted: l.restricted,
                    })
                    .collect(),
            })
            .collect(),
    })
}

impl Status {
    /// The report for people.
    pub fn to_text(&self) -> String {
        let or_never = |v: &Option<String>| v.clone().unwrap_or_else(|| "never".into());
        let c = &self.counts;
        let mut s = String::new();
        s.push_str(&format!(
            "Satellite:          {} ({})\n",
            self.name, self.satellite_id
        ));
        s.push_str(&format!("Registration:       {}\n", self.state));
        if let Some(a) = &self.account {
            s.push_str(&format!("Smart account:      {a}\n"));
        }
        s.push_str(&format!(
            "Registered at:      {}\n",
            or_never(&self.registered_at)
        ));
        s.push_str(&format!(
            "Last sync:          {}\n",
            or_never(&self.last_sync_at)
        ));
        if let Some(d) = &self.next_sync_due_at {
            s.push_str(&format!("Next sync due:      {d}\n"));
        }
        if let Some(d) = &self.certificate_expires_at {
            s.push_str(&format!("Certificate until:  {d} (a sync renews it)\n"));
        }
        s.push_str(&format!(
            "Clock:              {}{}\n",
            self.now,
            if self.manual_clock {
                " (MANUAL, testing only)"
            } else {
                ""
            }
        ));
        s.push_str(&format!("Virtual accounts:   {}\n", c.virtual_accounts));
        s.push_str(&format!("License lines:      {}\n", c.licenses));
        s.push_str(&format!("Tokens:             {}\n", c.tokens));
        s.push_str(&format!("Product instances:  {}\n", c.product_instances));
        s.push_str(&format!("Active alerts:      {}\n", c.active_alerts));
        s.push_str(&format!("Version:            {}\n", self.version));
        if !self.alerts.is_empty() {
            s.push_str(&format!("Alerts:             {}\n", self.alerts.join("; ")));
        }
        for va in &self.virtual_accounts {
            s.push_str(&format!("\nVirtual account {:?}\n", va.name));
            if va.licenses.is_empty() {
                s.push_str("  (no licenses)\n");
            }
            for l in &va.licenses {
                let term = match (&l.start, &l.end) {
                    (Some(a), Some(b)) => format!(" {a} .. {b}"),
                    (None, Some(b)) => format!(" until {b}"),
                    _ => String::new(),
                };
                s.push_str(&format!(
                    "  {:<40} {:>8} purchased  {}{}{}  ({})\n",
                    l.name,
                    l.quantity,
                    l.kind,
                    if l.restricted { ", restricted" } else { "" },
                    term,
                    l.tag
                ));
            }
        }
        s
    }
}
