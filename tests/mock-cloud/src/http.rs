//! The mock cloud's HTTPS endpoint: the network halves of registration (and later sync).
//!
//! - `POST /api/v1/satellites/register` (application/zip: a registration request) answers
//!   200 with the authorization bundle, or 202 `{"status":"pending"}` while an operator has
//!   not approved it.
//! - `GET /api/v1/satellites/{satellite}/registrations/{request}` answers the same for a
//!   request posted earlier.
//! - `POST /api/v1/satellites/{satellite}/sync` (application/zip: a sync request) answers
//!   200 with the sync response bundle.
//! - `GET /healthz`.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};

use super::service::{self, NetworkAnswer};
use super::{Cloud, CloudError};

/// Largest request body: a sync request of a million devices is tens of MiB.
const MAX_BODY: usize = 512 * 1024 * 1024;

#[derive(Clone)]
pub struct State {
    pub cloud: Arc<Cloud>,
    /// VAs given to every satellite that registers over the network; empty: hold requests.
    pub auto_approve: Arc<Vec<String>>,
}

impl ResponseError for CloudError {
    fn status_code(&self) -> StatusCode {
        match self {
            CloudError::Invalid(_) => StatusCode::BAD_REQUEST,
            CloudError::NotFound(_) => StatusCode::NOT_FOUND,
            CloudError::Conflict(_) => StatusCode::CONFLICT,
            CloudError::Bundle(e) if !e.is_local_failure() => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal error".to_string()
        } else {
            self.to_string()
        };
        HttpResponse::build(status).json(serde_json::json!({ "error": { "message": message } }))
    }
}

pub fn configure(state: State) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(state))
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/api/v1/satellites/register", web::post().to(register))
            .route(
                "/api/v1/satellites/{satellite}/registrations/{request}",
                web::get().to(poll),
            )
            .route("/api/v1/satellites/{satellite}/sync", web::post().to(sync));
    }
}

fn answer(a: NetworkAnswer) -> HttpResponse {
    match a {
        NetworkAnswer::Authorized(bytes) => HttpResponse::Ok()
            .content_type("application/zip")
            .body(bytes),
        NetworkAnswer::Pending {
            satellite_id,
            request_id,
        } => HttpResponse::Accepted().json(serde_json::json!({
            "status": "pending",
            "satellite_id": satellite_id,
            "request_id": request_id,
            "message": "the registration request waits for an operator's approval",
        })),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CloudError> + Send + 'static,
) -> Result<T, CloudError> {
    web::block(f)
        .await
        .map_err(|e| CloudError::Internal(e.to_string()))?
}

async fn register(state: web::Data<State>, body: web::Bytes) -> Result<HttpResponse, CloudError> {
    let s = state.get_ref().clone();
    let a = blocking(move || service::register_network(&s.cloud, &body, &s.auto_approve)).await?;
    Ok(answer(a))
}

async fn poll(
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, CloudError> {
    let (sid, rid) = path.into_inner();
    let cloud = state.cloud.clone();
    let a = blocking(move || service::poll(&cloud, &sid, &rid)).await?;
    Ok(answer(a))
}

async fn sync(
    state: web::Data<State>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, CloudError> {
    let satellite = path.into_inner();
    let cloud = state.cloud.clone();
    let (bytes, _) = blocking(move || {
        super::sync::process(&cloud, std::io::Cursor::new(body), Some(&satellite))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .body(bytes))
}
