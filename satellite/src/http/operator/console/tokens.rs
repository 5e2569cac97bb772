//! Registration tokens: the list, creating one (its secret shown once), showing, revoking
//! and removing.

use actix_web::web::{self, Path};
use actix_web::HttpResponse;
use maud::{html, Markup};

use super::frame::{self, button, csrf_field, Flash};
use super::{after, number_field, ok_page, ops, secret_block};
use crate::error::{Error, Result};
use crate::http::operator::ops::NewTokenBody;
use crate::http::operator::{act, db, Caller, FormData};
use crate::http::AppState;
use crate::operators::{Principal, Role};
use crate::report;
use crate::states::TokenState;

pub(super) async fn render(
    state: &AppState,
    who: &Principal,
    flash: Option<Flash>,
    extra: Option<Markup>,
) -> Result<HttpResponse> {
    let now = state.clock.now();
    let (list, vas) = db(state, move |c| {
        Ok((
            crate::tokens::list(c, now)?,
            crate::tokens::virtual_accounts(c)?,
        ))
    })
    .await?;
    let actions = |i: usize| {
        let v = &list[i];
        html! {
            @if who.role >= Role::Operator {
                a href=(format!("/console/tokens/{}", v.id)) { "Show" } " "
                a href=(format!("/console/tokens/{}/download", v.id)) { "Download" } " "
                @if v.status == TokenState::Revoked {
                    (button(who, &format!("/console/tokens/{}/remove", v.id), "Remove", "danger"))
                } @else {
                    (button(who, &format!("/console/tokens/{}/revoke", v.id), "Revoke", "danger"))
                }
            }
        }
    };
    let body = html! {
        @if let Some(extra) = extra { (extra) }
        @if who.role >= Role::Operator {
            form method="post" action="/console/tokens" class="box" id="token-form" {
                (csrf_field(who))
                label for="va" { "Virtual account" }
                select id="va" name="virtual_account" {
                    @for n in &vas { option { (n) } }
                }
                label for="description" { "Description" }
                input type="text" id="description" name="description";
                label for="days" { "Expires after (days, 1 to 365)" }
                input type="number" id="days" name="days" value="30" min="1" max="365";
                label for="max_uses" { "Maximum uses (empty: no limit)" }
                input type="number" id="max_uses" name="max_uses" min="1";
                label {
                    input type="checkbox" name="export_controlled" value="true";
                    " Allow export-controlled functionality"
                }
                p { button type="submit" id="create-token" { "Create token" } }
            }
        }
        h2 { "Tokens" }
        (frame::table(&report::tokens_table(&list), "tokens", Some(&actions)))
    };
    Ok(ok_page("Registration tokens", who, flash, body))
}

pub(super) async fn page(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    render(&state, &who, None, None).await
}

pub(super) async fn create(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let made = async {
        let body = NewTokenBody {
            virtual_account: form.required("virtual_account")?.to_string(),
            days: number_field(&form, "days", "days")?
                .ok_or_else(|| Error::invalid("days is missing"))?,
            max_uses: number_field(&form, "max_uses", "the maximum number of uses")?,
            export_controlled: form.field("export_controlled") == Some("true"),
            description: form.field("description").unwrap_or("").trim().to_string(),
        };
        ops::create_token(&state, &who, body).await
    }
    .await;
    match made {
        Ok(v) => {
            let token = v["token"].as_str().unwrap_or_default().to_string();
            let flash = Flash::Ok(format!(
                "Token {} created for {}.",
                v["id"],
                v["virtual_account"].as_str().unwrap_or_default()
            ));
            render(&state, &who, Some(flash), Some(secret_block(&token))).await
        }
        Err(e) => after(Err(e), |f| render(&state, &who, f, None)).await,
    }
}

pub(super) async fn show(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let (token, v) = ops::show_token(&state, id).await?;
    let body = html! {
        p {
            "Token " (v.id) " of " (v.virtual_account) " (" (v.status) "), expires "
            (v.expires_at) "."
        }
        (secret_block(&token))
        p {
            a href=(format!("/console/tokens/{}/download", v.id)) { "Download as a text file" }
            " · "
            a href="/console/tokens" { "All tokens" }
        }
    };
    Ok(ok_page("Registration token", &who, None, body))
}

pub(super) async fn revoke(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let r = act(&state, &who, move |c, now, actor| {
        crate::tokens::revoke(c, id, now, actor)
    })
    .await
    .map(|v| format!("Token {id} ({}...) revoked.", v.hint));
    after(r, |f| render(&state, &who, f, None)).await
}

pub(super) async fn remove(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let r = act(&state, &who, move |c, now, actor| {
        crate::tokens::remove(c, id, now, actor)
    })
    .await
    .map(|()| format!("Token {id} removed."));
    after(r, |f| render(&state, &who, f, None)).await
}
