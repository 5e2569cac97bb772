//! Product instances: the filtered list, removing one, allowing one to register again
//! without its key.

use actix_web::web::{self, Path, Query};
use actix_web::HttpResponse;
use maud::html;
use serde::Deserialize;

use super::frame::{self, button, Flash};
use super::{after, ok_page, outcome};
use crate::error::Result;
use crate::http::operator::{act, db, Caller};
use crate::http::AppState;
use crate::operators::{Principal, Role};
use crate::report;
use crate::states::{DeviceSort, PiState};

#[derive(Debug, Deserialize, Default, Clone)]
pub(super) struct DeviceQuery {
    va: Option<String>,
    name: Option<String>,
    status: Option<String>,
    /// The page, from 1.
    page: Option<i64>,
    sort: Option<String>,
}

/// Product instances a page of the console shows.
const PER_PAGE: i64 = 100;

async fn render(
    state: &AppState,
    who: &Principal,
    q: DeviceQuery,
    flash: Option<Flash>,
) -> Result<HttpResponse> {
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    // No status lists every state; a status the form does not offer is refused, as the API
    // and the CLI refuse it.
    let chosen = nonempty(&q.status)
        .map(|s| PiState::parse_named("product instance status", &s))
        .transpose();
    let sort = nonempty(&q.sort)
        .map(|s| DeviceSort::parse_named("sort", &s))
        .transpose();
    let page_no = q.page.unwrap_or(1).max(1);
    let listed = match (chosen, sort) {
        (Ok(pi_state), Ok(sort)) => {
            let f = report::DeviceFilter {
                vas: nonempty(&q.va).into_iter().collect(),
                product_types: Vec::new(),
                name: nonempty(&q.name),
                state: pi_state,
            };
            let page = report::DevicePage {
                sort: sort.unwrap_or(DeviceSort::Registered),
                offset: (page_no - 1).saturating_mul(PER_PAGE),
                limit: PER_PAGE,
                after: None,
            };
            db(state, move |c| {
                Ok((report::devices(c, &f, page)?, report::device_counts(c, &f)?))
            })
            .await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let (rows, counts, flash) = match listed {
        Ok((r, c)) => (r, c, flash),
        Err(e) => (
            Vec::new(),
            report::DeviceCounts::default(),
            Some(outcome(Err(e)).1),
        ),
    };
    let filters = [
        ("va", &q.va),
        ("name", &q.name),
        ("status", &q.status),
        ("sort", &q.sort),
    ];
    let pager = frame::pager(
        "/console/devices",
        &filters,
        page_no,
        frame::pages(counts.total, PER_PAGE),
        ("← Previous", "Next →"),
    );
    let chosen = q.status.as_deref().and_then(PiState::parse);
    let actions = |i: usize| {
        let d = &rows[i];
        html! {
            @if who.role >= Role::Operator && d.state != PiState::Removed {
                (button(
                    who,
                    &format!("/console/devices/{}/allow-reregister", d.pi_id),
                    "Allow re-registration (24 h)",
                    "",
                ))
                (button(who, &format!("/console/devices/{}/remove", d.pi_id), "Remove", "danger"))
            }
        }
    };
    let body = html! {
        form method="get" action="/console/devices" class="box" {
            label for="f-va" { "Virtual account" }
            input type="text" id="f-va" name="va" value=(q.va.as_deref().unwrap_or(""));
            label for="f-name" { "Name contains" }
            input type="text" id="f-name" name="name" value=(q.name.as_deref().unwrap_or(""));
            label for="f-status" { "Status" }
            select id="f-status" name="status" {
                option value="" { "any" }
                @for s in [PiState::Active, PiState::Removed] {
                    option selected[chosen == Some(s)] { (s.as_str()) }
                }
            }
            label for="f-sort" { "Sort by" }
            select id="f-sort" name="sort" {
                @for s in DeviceSort::ALL {
                    option selected[q.sort.as_deref() == Some(s.as_str())] { (s.as_str()) }
                }
            }
            p {
                button type="submit" { "Filter" } " "
                a href="/api/v1/operator/devices?format=csv" { "Export all as CSV" }
            }
        }
        p.summary { (counts.summary()) }
        (frame::table(&report::devices_table(&rows), "devices", Some(&actions)))
        (pager)
    };
    Ok(ok_page("Product instances", who, flash, body))
}

pub(super) async fn page(
    state: web::Data<AppState>,
    Caller(who): Caller,
    q: Query<DeviceQuery>,
) -> Result<HttpResponse> {
    render(&state, &who, q.into_inner(), None).await
}

/// A device action of the product-instance page: does it, then shows the page with what it
/// did (`say`) or why not.
async fn action<F>(
    state: &AppState,
    who: &Principal,
    f: F,
    say: impl FnOnce(&crate::devices::DeviceView) -> String,
) -> Result<HttpResponse>
where
    F: FnOnce(&mut diesel::SqliteConnection, i64, &str) -> Result<crate::devices::DeviceView>
        + Send
        + 'static,
{
    let r = act(state, who, f).await.map(|v| say(&v));
    after(r, |f| render(state, who, DeviceQuery::default(), f)).await
}

pub(super) async fn remove(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<String>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    action(
        &state,
        &who,
        move |c, now, actor| crate::devices::remove(c, &id, now, actor),
        |v| {
            format!(
                "Product instance {} ({}) removed; its licenses are released.",
                v.name, v.pi_id
            )
        },
    )
    .await
}

/// Lets a device that lost its key register again without it, for a day.
pub(super) async fn allow_reregister(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<String>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let hours = crate::devices::REREGISTER_DEFAULT_HOURS;
    action(
        &state,
        &who,
        move |c, now, actor| crate::devices::allow_reregister(c, &id, hours, now, actor),
        |v| {
            format!(
                "Product instance {} ({}) may register again without its current key for \
                 {hours} hours.",
                v.name, v.pi_id
            )
        },
    )
    .await
}
