//! The dashboard (registration, sync deadline, alerts at a glance) and the virtual
//! accounts' license pools.

use actix_web::web;
use actix_web::HttpResponse;
use maud::html;

use super::frame::{self, or_dash};
use super::ok_page;
use crate::alerts;
use crate::catalogue::Severity;
use crate::error::Result;
use crate::http::operator::{db, Caller};
use crate::http::AppState;
use crate::report;

pub(super) async fn page(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    let s = state.clone();
    let (st, sync, alerts) = crate::http::blocking(move || {
        let st = crate::status::status(&s.store, s.clock.as_ref())?;
        let now = s.clock.now();
        let sync = crate::sync::status(&s.store, &s.config, now)?;
        let filter = alerts::Filter {
            state: Some("active".into()),
            ..Default::default()
        };
        let alerts = alerts::list(&mut *s.store.conn()?, &filter, now)?;
        Ok((st, sync, alerts))
    })
    .await?;
    let count = |sev: Severity| alerts.iter().filter(|a| a.severity == sev).count();
    let days_left = sync
        .days_left_before_removal
        .map(|d| d.to_string())
        .unwrap_or_else(|| "—".into());
    let cards = [
        ("registration", "Registration", st.state.to_string()),
        (
            "sync-due",
            "Next sync due",
            or_dash(sync.next_sync_due.as_deref()),
        ),
        ("days-left", "Days left before removal", days_left),
        (
            "alerts-major",
            "Major alerts",
            count(Severity::Major).to_string(),
        ),
        (
            "alerts-minor",
            "Minor alerts",
            count(Severity::Minor).to_string(),
        ),
        (
            "devices",
            "Product instances",
            st.counts.product_instances.to_string(),
        ),
    ];
    let vas: Vec<&str> = st
        .virtual_accounts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    let about = [
        ("Name", None, st.name.clone()),
        ("Smart account", None, or_dash(st.account.as_deref())),
        ("Virtual accounts", None, vas.join(", ")),
        ("Last sync", None, or_dash(sync.last_sync.as_deref())),
        ("Removal at", None, or_dash(sync.removal_at.as_deref())),
        ("Version", None, st.version.to_string()),
        ("Now", None, st.now.clone()),
    ];
    let body = html! {
        div class="cards" {
            @for (id, label, value) in &cards {
                div class="card" id=(id) {
                    div class="label" { (label) }
                    div class="n" { (value) }
                }
            }
        }
        h2 { "This satellite" }
        (frame::facts("about", &about))
        @if !alerts.is_empty() {
            h2 { "Active alerts" }
            (frame::table(&report::alerts_table(&alerts), "dashboard-alerts", None))
        }
    };
    Ok(ok_page("Dashboard", &who, None, body))
}

pub(super) async fn accounts(
    state: web::Data<AppState>,
    Caller(who): Caller,
) -> Result<HttpResponse> {
    let now = state.clock.now();
    let rows = db(&state, move |c| {
        report::licenses(c, now, &report::LicenseFilter::default())
    })
    .await?;
    let mut vas: Vec<&str> = rows.iter().map(|r| r.virtual_account.as_str()).collect();
    vas.dedup();
    let body = html! {
        p { a href="/api/v1/operator/licenses?format=csv" id="licenses-csv" { "Export all as CSV" } }
        @if vas.is_empty() {
            p class="empty" { "No licenses yet: register the satellite and sync." }
        }
        @for va in &vas {
            @let mine: Vec<report::LicenseRow> = rows
                .iter()
                .filter(|r| r.virtual_account == *va)
                .cloned()
                .collect();
            h2 { (va) }
            (frame::table(&report::licenses_table(&mine), &format!("va-{va}"), None))
        }
    };
    Ok(ok_page("Virtual accounts", &who, None, body))
}
