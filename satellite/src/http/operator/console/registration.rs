//! Registration by file: the satellite's state, downloading the registration file,
//! uploading the cloud's authorization.

use actix_web::web;
use actix_web::HttpResponse;
use maud::html;

use super::frame::{self, csrf_field, or_dash, Flash};
use super::{after, ok_page, ops};
use crate::error::Result;
use crate::http::operator::{Caller, FormData};
use crate::http::AppState;
use crate::operators::{Principal, Role};

async fn render(state: &AppState, who: &Principal, flash: Option<Flash>) -> Result<HttpResponse> {
    let s = state.clone();
    let st =
        crate::http::blocking(move || crate::status::status(&s.store, s.clock.as_ref())).await?;
    let facts = [
        (
            "State",
            Some("registration-state"),
            st.state.as_str().to_string(),
        ),
        ("Satellite id", None, st.satellite_id.clone()),
        ("Name", None, st.name.clone()),
        ("Smart account", None, or_dash(st.account.as_deref())),
        ("Registered at", None, or_dash(st.registered_at.as_deref())),
    ];
    let body = html! {
        (frame::facts("registration-status", &facts))
        @if who.role >= Role::Admin {
            h2 { "1. Download the registration file" }
            p { "Upload it to the cloud (\"New satellite\"); it answers with an authorization file." }
            form method="post" action="/console/registration/file" class="box" {
                (csrf_field(who))
                button type="submit" id="download-registration-file" { "Download registration file" }
            }
            h2 { "2. Upload the authorization file" }
            form method="post" action="/console/registration/import" enctype="multipart/form-data"
                class="box" id="authorization-form" {
                (csrf_field(who))
                label for="authorization" { "Authorization file (.zip)" }
                input type="file" id="authorization" name="authorization" accept=".zip,application/zip";
                label for="cloud-ca-fingerprint" {
                    "Cloud CA fingerprint (SHA-256, from the cloud's operator; needed unless "
                    "[cloud] ca_file is set or a CA is pinned)"
                }
                input type="text" id="cloud-ca-fingerprint" name="cloud_ca_fingerprint"
                    placeholder="SHA256:AB:CD:…" autocomplete="off" spellcheck="false";
                p { button type="submit" id="upload-authorization" { "Upload" } }
            }
        }
    };
    Ok(ok_page("Registration", who, flash, body))
}

pub(super) async fn page(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    render(&state, &who, None).await
}

pub(super) async fn file(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    match ops::make_registration_file(&state).await {
        Ok((bytes, _)) => Ok(ops::zip(bytes, "registration-request.zip")),
        Err(e) => after(Err(e), |f| render(&state, &who, f)).await,
    }
}

pub(super) async fn import(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let r = async {
        let up = form.file("authorization")?;
        let fingerprint = form.field("cloud_ca_fingerprint");
        let r = ops::import_registration_file(&state, up.data.clone(), fingerprint).await?;
        Ok(r.summary())
    }
    .await;
    after(r, |f| render(&state, &who, f)).await
}
