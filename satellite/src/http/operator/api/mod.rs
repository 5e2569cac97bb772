//! The operator API: `/api/v1/operator/...`, JSON (and CSV where a report is asked for with
//! `?format=csv`). What the CLI does, over HTTPS. Documented in `docs/operator-console.md` and
//! `docs/operator-api.openapi.yaml` (a test keeps the file and the routes in step).

use actix_web::http::header;
use actix_web::http::Method;
use actix_web::web::{self, Bytes, Json, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::ops::{
    change_own_password, create_token, import_registration_file, import_sync_file,
    make_registration_file, make_sync_file, show_token, token_download, token_scope, zip,
    NewTokenBody,
};
use super::{act, db, Caller, Kind, RouteInfo, RouteSink};
use crate::alerts;
use crate::catalogue::{AlertKind, Severity};
use crate::error::{Error, Result};
use crate::http::{blocking, AppState};
use crate::operators::{self, Role};
use crate::report::{self, Table};
use crate::states::ExportState;
use crate::states::PiState;

mod accounts;
use accounts::*;

pub fn declare(r: &mut impl RouteSink) {
    use Role::{Admin, Auditor, Operator};
    let get = Method::GET;
    let post = Method::POST;
    let delete = Method::DELETE;
    macro_rules! route {
        ($m:expr, $path:literal, $role:expr, $h:expr) => {
            r.add(
                RouteInfo {
                    method: $m.clone(),
                    path: concat!("/api/v1/operator", $path),
                    role: Some($role),
                    kind: Kind::Api,
                },
                $h,
            )
        };
    }
    route!(get, "/me", Auditor, me);
    route!(post, "/me/password", Auditor, my_password);
    route!(get, "/status", Auditor, status);
    route!(get, "/sync/status", Auditor, sync_status);
    route!(post, "/sync/export", Operator, sync_export);
    route!(post, "/sync/import", Operator, sync_import);
    route!(post, "/sync/now", Operator, sync_now);
    route!(post, "/registration/export", Admin, registration_export);
    route!(post, "/registration/import", Admin, registration_import);
    route!(get, "/tokens", Auditor, tokens_list);
    route!(post, "/tokens", Operator, token_create);
    route!(get, "/tokens/{id}", Operator, token_show);
    route!(get, "/tokens/{id}/download", Operator, token_download);
    route!(post, "/tokens/{id}/revoke", Operator, token_revoke);
    route!(delete, "/tokens/{id}", Operator, token_remove);
    route!(get, "/devices", Auditor, devices_list);
    route!(get, "/devices/{id}", Auditor, device_show);
    route!(delete, "/devices/{id}", Operator, device_remove);
    route!(post, "/devices/{id}/transfer", Operator, device_transfer);
    route!(
        post,
        "/devices/{id}/allow-reregister",
        Operator,
        device_allow_reregister
    );
    route!(get, "/licenses", Auditor, licenses);
    route!(get, "/alerts", Auditor, alerts_list);
    route!(post, "/alerts/check", Operator, alerts_check);
    route!(post, "/alerts/{id}/dismiss", Operator, alert_dismiss);
    route!(
        post,
        "/alerts/{id}/remind-later",
        Operator,
        alert_remind_later
    );
    route!(get, "/events", Auditor, events_list);
    route!(get, "/events/verify", Auditor, events_verify);
    route!(get, "/exports", Auditor, exports_list);
    route!(get, "/exports/{id}", Auditor, export_show);
    route!(get, "/users", Admin, users_list);
    route!(post, "/users", Admin, user_add);
    route!(post, "/users/{name}/password", Admin, user_passwd);
    route!(delete, "/users/{name}", Admin, user_remove);
    route!(get, "/api-tokens", Auditor, api_tokens_list);
    route!(post, "/api-tokens", Auditor, api_token_create);
    route!(delete, "/api-tokens/{id}", Auditor, api_token_revoke);
}

fn json<T: Serialize>(v: &T) -> HttpResponse {
    HttpResponse::Ok().json(v)
}

/// `?format=json|csv` of the report routes.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// The rows as JSON, or as an RFC 4180 CSV attachment named `name.csv`.
pub fn rows<T: Serialize>(
    rows: &[T],
    format: Format,
    table: impl FnOnce(&[T]) -> Table,
    name: &str,
) -> Result<HttpResponse> {
    Ok(match format {
        Format::Json => json(&rows),
        Format::Csv => HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ))
            .body(table(rows).csv()?),
    })
}

/// Chunks of a response body made on the blocking pool.
struct Chunks(tokio::sync::mpsc::Receiver<Result<Bytes>>);

impl futures_core::Stream for Chunks {
    type Item = std::result::Result<Bytes, actix_web::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map_err(actix_web::Error::from)))
    }
}

/// Rows written out page by page as they are read, in memory bounded by a page: a JSON
/// array, or an RFC 4180 CSV attachment named `name.csv` with one header row. `produce`
/// calls its sink with each page, on a pooled connection off the async workers.
fn streamed<T, P>(
    state: &AppState,
    format: Format,
    name: &str,
    table: fn(&[T]) -> Table,
    produce: P,
) -> HttpResponse
where
    T: Serialize + 'static,
    P: FnOnce(&mut diesel::SqliteConnection, &mut dyn FnMut(&[T]) -> Result<()>) -> Result<()>
        + Send
        + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(4);
    let store = state.store.clone();
    // Detached: it ends when the rows do, or when the client has gone (a send fails).
    drop(web::block(move || {
        let send = |b: Result<Bytes>| {
            tx.blocking_send(b)
                .map_err(|_| Error::Internal("the client went away".into()))
        };
        let mut rows = 0usize;
        let run = store.conn().and_then(|mut conn| {
            produce(&mut conn, &mut |page: &[T]| {
                let chunk = match format {
                    Format::Json => {
                        let mut s = String::new();
                        for r in page {
                            s.push_str(if rows == 0 { "[" } else { "," });
                            s.push_str(
                                &serde_json::to_string(r)
                                    .map_err(|e| Error::Internal(e.to_string()))?,
                            );
                            rows += 1;
                        }
                        s
                    }
                    Format::Csv => {
                        let csv = table(page).csv()?;
                        let first = rows == 0;
                        rows += page.len();
                        if first {
                            csv
                        } else {
                            csv.split_once('\n')
                                .map_or(String::new(), |(_, r)| r.to_string())
                        }
                    }
                };
                send(Ok(Bytes::from(chunk)))
            })
        });
        let end = match (run, format) {
            (Err(e), _) => Err(e),
            (Ok(()), Format::Json) => Ok(Bytes::from(if rows == 0 { "[]" } else { "]" })),
            (Ok(()), Format::Csv) if rows == 0 => table(&[]).csv().map(Bytes::from),
            (Ok(()), Format::Csv) => Ok(Bytes::new()),
        };
        let _ = send(end);
    }));
    let mut resp = HttpResponse::Ok();
    match format {
        Format::Json => resp.content_type("application/json"),
        Format::Csv => resp.content_type("text/csv; charset=utf-8").insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}.csv\""),
        )),
    };
    resp.streaming(Chunks(rx))
}

async fn me(Caller(who): Caller) -> HttpResponse {
    json(&serde_json::json!({ "username": who.username, "role": who.role }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MyPasswordBody {
    current_password: String,
    new_password: String,
}

async fn my_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    Caller(who): Caller,
    body: Json<MyPasswordBody>,
) -> Result<HttpResponse> {
    let b = body.into_inner();
    Ok(json(
        &change_own_password(&state, &req, &who, b.current_password, b.new_password).await?,
    ))
}

async fn status(state: web::Data<AppState>) -> Result<HttpResponse> {
    let st = blocking(move || crate::status::status(&state.store, state.clock.as_ref())).await?;
    Ok(json(&st))
}

async fn sync_status(state: web::Data<AppState>) -> Result<HttpResponse> {
    let st = blocking(move || crate::sync::status(&state.store, &state.config, state.clock.now()))
        .await?;
    Ok(json(&st))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FullQuery {
    #[serde(default)]
    full: bool,
}

async fn sync_export(state: web::Data<AppState>, q: Query<FullQuery>) -> Result<HttpResponse> {
    let (bytes, summary) = make_sync_file(&state, q.full).await?;
    Ok(zip(
        bytes,
        &format!("sync-request-{}.zip", summary.sequence),
    ))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn sync_import(
    state: web::Data<AppState>,
    q: Query<ImportQuery>,
    body: Bytes,
) -> Result<HttpResponse> {
    Ok(json(&import_sync_file(&state, body, q.dry_run).await?))
}

async fn sync_now(state: web::Data<AppState>, q: Query<FullQuery>) -> Result<HttpResponse> {
    let full = q.full;
    let (r, o) = blocking(move || {
        crate::sync::network::sync_now(
            &state.store,
            &state.config,
            state.clock.as_ref(),
            full,
            &mut |_| {},
        )
    })
    .await?;
    Ok(json(&serde_json::json!({ "request": r, "response": o })))
}

async fn registration_export(state: web::Data<AppState>) -> Result<HttpResponse> {
    let (bytes, _) = make_registration_file(&state).await?;
    Ok(zip(bytes, "registration-request.zip"))
}

/// `?cloud_ca_fingerprint=SHA256:…` of `POST /registration/import`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrationImportQuery {
    #[serde(default)]
    cloud_ca_fingerprint: Option<String>,
}

async fn registration_import(
    state: web::Data<AppState>,
    q: Query<RegistrationImportQuery>,
    body: Bytes,
) -> Result<HttpResponse> {
    Ok(json(
        &import_registration_file(&state, body, q.cloud_ca_fingerprint.as_deref()).await?,
    ))
}

async fn tokens_list(state: web::Data<AppState>) -> Result<HttpResponse> {
    let now = state.clock.now();
    Ok(json(
        &db(&state, move |c| crate::tokens::list(c, now)).await?,
    ))
}

async fn token_create(
    state: web::Data<AppState>,
    Caller(who): Caller,
    body: Json<NewTokenBody>,
) -> Result<HttpResponse> {
    let v = create_token(&state, &who, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(v))
}

async fn token_show(state: web::Data<AppState>, id: Path<i64>) -> Result<HttpResponse> {
    let (token, view) = show_token(&state, id.into_inner()).await?;
    let mut v = serde_json::to_value(&view).map_err(|e| Error::Internal(e.to_string()))?;
    v["token"] = serde_json::Value::String(token);
    Ok(json(&v))
}

async fn token_revoke(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    Ok(json(
        &act(&state, &who, move |c, now, actor| {
            crate::tokens::revoke(c, id, now, actor)
        })
        .await?,
    ))
}

async fn token_remove(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    act(&state, &who, move |c, now, actor| {
        crate::tokens::remove(c, id, now, actor)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuery {
    va: Option<String>,
    name: Option<String>,
    product_type: Option<String>,
    status: Option<String>,
    #[serde(default)]
    format: Format,
    /// At most this many (all by default, streamed a page at a time).
    limit: Option<i64>,
    #[serde(default)]
    offset: i64,
    sort: Option<String>,
}

async fn devices_list(state: web::Data<AppState>, q: Query<DeviceQuery>) -> Result<HttpResponse> {
    let q = q.into_inner();
    let status = q
        .status
        .as_deref()
        .map(|s| {
            PiState::parse(s).ok_or_else(|| {
                Error::invalid(format!("status must be active or removed, got {s:?}"))
            })
        })
        .transpose()?;
    let f = report::DeviceFilter {
        vas: q.va.into_iter().collect(),
        product_types: q.product_type.into_iter().collect(),
        name: q.name,
        state: status,
    };
    if q.limit.is_some_and(|l| l < 1) || q.offset < 0 {
        return Err(Error::invalid(
            "limit must be 1 or more and offset 0 or more",
        ));
    }
    let paging = report::Paging {
        limit: q.limit,
        offset: q.offset,
        sort: match q.sort.as_deref() {
            Some(s) => crate::states::DeviceSort::parse_named("sort", s)?,
            None => crate::states::DeviceSort::Registered,
        },
    };
    let counted = f.clone();
    let counts = db(&state, move |c| report::device_counts(c, &counted)).await?;
    let mut resp = streamed(
        &state,
        q.format,
        "product-instances",
        report::devices_table,
        move |c, sink| report::each_device_page(c, &f, paging, sink),
    );
    resp.headers_mut().insert(
        header::HeaderName::from_static("x-total-count"),
        header::HeaderValue::from(counts.total),
    );
    Ok(resp)
}

async fn device_show(state: web::Data<AppState>, id: Path<String>) -> Result<HttpResponse> {
    let id = id.into_inner();
    Ok(json(
        &db(&state, move |c| crate::devices::show(c, &id)).await?,
    ))
}

async fn device_remove(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<String>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    Ok(json(
        &act(&state, &who, move |c, now, actor| {
            crate::devices::remove(c, &id, now, actor)
        })
        .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    virtual_account: String,
}

async fn device_transfer(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<String>,
    body: Json<TransferBody>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let va = body.into_inner().virtual_account;
    Ok(json(
        &act(&state, &who, move |c, now, actor| {
            crate::devices::transfer(c, &id, &va, now, actor)
        })
        .await?,
    ))
}

/// The body of `POST /devices/{id}/allow-reregister` (optional).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AllowReregisterBody {
    #[serde(default)]
    hours: Option<i64>,
}

async fn device_allow_reregister(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<String>,
    body: Bytes,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let b: AllowReregisterBody = if body.iter().all(u8::is_ascii_whitespace) {
        AllowReregisterBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::invalid(format!("invalid request body: {e}")))?
    };
    let hours = b.hours.unwrap_or(crate::devices::REREGISTER_DEFAULT_HOURS);
    Ok(json(
        &act(&state, &who, move |c, now, actor| {
            crate::devices::allow_reregister(c, &id, hours, now, actor)
        })
        .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenseQuery {
    va: Option<String>,
    license: Option<String>,
    #[serde(default)]
    format: Format,
}

async fn licenses(state: web::Data<AppState>, q: Query<LicenseQuery>) -> Result<HttpResponse> {
    let q = q.into_inner();
    let now = state.clock.now();
    let f = report::LicenseFilter {
        vas: q.va.into_iter().collect(),
        licenses: q.license.into_iter().collect(),
    };
    let list = db(&state, move |c| report::licenses(c, now, &f)).await?;
    rows(&list, q.format, report::licenses_table, "licenses")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    va: Option<String>,
    severity: Option<String>,
    state: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    format: Format,
}

fn one_of(what: &str, v: Option<&str>, allowed: &[&str]) -> Result<()> {
    match v {
        Some(s) if !allowed.contains(&s) => Err(Error::invalid(format!(
            "{what} must be one of {}, got {s:?}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

async fn alerts_list(state: web::Data<AppState>, q: Query<AlertQuery>) -> Result<HttpResponse> {
    let q = q.into_inner();
    one_of("state", q.state.as_deref(), &alerts::STATES)?;
    let now = state.clock.now();
    let f = alerts::Filter {
        va: q.va,
        severity: q
            .severity
            .as_deref()
            .map(|s| Severity::parse_named("severity", s))
            .transpose()?,
        state: Some(q.state.unwrap_or_else(|| "active".into())),
        kind: q
            .kind
            .as_deref()
            .map(|k| AlertKind::parse_named("alert type", k))
            .transpose()?,
    };
    let list = db(&state, move |c| alerts::list(c, &f, now)).await?;
    rows(&list, q.format, report::alerts_table, "alerts")
}

async fn alerts_check(state: web::Data<AppState>) -> Result<HttpResponse> {
    let now = state.clock.now();
    let v = state
        .writer
        .write(move |c| {
            let checked = crate::sync::deadlines::run(c, now)?;
            let out = alerts::evaluate(c, checked.effective_now)?;
            Ok(serde_json::json!({ "deadlines": checked, "alerts": out }))
        })
        .await?;
    Ok(json(&v))
}

async fn alert_dismiss(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    Ok(json(
        &act(&state, &who, move |c, now, actor| {
            alerts::dismiss(c, id, now, actor)
        })
        .await?,
    ))
}

async fn alert_remind_later(
    state: web::Data<AppState>,
    Caller(who): Caller,
    id: Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    Ok(json(
        &act(&state, &who, move |c, now, actor| {
            alerts::remind_later(c, id, now, actor)
        })
        .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    va: Option<String>,
    pi: Option<String>,
    license: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// The newest this many (all by default, streamed a page at a time).
    limit: Option<i64>,
    /// Skipping the newest this many first.
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    format: Format,
}

async fn events_list(state: web::Data<AppState>, q: Query<EventQuery>) -> Result<HttpResponse> {
    let q = q.into_inner();
    if q.limit.is_some_and(|n| n < 1) {
        return Err(Error::invalid("limit must be at least 1"));
    }
    let time = |s: &Option<String>| s.as_deref().map(crate::clock::parse_time).transpose();
    if q.offset < 0 {
        return Err(Error::invalid("offset must be 0 or more"));
    }
    let f = report::EventFilter {
        va_name: q.va,
        pi_uuid: q.pi,
        license_tag: q.license,
        kind: q.kind,
        since: time(&q.since)?,
        until: time(&q.until)?,
        limit: q.limit,
        offset: q.offset,
    };
    let counted = f.clone();
    let total = db(&state, move |c| report::event_count(c, &counted)).await?;
    let mut resp = streamed(
        &state,
        q.format,
        "events",
        report::events_table,
        move |c, sink| report::each_event_page(c, &f, sink),
    );
    resp.headers_mut().insert(
        header::HeaderName::from_static("x-total-count"),
        header::HeaderValue::from(total),
    );
    Ok(resp)
}

async fn events_verify(state: web::Data<AppState>) -> Result<HttpResponse> {
    let v = db(&state, report::verify_events).await?;
    Ok(json(&v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    state: Option<String>,
    va: Option<String>,
    device: Option<String>,
    tag: Option<String>,
}

async fn exports_list(state: web::Data<AppState>, q: Query<ExportQuery>) -> Result<HttpResponse> {
    let q = q.into_inner();
    let f = crate::export::Filter {
        state: q
            .state
            .as_deref()
            .map(|s| ExportState::parse_named("export state", s))
            .transpose()?,
        va: q.va,
        pi: q.device,
        tag: q.tag,
        request: None,
    };
    Ok(json(
        &db(&state, move |c| crate::export::list(c, &f)).await?,
    ))
}

async fn export_show(state: web::Data<AppState>, id: Path<String>) -> Result<HttpResponse> {
    let id = id.into_inner();
    Ok(json(
        &db(&state, move |c| crate::export::show(c, &id)).await?,
    ))
}
