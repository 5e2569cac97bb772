//! The satellite's one error type, mapped once to CLI exit codes ([`Error::exit_code`]) and
//! once to HTTP responses (the `ResponseError` impl in `http::errors`).
//!
//! Each variant has a stable code (`Error::code`) an operator can grep for in logs and that
//! API clients can match on.

use std::path::PathBuf;

use crate::config::ConfigError;

/// What a refusal says, and its stable code: a specific one (`token_expired`) where a
/// caller can act on it, else its variant's (`unauthorized`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: Option<&'static str>,
    pub message: String,
}

impl Reason {
    /// A message with its own code.
    pub fn new(code: &'static str, message: impl Into<String>) -> Reason {
        Reason {
            code: Some(code),
            message: message.into(),
        }
    }
}

impl From<String> for Reason {
    fn from(message: String) -> Reason {
        Reason {
            code: None,
            message,
        }
    }
}

impl From<&str> for Reason {
    fn from(message: &str) -> Reason {
        Reason::from(message.to_string())
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file, environment variable or flag is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A command-line argument or request field is malformed.
    #[error("{0}")]
    Invalid(Reason),

    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(Reason),

    /// The caller is not who it must be (bad token, bad signature, expired identity).
    #[error("{0}")]
    Unauthorized(Reason),

    /// The caller is known but may not do this (e.g. a device without export-controlled
    /// functionality asking for a restricted license).
    #[error("{0}")]
    Forbidden(Reason),

    /// A request body not sent within its deadline.
    #[error("{0}")]
    RequestTimeout(String),

    /// A request body over the route's limit.
    #[error("{0}")]
    PayloadTooLarge(String),

    /// Too many attempts (failed logins); the message says how long to wait.
    #[error("{0}")]
    TooManyRequests(String),

    /// The request is well-formed but conflicts with the current state.
    #[error("{0}")]
    Conflict(Reason),

    /// The satellite is in a state where this cannot be done (e.g. not registered).
    #[error("{0}")]
    State(Reason),

    /// The satellite was removed (90 days without a sync) and must be registered again.
    #[error("{0}")]
    Removed(Reason),

    /// The manual clock was used while `[testing] manual_clock` is off.
    #[error(
        "the manual clock is disabled: set `[testing] manual_clock = true` (or \
         SATELLITE_TESTING_MANUAL_CLOCK=true) to move time by hand; never in production"
    )]
    ManualClockDisabled,

    /// The data directory cannot be created or written.
    #[error("data directory {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),

    #[error("database connection error: {0}")]
    Pool(String),

    #[error("database migration failed: {0}")]
    Migration(String),

    #[error("TLS set-up failed: {0}")]
    Tls(String),

    #[error("cryptography error: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),

    /// The cloud could not be reached, or refused what we sent.
    #[error("{0}")]
    Cloud(String),

    /// A bundle was refused (malformed, altered, untrusted, expired, for another satellite...).
    #[error("bundle refused: {0}")]
    Bundle(#[from] sync_format::Error),

    /// A first registration brought a cloud CA the operator has not vouched for.
    #[error(
        "bundle refused: the authorization is signed under a cloud CA this satellite does not \
         trust yet, with the SHA-256 fingerprint {found}. Check that fingerprint with the \
         cloud's operator (the mock cloud prints it with `mock-cloud ca`), then accept it by \
         giving it with the authorization (`satellite register import FILE \
         --cloud-ca-fingerprint {found}`, or the console's and the operator API's \
         cloud_ca_fingerprint), or set [cloud] ca_file to the cloud's CA certificate"
    )]
    UntrustedCloudCa { found: String },

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// Evidence of tampering (the event log's hash chain is broken).
    #[error("{0}")]
    Tampered(String),

    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A short stable code for logs and API bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Invalid(r) => r.code.unwrap_or("invalid"),
            Error::NotFound(r) => r.code.unwrap_or("not_found"),
            Error::Unauthorized(r) => r.code.unwrap_or("unauthorized"),
            Error::Forbidden(r) => r.code.unwrap_or("forbidden"),
            Error::Conflict(r) => r.code.unwrap_or("conflict"),
            Error::TooManyRequests(_) => "too_many_requests",
            Error::PayloadTooLarge(_) => "too_large",
            Error::RequestTimeout(_) => "request_timeout",
            Error::State(r) => r.code.unwrap_or("state"),
            Error::Removed(r) => r.code.unwrap_or("satellite_removed"),
            Error::ManualClockDisabled => "manual_clock_disabled",
            Error::DataDir { .. } => "data_dir",
            Error::File { .. } => "file",
            e if e.is_busy() => "busy",
            Error::Database(_) => "database",
            Error::Pool(_) => "database_pool",
            Error::Migration(_) => "migration",
            Error::Tls(_) => "tls",
            Error::Crypto(_) => "crypto",
            Error::Cloud(_) => "cloud",
            Error::Bundle(e) => e.code(),
            Error::UntrustedCloudCa { .. } => "unpinned_ca",
            Error::Io(_) => "io",
            Error::Tampered(_) => "tampered",
            Error::Internal(_) => "internal",
        }
    }

    /// Exit code of the CLI: 2 for a usage or input error, 3 for evidence of tampering, 1 for
    /// a runtime failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_)
            | Error::Invalid(_)
            | Error::NotFound(_)
            | Error::Unauthorized(_)
            | Error::Forbidden(_)
            | Error::Conflict(_)
            | Error::TooManyRequests(_)
            | Error::PayloadTooLarge(_)
            | Error::RequestTimeout(_)
            | Error::State(_)
            | Error::Removed(_)
            | Error::ManualClockDisabled
            | Error::UntrustedCloudCa { .. } => 2,
            Error::Bundle(e) if !e.is_local_failure() => 2,
            Error::Tampered(_) => 3,
            _ => 1,
        }
    }

    /// The store could not be had in time (locked by another writer, or no pooled
    /// connection free): the request may simply be tried again a moment later.
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Pool(_) => true,
            Error::Database(diesel::result::Error::DatabaseError(_, info)) => {
                let m = info.message();
                m.contains("database is locked") || m.contains("busy")
            }
            _ => false,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(Reason::from(msg.into()))
    }

    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::File {
            path: path.into(),
            source,
        }
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Error::Pool(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_exit_2_runtime_errors_exit_1() {
        assert_eq!(Error::invalid("x").exit_code(), 2);
        assert_eq!(Error::ManualClockDisabled.exit_code(), 2);
        assert_eq!(Error::Internal("x".into()).exit_code(), 1);
        assert_eq!(
            Error::DataDir {
                path: "/x".into(),
                reason: "y".into()
            }
            .exit_code(),
            1
        );
    }
}
