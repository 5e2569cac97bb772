//! Sync by file: the status, downloading a sync request, uploading a response, previewing
//! what it changes and applying it.

use crate::states::plural;
use actix_web::web;
use actix_web::HttpResponse;
use maud::{html, Markup};

use super::frame::{self, csrf_field, or_dash, Flash};
use super::{after, ok_page, ops, session_of};
use crate::error::{Error, Result};
use crate::http::operator::{Caller, FormData};
use crate::http::AppState;
use crate::operators::{Principal, Role};
use crate::report;
use crate::sync::apply::ImportOutcome;

async fn render(
    state: &AppState,
    who: &Principal,
    flash: Option<Flash>,
    extra: Option<Markup>,
) -> Result<HttpResponse> {
    let s = state.clone();
    let st = crate::http::blocking(move || crate::sync::status(&s.store, &s.config, s.clock.now()))
        .await?;
    let facts = [
        ("State", None, st.state.as_str().to_string()),
        ("Last sync", None, or_dash(st.last_sync.as_deref())),
        ("Next sync due", None, or_dash(st.next_sync_due.as_deref())),
        ("Removal at", None, or_dash(st.removal_at.as_deref())),
        (
            "Days left before removal",
            Some("sync-days-left"),
            st.days_left_before_removal
                .map(|d| d.to_string())
                .unwrap_or_else(|| "—".into()),
        ),
        (
            "Waiting to be sent",
            None,
            format!(
                "{}, {}, {}",
                plural(
                    st.pending_product_instances,
                    "product instance",
                    "product instances"
                ),
                plural(st.pending_events, "event", "events"),
                plural(
                    st.pending_export_requests,
                    "export request",
                    "export requests"
                )
            ),
        ),
    ];
    let body = html! {
        (frame::facts("sync-status", &facts))
        @if let Some(extra) = extra { (extra) }
        @if who.role >= Role::Operator {
            h2 { "1. Download the sync file" }
            p { "Carry it to a machine that reaches the cloud and upload it there." }
            form method="post" action="/console/sync/file" class="box" id="sync-file-form" {
                (csrf_field(who))
                label {
                    input type="checkbox" name="full" value="true";
                    " Full (everything, not only what changed)"
                }
                p { button type="submit" id="download-sync-file" { "Download sync file" } }
            }
            h2 { "2. Upload the response" }
            p { "You will see what it changes before it is applied." }
            form method="post" action="/console/sync/preview" enctype="multipart/form-data"
                class="box" id="sync-upload-form" {
                (csrf_field(who))
                label for="response" { "Sync response file (.zip)" }
                input type="file" id="response" name="response" accept=".zip,application/zip";
                p { button type="submit" id="preview-response" { "Preview" } }
            }
        }
    };
    Ok(ok_page("Sync", who, flash, body))
}

pub(super) async fn page(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    render(&state, &who, None, None).await
}

pub(super) async fn file(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let full = form.field("full") == Some("true");
    match ops::make_sync_file(&state, full).await {
        Ok((bytes, summary)) => Ok(ops::zip(
            bytes,
            &format!("sync-request-{}.zip", summary.sequence),
        )),
        Err(e) => after(Err(e), |f| render(&state, &who, f, None)).await,
    }
}

/// What a sync response changes (or changed): its message, the license changes as a table
/// and the rest as the same lines the CLI prints.
fn outcome(o: &ImportOutcome) -> Markup {
    html! {
        div id="sync-outcome" {
            p { (o.message) }
            (frame::table(&report::license_changes_table(&o.license_changes), "license-changes", None))
            @for line in o.notes() { p { (line) } }
        }
    }
}

pub(super) async fn preview(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let checked = async {
        let up = form.file("response")?;
        let o = ops::import_sync_file(&state, up.data.clone(), true).await?;
        Ok::<_, Error>((up.filename.clone(), up.data.clone(), o))
    }
    .await;
    match checked {
        Ok((filename, data, o)) => {
            let id = state.console.keep(session_of(&who), &filename, data)?;
            let extra = html! {
                h2 { "Preview of " (filename) }
                (outcome(&o))
                form method="post" action="/console/sync/apply" class="box" id="apply-form" {
                    (csrf_field(&who))
                    input type="hidden" name="upload" value=(id);
                    p {
                        button type="submit" id="apply-response" { "Apply" } " "
                        a href="/console/sync" { "Cancel" }
                    }
                }
            };
            let flash = Flash::Ok(format!(
                "{filename} is a valid sync response for this satellite. Nothing is changed \
                 until you apply it."
            ));
            render(&state, &who, Some(flash), Some(extra)).await
        }
        Err(e) => after(Err(e), |f| render(&state, &who, f, None)).await,
    }
}

pub(super) async fn apply(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let applied = async {
        let id = form.required("upload")?;
        let (filename, data) = state.console.take(id, session_of(&who)).ok_or_else(|| {
            Error::invalid("the uploaded response is no longer waiting: upload it again")
        })?;
        let o = ops::import_sync_file(&state, data, false).await?;
        Ok::<_, Error>((filename, o))
    }
    .await;
    match applied {
        Ok((filename, o)) => {
            let flash = Flash::Ok(format!("{filename} applied: {}", o.message));
            render(&state, &who, Some(flash), Some(outcome(&o))).await
        }
        Err(e) => after(Err(e), |f| render(&state, &who, f, None)).await,
    }
}
