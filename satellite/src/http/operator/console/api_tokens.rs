//! The operator's API tokens (an admin sees everyone's): the list, creating one (its
//! secret shown once), revoking.

use actix_web::web::{self, Path};
use actix_web::HttpResponse;
use maud::{html, Markup};

use super::frame::{self, button, csrf_field, Flash};
use super::{after, number_field, ok_page, ops, secret_block};
use crate::error::Result;
use crate::http::operator::{act, db, Caller, FormData};
use crate::http::AppState;
use crate::operators::{self, Principal};
use crate::report;
use crate::states::TokenState;

async fn render(
    state: &AppState,
    who: &Principal,
    flash: Option<Flash>,
    extra: Option<Markup>,
) -> Result<HttpResponse> {
    let (of, now) = (ops::token_scope(who), state.clock.now());
    let list = db(state, move |c| operators::list_api_tokens(c, of, now)).await?;
    let actions = |i: usize| {
        let v = &list[i];
        html! {
            @if v.state == TokenState::Active {
                (button(who, &format!("/console/api-tokens/{}/revoke", v.id), "Revoke", "danger"))
            }
        }
    };
    let body = html! {
        p {
            "Scripts send an API token as " code { "Authorization: Bearer TOKEN" } " to "
            code { "/api/v1/operator/..." } "; it acts with your role (" (who.role) ")."
        }
        @if let Some(extra) = extra { (extra) }
        form method="post" action="/console/api-tokens" class="box" id="api-token-form" {
            (csrf_field(who))
            label for="t-desc" { "Description" }
            input type="text" id="t-desc" name="description";
            label for="t-days" { "Expires after (days; empty: never)" }
            input type="number" id="t-days" name="days" min="1" max="3650";
            p { button type="submit" id="create-api-token" { "Create API token" } }
        }
        (frame::table(&report::api_tokens_table(&list), "api-tokens", Some(&actions)))
    };
    Ok(ok_page("API tokens", who, flash, body))
}

pub(super) async fn page(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    render(&state, &who, None, None).await
}

pub(super) async fn create(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let name = who.username.clone();
    let made = async {
        let days = number_field::<u32>(&form, "days", "days")?;
        let desc = form.field("description").unwrap_or("").trim().to_string();
        act(&state, &who, move |c, now, actor| {
            operators::create_api_token(c, &name, &desc, days, now, actor)
        })
        .await
    }
    .await;
    match made {
        Ok(t) => {
            let flash = Flash::Ok(format!("API token {} created.", t.info.id));
            render(&state, &who, Some(flash), Some(secret_block(&t.token))).await
        }
        Err(e) => after(Err(e), |f| render(&state, &who, f, None)).await,
    }
}

pub(super) async fn revoke(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let (id, of) = (id.into_inner(), ops::token_scope(&who));
    let r = act(&state, &who, move |c, now, actor| {
        operators::revoke_api_token(c, id, of, now, actor)
    })
    .await
    .map(|()| format!("API token {id} revoked."));
    after(r, |f| render(&state, &who, f, None)).await
}
