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

/// Events shown at most; the CSV export has them all.
const SHOWN: i64 = 500;

#[derive(Debug, Deserialize, Default)]
pub(super) struct EventQuery {
    va: Option<String>,
    pi: Option<String>,
    license: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub(super) async fn page(
    state: web::Data<AppState>,
    Caller(who): Caller,
    q: Query<EventQuery>,
) -> Result<HttpResponse> {
    let q = q.into_inner();
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let f = report::EventFilter {
        va_name: nonempty(&q.va),
        pi_uuid: nonempty(&q.pi),
        license_tag: nonempty(&q.license),
        kind: nonempty(&q.kind),
        limit: Some(SHOWN),
        ..Default::default()
    };
    let list = db(&state, move |c| report::events(c, &f)).await?;
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
        p { "The latest " (list.len()) " event(s) matching." }
        (frame::table(&report::events_table(&list), "events", None))
    };
    Ok(ok_page("Event log", &who, None, body))
}
