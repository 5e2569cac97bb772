//! `satellite alert`, `satellite event` and `satellite report`: the operator's views of
//! alerts, the event log and the license and product-instance reports, as text, JSON or CSV.

use clap::{Args, Subcommand};

use super::{operator, to_json, Context};
use crate::alerts;
use crate::clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::report::{self, Table};

/// How to print a table.
#[derive(Debug, Clone, Copy, Args)]
pub struct Format {
    /// Print JSON instead of a table.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (RFC 4180, with a header row) instead of a table.
    #[arg(long)]
    pub csv: bool,
}

/// Which page of a long list, and in what order (`device list`, `report devices`).
#[derive(Debug, Clone, Copy, Args)]
pub struct Paging {
    /// Print at most this many rows (all of them by default, read and printed a page at a
    /// time).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: Option<i64>,
    /// Skip this many rows first.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub offset: i64,
    /// The order of the rows.
    #[arg(long, value_enum, default_value = "registered")]
    pub sort: crate::states::DeviceSort,
}

/// Prints the product instances `f` selects, page by page in bounded memory, then (as text)
/// a summary line by state.
pub(super) fn print_devices(
    conn: &mut diesel::SqliteConnection,
    f: &report::DeviceFilter,
    paging: Paging,
    format: Format,
) -> Result<()> {
    let mut out = Pages::new(format);
    let paging = report::Paging {
        limit: paging.limit,
        offset: paging.offset,
        sort: paging.sort,
    };
    report::each_device_page(conn, f, paging, |rows| {
        out.page(rows, report::devices_table)
    })?;
    let counts = report::device_counts(conn, f)?;
    let shown = out.rows;
    out.finish(
        &format!("{shown} shown of {}", counts.summary()),
        report::devices_table(&[]),
    )
}

/// Rows printed a page at a time: JSON as one array, CSV under one header, text with the
/// header once (columns aligned within each page).
struct Pages {
    format: Format,
    rows: usize,
    pages: usize,
}

impl Pages {
    fn new(format: Format) -> Pages {
        Pages {
            format,
            rows: 0,
            pages: 0,
        }
    }

    fn page<T: serde::Serialize>(
        &mut self,
        rows: &[T],
        table: impl FnOnce(&[T]) -> Table,
    ) -> Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let first = self.pages == 0;
        if self.format.json {
            for r in rows {
                let sep = if first && self.rows == 0 {
                    "[\n"
                } else {
                    ",\n"
                };
                let line = serde_json::to_string(r).map_err(|e| Error::Internal(e.to_string()))?;
                write!(out, "{sep}{line}")?;
                self.rows += 1;
            }
        } else {
            let text = if self.format.csv {
                table(rows).csv()?
            } else {
                table(rows).text()
            };
            // The header row once, on the first page.
            let body = if first {
                text.as_str()
            } else {
                text.split_once('\n').map_or("", |(_, rest)| rest)
            };
            out.write_all(body.as_bytes())?;
            self.rows += rows.len();
        }
        self.pages += 1;
        Ok(())
    }

    /// Ends the output (`empty`: the table's header, printed when there was no row); text
    /// gets `summary` as its last line.
    fn finish(self, summary: &str, empty: Table) -> Result<()> {
        if self.format.json {
            println!("{}", if self.rows == 0 { "[]" } else { "\n]" });
        } else if self.pages == 0 {
            print!(
                "{}",
                if self.format.csv {
                    empty.csv()?
                } else {
                    empty.text()
                }
            );
        }
        if !self.format.json && !self.format.csv {
            println!("{summary}");
        }
        Ok(())
    }
}

impl Format {
    pub fn print<T: serde::Serialize>(
        self,
        rows: &[T],
        table: impl FnOnce(&[T]) -> Table,
        (one, many): (&str, &str),
    ) -> Result<()> {
        if self.json {
            println!("{}", to_json(&rows)?);
        } else if self.csv {
            print!("{}", table(rows).csv()?);
        } else {
            print!("{}", table(rows).text());
            println!("{}", report::plural(rows.len() as i64, one, many));
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// List alerts, by severity then action due (seed 001's order). Active ones by default.
    List {
        /// Only this virtual account's alerts.
        #[arg(long)]
        va: Option<String>,
        /// Only this severity.
        #[arg(long)]
        severity: Option<crate::catalogue::Severity>,
        /// active (not hidden by remind-later), snoozed, dismissed, cleared or all.
        #[arg(long, value_parser = alerts::STATES, default_value = "active")]
        state: String,
        /// Only this type, e.g. "Licenses Expiring".
        #[arg(long = "type")]
        kind: Option<crate::catalogue::AlertKind>,
        #[command(flatten)]
        format: Format,
    },
    /// Dismiss an alert. Alerts that clear themselves (Insufficient Licenses, the sync
    /// deadlines, Authorization Pending) cannot be dismissed.
    Dismiss {
        /// The alert's id, as `alert list` shows it.
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Hide a warning until its next warning period (Licenses Expiring, Product Instance
    /// Failed to Connect).
    RemindLater {
        /// The alert's id, as `alert list` shows it.
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the alert timers now (a running server runs them at every scheduler tick):
    /// licenses expiring and expired, devices that failed to connect or renew, the sync
    /// deadlines.
    Check {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// List the event log, oldest first.
    List {
        /// Only this virtual account's events.
        #[arg(long)]
        va: Option<String>,
        /// Only this product instance's events (its PI id).
        #[arg(long)]
        pi: Option<String>,
        /// Only this license's events (its entitlement tag).
        #[arg(long)]
        license: Option<String>,
        /// Only this type, e.g. pi_new.
        #[arg(long = "type")]
        kind: Option<String>,
        /// From this time on: RFC 3339 or a date (2027-01-31).
        #[arg(long)]
        since: Option<String>,
        /// Before this time: RFC 3339 or a date.
        #[arg(long)]
        until: Option<String>,
        /// Only the newest N (all by default, read and printed a page at a time).
        #[arg(long, value_name = "N")]
        limit: Option<i64>,
        /// Skip the newest N first (with --limit: the page before).
        #[arg(long, value_name = "N", default_value_t = 0,
              value_parser = clap::value_parser!(i64).range(0..))]
        offset: i64,
        #[command(flatten)]
        format: Format,
    },
    /// Check the event log's hash chain: each event must carry the hash of the one before it
    /// and its own fields' hash. Exits 3 and names the first broken event if it does not hold.
    Verify {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Licenses across virtual accounts: purchased, in use, balance, alerts.
    Licenses {
        /// Only these virtual accounts (repeat the flag; all by default).
        #[arg(long = "va")]
        vas: Vec<String>,
        /// Only these licenses, by entitlement tag or name (repeat; all by default).
        #[arg(long = "license")]
        licenses: Vec<String>,
        #[command(flatten)]
        format: Format,
    },
    /// Product instances across virtual accounts: product type, last contact, licenses,
    /// alerts.
    Devices {
        /// Only these virtual accounts (repeat the flag; all by default).
        #[arg(long = "va")]
        vas: Vec<String>,
        /// Only these product types (PIDs; repeat; all by default).
        #[arg(long = "product-type")]
        product_types: Vec<String>,
        /// Only active or removed ones.
        #[arg(long, value_enum)]
        status: Option<crate::states::PiState>,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        format: Format,
    },
}

fn time(s: &Option<String>) -> Result<Option<i64>> {
    s.as_deref().map(clock::parse_time).transpose()
}

pub fn alert_command(config: Config, cmd: AlertCommand) -> Result<()> {
    let ctx = Context::open(config)?;
    let now = ctx.clock.now();
    let mut conn = ctx.store.conn()?;
    let one = |v: &alerts::AlertView, json: bool| -> Result<()> {
        if json {
            println!("{}", to_json(v)?);
        } else {
            println!(
                "alert {} ({}, {}): {}{}",
                v.id,
                v.kind,
                v.state,
                v.message,
                v.remind_at
                    .as_deref()
                    .map(|t| format!("\nhidden until {t}"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    };
    match cmd {
        AlertCommand::List {
            va,
            severity,
            state,
            kind,
            format,
        } => {
            let rows = alerts::list(
                &mut conn,
                &alerts::Filter {
                    va,
                    severity,
                    state: Some(state),
                    kind,
                },
                now,
            )?;
            format.print(&rows, report::alerts_table, ("alert", "alerts"))
        }
        AlertCommand::Dismiss { id, json } => one(
            &ctx.store
                .write(move |c| alerts::dismiss(c, id, now, &operator()))?,
            json,
        ),
        AlertCommand::RemindLater { id, json } => one(
            &ctx.store
                .write(move |c| alerts::remind_later(c, id, now, &operator()))?,
            json,
        ),
        AlertCommand::Check { json } => {
            let (checked, out) = ctx.store.write(move |c| {
                let checked = crate::sync::deadlines::run(c, now)?;
                let out = alerts::evaluate(c, checked.effective_now)?;
                Ok((checked, out))
            })?;
            if json {
                let v = serde_json::json!({ "deadlines": checked, "alerts": out });
                println!("{}", to_json(&v)?);
            } else {
                for r in checked.raised.iter().chain(out.raised.iter()) {
                    println!("raised: {r}");
                }
                for pi in &out.released {
                    println!("licenses released (no contact for 90 days): {pi}");
                }
                println!(
                    "{} alert(s) raised, {} cleared",
                    checked.raised.len() + out.raised.len(),
                    out.cleared
                );
            }
            Ok(())
        }
    }
}

pub fn event_command(config: Config, cmd: EventCommand) -> Result<()> {
    let ctx = Context::open(config)?;
    let mut conn = ctx.store.conn()?;
    match cmd {
        EventCommand::List {
            va,
            pi,
            license,
            kind,
            since,
            until,
            limit,
            offset,
            format,
        } => {
            if limit.is_some_and(|n| n < 1) {
                return Err(Error::invalid("--limit must be at least 1"));
            }
            let f = report::EventFilter {
                va_name: va,
                pi_uuid: pi,
                license_tag: license,
                kind,
                since: time(&since)?,
                until: time(&until)?,
                limit,
                offset,
            };
            let mut out = Pages::new(format);
            report::each_event_page(&mut conn, &f, |rows| out.page(rows, report::events_table))?;
            let total = report::event_count(&mut conn, &f)?;
            let shown = out.rows as i64;
            out.finish(
                &format!(
                    "{shown} shown of {}",
                    report::plural(total, "event", "events")
                ),
                report::events_table(&[]),
            )
        }
        EventCommand::Verify { json } => {
            let v = report::verify_events(&mut conn)?;
            if json {
                println!("{}", to_json(&v)?);
            } else if v.broken_at.is_none() {
                println!(
                    "event log OK: {} events, chain intact{}",
                    v.events,
                    if v.head.is_empty() {
                        String::new()
                    } else {
                        format!("; head {}", v.head)
                    }
                );
            }
            match (v.broken_at, v.reason) {
                (Some(id), Some(reason)) => Err(Error::Tampered(format!(
                    "the event log's hash chain is broken at event {id}: {reason}"
                ))),
                _ => Ok(()),
            }
        }
    }
}

pub fn report_command(config: Config, cmd: ReportCommand) -> Result<()> {
    let ctx = Context::open(config)?;
    let now = ctx.clock.now();
    let mut conn = ctx.store.conn()?;
    match cmd {
        ReportCommand::Licenses {
            vas,
            licenses,
            format,
        } => {
            let rows = report::licenses(&mut conn, now, &report::LicenseFilter { vas, licenses })?;
            format.print(&rows, report::licenses_table, ("license", "licenses"))
        }
        ReportCommand::Devices {
            vas,
            product_types,
            status,
            paging,
            format,
        } => {
            let f = report::DeviceFilter {
                vas,
                product_types,
                name: None,
                state: status,
            };
            print_devices(&mut conn, &f, paging, format)
        }
    }
}
