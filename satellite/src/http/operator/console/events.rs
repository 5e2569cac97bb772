//! The event log, filtered.

use actix_web::web::{self, Query};
use actix_web::HttpResponse;
use maud::html;
use serde::Deserialize;

use super::frame;
use super::ok_page;
use crate::error::Result;
use crate::http::operator::{db, Caller};
use crate::http::AppState;
use crate::report;

/// Events a page shows, newest first; the CSV export has them all.
const PER_PAGE: i64 = 100;

#[derive(Debug, Deserialize, Default)]
pub(super) struct EventQuery {
    va: Option<String>,
    pi: Option<String>,
    license: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// The page, from 1 (the newest events).
    page: Option<i64>,
}

pub(super) async fn page(
    state: web::Data<AppState>,
    Caller(who): Caller,
    q: Query<EventQuery>,
) -> Result<HttpResponse> {
    let q = q.into_inner();
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let page_no = q.page.unwrap_or(1).max(1);
    let f = report::EventFilter {
        va_name: nonempty(&q.va),
        pi_uuid: nonempty(&q.pi),
        license_tag: nonempty(&q.license),
        kind: nonempty(&q.kind),
        limit: Some(PER_PAGE),
        offset: (page_no - 1).saturating_mul(PER_PAGE),
        ..Default::default()
    };
    let (mut list, total) = db(&state, move |c| {
        Ok((report::events(c, &f)?, report::event_count(c, &f)?))
    })
    .await?;
    // Newest first on screen.
    list.reverse();
    let filters = [
        ("va", &q.va),
        ("pi", &q.pi),
        ("license", &q.license),
        ("type", &q.kind),
    ];
    let pager = frame::pager(
        "/console/events",
        &filters,
        page_no,
        frame::pages(total, PER_PAGE),
        ("← Newer", "Older →"),
    );
    let fields = [
        ("va", "Virtual account", &q.va),
        ("pi", "Product instance (PI id)", &q.pi),
        ("license", "License tag", &q.license),
        ("type", "Event type", &q.kind),
    ];
    let body = html! {
        form method="get" action="/console/events" class="box" {
            @for (id, label, value) in fields {
                label for=(format!("e-{id}")) { (label) }
                input type="text" id=(format!("e-{id}")) name=(id) value=(value.as_deref().unwrap_or(""));
            }
            p {
                button type="submit" { "Filter" } " "
                a href="/api/v1/operator/events?format=csv" { "Export all as CSV" }
            }
        }
        p.summary { (report::plural(total, "event", "events")) " matching, newest first." }
        (frame::table(&report::events_table(&list), "events", None))
        (pager)
    };
    Ok(ok_page("Event log", &who, None, body))
}
