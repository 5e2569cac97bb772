//! HTTP front end. Handlers only translate between HTTP and the domain modules; they never
//! touch SQL, and database work runs on the blocking pool (`web::block`), never on an actix
//! worker thread.
//!
//! [`configure`] is the one app factory, used by `satellite serve` and by tests.

mod devices;
pub mod errors;
mod health;
pub mod limits;
pub mod operator;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix_web::web;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::writer::Writer;
use crate::db::Store;
use crate::error::Error;
use crate::identity::{DeviceCa, TokenKey};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// Every write of the server goes through it.
    pub writer: Writer,
    pub device_ca: Arc<DeviceCa>,
    pub token_key: Arc<TokenKey>,
    /// Devices' keys, so signed requests need no store read.
    pub identities: Arc<crate::devices::IdentityCache>,
    /// The console's failed-login counter and uploads waiting to be applied.
    pub console: Arc<operator::ConsoleState>,
    /// Set once migrations ran and the listeners are bound.
    pub ready: Arc<AtomicBool>,
    /// Device requests counted for `/metrics`.
    pub metrics: crate::metrics::Live,
}

impl AppState {
    /// The state of a server over `store`: the device CA and token key from its data
    /// directory, empty caches, not ready yet.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        clock: Arc<dyn Clock>,
        writer: Writer,
    ) -> crate::error::Result<AppState> {
        Ok(AppState {
            device_ca: Arc::new(crate::identity::device_ca(store.data_dir())?),
            token_key: Arc::new(crate::identity::token_key(store.data_dir())?),
            identities: Arc::default(),
            console: Arc::default(),
            config,
            // Every write of the server through the one writer; pooled connections only read.
            store: store.serving(writer.clone()),
            clock,
            writer,
            ready: Arc::new(AtomicBool::new(false)),
            metrics: crate::metrics::Live::default(),
        })
    }
}

/// Registers every device route (and the operator routes when the console shares the
/// device listener), the request-size limits and the error mapping of body parsing.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let limit = usize::try_from(state.config.server.max_body_bytes).unwrap_or(usize::MAX);
        let own_console = state.config.console.own_listener().is_some();
        cfg.app_data(web::Data::new(state))
            .app_data(web::PayloadConfig::new(limit))
            .app_data(
                web::JsonConfig::default()
                    .limit(limit)
                    .error_handler(|err, _req| errors::json_error(err)),
            )
            .app_data(web::PathConfig::default().error_handler(errors::path_error))
            .app_data(web::QueryConfig::default().error_handler(errors::query_error))
            .default_service(web::to(errors::no_route))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .service(
                web::scope("/api/v1/devices")
                    .wrap(actix_web::middleware::from_fn(observe))
                    .route("/register", web::post().to(devices::register))
                    .route("/authorize", web::post().to(devices::authorize))
                    .route("/renew", web::post().to(devices::renew))
                    .route("/deregister", web::post().to(devices::deregister))
                    .route("/export/request", web::post().to(devices::export_request))
                    .route("/export/return", web::post().to(devices::export_return))
                    .route("/ca", web::get().to(devices::ca)),
            );
        if !own_console {
            operator::configure(cfg);
        }
    }
}

/// The app of the console's own listener: the operator API and console, and the health
/// checks.
pub fn configure_console(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let limit = usize::try_from(state.config.server.max_body_bytes).unwrap_or(usize::MAX);
        cfg.app_data(web::Data::new(state))
            .app_data(
                web::JsonConfig::default()
                    .limit(limit)
                    .error_handler(|err, _req| errors::json_error(err)),
            )
            .app_data(web::PathConfig::default().error_handler(errors::path_error))
            .app_data(web::QueryConfig::default().error_handler(errors::query_error))
            .default_service(web::to(errors::no_route))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz));
        operator::configure(cfg);
    }
}

/// Counts a device request for `/metrics`: its route pattern, status and time.
async fn observe(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let res = next.call(req).await?;
    if let Some(m) = metrics {
        m.observe(
            &route,
            res.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(res)
}

/// Runs blocking (database) work off the async workers.
pub async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    web::block(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}
