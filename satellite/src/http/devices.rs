//! The device API. Registration carries a token; every later request is signed with the
//! device's key (`X-Satellite-Signature`: base64 of the DER signature over SHA-256 of the
//! exact body) and carries an increasing `counter`. See docs/device-api.md.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;

use super::{blocking, AppState};
use crate::devices::{
    self, AuthorizationRequest, DeregisterRequest, RegisterRequest, RenewRequest,
};
use crate::error::{Error, Reason, Result};

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

/// Authenticates a signed request: the identity from the cache (or, once, from the store
/// off the async workers), the signature checked here. Returns the body parsed.
async fn signed<T: DeserializeOwned>(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
    now: i64,
) -> Result<T> {
    let env = devices::Envelope::parse(body)?;
    let id = match state.identities.get(&env.pi_id) {
        Some(id) => id,
        None => {
            let store = state.store.clone();
            let pi = env.pi_id.clone();
            let id = blocking(move || {
                let mut conn = store.conn()?;
                devices::identity_of(&mut conn, &pi)
            })
            .await?;
            state.identities.put(&env.pi_id, id.clone());
            id
        }
    };
    devices::check_signature(&env.pi_id, &id, body, signature(req).as_deref(), now)?;
    parse(body)
}

pub async fn register(
    state: web::Data<AppState>,
    http_req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let req: RegisterRequest = parse(&body)?;
    let now = state.clock.now();
    // A forged or mistyped token is turned away before any work; whether it is still valid
    // is decided in the writer.
    if crate::tokens::authentic(&state.token_key, &req.token)?.is_none() {
        return Err(crate::tokens::Refusal::Unknown.error());
    }
    let mut prepared = devices::prepare(&req, &state.device_ca, now)?;
    // An active device registering again proves it holds its current key by signing.
    if let Some(sig) = http_req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        let signature = openssl::base64::decode_block(sig.trim()).map_err(|_| {
            Error::Unauthorized(Reason::new(
                "bad_signature",
                format!("{SIGNATURE_HEADER} is not base64"),
            ))
        })?;
        prepared.proof = Some(devices::KeyProof {
            body: body.to_vec(),
            signature,
        });
    }
    let key = state.token_key.clone();
    let identity = devices::DeviceIdentity {
        key: prepared.device_key.clone(),
        not_after: prepared.not_after,
    };
    let token = req.token;
    let mut reg = state
        .writer
        .write(move |c| devices::commit_registration(c, &key, &token, &prepared, now))
        .await?;
    state.identities.put(&reg.pi_id, identity);
    reg.ca_certificate_pem = state.device_ca.cert_pem.clone();
    Ok(HttpResponse::Ok().json(reg))
}

pub async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let now = state.clock.now();
    let areq: AuthorizationRequest = signed(&state, &req, &body, now).await?;
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
    let rreq: RenewRequest = signed(&state, &req, &body, now).await?;
    let st = state.get_ref().clone();
    let (rreq, prepared) = blocking(move || {
        let p = devices::prepare_renewal(&mut *st.store.conn()?, &rreq, &st.device_ca, now)?;
        Ok((rreq, p))
    })
    .await?;
    let identity = devices::DeviceIdentity {
        key: prepared.device_key.clone(),
        not_after: prepared.not_after,
    };
    let renewal = state
        .writer
        .write(move |c| devices::commit_renewal(c, &rreq, &prepared, now))
        .await?;
    state.identities.put(&renewal.pi_id, identity);
    Ok(HttpResponse::Ok().json(renewal))
}

pub async fn deregister(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let now = state.clock.now();
    let dreq: DeregisterRequest = signed(&state, &req, &body, now).await?;
    let pi_id = dreq.pi_id.clone();
    state
        .writer
        .write(move |c| devices::deregister(c, &dreq, now))
        .await?;
    state.identities.remove(&pi_id);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "pi_id": pi_id, "status": "deregistered" })))
}

/// `POST /api/v1/devices/export/request`: queued; 202 with the request id.
pub async fn export_request(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let now = state.clock.now();
    let ereq: crate::export::ExportRequest = signed(&state, &req, &body, now).await?;
    ereq.validate()?;
    let queued = state
        .writer
        .write(move |c| crate::export::request(c, &ereq, now))
        .await?;
    Ok(HttpResponse::Accepted().json(queued))
}

/// `POST /api/v1/devices/export/return`: queued; 202 with the return's id.
pub async fn export_return(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let now = state.clock.now();
    let rreq: crate::export::ExportReturn = signed(&state, &req, &body, now).await?;
    let queued = state
        .writer
        .write(move |c| crate::export::give_back(c, &rreq, now))
        .await?;
    Ok(HttpResponse::Accepted().json(queued))
}

pub async fn ca(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .body(state.device_ca.cert_pem.clone())
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
