//! The web console: server-rendered pages under `/console/`, forms posting back with the
//! session's CSRF token, no JavaScript and nothing loaded from elsewhere.
//!
//! One module per page, each with its handlers and its template. Templates are written
//! with maud: they are Rust, checked when the satellite is compiled, and live beside the
//! handler that fills them, so the binary carries no template files; every value put into
//! a page is escaped by the engine. A page is a `render` function taking an optional flash
//! message, so a form's handler answers with the page it came from and the outcome (or the
//! error) at its top. What the console and the operator API both do lives in
//! [`super::ops`] or the domain, never in `api`.

mod alerts;
mod api_tokens;
mod dashboard;
mod devices;
mod events;
mod frame;
mod login;
mod registration;
mod sync;
mod tokens;
mod uploads;
mod users;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use maud::{html, Markup};

use super::{ops, Kind, RouteInfo, RouteSink};
use crate::error::{Error, Result};
use crate::operators::{Principal, Role, Via};
pub use frame::Flash;
pub use uploads::ConsoleState;

pub fn declare(r: &mut impl RouteSink) {
    use Role::{Admin, Auditor, Operator};
    let get = Method::GET;
    let post = Method::POST;
    macro_rules! route {
        ($m:expr, $path:literal, $role:expr, $h:expr) => {
            r.add(
                RouteInfo {
                    method: $m.clone(),
                    path: concat!("/console", $path),
                    role: $role,
                    kind: Kind::Page,
                },
                $h,
            )
        };
    }
    route!(get, "/style.css", None, style);
    route!(get, "/login", None, login::page);
    route!(post, "/login", None, login::login);
    route!(post, "/logout", Some(Auditor), login::logout);
    route!(get, "/", Some(Auditor), dashboard::page);
    route!(get, "/accounts", Some(Auditor), dashboard::accounts);
    route!(get, "/tokens", Some(Auditor), tokens::page);
    route!(post, "/tokens", Some(Operator), tokens::create);
    route!(get, "/tokens/{id}", Some(Operator), tokens::show);
    route!(
        get,
        "/tokens/{id}/download",
        Some(Operator),
        ops::token_download
    );
    route!(post, "/tokens/{id}/revoke", Some(Operator), tokens::revoke);
    route!(post, "/tokens/{id}/remove", Some(Operator), tokens::remove);
    route!(get, "/devices", Some(Auditor), devices::page);
    route!(
        post,
        "/devices/{id}/remove",
        Some(Operator),
        devices::remove
    );
    route!(
        post,
        "/devices/{id}/allow-reregister",
        Some(Operator),
        devices::allow_reregister
    );
    route!(get, "/alerts", Some(Auditor), alerts::page);
    route!(
        post,
        "/alerts/{id}/dismiss",
        Some(Operator),
        alerts::dismiss
    );
    route!(
        post,
        "/alerts/{id}/remind-later",
        Some(Operator),
        alerts::remind
    );
    route!(get, "/events", Some(Auditor), events::page);
    route!(get, "/sync", Some(Auditor), sync::page);
    route!(post, "/sync/file", Some(Operator), sync::file);
    route!(post, "/sync/preview", Some(Operator), sync::preview);
    route!(post, "/sync/apply", Some(Operator), sync::apply);
    route!(get, "/registration", Some(Auditor), registration::page);
    route!(post, "/registration/file", Some(Admin), registration::file);
    route!(
        post,
        "/registration/import",
        Some(Admin),
        registration::import
    );
    route!(get, "/users", Some(Admin), users::page);
    route!(post, "/users", Some(Admin), users::add);
    route!(post, "/users/{name}/password", Some(Admin), users::passwd);
    route!(post, "/users/{name}/remove", Some(Admin), users::remove);
    route!(get, "/account", Some(Auditor), login::account);
    route!(post, "/account/password", Some(Auditor), login::password);
    route!(get, "/api-tokens", Some(Auditor), api_tokens::page);
    route!(post, "/api-tokens", Some(Auditor), api_tokens::create);
    route!(
        post,
        "/api-tokens/{id}/revoke",
        Some(Auditor),
        api_tokens::revoke
    );
}

/// The session a console caller came with ("" for an API token).
fn session_of(who: &Principal) -> &str {
    match &who.via {
        Via::Session { id_hash, .. } => id_hash,
        Via::ApiToken(_) => "",
    }
}

/// Where to go after logging in: a console page, never another site.
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with("/console/")
        && next != "/console/logout"
        && !next.contains("//")
        && !next.contains('\\')
        && next.chars().all(|c| c.is_ascii_graphic());
    if ok {
        next
    } else {
        "/console/"
    }
}

pub fn login_url(next: &str) -> String {
    let next = safe_next(next);
    format!(
        "/console/login?{}",
        serde_urlencoded::to_string([("next", next)]).unwrap_or_default()
    )
}

/// A refusal as a page (for a logged-in caller without the role, or a failed gate).
pub fn error_page(e: &Error, who: Option<&Principal>) -> HttpResponse {
    frame::page(
        e.status_code(),
        "Not allowed",
        who,
        Some(Flash::Error(e.to_string())),
        html! { p { a href="/console/" { "Back to the dashboard" } } },
    )
}

fn ok_page(title: &str, who: &Principal, flash: Option<Flash>, body: Markup) -> HttpResponse {
    frame::page(StatusCode::OK, title, Some(who), flash, body)
}

/// The flash of a form's outcome, and the status to answer with.
fn outcome(r: Result<String>) -> (StatusCode, Flash) {
    match r {
        Ok(m) => (StatusCode::OK, Flash::Ok(m)),
        Err(e) => {
            let status = e.status_code();
            let message = if status.is_server_error() {
                tracing::error!(code = e.code(), error = %e, "console action failed");
                "internal error; see the satellite's log".to_string()
            } else {
                e.to_string()
            };
            (status, Flash::Error(message))
        }
    }
}

/// Answers a form with a page rendered after the action, with its outcome on top.
async fn after<F, Fut>(r: Result<String>, render: F) -> Result<HttpResponse>
where
    F: FnOnce(Option<Flash>) -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse>>,
{
    let (status, flash) = outcome(r);
    let mut resp = render(Some(flash)).await?;
    *resp.status_mut() = status;
    Ok(resp)
}

/// A number typed into a form: empty is `None`, anything else must parse.
fn number_field<T: std::str::FromStr>(
    form: &super::FormData,
    name: &str,
    what: &str,
) -> Result<Option<T>> {
    match form.field(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Error::invalid(format!("{what} must be a whole number, got {v:?}"))),
    }
}

/// A newly made secret, shown once.
fn secret_block(token: &str) -> Markup {
    html! {
        p { "Copy the token now and give it to the devices' configuration:" }
        code class="secret" id="new-token" { (token) }
    }
}

pub async fn to_dashboard() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/"))
        .finish()
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(frame::STYLE)
}
