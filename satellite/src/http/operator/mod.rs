//! Operator access over HTTP: the operator API (`/api/v1/operator/...`, JSON) and the web
//! console (`/console/...`, server-rendered HTML).
//!
//! Every operator route is declared once, in [`declare`], with the least role it needs.
//! The same declaration registers the routes ([`configure`]) and lists them ([`routes`]), so
//! the test that calls every route as an anonymous and as an under-privileged caller sees
//! exactly what the server serves. Each route is wrapped in [`gate`], which authenticates
//! (session cookie or `Authorization: Bearer` API token), checks the role and, for a browser
//! session, the CSRF token of every state-changing request, before the handler runs. A
//! handler reads its caller with the [`Caller`] extractor, which fails closed.

mod api;
mod console;
mod form;
mod ops;

use std::future::{ready, Ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use actix_web::{guard, web, FromRequest, Handler, HttpMessage, HttpRequest, HttpResponse};
use actix_web::{Responder, ResponseError};

use super::{blocking, AppState};
use crate::error::Error;
use crate::operators::{self, Principal, Role, Via};

pub use console::ConsoleState;
pub use form::FormData;

/// Name of the browser session cookie.
pub const SESSION_COOKIE: &str = "__Host-satellite_session";
/// The session cookie's name under `[server] plain_http`, where a browser would refuse the
/// `__Host-` prefix (it needs `Secure`).
pub const PLAIN_SESSION_COOKIE: &str = "satellite_session";

/// The session cookie's name: `__Host-` prefixed over TLS, so that a browser keeps it to
/// this host, `Secure` and path `/`, and no other host or path can set or shadow it.
pub fn session_cookie(plain_http: bool) -> &'static str {
    if plain_http {
        PLAIN_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}
/// Header carrying the CSRF token for API calls made with a browser session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest upload (sync response, authorization file) through the console or API. Larger
/// bundles go through the CLI, which streams them.
pub const UPLOAD_LIMIT: usize = 64 * 1024 * 1024;
/// The largest body of a route open to anyone (the login form): nothing unauthenticated
/// makes the server buffer more than this.
pub const OPEN_BODY_LIMIT: usize = 16 * 1024;

/// What a route answers with, which decides how a refusal looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// JSON: refusals are JSON errors (401, 403).
    Api,
    /// HTML: an anonymous caller is sent to the login page, others get an error page.
    Page,
}

/// One operator route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    /// `None`: open to anyone (the login page, the stylesheet).
    pub role: Option<Role>,
    pub kind: Kind,
}

/// Where [`declare`] puts each route: the actix app, or a list.
pub trait RouteSink {
    fn add<F, Args>(&mut self, route: RouteInfo, handler: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static;
}

/// Every operator route, with the role it needs.
pub fn declare(r: &mut impl RouteSink) {
    api::declare(r);
    console::declare(r);
}

/// The operator routes, as [`configure`] registers them.
pub fn routes() -> Vec<RouteInfo> {
    struct List(Vec<RouteInfo>);
    impl RouteSink for List {
        fn add<F, Args>(&mut self, route: RouteInfo, _handler: F)
        where
            F: Handler<Args>,
            Args: FromRequest + 'static,
            F::Output: Responder + 'static,
        {
            self.0.push(route);
        }
    }
    let mut l = List(Vec::new());
    declare(&mut l);
    l.0
}

/// Registers the operator routes on an app (the console's own listener, or the device
/// listener when the console shares it).
pub fn configure(cfg: &mut web::ServiceConfig) {
    struct Register<'a>(&'a mut web::ServiceConfig);
    impl RouteSink for Register<'_> {
        fn add<F, Args>(&mut self, route: RouteInfo, handler: F)
        where
            F: Handler<Args>,
            Args: FromRequest + 'static,
            F::Output: Responder + 'static,
        {
            let RouteInfo {
                method,
                path,
                role,
                kind,
            } = route;
            // Bodies of open routes stay small; large ones (uploads) only behind the gate,
            // which authenticates before the handler reads any body.
            let limit = if role.is_some() {
                UPLOAD_LIMIT
            } else {
                OPEN_BODY_LIMIT
            };
            // The method is a resource guard, so two resources may share a path.
            self.0.service(
                web::resource(path)
                    .guard(guard::Method(method.clone()))
                    .app_data(web::PayloadConfig::new(limit))
                    .wrap(from_fn(move |req, next| gate(role, kind, req, next)))
                    .route(web::method(method).to(handler)),
            );
        }
    }
    declare(&mut Register(cfg));
    cfg.route("/console", web::get().to(console::to_dashboard));
    // Prometheus: an API credential of any role, unless `[metrics] public = true`.
    cfg.service(
        web::resource("/metrics")
            .guard(guard::Get())
            .wrap(from_fn(|req: ServiceRequest, next| async move {
                let public = req
                    .app_data::<web::Data<AppState>>()
                    .is_some_and(|s| s.config.metrics.public);
                let role = if public { None } else { Some(Role::Auditor) };
                gate(role, Kind::Api, req, next).await
            }))
            .route(web::get().to(metrics)),
    );
}

/// `GET /metrics`: the text exposition format.
async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let queued = state.writer.queued();
    let s = state.clone();
    let text =
        blocking(move || crate::metrics::render(&s.store, &s.config, now, &s.metrics, queued))
            .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// The authenticated caller of a route, put there by [`gate`]. Extracting it where the gate
/// did not run is a 401, never a pass.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = Error;
    type Future = Ready<Result<Caller, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .map(Caller)
                .ok_or_else(|| Error::Unauthorized("log in first".into())),
        )
    }
}

fn bearer(req: &ServiceRequest) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Authenticates, checks the role and the CSRF token, then runs the handler.
async fn gate(
    role: Option<Role>,
    kind: Kind,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(needed) = role else {
        return Ok(with_headers(next.call(req).await?, kind).map_into_left_body());
    };
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(Error::Internal("no application state".into()).into());
    };
    let token = bearer(&req);
    let cookie = req
        .cookie(session_cookie(state.config.server.plain_http))
        .map(|c| c.value().to_string());
    let now = state.clock.now();
    let store = state.store.clone();
    let who = blocking(move || {
        let conn = &mut *store.conn()?;
        let who = match (token, cookie) {
            (Some(t), _) => operators::by_api_token(conn, &t, now)?,
            (None, Some(c)) => operators::by_session(conn, &c, now)?,
            (None, None) => None,
        };
        let note = match &who {
            Some(Principal {
                via: Via::ApiToken(id),
                ..
            }) if operators::api_token_use_due(conn, *id, now)? => Some(*id),
            _ => None,
        };
        Ok::<_, Error>((who, note))
    })
    .await;
    let who = match who {
        Ok((who, Some(id))) => state
            .writer
            .write(move |c| operators::note_api_token_use(c, id, now))
            .await
            .map(|()| who),
        Ok((who, None)) => Ok(who),
        Err(e) => Err(e),
    };
    let who = match who {
        Ok(w) => w,
        Err(e) => return Ok(refuse(req, kind, e, None)),
    };
    let Some(who) = who else {
        let e = Error::Unauthorized(
            "authentication required: log in, or send `Authorization: Bearer <API token>`".into(),
        );
        return Ok(refuse(req, kind, e, None));
    };
    if let Err(e) = who.require(needed) {
        return Ok(refuse(req, kind, e, Some(&who)));
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if changes {
        if let Via::Session { csrf, .. } = &who.via {
            if let Err(e) = check_csrf(&mut req, kind, csrf).await {
                return Ok(refuse(req, kind, e, Some(&who)));
            }
        }
    }
    req.extensions_mut().insert(who);
    Ok(with_headers(next.call(req).await?, kind).map_into_left_body())
}

/// A browser session's state-changing request must carry the session's CSRF token: in the
/// `X-CSRF-Token` header (API) or the form's `csrf` field (console; the form is read here
/// and handed to the handler as [`FormData`]).
async fn check_csrf(req: &mut ServiceRequest, kind: Kind, csrf: &str) -> Result<(), Error> {
    let wrong = || {
        Error::Forbidden(
            "the form is stale or was not sent by this console (CSRF check failed): reload the \
             page and try again"
                .into(),
        )
    };
    if kind == Kind::Api {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        return match sent {
            Some(s) if form::same(s, csrf) => Ok(()),
            _ => Err(wrong()),
        };
    }
    let data = FormData::read(req).await?;
    match data.field("csrf") {
        Some(s) if form::same(s, csrf) => {
            req.extensions_mut().insert(data);
            Ok(())
        }
        _ => Err(wrong()),
    }
}

fn refuse<B>(
    req: ServiceRequest,
    kind: Kind,
    e: Error,
    who: Option<&Principal>,
) -> ServiceResponse<EitherBody<B>> {
    let resp = match (kind, &e) {
        (Kind::Page, Error::Unauthorized(_)) => {
            let next = req.path().to_string();
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, console::login_url(&next)))
                .finish()
        }
        (Kind::Page, _) => console::error_page(&e, who),
        (Kind::Api, _) => e.error_response(),
    };
    let resp = if matches!(e, Error::Unauthorized(_)) && kind == Kind::Api {
        let mut r = resp;
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"satellite operator API\""),
        );
        r
    } else {
        resp
    };
    with_headers(req.into_response(resp), kind).map_into_right_body()
}

/// Headers of every operator response: HTTPS only (HSTS), nothing cached, no framing, no
/// referrer; the console loads nothing from anywhere else.
fn with_headers<B>(mut res: ServiceResponse<B>, kind: Kind) -> ServiceResponse<B> {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Browsers take it only over HTTPS; a year, and only this host (it may be an address).
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if kind == Kind::Page {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    res
}

/// Runs store reads for an operator request off the async workers (writes go through
/// [`act`]).
async fn db<T, F>(state: &AppState, f: F) -> Result<T, Error>
where
    F: FnOnce(&mut diesel::SqliteConnection) -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    let store = state.store.clone();
    blocking(move || f(&mut *store.conn()?)).await
}

/// Runs a change on behalf of `who`, through the one writer: store work given the time and
/// the name the event log records for the caller.
async fn act<T, F>(state: &AppState, who: &Principal, f: F) -> Result<T, Error>
where
    F: FnOnce(&mut diesel::SqliteConnection, i64, &str) -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    let (now, actor) = (state.clock.now(), who.actor());
    state.writer.write(move |c| f(c, now, &actor)).await
}

#[cfg(test)]
mod tests;
