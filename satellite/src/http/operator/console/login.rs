//! Logging in and out, and the operator's own account (password change).

use actix_web::cookie::{time::Duration as CookieAge, Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Query};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use maud::html;
use serde::Deserialize;

use super::frame::{self, csrf_field, Flash};
use super::{ops, outcome, safe_next, session_of};
use crate::error::{Error, Result};
use crate::http::operator::{db, session_cookie, Caller, FormData};
use crate::http::AppState;
use crate::operators::{self, Principal};

#[derive(Debug, Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

fn form(next: &str, status: StatusCode, flash: Option<Flash>) -> HttpResponse {
    let body = html! {
        form method="post" action="/console/login" class="box" id="login" {
            input type="hidden" name="next" value=(next);
            label for="username" { "User name" }
            input type="text" id="username" name="username" autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input type="password" id="password" name="password" autocomplete="current-password" required;
            p { button type="submit" id="login-button" { "Log in" } }
        }
    };
    frame::page(status, "Log in", None, flash, body)
}

pub(super) async fn page(q: Query<NextQuery>) -> HttpResponse {
    form(
        q.next.as_deref().unwrap_or("/console/"),
        StatusCode::OK,
        None,
    )
}

pub(super) async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    form_data: FormData,
) -> HttpResponse {
    let username = form_data.field("username").unwrap_or("").trim().to_string();
    let password = form_data.field("password").unwrap_or("").to_string();
    let next = form_data.field("next").unwrap_or("/console/").to_string();
    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    // A login form posted from another site (login CSRF) is refused.
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site");
    if cross_site {
        let e = Error::Forbidden("log in from the satellite's own login page".into());
        return form(&next, e.status_code(), Some(Flash::Error(e.to_string())));
    }
    let keys = vec![format!("user:{username}"), format!("ip:{ip}")];
    let now = state.clock.now();
    if let Err(e) = state.console.logins.attempt(&keys, now) {
        tracing::warn!(%username, %ip, "login refused: too many failed attempts");
        return form(&next, e.status_code(), Some(Flash::Error(e.to_string())));
    }
    let name = username.clone();
    let session = match db(&state, move |c| {
        operators::authenticate(c, &name, &password)
    })
    .await
    {
        Ok(row) => {
            state
                .writer
                .write(move |c| operators::open_session(c, &row, now))
                .await
        }
        Err(e) => Err(e),
    };
    match session {
        Ok(s) => {
            state.console.logins.succeeded(&keys);
            tracing::info!(username = %s.principal.username, %ip, "operator logged in");
            let cookie = Cookie::build(session_cookie(state.config.server.plain_http), s.secret)
                .path("/")
                .http_only(true)
                .secure(!state.config.server.plain_http)
                .same_site(SameSite::Strict)
                .max_age(CookieAge::seconds(operators::SESSION_SECONDS))
                .finish();
            let to = safe_next(&next).to_string();
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, to))
                .cookie(cookie)
                .finish()
        }
        Err(e) => {
            if matches!(e, Error::Unauthorized(_)) {
                tracing::warn!(%username, %ip, "failed login");
            }
            let (status, flash) = outcome(Err(e));
            form(&next, status, Some(flash))
        }
    }
}

pub(super) async fn logout(
    state: web::Data<AppState>,
    Caller(who): Caller,
) -> Result<HttpResponse> {
    let id = session_of(&who).to_string();
    state
        .writer
        .write(move |c| operators::logout(c, &id))
        .await?;
    let mut gone = Cookie::build(session_cookie(state.config.server.plain_http), "")
        .path("/")
        .http_only(true)
        .secure(!state.config.server.plain_http)
        .same_site(SameSite::Strict)
        .finish();
    gone.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/login"))
        .cookie(gone)
        .finish())
}

fn account_page(who: &Principal, status: StatusCode, flash: Option<Flash>) -> HttpResponse {
    let body = html! {
        p { "Signed in as " (who.username) " with the role " (who.role) "." }
        h2 { "Change your password" }
        form method="post" action="/console/account/password" class="box" id="password-form" {
            (csrf_field(who))
            label for="current" { "Current password" }
            input type="password" id="current" name="current_password" autocomplete="current-password" required;
            label for="new" { "New password (10 characters or more)" }
            input type="password" id="new" name="new_password" autocomplete="new-password" required;
            p { button type="submit" id="change-password" { "Change password" } }
        }
        p { "Changing it ends all your sessions, this one included." }
    };
    frame::page(status, "My account", Some(who), flash, body)
}

pub(super) async fn account(Caller(who): Caller) -> HttpResponse {
    account_page(&who, StatusCode::OK, None)
}

pub(super) async fn password(
    state: web::Data<AppState>,
    req: HttpRequest,
    Caller(who): Caller,
    form_data: FormData,
) -> HttpResponse {
    let current = form_data
        .field("current_password")
        .unwrap_or("")
        .to_string();
    let new = form_data.field("new_password").unwrap_or("").to_string();
    let changed = ops::change_own_password(&state, &req, &who, current, new).await;
    match changed {
        Ok(_) => form(
            "/console/",
            StatusCode::OK,
            Some(Flash::Ok(
                "Your password was changed and your sessions ended: log in again.".into(),
            )),
        ),
        Err(e) => {
            let (status, flash) = outcome(Err(e));
            account_page(&who, status, Some(flash))
        }
    }
}
