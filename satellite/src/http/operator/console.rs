//! The web console: server-rendered pages under `/console/`, forms posting back with the
//! session's CSRF token, no JavaScript and nothing loaded from elsewhere.
//!
//! A page is a `render_*` function taking an optional flash message, so a form's handler
//! answers with the page it came from and the outcome (or the error) at its top.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use actix_web::cookie::{time::Duration as CookieAge, Cookie, SameSite};
use actix_web::http::{header, Method, StatusCode};
use actix_web::web::{self, Path, Query};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;

use super::html::{self, button, csrf_field, esc, Flash};
use super::ops::{self, NewTokenBody};
use super::{act, db, session_cookie, Caller, FormData, Kind, RouteInfo, RouteSink};
use crate::alerts;
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::operators::{self, Principal, Role, Via};
use crate::report;
use crate::states::PiState;

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
    route!(get, "/login", None, login_page);
    route!(post, "/login", None, login);
    route!(post, "/logout", Some(Auditor), logout);
    route!(get, "/", Some(Auditor), dashboard);
    route!(get, "/accounts", Some(Auditor), accounts);
    route!(get, "/tokens", Some(Auditor), tokens);
    route!(post, "/tokens", Some(Operator), token_create);
    route!(get, "/tokens/{id}", Some(Operator), token_show);
    route!(
        get,
        "/tokens/{id}/download",
        Some(Operator),
        ops::token_download
    );
    route!(post, "/tokens/{id}/revoke", Some(Operator), token_revoke);
    route!(post, "/tokens/{id}/remove", Some(Operator), token_remove);
    route!(get, "/devices", Some(Auditor), devices);
    route!(post, "/devices/{id}/remove", Some(Operator), device_remove);
    route!(
        post,
        "/devices/{id}/allow-reregister",
        Some(Operator),
        device_allow_reregister
    );
    route!(get, "/alerts", Some(Auditor), alerts_page);
    route!(post, "/alerts/{id}/dismiss", Some(Operator), alert_dismiss);
    route!(
        post,
        "/alerts/{id}/remind-later",
        Some(Operator),
        alert_remind
    );
    route!(get, "/events", Some(Auditor), events);
    route!(get, "/sync", Some(Auditor), sync_page);
    route!(post, "/sync/file", Some(Operator), sync_file);
    route!(post, "/sync/preview", Some(Operator), sync_preview);
    route!(post, "/sync/apply", Some(Operator), sync_apply);
    route!(get, "/registration", Some(Auditor), registration_page);
    route!(post, "/registration/file", Some(Admin), registration_file);
    route!(
        post,
        "/registration/import",
        Some(Admin),
        registration_import
    );
    route!(get, "/users", Some(Admin), users);
    route!(post, "/users", Some(Admin), user_add);
    route!(post, "/users/{name}/password", Some(Admin), user_passwd);
    route!(post, "/users/{name}/remove", Some(Admin), user_remove);
    route!(get, "/account", Some(Auditor), account);
    route!(post, "/account/password", Some(Auditor), account_password);
    route!(get, "/api-tokens", Some(Auditor), api_tokens);
    route!(post, "/api-tokens", Some(Auditor), api_token_create);
    route!(
        post,
        "/api-tokens/{id}/revoke",
        Some(Auditor),
        api_token_revoke
    );
}

/// What the console keeps in memory: the failed-login counter and uploaded sync responses
/// waiting for "Apply".
#[derive(Debug, Default)]
pub struct ConsoleState {
    pub logins: operators::LoginLimiter,
    uploads: Mutex<HashMap<String, Pending>>,
    arrivals: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Pending {
    session: String,
    filename: String,
    data: web::Bytes,
    /// Order of arrival, so the oldest goes first.
    seq: u64,
}

/// Uploads kept at most (one per session; beyond, the oldest goes).
const MAX_PENDING: usize = 8;

impl ConsoleState {
    fn keep(&self, session: &str, filename: &str, data: web::Bytes) -> Result<String> {
        let id = operators::random_hex(16)?;
        let seq = self
            .arrivals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, p| p.session != session);
        if m.len() >= MAX_PENDING {
            let oldest = m.iter().min_by_key(|(_, p)| p.seq).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        m.insert(
            id.clone(),
            Pending {
                session: session.to_string(),
                filename: filename.to_string(),
                data,
                seq,
            },
        );
        Ok(id)
    }

    fn take(&self, id: &str, session: &str) -> Option<(String, web::Bytes)> {
        let mut m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(id) {
            Some(p) if p.session == session => m.remove(id).map(|p| (p.filename, p.data)),
            _ => None,
        }
    }
}

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
    html::page(
        e.status_code(),
        "Not allowed",
        who,
        Some(Flash::Error(e.to_string())),
        r#"<p><a href="/console/">Back to the dashboard</a></p>"#,
    )
}

fn ok_page(title: &str, who: &Principal, flash: Option<Flash>, body: &str) -> HttpResponse {
    html::page(StatusCode::OK, title, Some(who), flash, body)
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

pub async fn to_dashboard() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/"))
        .finish()
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(html::STYLE)
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn login_form(next: &str, status: StatusCode, flash: Option<Flash>) -> HttpResponse {
    let body = format!(
        r#"<form method="post" action="/console/login" class="box" id="login">
<input type="hidden" name="next" value="{}">
<label for="username">User name</label><input type="text" id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<p><button type="submit" id="login-button">Log in</button></p></form>"#,
        esc(next)
    );
    html::page(status, "Log in", None, flash, &body)
}

async fn login_page(q: Query<NextQuery>) -> HttpResponse {
    login_form(
        q.next.as_deref().unwrap_or("/console/"),
        StatusCode::OK,
        None,
    )
}

async fn login(state: web::Data<AppState>, req: HttpRequest, form: FormData) -> HttpResponse {
    let username = form.field("username").unwrap_or("").trim().to_string();
    let password = form.field("password").unwrap_or("").to_string();
    let next = form.field("next").unwrap_or("/console/").to_string();
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
        return login_form(&next, e.status_code(), Some(Flash::Error(e.to_string())));
    }
    let keys = vec![format!("user:{username}"), format!("ip:{ip}")];
    let now = state.clock.now();
    if let Err(e) = state.console.logins.attempt(&keys, now) {
        tracing::warn!(%username, %ip, "login refused: too many failed attempts");
        return login_form(&next, e.status_code(), Some(Flash::Error(e.to_string())));
    }
    let name = username.clone();
    let session = db(&state, move |c| operators::login(c, &name, &password, now)).await;
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
            login_form(&next, status, Some(flash))
        }
    }
}

async fn logout(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    let id = session_of(&who).to_string();
    db(&state, move |c| operators::logout(c, &id)).await?;
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

async fn dashboard(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    let s = state.clone();
    let (st, sync, alerts) = crate::http::blocking(move || {
        let st = crate::status::status(&s.store, s.clock.as_ref())?;
        let now = s.clock.now();
        let sync = crate::sync::status(&s.store, &s.config, now)?;
        let filter = alerts::Filter {
            state: Some("active".into()),
            ..Default::default()
        };
        let alerts = alerts::list(&mut *s.store.conn()?, &filter, now)?;
        Ok((st, sync, alerts))
    })
    .await?;
    let count = |sev: &str| alerts.iter().filter(|a| a.severity == sev).count();
    let card = |id: &str, label: &str, value: String| {
        format!(
            r#"<div class="card" id="{id}"><div class="label">{}</div><div class="n">{}</div></div>"#,
            esc(label),
            esc(&value)
        )
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let mut body = String::from(r#"<div class="cards">"#);
    body += &card("registration", "Registration", st.state.to_string());
    body += &card("sync-due", "Next sync due", opt(&sync.next_sync_due));
    body += &card(
        "days-left",
        "Days left before removal",
        sync.days_left_before_removal
            .map(|d| d.to_string())
            .unwrap_or_else(|| "—".into()),
    );
    body += &card("alerts-major", "Major alerts", count("major").to_string());
    body += &card("alerts-minor", "Minor alerts", count("minor").to_string());
    body += &card(
        "devices",
        "Product instances",
        st.counts.product_instances.to_string(),
    );
    body += "</div>";
    let _ = write!(
        body,
        r#"<h2>This satellite</h2><table id="about"><tr><th>Name</th><td>{}</td></tr><tr><th>Smart account</th><td>{}</td></tr><tr><th>Virtual accounts</th><td>{}</td></tr><tr><th>Last sync</th><td>{}</td></tr><tr><th>Removal at</th><td>{}</td></tr><tr><th>Version</th><td>{}</td></tr><tr><th>Now</th><td>{}</td></tr></table>"#,
        esc(&st.name),
        esc(st.account.as_deref().unwrap_or("—")),
        esc(&st
            .virtual_accounts
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")),
        esc(&opt(&sync.last_sync)),
        esc(&opt(&sync.removal_at)),
        esc(st.version),
        esc(&st.now),
    );
    if !alerts.is_empty() {
        body += r#"<h2>Active alerts</h2>"#;
        body += &html::table(&report::alerts_table(&alerts), "dashboard-alerts", None);
    }
    Ok(ok_page("Dashboard", &who, None, &body))
}

async fn accounts(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    let now = state.clock.now();
    let rows = db(&state, move |c| {
        report::licenses(c, now, &report::LicenseFilter::default())
    })
    .await?;
    let mut vas: Vec<&str> = rows.iter().map(|r| r.virtual_account.as_str()).collect();
    vas.dedup();
    let mut body = String::from(
        r#"<p><a href="/api/v1/operator/licenses?format=csv" id="licenses-csv">Export all as CSV</a></p>"#,
    );
    if vas.is_empty() {
        body += r#"<p class="empty">No licenses yet: register the satellite and sync.</p>"#;
    }
    for va in vas {
        let mine: Vec<report::LicenseRow> = rows
            .iter()
            .filter(|r| r.virtual_account == va)
            .cloned()
            .collect();
        let _ = write!(body, "<h2>{}</h2>", esc(va));
        body += &html::table(&report::licenses_table(&mine), &format!("va-{va}"), None);
    }
    Ok(ok_page("Virtual accounts", &who, None, &body))
}

async fn render_tokens(
    state: &AppState,
    who: &Principal,
    flash: Option<Flash>,
    extra: &str,
) -> Result<HttpResponse> {
    let now = state.clock.now();
    let (list, vas) = db(state, move |c| {
        Ok((crate::tokens::list(c, now)?, crate::db::pools::va_names(c)?))
    })
    .await?;
    let mut body = extra.to_string();
    if who.role >= Role::Operator {
        let mut options = String::new();
        let mut names: Vec<&String> = vas.iter().map(|(_, n)| n).collect();
        names.sort();
        for n in names {
            let _ = write!(options, "<option>{}</option>", esc(n));
        }
        let _ = write!(
            body,
            r#"<form method="post" action="/console/tokens" class="box" id="token-form">{}
<label for="va">Virtual account</label><select id="va" name="virtual_account">{options}</select>
<label for="description">Description</label><input type="text" id="description" name="description">
<label for="days">Expires after (days, 1 to 365)</label><input type="number" id="days" name="days" value="30" min="1" max="365">
<label for="max_uses">Maximum uses (empty: no limit)</label><input type="number" id="max_uses" name="max_uses" min="1">
<label><input type="checkbox" name="export_controlled" value="true"> Allow export-controlled functionality</label>
<p><button type="submit" id="create-token">Create token</button></p></form>"#,
            csrf_field(who)
        );
    }
    let t = {
        let mut t = report::Table::new(&[
            "ID",
            "Token",
            "Virtual account",
            "Description",
            "Expires",
            "Uses",
            "Export-controlled",
            "State",
            "Created by",
        ]);
        for v in &list {
            t.push(vec![
                v.id.to_string(),
                format!("{}...", v.hint),
                v.virtual_account.clone(),
                v.description.clone(),
                v.expires_at.clone(),
                match v.max_uses {
                    Some(m) => format!("{}/{m}", v.uses),
                    None => v.uses.to_string(),
                },
                if v.export_controlled { "allowed" } else { "" }.into(),
                v.status.clone(),
                v.created_by.clone(),
            ]);
        }
        t
    };
    let actions = |i: usize| {
        let v = &list[i];
        if who.role < Role::Operator {
            return String::new();
        }
        let mut s = format!(
            r#"<a href="/console/tokens/{0}">Show</a> <a href="/console/tokens/{0}/download">Download</a> "#,
            v.id
        );
        if v.status == "revoked" {
            s += &button(
                who,
                &format!("/console/tokens/{}/remove", v.id),
                "Remove",
                "danger",
            );
        } else {
            s += &button(
                who,
                &format!("/console/tokens/{}/revoke", v.id),
                "Revoke",
                "danger",
            );
        }
        s
    };
    body += "<h2>Tokens</h2>";
    body += &html::table(&t, "tokens", Some(&actions));
    Ok(ok_page("Registration tokens", who, flash, &body))
}

fn secret_block(token: &str) -> String {
    format!(
        r#"<p>Copy the token now and give it to the devices' configuration:</p><code class="secret" id="new-token">{}</code>"#,
        esc(token)
    )
}

async fn tokens(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    render_tokens(&state, &who, None, "").await
}

async fn token_create(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let parse = |name: &str| -> Result<Option<i64>> {
        match form.field(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::invalid(format!("{name} must be a whole number, got {v:?}"))),
        }
    };
    let made = async {
        let body = NewTokenBody {
            virtual_account: form.required("virtual_account")?.to_string(),
            days: parse("days")?.ok_or_else(|| Error::invalid("days is missing"))?,
            max_uses: parse("max_uses")?,
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
            render_tokens(&state, &who, Some(flash), &secret_block(&token)).await
        }
        Err(e) => after(Err(e), |f| render_tokens(&state, &who, f, "")).await,
    }
}

async fn token_show(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let (token, v) = ops::show_token(&state, id).await?;
    let body = format!(
        r#"<p>Token {} of {} ({}), expires {}.</p>{}<p><a href="/console/tokens/{}/download">Download as a text file</a> · <a href="/console/tokens">All tokens</a></p>"#,
        v.id,
        esc(&v.virtual_account),
        esc(&v.status),
        esc(&v.expires_at),
        secret_block(&token),
        v.id
    );
    Ok(ok_page("Registration token", &who, None, &body))
}

async fn token_revoke(
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
    after(r, |f| render_tokens(&state, &who, f, "")).await
}

async fn token_remove(
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
    after(r, |f| render_tokens(&state, &who, f, "")).await
}

#[derive(Debug, Deserialize, Default, Clone)]
struct DeviceQuery {
    va: Option<String>,
    name: Option<String>,
    status: Option<String>,
}

async fn render_devices(
    state: &AppState,
    who: &Principal,
    q: DeviceQuery,
    flash: Option<Flash>,
) -> Result<HttpResponse> {
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let f = report::DeviceFilter {
        vas: nonempty(&q.va).into_iter().collect(),
        product_types: Vec::new(),
        name: nonempty(&q.name),
        // A status the form does not offer lists every state.
        state: q.status.as_deref().and_then(PiState::parse),
    };
    let (rows, flash) = match db(state, move |c| report::devices(c, &f)).await {
        Ok(r) => (r, flash),
        Err(e) => (Vec::new(), Some(outcome(Err(e)).1)),
    };
    let mut body = format!(
        r#"<form method="get" action="/console/devices" class="box"><label for="f-va">Virtual account</label><input type="text" id="f-va" name="va" value="{}"><label for="f-name">Name contains</label><input type="text" id="f-name" name="name" value="{}"><label for="f-status">Status</label><select id="f-status" name="status"><option value="">any</option><option{}>active</option><option{}>removed</option></select><p><button type="submit">Filter</button> <a href="/api/v1/operator/devices?format=csv">Export all as CSV</a></p></form>"#,
        esc(q.va.as_deref().unwrap_or("")),
        esc(q.name.as_deref().unwrap_or("")),
        if q.status.as_deref() == Some("active") {
            " selected"
        } else {
            ""
        },
        if q.status.as_deref() == Some("removed") {
            " selected"
        } else {
            ""
        },
    );
    let actions = |i: usize| {
        let d = &rows[i];
        if who.role >= Role::Operator && d.state != PiState::Removed {
            button(
                who,
                &format!("/console/devices/{}/allow-reregister", d.pi_id),
                "Allow re-registration (24 h)",
                "",
            ) + &button(
                who,
                &format!("/console/devices/{}/remove", d.pi_id),
                "Remove",
                "danger",
            )
        } else {
            String::new()
        }
    };
    body += &html::table(&report::devices_table(&rows), "devices", Some(&actions));
    Ok(ok_page("Product instances", who, flash, &body))
}

async fn devices(
    state: web::Data<AppState>,
    Caller(who): Caller,
    q: Query<DeviceQuery>,
) -> Result<HttpResponse> {
    render_devices(&state, &who, q.into_inner(), None).await
}

/// A device action of the product-instance page: does it, then shows the page with what it
/// did (`say`) or why not.
async fn device_action<F>(
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
    after(r, |f| render_devices(state, who, DeviceQuery::default(), f)).await
}

async fn device_remove(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<String>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    device_action(
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
async fn device_allow_reregister(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<String>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let hours = crate::devices::REREGISTER_DEFAULT_HOURS;
    device_action(
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

#[derive(Debug, Deserialize, Default)]
struct AlertQuery {
    state: Option<String>,
}

async fn render_alerts(
    state: &AppState,
    who: &Principal,
    which: Option<String>,
    flash: Option<Flash>,
) -> Result<HttpResponse> {
    let which = which
        .filter(|s| alerts::STATES.contains(&s.as_str()))
        .unwrap_or_else(|| "active".into());
    let now = state.clock.now();
    let f = alerts::Filter {
        state: Some(which.clone()),
        ..Default::default()
    };
    let list = db(state, move |c| alerts::list(c, &f, now)).await?;
    let mut body = String::from(r#"<p>Show: "#);
    for s in alerts::STATES {
        if s == which {
            let _ = write!(body, "<strong>{s}</strong> ");
        } else {
            let _ = write!(body, r#"<a href="/console/alerts?state={s}">{s}</a> "#);
        }
    }
    body += r#"· <a href="/api/v1/operator/alerts?state=all&amp;format=csv">Export as CSV</a></p>"#;
    let actions = |i: usize| {
        let a = &list[i];
        if who.role < Role::Operator {
            return String::new();
        }
        let mut s = String::new();
        if a.actions.contains(&"dismiss") {
            s += &button(
                who,
                &format!("/console/alerts/{}/dismiss", a.id),
                "Dismiss",
                "",
            );
        }
        if a.actions.contains(&"remind-later") {
            s += &button(
                who,
                &format!("/console/alerts/{}/remind-later", a.id),
                "Remind later",
                "",
            );
        }
        s
    };
    body += &html::table(&report::alerts_table(&list), "alerts", Some(&actions));
    Ok(ok_page("Alerts", who, flash, &body))
}

async fn alerts_page(
    state: web::Data<AppState>,
    Caller(who): Caller,
    q: Query<AlertQuery>,
) -> Result<HttpResponse> {
    render_alerts(&state, &who, q.into_inner().state, None).await
}

async fn alert_dismiss(
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
    after(r, |f| render_alerts(&state, &who, None, f)).await
}

async fn alert_remind(
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
    after(r, |f| render_alerts(&state, &who, None, f)).await
}

#[derive(Debug, Deserialize, Default)]
struct EventQuery {
    va: Option<String>,
    pi: Option<String>,
    license: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn events(
    state: web::Data<AppState>,
    Caller(who): Caller,
    q: Query<EventQuery>,
) -> Result<HttpResponse> {
    let q = q.into_inner();
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let f = crate::db::events::Filter {
        va_name: nonempty(&q.va),
        pi_uuid: nonempty(&q.pi),
        license_tag: nonempty(&q.license),
        kind: nonempty(&q.kind),
        limit: Some(500),
        ..Default::default()
    };
    let list: Vec<report::EventView> = db(&state, move |c| crate::db::events::list(c, &f))
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let input = |id: &str, label: &str, v: &Option<String>| {
        format!(
            r#"<label for="e-{id}">{label}</label><input type="text" id="e-{id}" name="{id}" value="{}">"#,
            esc(v.as_deref().unwrap_or(""))
        )
    };
    let body = format!(
        r#"<form method="get" action="/console/events" class="box">{}{}{}{}<p><button type="submit">Filter</button> <a href="/api/v1/operator/events?format=csv">Export all as CSV</a></p></form><p>The latest {} event(s) matching.</p>{}"#,
        input("va", "Virtual account", &q.va),
        input("pi", "Product instance (PI id)", &q.pi),
        input("license", "License tag", &q.license),
        input("type", "Event type", &q.kind),
        list.len(),
        html::table(&report::events_table(&list), "events", None)
    );
    Ok(ok_page("Event log", &who, None, &body))
}

async fn render_sync(
    state: &AppState,
    who: &Principal,
    flash: Option<Flash>,
    extra: &str,
) -> Result<HttpResponse> {
    let s = state.clone();
    let st = crate::http::blocking(move || crate::sync::status(&s.store, &s.config, s.clock.now()))
        .await?;
    let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or("—"));
    let mut body = format!(
        r#"<table id="sync-status"><tr><th>State</th><td>{}</td></tr><tr><th>Last sync</th><td>{}</td></tr><tr><th>Next sync due</th><td>{}</td></tr><tr><th>Removal at</th><td>{}</td></tr><tr><th>Days left before removal</th><td id="sync-days-left">{}</td></tr><tr><th>Waiting to be sent</th><td>{} product instance(s), {} event(s), {} export request(s)</td></tr></table>"#,
        esc(st.state.as_str()),
        opt(&st.last_sync),
        opt(&st.next_sync_due),
        opt(&st.removal_at),
        st.days_left_before_removal
            .map(|d| d.to_string())
            .unwrap_or_else(|| "—".into()),
        st.pending_product_instances,
        st.pending_events,
        st.pending_export_requests,
    );
    body += extra;
    if who.role >= Role::Operator {
        let _ = write!(
            body,
            r#"<h2>1. Download the sync file</h2><p>Carry it to a machine that reaches the cloud and upload it there.</p><form method="post" action="/console/sync/file" class="box" id="sync-file-form">{0}<label><input type="checkbox" name="full" value="true"> Full (everything, not only what changed)</label><p><button type="submit" id="download-sync-file">Download sync file</button></p></form>
<h2>2. Upload the response</h2><p>You will see what it changes before it is applied.</p><form method="post" action="/console/sync/preview" enctype="multipart/form-data" class="box" id="sync-upload-form">{0}<label for="response">Sync response file (.zip)</label><input type="file" id="response" name="response" accept=".zip,application/zip"><p><button type="submit" id="preview-response">Preview</button></p></form>"#,
            csrf_field(who)
        );
    }
    Ok(ok_page("Sync", who, flash, &body))
}

async fn sync_page(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    render_sync(&state, &who, None, "").await
}

async fn sync_file(
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
        Err(e) => after(Err(e), |f| render_sync(&state, &who, f, "")).await,
    }
}

/// What a sync response changes (or changed), as HTML.
fn outcome_html(o: &crate::sync::apply::ImportOutcome) -> String {
    let mut s = format!(r#"<div id="sync-outcome"><p>{}</p>"#, esc(&o.message));
    let mut t = report::Table::new(&[
        "Change",
        "License",
        "Tag",
        "Virtual account",
        "Before",
        "After",
    ]);
    for c in &o.license_changes {
        t.push(vec![
            c.change.clone(),
            c.name.clone(),
            c.tag.clone(),
            c.virtual_account.clone(),
            c.before.to_string(),
            c.after.to_string(),
        ]);
    }
    for v in &o.virtual_accounts_added {
        let _ = write!(s, "<p>Virtual account added: {}</p>", esc(v));
    }
    s += &html::table(&t, "license-changes", None);
    for r in &o.rejected {
        let _ = write!(
            s,
            "<p>Refused by the cloud, sent again at the next sync: {} {}: {}</p>",
            esc(&r.pi),
            esc(&r.record),
            esc(&r.reason)
        );
    }
    for a in o.export_answers.iter().filter(|a| a.result != "ignored") {
        let _ = write!(
            s,
            "<p>Export {} {}: {} x {} for {}</p>",
            esc(&a.result),
            esc(&a.request_id),
            a.count,
            esc(&a.tag),
            esc(&a.pi)
        );
    }
    let _ = write!(
        s,
        "<p>Next sync due by {}.</p></div>",
        esc(&o.next_sync_due)
    );
    s
}

async fn sync_preview(
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
            let extra = format!(
                r#"<h2>Preview of {}</h2>{}<form method="post" action="/console/sync/apply" class="box" id="apply-form">{}<input type="hidden" name="upload" value="{}"><p><button type="submit" id="apply-response">Apply</button> <a href="/console/sync">Cancel</a></p></form>"#,
                esc(&filename),
                outcome_html(&o),
                csrf_field(&who),
                esc(&id)
            );
            let flash = Flash::Ok(format!(
                "{filename} is a valid sync response for this satellite. Nothing is changed \
                 until you apply it."
            ));
            render_sync(&state, &who, Some(flash), &extra).await
        }
        Err(e) => after(Err(e), |f| render_sync(&state, &who, f, "")).await,
    }
}

async fn sync_apply(
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
            render_sync(&state, &who, Some(flash), &outcome_html(&o)).await
        }
        Err(e) => after(Err(e), |f| render_sync(&state, &who, f, "")).await,
    }
}

async fn render_registration(
    state: &AppState,
    who: &Principal,
    flash: Option<Flash>,
) -> Result<HttpResponse> {
    let s = state.clone();
    let st =
        crate::http::blocking(move || crate::status::status(&s.store, s.clock.as_ref())).await?;
    let mut body = format!(
        r#"<table id="registration-status"><tr><th>State</th><td id="registration-state">{}</td></tr><tr><th>Satellite id</th><td>{}</td></tr><tr><th>Name</th><td>{}</td></tr><tr><th>Smart account</th><td>{}</td></tr><tr><th>Registered at</th><td>{}</td></tr></table>"#,
        esc(st.state.as_str()),
        esc(&st.satellite_id),
        esc(&st.name),
        esc(st.account.as_deref().unwrap_or("—")),
        esc(st.registered_at.as_deref().unwrap_or("—")),
    );
    if who.role >= Role::Admin {
        let _ = write!(
            body,
            r#"<h2>1. Download the registration file</h2><p>Upload it to the cloud ("New satellite"); it answers with an authorization file.</p><form method="post" action="/console/registration/file" class="box">{0}<button type="submit" id="download-registration-file">Download registration file</button></form>
<h2>2. Upload the authorization file</h2><form method="post" action="/console/registration/import" enctype="multipart/form-data" class="box" id="authorization-form">{0}<label for="authorization">Authorization file (.zip)</label><input type="file" id="authorization" name="authorization" accept=".zip,application/zip"><label for="cloud-ca-fingerprint">Cloud CA fingerprint (SHA-256, from the cloud's operator; needed unless [cloud] ca_file is set or a CA is pinned)</label><input type="text" id="cloud-ca-fingerprint" name="cloud_ca_fingerprint" placeholder="SHA256:AB:CD:…" autocomplete="off" spellcheck="false"><p><button type="submit" id="upload-authorization">Upload</button></p></form>"#,
            csrf_field(who)
        );
    }
    Ok(ok_page("Registration", who, flash, &body))
}

async fn registration_page(
    state: web::Data<AppState>,
    Caller(who): Caller,
) -> Result<HttpResponse> {
    render_registration(&state, &who, None).await
}

async fn registration_file(
    state: web::Data<AppState>,
    Caller(who): Caller,
) -> Result<HttpResponse> {
    match ops::make_registration_file(&state).await {
        Ok((bytes, _)) => Ok(ops::zip(bytes, "registration-request.zip")),
        Err(e) => after(Err(e), |f| render_registration(&state, &who, f)).await,
    }
}

async fn registration_import(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let r = async {
        let up = form.file("authorization")?;
        let fingerprint = form.field("cloud_ca_fingerprint");
        let r = ops::import_registration_file(&state, up.data.clone(), fingerprint).await?;
        Ok(format!(
            "Registered with the smart account {:?}: virtual accounts {}; {} license line(s).",
            r.account,
            r.virtual_accounts.join(", "),
            r.license_lines
        ))
    }
    .await;
    after(r, |f| render_registration(&state, &who, f)).await
}

async fn render_users(
    state: &AppState,
    who: &Principal,
    flash: Option<Flash>,
) -> Result<HttpResponse> {
    let list = db(state, operators::list).await?;
    let mut t = report::Table::new(&["User", "Role", "Created", "Password changed", "Last login"]);
    for u in &list {
        t.push(vec![
            u.username.clone(),
            u.role.to_string(),
            u.created_at.clone(),
            u.password_changed_at.clone(),
            u.last_login_at.clone().unwrap_or_default(),
        ]);
    }
    let actions = |i: usize| {
        let u = &list[i];
        format!(
            r#"<form method="post" action="/console/users/{0}/password" class="inline">{1}<input type="password" name="password" placeholder="new password" aria-label="new password for {0}"><button type="submit">Set password</button></form>{2}"#,
            esc(&u.username),
            csrf_field(who),
            button(
                who,
                &format!("/console/users/{}/remove", u.username),
                "Remove",
                "danger"
            )
        )
    };
    let mut body = html::table(&t, "users", Some(&actions));
    let _ = write!(
        body,
        r#"<h2>Add an account</h2><form method="post" action="/console/users" class="box" id="user-form">{}
<label for="u-name">User name</label><input type="text" id="u-name" name="username" required>
<label for="u-role">Role</label><select id="u-role" name="role"><option value="auditor">auditor: reads everything</option><option value="operator">operator: also tokens, devices, alerts, sync</option><option value="admin">admin: also accounts and registration</option></select>
<label for="u-password">Password (10 characters or more)</label><input type="password" id="u-password" name="password" required>
<p><button type="submit" id="add-user">Add</button></p></form>"#,
        csrf_field(who)
    );
    Ok(ok_page("Users", who, flash, &body))
}

async fn users(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    render_users(&state, &who, None).await
}

async fn user_add(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let r = async {
        let name = form.required("username")?.to_string();
        let role = Role::parse(form.required("role")?)?;
        let pw = form.field("password").unwrap_or("").to_string();
        let v = act(&state, &who, move |c, now, actor| {
            operators::add(c, &name, role, &pw, now, actor)
        })
        .await?;
        Ok(format!(
            "Account {} added with the role {}.",
            v.username, v.role
        ))
    }
    .await;
    after(r, |f| render_users(&state, &who, f)).await
}

async fn user_passwd(
    state: web::Data<AppState>,
    Caller(who): Caller,
    name: Path<String>,
    form: FormData,
) -> Result<HttpResponse> {
    let name = name.into_inner();
    let pw = form.field("password").unwrap_or("").to_string();
    let r = act(&state, &who, move |c, now, actor| {
        operators::passwd(c, &name, &pw, now, actor)
    })
    .await
    .map(|v| {
        format!(
            "The password of {} was changed; its sessions ended.",
            v.username
        )
    });
    after(r, |f| render_users(&state, &who, f)).await
}

async fn user_remove(
    state: web::Data<AppState>,
    Caller(who): Caller,
    name: Path<String>,
) -> Result<HttpResponse> {
    let name = name.into_inner();
    let shown = name.clone();
    let r = act(&state, &who, move |c, now, actor| {
        operators::remove(c, &name, now, actor)
    })
    .await
    .map(|()| format!("Account {shown} removed."));
    after(r, |f| render_users(&state, &who, f)).await
}

fn account_page(who: &Principal, status: StatusCode, flash: Option<Flash>) -> HttpResponse {
    let body = format!(
        r#"<p>Signed in as {} with the role {}.</p><h2>Change your password</h2><form method="post" action="/console/account/password" class="box" id="password-form">{}
<label for="current">Current password</label><input type="password" id="current" name="current_password" autocomplete="current-password" required>
<label for="new">New password (10 characters or more)</label><input type="password" id="new" name="new_password" autocomplete="new-password" required>
<p><button type="submit" id="change-password">Change password</button></p></form><p>Changing it ends all your sessions, this one included.</p>"#,
        esc(&who.username),
        who.role,
        csrf_field(who)
    );
    html::page(status, "My account", Some(who), flash, &body)
}

async fn account(Caller(who): Caller) -> HttpResponse {
    account_page(&who, StatusCode::OK, None)
}

async fn account_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    Caller(who): Caller,
    form: FormData,
) -> HttpResponse {
    let current = form.field("current_password").unwrap_or("").to_string();
    let new = form.field("new_password").unwrap_or("").to_string();
    let changed = ops::change_own_password(&state, &req, &who, current, new).await;
    match changed {
        Ok(_) => login_form(
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

async fn render_api_tokens(
    state: &AppState,
    who: &Principal,
    flash: Option<Flash>,
    extra: &str,
) -> Result<HttpResponse> {
    let (of, now) = (ops::token_scope(who), state.clock.now());
    let list = db(state, move |c| operators::list_api_tokens(c, of, now)).await?;
    let mut t = report::Table::new(&[
        "ID",
        "User",
        "Description",
        "Created",
        "Expires",
        "Last used",
        "State",
    ]);
    for v in &list {
        t.push(vec![
            v.id.to_string(),
            v.username.clone(),
            v.description.clone(),
            v.created_at.clone(),
            v.expires_at.clone().unwrap_or_else(|| "never".into()),
            v.last_used_at.clone().unwrap_or_default(),
            v.state.to_string(),
        ]);
    }
    let actions = |i: usize| {
        let v = &list[i];
        if v.state == "active" {
            button(
                who,
                &format!("/console/api-tokens/{}/revoke", v.id),
                "Revoke",
                "danger",
            )
        } else {
            String::new()
        }
    };
    let mut body = format!(
        r#"<p>Scripts send an API token as <code>Authorization: Bearer TOKEN</code> to <code>/api/v1/operator/...</code>; it acts with your role ({}).</p>{extra}"#,
        who.role
    );
    let _ = write!(
        body,
        r#"<form method="post" action="/console/api-tokens" class="box" id="api-token-form">{}<label for="t-desc">Description</label><input type="text" id="t-desc" name="description"><label for="t-days">Expires after (days; empty: never)</label><input type="number" id="t-days" name="days" min="1" max="3650"><p><button type="submit" id="create-api-token">Create API token</button></p></form>"#,
        csrf_field(who)
    );
    body += &html::table(&t, "api-tokens", Some(&actions));
    Ok(ok_page("API tokens", who, flash, &body))
}

async fn api_tokens(state: web::Data<AppState>, Caller(who): Caller) -> Result<HttpResponse> {
    render_api_tokens(&state, &who, None, "").await
}

async fn api_token_create(
    state: web::Data<AppState>,
    Caller(who): Caller,
    form: FormData,
) -> Result<HttpResponse> {
    let name = who.username.clone();
    let made = async {
        let days =
            match form.field("days").map(str::trim).filter(|v| !v.is_empty()) {
                None => None,
                Some(v) => Some(v.parse::<u32>().map_err(|_| {
                    Error::invalid(format!("days must be a whole number, got {v:?}"))
                })?),
            };
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
            render_api_tokens(&state, &who, Some(flash), &secret_block(&t.token)).await
        }
        Err(e) => after(Err(e), |f| render_api_tokens(&state, &who, f, "")).await,
    }
}

async fn api_token_revoke(
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
    after(r, |f| render_api_tokens(&state, &who, f, "")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_wait_for_their_own_session_and_the_oldest_goes() {
        let c = ConsoleState::default();
        let a = c
            .keep("session-a", "r.zip", web::Bytes::from_static(b"a"))
            .unwrap();
        assert!(
            c.take(&a, "session-b").is_none(),
            "another session cannot apply it"
        );
        let a2 = c
            .keep("session-a", "r2.zip", web::Bytes::from_static(b"a2"))
            .unwrap();
        assert!(
            c.take(&a, "session-a").is_none(),
            "a new upload replaces the session's last"
        );
        let mut ids: Vec<String> = (0..MAX_PENDING)
            .map(|i| {
                c.keep(&format!("s{i}"), "x.zip", web::Bytes::from_static(b"x"))
                    .unwrap()
            })
            .collect();
        assert!(c.take(&a2, "session-a").is_none(), "the oldest went");
        let last = ids.pop().unwrap();
        assert_eq!(
            c.take(&last, &format!("s{}", MAX_PENDING - 1)).unwrap().0,
            "x.zip"
        );
        assert!(
            c.take(&last, &format!("s{}", MAX_PENDING - 1)).is_none(),
            "taken once"
        );
    }
}
