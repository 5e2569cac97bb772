//! The device API. Registration carries a token; every later request is signed with the
//! device's key (`X-Satellite-Signature`: base64 of the DER signature over SHA-256 of the
//! exact body) and carries an increasing `counter`. See docs/device-api.md.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;

use super::{blocking, AppState};
use crate::devices::{
    self, AuthorizationRequest, DeregisterRequest, RegisterRequest, RenewRequest,
};
use crate::error::{Error, Result};

pub const SIGNATURE_HEADER: &str = "X-Satellite-Signature";

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::invalid(format!("invalid request body: {e}")))
}

fn signature(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Authenticates a signed request off the async workers; returns its body parsed.
async fn signed<T: DeserializeOwned + Send + 'static>(
    state: &AppState,
    req: &HttpRequest,
    body: web::Bytes,
    now: i64,
) -> Result<(crate::db::devices::PiRow, T)> {
    let sig = signature(req);
    let store = state.store.clone();
    blocking(move || {
        let mut conn = store.conn()?;
        let (pi, _) = devices::authenticate(&mut conn, &body, sig.as_deref(), now)?;
        Ok((pi, parse::<T>(&body)?))
    })
    .await
}

pub async fn register(state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse> {
    let req: RegisterRequest = parse(&body)?;
    let now = state.clock.now();
    let st = state.get_ref().clone();
    let token = req.token.clone();
    let prepared = blocking(move || {
        let mut conn = st.store.conn()?;
        devices::precheck_token(&mut conn, &st.token_key, &req.token, now)?;
        devices::prepare(&req, &st.device_ca, now)
    })
    .await?;
    let key = state.token_key.clone();
    let mut reg = state
        .writer
        .write(move |c| devices::commit_registration(c, &key, &token, &prepared, now))
        .await?;
    reg.ca_certificate_pem = state.device_ca.cert_pem.clone();
    Ok(HttpResponse::Ok().json(reg))
}

pub async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let now = state.clock.now();
    let (_, areq): (_, AuthorizationRequest) = signed(&state, &req, body, now).await?;
    areq.validate()?;
    let auth = state
        .writer
        .write(move |c| devices::authorize(c, &areq, now))
        .await?;
    Ok(HttpResponse::Ok().json(devices::sign_authorization(&state.device_ca, auth)?))
}

pub async fn renew(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let now = state.clock.now();
    let (pi, rreq): (_, RenewRequest) = signed(&state, &req, body, now).await?;
    let ca = state.device_ca.clone();
    let (rreq, prepared) = blocking(move || {
        let p = devices::prepare_renewal(&rreq, &pi, &ca, now)?;
        Ok((rreq, p))
    })
    .await?;
    let renewal = state
        .writer
        .write(move |c| devices::commit_renewal(c, &rreq, &prepared, now))
        .await?;
    Ok(HttpResponse::Ok().json(renewal))
}

pub async fn deregister(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let now = state.clock.now();
    let (_, dreq): (_, DeregisterRequest) = signed(&state, &req, body, now).await?;
    let pi_id = dreq.pi_id.clone();
    state
        .writer
        .write(move |c| devices::deregister(c, &dreq, now))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "pi_id": pi_id, "status": "deregistered" })))
}

pub async fn ca(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .body(state.device_ca.cert_pem.clone())
}
