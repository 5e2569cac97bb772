//! The running server, assembled: the single writer, the shared state, the sync scheduler
//! and the HTTPS listeners (device API and console), with our own SIGINT/SIGTERM handling
//! that stops accepting, lets in-flight requests finish and closes the store. `satellite
//! serve` opens the store and calls [`run`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{App, HttpServer};

use crate::error::{Error, Result};
use crate::http::{self, AppState};
use crate::tls;

/// How long in-flight requests get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs the satellite's server on an opened store until SIGINT or SIGTERM, then stops the
/// scheduler and lets the writer finish its queue.
pub fn run(
    config: std::sync::Arc<crate::config::Config>,
    store: crate::db::Store,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> Result<()> {
    let (writer, writer_thread) = crate::db::writer::Writer::start(&store)?;
    let state = AppState::new(config, store, clock, writer)?;
    let scheduler = crate::sync::network::Scheduler::start(
        state.store.clone(),
        state.config.clone(),
        state.clock.clone(),
    )?;
    let served = actix_web::rt::System::new().block_on(serve(state));
    scheduler.stop();
    // No request is in flight any more: the writer finishes its queue and ends.
    writer_thread.stop();
    tracing::info!("database closed");
    served
}

/// Serves until SIGINT or SIGTERM. Must run inside an actix system.
pub async fn serve(state: AppState) -> Result<()> {
    let cfg = state.config.clone();
    let listen = cfg.server.listen;
    let workers = match cfg.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n as usize,
    };

    // Limits no client may exceed (see `http::limits`): connections per client address over
    // both listeners, a deadline for a request's head and TLS handshake, one for its body,
    // and connections in total (split among the device listener's workers; the console's
    // one worker takes up to a tenth more).
    let per_client =
        http::limits::ClientConnections::new(cfg.server.max_connections_per_client as usize);
    let head_timeout = Duration::from_secs(u64::from(cfg.server.request_head_timeout_seconds));
    let body_timeout = Duration::from_secs(u64::from(cfg.server.body_timeout_seconds));
    let total = cfg.server.max_connections as usize;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(move |req, next| {
                http::limits::gate(body_timeout, req, next)
            }))
            .wrap(ErrorHandlers::new().default_handler(http::errors::as_json))
            .configure(http::configure(app_state.clone()))
    })
    .workers(workers)
    .max_connections(total.div_ceil(workers).max(1))
    .client_request_timeout(head_timeout)
    .tls_handshake_timeout(head_timeout)
    .on_connect(http::limits::on_connect(per_client.clone()))
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs());
    // The console's own listener, when it has one: the operator API and console only.
    let console_state = state.clone();
    let console = cfg.console.own_listener().map(|addr| {
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(move |req, next| {
                    http::limits::gate(body_timeout, req, next)
                }))
                .wrap(ErrorHandlers::new().default_handler(http::errors::as_json))
                .configure(http::configure_console(console_state.clone()))
        })
        .workers(1)
        .max_connections((total / 10).max(16))
        .client_request_timeout(head_timeout)
        .tls_handshake_timeout(head_timeout)
        .on_connect(http::limits::on_connect(per_client.clone()))
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs());
        (addr, server)
    });

    let tls = if cfg.server.plain_http {
        tracing::warn!(
            "serving PLAIN HTTP ([server] plain_http = true): tokens, device identities and \
             operator passwords travel unencrypted"
        );
        None
    } else {
        let name = crate::config::hostname();
        let cert = tls::server_cert(
            &cfg.server,
            state.store.data_dir(),
            &name,
            state.clock.now(),
        )?;
        tracing::info!(
            cert = %cert.cert_path.display(),
            self_signed = cert.self_signed,
            sha256_fingerprint = %cert.fingerprint,
            "TLS certificate"
        );
        Some(cert)
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Binds a server to an address, with TLS unless serving plain HTTP.
    macro_rules! bind {
        ($server:expr, $addr:expr) => {{
            let addr = $addr;
            let bind_err =
                |e: std::io::Error| Error::Invalid(format!("cannot listen on {addr}: {e}").into());
            match &tls {
                Some(cert) => $server
                    .bind_openssl(addr, tls::acceptor(cert)?)
                    .map_err(bind_err)?,
                None => $server.bind(addr).map_err(bind_err)?,
            }
        }};
    }
    let server = bind!(server, listen);
    let serves = if console.is_some() {
        "devices"
    } else {
        "devices, operator console and API"
    };
    for addr in server.addrs() {
        tracing::info!(%addr, %scheme, serves, "listening");
    }
    let console = match console {
        Some((addr, c)) => {
            let c = bind!(c, addr);
            for addr in c.addrs() {
                let url = format!("{scheme}://{addr}/console/");
                tracing::info!(%addr, %scheme, serves = "operator console and API", %url, "listening");
            }
            Some(c.run())
        }
        None => None,
    };
    let server = server.run();
    state.ready.store(true, Ordering::Release);
    tracing::info!("ready");
    crate::notify::notify("READY=1\nSTATUS=serving");
    if let Some(every) = crate::notify::watchdog_interval() {
        // Pinged from the server's own runtime: a wedged runtime stops the pings.
        actix_web::rt::spawn(async move {
            let mut tick = actix_web::rt::time::interval(every / 2);
            loop {
                tick.tick().await;
                crate::notify::notify("WATCHDOG=1");
            }
        });
    }

    let handle = server.handle();
    let console_handle = console.as_ref().map(|c| c.handle());
    actix_web::rt::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(%signal, "shutting down: no new connections, finishing requests in flight");
        crate::notify::notify("STOPPING=1\nSTATUS=stopping");
        match console_handle {
            Some(c) => {
                tokio::join!(handle.stop(true), c.stop(true));
            }
            None => handle.stop(true).await,
        }
    });
    match console {
        Some(c) => {
            let (a, b) = tokio::join!(server, c);
            a?;
            b?;
        }
        None => server.await?,
    }
    tracing::info!("stopped");
    Ok(())
}

pub async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the satellite with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
