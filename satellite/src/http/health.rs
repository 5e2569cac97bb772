//! Liveness and readiness.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::{blocking, AppState};

/// `GET /healthz`: the process is up and serving, and the satellite's time (its injectable
/// clock, which devices and monitors may compare with theirs).
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "time": crate::clock::format(state.clock.now()),
    }))
}

/// `GET /readyz`: migrations ran, the listeners are bound and the database answers.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if !state.ready.load(Ordering::Acquire) {
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "starting" }));
    }
    let store = state.store.clone();
    let db = blocking(move || store.ping()).await;
    match db {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unavailable");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({ "status": "database unavailable" }))
        }
    }
}
