//! Alerts: the list by state, dismissing one, hiding one until later.

use actix_web::web::{self, Path, Query};
use actix_web::HttpResponse;
use maud::html;
use serde::Deserialize;

use super::frame::{self, button, Flash};
use super::{after, ok_page};
use crate::alerts;
use crate::error::Result;
use crate::http::operator::{act, db, Caller};
use crate::http::AppState;
use crate::operators::{Principal, Role};
use crate::report;

#[derive(Debug, Deserialize, Default)]
pub(super) struct AlertQuery {
    state: Option<String>,
}

async fn render(
    state: &AppState,
    who: &Principal,
    which: Option<String>,
    flash: Option<Flash>,
) -> Result<HttpResponse> {
    // No state shows the active alerts; an unknown one is refused (as by the API and the
    // CLI), with the active ones below.
    let (which, flash) = match which.filter(|s| !s.trim().is_empty()) {
        Some(s) if !alerts::STATES.contains(&s.as_str()) => {
            let e = crate::error::Error::invalid(format!(
                "unknown alert state {s:?}: use {}",
                crate::states::choices(alerts::STATES.iter().copied())
            ));
            ("active".to_string(), Some(super::outcome(Err(e)).1))
        }
        Some(s) => (s, flash),
        None => ("active".to_string(), flash),
    };
    let now = state.clock.now();
    let f = alerts::Filter {
        state: Some(which.clone()),
        ..Default::default()
    };
    let list = db(state, move |c| alerts::list(c, &f, now)).await?;
    let actions = |i: usize| {
        let a = &list[i];
        html! {
            @if who.role >= Role::Operator {
                @if a.actions.contains(&"dismiss") {
                    (button(who, &format!("/console/alerts/{}/dismiss", a.id), "Dismiss", ""))
                }
                @if a.actions.contains(&"remind-later") {
                    (button(
                        who,
                        &format!("/console/alerts/{}/remind-later", a.id),
                        "Remind later",
                        "",
                    ))
                }
            }
        }
    };
    let body = html! {
        p {
            "Show: "
            @for s in alerts::STATES {
                @if *s == which {
                    strong { (s) }
                } @else {
                    a href=(format!("/console/alerts?state={s}")) { (s) }
                }
                " "
            }
            "· "
            a href="/api/v1/operator/alerts?state=all&format=csv" { "Export as CSV" }
        }
        (frame::table(&report::alerts_table(&list), "alerts", Some(&actions)))
    };
    Ok(ok_page("Alerts", who, flash, body))
}

pub(super) async fn page(
    state: web::Data<AppState>,
    Caller(who): Caller,
    q: Query<AlertQuery>,
) -> Result<HttpResponse> {
    render(&state, &who, q.into_inner().state, None).await
}

pub(super) async fn dismiss(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let r = act(&state, &who, move |c, now, actor| {
        alerts::dismiss(c, id, now, actor)
    })
    .await
    .map(|a| format!("Alert {id} ({}) dismissed.", a.kind));
    after(r, |f| render(&state, &who, None, f)).await
}

pub(super) async fn remind(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let r = act(&state, &who, move |c, now, actor| {
        alerts::remind_later(c, id, now, actor)
    })
    .await
    .map(|a| {
        format!(
            "Alert {id} ({}) hidden until {}.",
            a.kind,
            a.remind_at.unwrap_or_default()
        )
    });
    after(r, |f| render(&state, &who, None, f)).await
}
