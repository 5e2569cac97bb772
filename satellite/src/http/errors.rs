//! The one mapping of [`Error`] to HTTP. A 4xx body says exactly what was wrong with the
//! request; a 5xx body says nothing internal (the detail goes to the log).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::Error;

#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            // Not now: try again in a moment (with `Retry-After`).
            e if e.is_busy() => StatusCode::SERVICE_UNAVAILABLE,
            Error::Config(_) | Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Conflict(_) | Error::State(_) | Error::Tampered(_) => StatusCode::CONFLICT,
            Error::ManualClockDisabled => StatusCode::FORBIDDEN,
            Error::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            // A device treats this as a lost license authority: it keeps its current
            // authorization until it expires, then runs in its grace period.
            Error::Removed(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Bundle(e) if !e.is_local_failure() => StatusCode::UNPROCESSABLE_ENTITY,
            Error::UntrustedCloudCa { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Cloud(_) => StatusCode::BAD_GATEWAY,
            Error::DataDir { .. }
            | Error::File { .. }
            | Error::Database(_)
            | Error::Pool(_)
            | Error::Migration(_)
            | Error::Tls(_)
            | Error::Crypto(_)
            | Error::Bundle(_)
            | Error::Io(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if self.is_busy() {
            tracing::warn!(error = %self, "the store is busy: the client is told to retry");
            let mut r = body(
                status,
                self.code(),
                "the satellite is busy: try again in a moment".into(),
            );
            r.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
            return r;
        }
        let message = if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
            "internal error; see the satellite's log".to_string()
        } else {
            self.to_string()
        };
        body(status, self.code(), message)
    }
}

/// What a busy answer asks the client to wait, in seconds.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// The documented error body for `status`, with `code` and `message`.
fn body(status: StatusCode, code: &str, message: String) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message,
        },
    })
}

/// Unknown routes (the app's default service): the documented 404.
pub async fn no_route(req: actix_web::HttpRequest) -> HttpResponse {
    body(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such route: {} {}", req.method(), req.path()),
    )
}

/// An extractor's error answered with the documented body.
fn refused<E>(err: E, status: StatusCode, code: &str, message: String) -> actix_web::Error
where
    E: std::fmt::Debug + std::fmt::Display + 'static,
{
    actix_web::error::InternalError::from_response(err, body(status, code, message)).into()
}

/// A path parameter that does not parse (`/tokens/abc`): 400 naming it.
pub fn path_error(
    err: actix_web::error::PathError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    let message = format!("invalid path parameter: {err}");
    refused(err, StatusCode::BAD_REQUEST, "invalid", message)
}

/// A query string that does not parse: 400 naming the problem.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    let message = format!("invalid query string: {err}");
    refused(err, StatusCode::BAD_REQUEST, "invalid", message)
}

/// Every other error answer that actix makes itself in plain text (a 405, a 413 for a body
/// over a route's limit, ...) becomes the documented JSON; JSON and HTML (console pages)
/// answers pass unchanged. Wraps both apps of `serve`.
pub fn as_json<B: actix_web::body::MessageBody + 'static>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::http::header::CONTENT_TYPE;
    use actix_web::middleware::ErrorHandlerResponse;
    let ct = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/json") || ct.starts_with("text/html") {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (method, path) = (
        res.request().method().clone(),
        res.request().path().to_string(),
    );
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", format!("no such route: {method} {path}")),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            format!("the request body is larger than {path} accepts"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("content_type", "unsupported content type".to_string())
        }
        s if s.is_server_error() => (
            "internal",
            "internal error; see the satellite's log".to_string(),
        ),
        s => (
            "invalid",
            s.canonical_reason().unwrap_or("bad request").to_string(),
        ),
    };
    let (req, _) = res.into_parts();
    let r = body(status, code, message);
    Ok(ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, r).map_into_right_body(),
    ))
}

/// Maps a JSON body that could not be read to a 400 (or 413) naming the problem.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let (status, code) = match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        }
        J::ContentType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content_type"),
        _ => (StatusCode::BAD_REQUEST, "invalid"),
    };
    let message = format!("invalid request body: {err}");
    refused(err, status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_store_is_503_with_retry_after() {
        let locked = Error::Database(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new(String::from("database is locked")),
        ));
        assert!(locked.is_busy());
        let r = locked.error_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers()
                .get(actix_web::http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some(RETRY_AFTER_SECONDS)
        );
        assert_eq!(locked.code(), "busy");
        assert!(!Error::Internal("x".into()).is_busy());
    }
    use actix_web::body::MessageBody;

    fn body(e: &Error) -> ErrorBody {
        let bytes = e.error_response().into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn client_errors_say_what_server_errors_hide() {
        let e = Error::invalid("days must be 1..365, got 400");
        assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
        assert_eq!(body(&e).error.message, "days must be 1..365, got 400");

        let e = Error::Internal("secret path /var/lib/x".into());
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let b = body(&e);
        assert_eq!(b.error.code, "internal");
        assert!(!b.error.message.contains("/var/lib"));

        assert_eq!(
            Error::NotFound("x".into()).status_code(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Error::Conflict("x".into()).status_code(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            Error::ManualClockDisabled.status_code(),
            StatusCode::FORBIDDEN
        );
    }
}
