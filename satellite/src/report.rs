//! Reports and tables for operators, printed aligned or exported as CSV (RFC 4180: a header
//! row, CRLF line ends, fields with commas, quotes or line breaks quoted, quotes doubled;
//! UTF-8).
//!
//! Seed 001's tables: licenses (license, billing, purchased, in use, balance, alerts) and
//! product instances (name, product type, last contact, alerts), per virtual account or, as
//! reports, across all of them filtered by virtual accounts and licenses or product types;
//! alerts (severity, message, source, action due); the event log (message, time, user).

use std::collections::HashMap;

use diesel::SqliteConnection;
use serde::Serialize;

use crate::alerts::AlertView;
use crate::clock;
use crate::db::{self, events::EventRow, pools};
use crate::error::{Error, Result};

/// A cell as a spreadsheet may read it: text that begins with `=`, `+`, `-`, `@`, a tab or a
/// carriage return would be taken for a formula (a device chooses its own name), so it gets a
/// leading `'`, which spreadsheets show as text. Plain numbers (a negative balance) stay.
fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let number = cell.strip_prefix('-').is_some_and(|n| {
        !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.') && !n.starts_with('.')
    });
    if risky && !number {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// Rows of text under a header, to print or to export.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
    }

    /// RFC 4180 CSV with a header row.
    pub fn csv(&self) -> Result<String> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        let fail = |e: csv::Error| Error::Internal(format!("cannot write CSV: {e}"));
        w.write_record(&self.headers).map_err(fail)?;
        for r in &self.rows {
            let cells: Vec<_> = r.iter().map(|c| neutralise(c)).collect();
            w.write_record(cells.iter().map(|c| c.as_bytes()))
                .map_err(fail)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| Error::Internal(format!("cannot write CSV: {e}")))?;
        String::from_utf8(bytes).map_err(|e| Error::Internal(format!("CSV is not UTF-8: {e}")))
    }

    /// Aligned columns for a terminal; the last column is not padded (it holds the long
    /// texts).
    pub fn text(&self) -> String {
        let n = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n.saturating_sub(1)) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                s.push_str(c);
                if i + 1 < n {
                    s.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = line(self.headers.iter().map(|h| h.to_uppercase()).collect());
        for r in &self.rows {
            out.push_str(&line(r.iter().map(|c| c.replace('\n', " ")).collect()));
        }
        out
    }
}

/// Which licenses a report covers: empty lists mean all.
#[derive(Debug, Clone, Default)]
pub struct LicenseFilter {
    pub vas: Vec<String>,
    /// Entitlement tags or license names.
    pub licenses: Vec<String>,
}

/// A row of the licenses table.
#[derive(Debug, Clone, Serialize)]
pub struct LicenseRow {
    pub virtual_account: String,
    pub license: String,
    pub tag: String,
    /// "Prepaid", or "Reporting only" (purchased always equals in use).
    pub billing: String,
    pub purchased: i64,
    pub in_use: i64,
    pub balance: i64,
    pub restricted: bool,
    /// The active alerts about this license in this virtual account.
    pub alerts: Vec<String>,
}

/// Every VA's id by name; an error naming the first of `wanted` that does not exist.
fn va_ids(conn: &mut SqliteConnection, wanted: &[String]) -> Result<HashMap<String, i64>> {
    let ids: HashMap<String, i64> = pools::va_names(conn)?
        .into_iter()
        .map(|(id, name)| (name, id))
        .collect();
    if let Some(va) = wanted.iter().find(|va| !ids.contains_key(*va)) {
        return Err(Error::NotFound(
            format!("no virtual account named {va:?} (see the satellite's status)").into(),
        ));
    }
    Ok(ids)
}

/// Active alerts per (VA id, source id), as "Type (severity)".
fn alerts_by_source(conn: &mut SqliteConnection) -> Result<HashMap<(i64, String), Vec<String>>> {
    let mut by: HashMap<(i64, String), Vec<String>> = HashMap::new();
    for a in db::alerts::active(conn)? {
        let (Some(va), Some(src)) = (a.va_id, a.source_id) else {
            continue;
        };
        // An alert about one of a device's licenses ("PI/tag") is the device's too.
        let src = match (a.source_type.as_str(), src.split_once('/')) {
            ("pi", Some((pi, _))) => pi.to_string(),
            _ => src,
        };
        by.entry((va, src))
            .or_default()
            .push(format!("{} ({})", a.kind, a.severity));
    }
    Ok(by)
}

/// Purchased, in use, balance and alerts per virtual account and license.
pub fn licenses(
    conn: &mut SqliteConnection,
    now: i64,
    f: &LicenseFilter,
) -> Result<Vec<LicenseRow>> {
    let va_ids = va_ids(conn, &f.vas)?;
    let alerts = alerts_by_source(conn)?;
    let mut out = Vec::new();
    for p in crate::compliance::pool_report(conn, now)? {
        if !f.vas.is_empty() && !f.vas.contains(&p.virtual_account) {
            continue;
        }
        if !f.licenses.is_empty() && !f.licenses.iter().any(|l| *l == p.tag || *l == p.name) {
            continue;
        }
        let va_id = va_ids.get(&p.virtual_account).copied().unwrap_or_default();
        let mut row_alerts = Vec::new();
        // License alerts name the tag, or "VA/tag" (Insufficient Licenses).
        for src in [p.tag.clone(), format!("{}/{}", p.virtual_account, p.tag)] {
            if let Some(a) = alerts.get(&(va_id, src)) {
                row_alerts.extend(a.iter().cloned());
            }
        }
        out.push(LicenseRow {
            billing: if p.reporting_only {
                "Reporting only".into()
            } else {
                "Prepaid".into()
            },
            virtual_account: p.virtual_account,
            license: p.name,
            tag: p.tag,
            purchased: p.purchased,
            in_use: p.in_use,
            balance: p.balance,
            restricted: p.restricted,
            alerts: row_alerts,
        });
    }
    Ok(out)
}

pub fn licenses_table(rows: &[LicenseRow]) -> Table {
    let mut t = Table::new(&[
        "Virtual Account",
        "License",
        "Tag",
        "Billing",
        "Purchased",
        "In Use",
        "Balance",
        "Alerts",
    ]);
    for r in rows {
        t.push(vec![
            r.virtual_account.clone(),
            r.license.clone(),
            r.tag.clone(),
            r.billing.clone(),
            r.purchased.to_string(),
            r.in_use.to_string(),
            r.balance.to_string(),
            r.alerts.join("; "),
        ]);
    }
    t
}

/// Which product instances a report covers: empty lists mean all.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub vas: Vec<String>,
    /// Product types (PIDs).
    pub product_types: Vec<String>,
    pub name: Option<String>,
    /// Only active or only removed ones.
    pub state: Option<crate::states::PiState>,
}

/// A row of the product instances table.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    pub name: String,
    pub product_type: String,
    pub serial_number: String,
    pub virtual_account: String,
    pub state: crate::states::PiState,
    pub registered: String,
    pub last_contact: String,
    /// "count x tag (status)" per license used.
    pub licenses: Vec<String>,
    pub alerts: Vec<String>,
    pub pi_id: String,
}

impl DeviceFilter {
    fn query(&self) -> db::devices::Filter {
        db::devices::Filter {
            vas: self.vas.clone(),
            pids: self.product_types.clone(),
            name: self.name.clone(),
            state: self.state,
        }
    }
}

/// How many product instances a filter selects, in all and by state.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct DeviceCounts {
    pub total: i64,
    pub active: i64,
    pub removed: i64,
}

impl DeviceCounts {
    /// "3 product instances: 2 active, 1 removed".
    pub fn summary(&self) -> String {
        format!(
            "{}: {} active, {} removed",
            plural(self.total, "product instance", "product instances"),
            self.active,
            self.removed
        )
    }
}

pub use crate::states::plural;

pub fn device_counts(conn: &mut SqliteConnection, f: &DeviceFilter) -> Result<DeviceCounts> {
    let mut c = DeviceCounts::default();
    for (state, n) in db::devices::count_by_state(conn, &f.query())? {
        match state {
            crate::states::PiState::Active => c.active = n,
            crate::states::PiState::Removed => c.removed = n,
        }
        c.total += n;
    }
    Ok(c)
}

/// Product instances shown or exported at a time: a list of a million is read, and written
/// out, page by page.
pub const DEVICE_PAGE: i64 = 5_000;

pub use crate::db::devices::Page as DevicePage;

/// Which rows of a list, in what order: `limit` rows (all when `None`) from `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub limit: Option<i64>,
    pub offset: i64,
    pub sort: crate::states::DeviceSort,
}

/// Calls `each` with the product instances `f` and `paging` select, a page of at most
/// [`DEVICE_PAGE`] at a time, in memory bounded by the page. The whole list in
/// registration order is walked by id (linear); other orders and offsets by offset.
pub fn each_device_page(
    conn: &mut SqliteConnection,
    f: &DeviceFilter,
    paging: Paging,
    mut each: impl FnMut(&[DeviceRow]) -> Result<()>,
) -> Result<()> {
    use crate::states::DeviceSort;
    use db::devices::Page;
    if paging.limit.is_none() && paging.offset == 0 && paging.sort == DeviceSort::Registered {
        let mut after = 0;
        loop {
            let page = Page {
                sort: paging.sort,
                offset: 0,
                limit: DEVICE_PAGE,
                after: Some(after),
            };
            let (rows, last) = device_page(conn, f, page)?;
            let Some(last) = last else { return Ok(()) };
            after = last;
            each(&rows)?;
        }
    }
    let end = paging
        .limit
        .map_or(i64::MAX, |l| paging.offset.saturating_add(l));
    let mut at = paging.offset;
    while at < end {
        let n = (end - at).min(DEVICE_PAGE);
        let page = Page {
            sort: paging.sort,
            offset: at,
            limit: n,
            after: None,
        };
        let (rows, _) = device_page(conn, f, page)?;
        if !rows.is_empty() {
            each(&rows)?;
        }
        if (rows.len() as i64) < n {
            break;
        }
        at += n;
    }
    Ok(())
}

/// One page of the product instances table.
pub fn devices(
    conn: &mut SqliteConnection,
    f: &DeviceFilter,
    page: db::devices::Page,
) -> Result<Vec<DeviceRow>> {
    Ok(device_page(conn, f, page)?.0)
}

/// A page of rows, and the id of its last product instance.
fn device_page(
    conn: &mut SqliteConnection,
    f: &DeviceFilter,
    page: db::devices::Page,
) -> Result<(Vec<DeviceRow>, Option<i64>)> {
    let va_ids = va_ids(conn, &f.vas)?;
    let alerts = alerts_by_source(conn)?;
    let rows = db::devices::list(conn, &f.query(), page)?;
    let last = rows.last().map(|(pi, _)| pi.id);
    let views = rows
        .into_iter()
        .map(|(pi, va)| crate::devices::view(conn, pi, va))
        .collect::<Result<Vec<_>>>()?;
    let rows = views
        .into_iter()
        .map(|d| {
            let va_id = va_ids.get(&d.virtual_account).copied().unwrap_or_default();
            DeviceRow {
                alerts: alerts
                    .get(&(va_id, d.pi_id.clone()))
                    .cloned()
                    .unwrap_or_default(),
                licenses: d
                    .licenses
                    .iter()
                    .map(|l| format!("{} x {} ({})", l.count, l.tag, l.status))
                    .chain(
                        d.restricted
                            .iter()
                            .map(|r| format!("{} x {} ({})", r.count, r.tag, r.status)),
                    )
                    .collect(),
                name: d.name,
                product_type: d.pid,
                serial_number: d.sn,
                virtual_account: if d.virtual_account_served {
                    d.virtual_account
                } else {
                    format!("{} (no longer served)", d.virtual_account)
                },
                state: d.state,
                registered: d.registered_at,
                last_contact: d.last_contact_at,
                pi_id: d.pi_id,
            }
        })
        .collect();
    Ok((rows, last))
}

/// What a sync response changes in the license pools.
pub fn license_changes_table(rows: &[crate::sync::apply::LicenseChange]) -> Table {
    let mut t = Table::new(&[
        "Change",
        "License",
        "Tag",
        "Virtual account",
        "Before",
        "After",
    ]);
    for c in rows {
        t.push(vec![
            c.change.clone(),
            c.name.clone(),
            c.tag.clone(),
            c.virtual_account.clone(),
            c.before.to_string(),
            c.after.to_string(),
        ]);
    }
    t
}

/// Registration tokens, as the console lists them.
pub fn tokens_table(rows: &[crate::tokens::TokenView]) -> Table {
    let mut t = Table::new(&[
        "ID",
        "Token",
        "Virtual account",
        "Description",
        "Expires",
        "Uses",
        "Export-controlled",
        "State",
        "Created by",
    ]);
    for v in rows {
        t.push(vec![
            v.id.to_string(),
            format!("{}...", v.hint),
            v.virtual_account.clone(),
            v.description.clone(),
            v.expires_at.clone(),
            match v.max_uses {
                Some(m) => format!("{}/{m}", v.uses),
                None => v.uses.to_string(),
            },
            if v.export_controlled { "allowed" } else { "" }.into(),
            v.status.to_string(),
            v.created_by.clone(),
        ]);
    }
    t
}

pub fn devices_table(rows: &[DeviceRow]) -> Table {
    let mut t = Table::new(&[
        "Name",
        "Product Type",
        "Serial Number",
        "Virtual Account",
        "State",
        "Registered",
        "Last Contact",
        "PI ID",
        "Licenses",
        "Alerts",
    ]);
    for r in rows {
        t.push(vec![
            r.name.clone(),
            r.product_type.clone(),
            r.serial_number.clone(),
            r.virtual_account.clone(),
            r.state.to_string(),
            r.registered.clone(),
            r.last_contact.clone(),
            r.pi_id.clone(),
            r.licenses.join("; "),
            r.alerts.join("; "),
        ]);
    }
    t
}

pub fn alerts_table(rows: &[AlertView]) -> Table {
    let mut t = Table::new(&[
        "ID",
        "Severity",
        "Type",
        "Source",
        "Virtual Account",
        "Action Due",
        "State",
        "Created",
        "Message",
    ]);
    for a in rows {
        t.push(vec![
            a.id.to_string(),
            a.severity.to_string(),
            a.kind.to_string(),
            if a.source.is_empty() {
                a.source_type.clone()
            } else {
                format!("{} {}", a.source_type, a.source)
            },
            a.virtual_account.clone().unwrap_or_default(),
            a.action_due.clone().unwrap_or_default(),
            match &a.remind_at {
                Some(t) => format!("{} until {t}", a.state),
                None => a.state.clone(),
            },
            a.created.clone(),
            a.message.clone(),
        ]);
    }
    t
}

/// Operator accounts.
pub fn users_table(rows: &[crate::operators::OperatorView]) -> Table {
    let mut t = Table::new(&["User", "Role", "Created", "Password changed", "Last login"]);
    for u in rows {
        t.push(vec![
            u.username.clone(),
            u.role.to_string(),
            u.created_at.clone(),
            u.password_changed_at.clone(),
            u.last_login_at.clone().unwrap_or_default(),
        ]);
    }
    t
}

/// Operators' API tokens.
pub fn api_tokens_table(rows: &[crate::operators::ApiTokenView]) -> Table {
    let mut t = Table::new(&[
        "ID",
        "User",
        "Description",
        "Created",
        "Expires",
        "Last used",
        "State",
    ]);
    for v in rows {
        t.push(vec![
            v.id.to_string(),
            v.username.clone(),
            v.description.clone(),
            v.created_at.clone(),
            v.expires_at.clone().unwrap_or_else(|| "never".into()),
            v.last_used_at.clone().unwrap_or_default(),
            v.state.to_string(),
        ]);
    }
    t
}

/// Which events to list.
pub use crate::db::events::Filter as EventFilter;
/// Whether the event log's hash chain is intact.
pub use crate::db::events::Verified as EventVerification;

/// Events matching `f`, oldest first, as operators see them.
pub fn events(conn: &mut SqliteConnection, f: &EventFilter) -> Result<Vec<EventView>> {
    Ok(crate::db::events::list(conn, f)?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// How many events match `f` (its limit and offset aside).
pub fn event_count(conn: &mut SqliteConnection, f: &EventFilter) -> Result<i64> {
    crate::db::events::count(conn, f)
}

/// Calls `each` with the events `f` selects, oldest first: the newest `f.limit` after
/// `f.offset` at once, or, without a limit, the whole log a page of [`DEVICE_PAGE`] at a
/// time in memory bounded by the page.
pub fn each_event_page(
    conn: &mut SqliteConnection,
    f: &EventFilter,
    mut each: impl FnMut(&[EventView]) -> Result<()>,
) -> Result<()> {
    if f.limit.is_some() || f.offset > 0 {
        let rows = events(conn, f)?;
        return if rows.is_empty() { Ok(()) } else { each(&rows) };
    }
    let mut after = 0;
    loop {
        let page = crate::db::events::page_after(conn, f, after, DEVICE_PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.id;
        let rows: Vec<EventView> = page.into_iter().map(Into::into).collect();
        each(&rows)?;
    }
}

/// Checks the event log's hash chain.
pub fn verify_events(conn: &mut SqliteConnection) -> Result<EventVerification> {
    crate::db::events::verify(conn)
}

/// An event as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub id: i64,
    pub time: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub virtual_account: Option<String>,
    pub product_instance: Option<String>,
    pub license: Option<String>,
    pub message: String,
    pub user: String,
    pub hash: String,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> Self {
        EventView {
            id: e.id,
            time: clock::format(e.at),
            kind: e.kind,
            virtual_account: e.va_name,
            product_instance: e.pi_uuid,
            license: e.license_tag,
            message: e.message,
            user: e.actor,
            hash: e.hash,
        }
    }
}

pub fn events_table(rows: &[EventView]) -> Table {
    let mut t = Table::new(&[
        "ID",
        "Time",
        "User",
        "Type",
        "Virtual Account",
        "Product Instance",
        "License",
        "Message",
    ]);
    for e in rows {
        t.push(vec![
            e.id.to_string(),
            e.time.clone(),
            e.user.clone(),
            e.kind.clone(),
            e.virtual_account.clone().unwrap_or_default(),
            e.product_instance.clone().unwrap_or_default(),
            e.license.clone().unwrap_or_default(),
            e.message.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting_and_ends_lines_with_crlf() {
        let mut t = Table::new(&["Name", "Note"]);
        t.push(vec!["Lab, West".into(), "say \"hi\"".into()]);
        t.push(vec!["Zürich 東京".into(), "two\nlines".into()]);
        t.push(vec!["plain".into(), String::new()]);
        assert_eq!(
            t.csv().unwrap(),
            "Name,Note\r\n\"Lab, West\",\"say \"\"hi\"\"\"\r\nZürich 東京,\"two\nlines\"\r\nplain,\r\n"
        );
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_are_neutralised() {
        let mut t = Table::new(&["Name", "Balance"]);
        for name in [
            "=HYPERLINK(\"x\")",
            "+1+2",
            "-2+3+cmd|' /C calc'!A0",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            t.push(vec![name.into(), "-50".into()]);
        }
        t.push(vec!["router-1".into(), "12.5".into()]);
        let csv = t.csv().unwrap();
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        for row in &rows[..6] {
            assert!(row[0].starts_with('\''), "{:?}", &row[0]);
            assert_eq!(&row[1], "-50", "numbers stay numbers");
        }
        assert_eq!(&rows[6][0], "router-1");
        assert_eq!(&rows[6][1], "12.5");
    }

    #[test]
    fn text_aligns_all_but_the_last_column() {
        let mut t = Table::new(&["A", "Message"]);
        t.push(vec!["long value".into(), "m1".into()]);
        t.push(vec!["x".into(), "m2".into()]);
        assert_eq!(
            t.text(),
            "A           MESSAGE\nlong value  m1\nx           m2\n"
        );
    }
}
