//! Configuration: built-in defaults < config file < `SATELLITE_<SECTION>_<KEY>` environment
//! variables < command-line flags.
//!
//! The built-in defaults are `config/satellite.toml` itself (embedded at build time), so the
//! documented file and the binary cannot drift apart. Every value is checked by key before it
//! is used: an unknown key or a bad value is an error naming the key, the value, where it came
//! from and what is allowed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The documented default configuration file, embedded.
pub const DEFAULT_TOML: &str = include_str!("../../../config/satellite.toml");

/// Prefix of the environment variables that override single keys.
pub const ENV_PREFIX: &str = "SATELLITE_";
/// Shortest operator password accepted (`[console] admin_password`, and every account).
/// Configuration is a leaf: it owns the constants its checks need, and the domain uses them.
pub const MIN_PASSWORD: usize = 10;
/// Environment variables of that prefix that are not configuration keys: secrets a single
/// command reads (never stored, never in a file of the data directory).
pub const NOT_CONFIG: &[&str] = &["SATELLITE_BACKUP_PASSPHRASE"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub console: ConsoleConfig,
    pub storage: StorageConfig,
    pub satellite: SatelliteConfig,
    pub cloud: CloudConfig,
    pub sync: SyncConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub testing: TestingConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub hostnames: Vec<String>,
    pub tls_cert: String,
    pub tls_key: String,
    pub plain_http: bool,
    pub max_body_bytes: u64,
    pub workers: u32,
    pub max_connections: u32,
    pub max_connections_per_client: u32,
    pub request_head_timeout_seconds: u32,
    pub body_timeout_seconds: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Empty: the console shares the device listener.
    pub listen: String,
    #[serde(skip_serializing)]
    pub admin_password: String,
}

impl ConsoleConfig {
    /// The console's own address, if it has one (checked when the configuration loaded).
    pub fn own_listener(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub pool_size: u32,
    pub busy_timeout_ms: u32,
    pub synchronous: Synchronous,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

impl Synchronous {
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SatelliteConfig {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    pub url: String,
    pub ca_file: String,
    pub proxy: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    pub schedule: String,
    pub retry_initial_seconds: u32,
    pub retry_max_seconds: u32,
    pub failure_alert_after: u32,
    pub tick_seconds: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `GET /metrics` without authentication (default: an operator account's credentials,
    /// any role, as the operator API takes them).
    pub public: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TestingConfig {
    pub manual_clock: bool,
}

/// A problem with one configuration value, naming where it came from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("configuration file {path} is not valid TOML: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("unknown section [{section}] in {origin}; the sections are: {allowed}")]
    UnknownSection {
        section: String,
        origin: String,
        allowed: String,
    },
    #[error("unknown key `{key}` in {origin}; the keys of [{section}] are: {allowed}")]
    UnknownKey {
        section: String,
        key: String,
        origin: String,
        allowed: String,
    },
    #[error("invalid value {value} for `{key}` in {origin}: expected {allowed}")]
    BadValue {
        key: String,
        value: String,
        origin: String,
        allowed: String,
    },
}

impl Config {
    /// Loads the configuration: defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// As [`Config::load`], with the environment passed in (for tests).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut table = default_table();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            let file_table: toml::Table =
                toml::from_str(&text).map_err(|e| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            merge_file(&mut table, file_table, &path.display().to_string())?;
        }
        merge_env(&mut table, env)?;
        let value = toml::Value::Table(table);
        // Every key and value was checked above, so this only fails on a bug.
        value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::BadValue {
                key: "(configuration)".into(),
                value: String::new(),
                origin: "merged configuration".into(),
                allowed: e.to_string(),
            })
    }

    /// Path of the SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.storage.data_dir.join("satellite.db")
    }

    /// The name the satellite calls itself: configured, or the host name.
    pub fn satellite_name(&self) -> String {
        if self.satellite.name.trim().is_empty() {
            hostname()
        } else {
            self.satellite.name.trim().to_string()
        }
    }

    /// The effective configuration as TOML, for `satellite configtest`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// The machine's host name, or "satellite" if it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "satellite".to_string())
}

fn default_table() -> toml::Table {
    toml::from_str(DEFAULT_TOML).unwrap_or_default()
}

fn sections(table: &toml::Table) -> String {
    table.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn merge_file(base: &mut toml::Table, file: toml::Table, origin: &str) -> Result<(), ConfigError> {
    let allowed_sections = sections(base);
    for (section, value) in file {
        let Some(toml::Value::Table(base_section)) = base.get_mut(&section) else {
            return Err(ConfigError::UnknownSection {
                section,
                origin: origin.to_string(),
                allowed: allowed_sections,
            });
        };
        let toml::Value::Table(entries) = value else {
            return Err(ConfigError::BadValue {
                key: section.clone(),
                value: value.to_string(),
                origin: origin.to_string(),
                allowed: format!("a [{section}] table"),
            });
        };
        for (key, value) in entries {
            set_checked(base_section, &section, &key, value, origin)?;
        }
    }
    Ok(())
}

fn merge_env(base: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    let allowed_sections = sections(base);
    for (name, raw) in env {
        if NOT_CONFIG.contains(&name.as_str()) {
            continue;
        }
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let origin = format!("environment variable {name}");
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = lower.split_once('_') else {
            return Err(ConfigError::UnknownSection {
                section: lower,
                origin,
                allowed: allowed_sections,
            });
        };
        let Some(toml::Value::Table(base_section)) = base.get_mut(section) else {
            return Err(ConfigError::UnknownSection {
                section: section.to_string(),
                origin,
                allowed: allowed_sections,
            });
        };
        let value = match base_section.get(key) {
            Some(current) => env_value(current, raw),
            None => toml::Value::String(raw.clone()),
        };
        set_checked(base_section, section, key, value, &origin)?;
    }
    Ok(())
}

/// Reads an environment string as the type the key has.
fn env_value(current: &toml::Value, raw: &str) -> toml::Value {
    match current {
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => toml::Value::String(raw.to_string()),
        },
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(raw.to_string())),
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    }
}

fn set_checked(
    section_table: &mut toml::Table,
    section: &str,
    key: &str,
    value: toml::Value,
    origin: &str,
) -> Result<(), ConfigError> {
    if !section_table.contains_key(key) {
        return Err(ConfigError::UnknownKey {
            section: section.to_string(),
            key: format!("{section}.{key}"),
            origin: origin.to_string(),
            allowed: section_table.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    if let Err(allowed) = check_value(section, key, &value) {
        return Err(ConfigError::BadValue {
            key: format!("{section}.{key}"),
            // A secret is not repeated in an error message (it may end up in a log).
            value: if key.contains("password") {
                "(hidden)".to_string()
            } else {
                value.to_string()
            },
            origin: origin.to_string(),
            allowed: allowed.to_string(),
        });
    }
    section_table.insert(key.to_string(), value);
    Ok(())
}

/// Checks one value; on failure returns what is allowed.
fn check_value(section: &str, key: &str, v: &toml::Value) -> Result<(), &'static str> {
    use toml::Value as V;
    let int_in = |lo: i64, hi: i64| matches!(v, V::Integer(i) if (lo..=hi).contains(i));
    let ok = match (section, key) {
        ("server", "listen") => {
            matches!(v, V::String(s) if s.parse::<SocketAddr>().is_ok())
        }
        ("server", "hostnames") => match v {
            V::Array(items) => items
                .iter()
                .all(|i| matches!(i, V::String(s) if valid_hostname(s))),
            _ => false,
        },
        ("server", "tls_cert" | "tls_key") | ("satellite", "name") | ("cloud", "ca_file") => {
            matches!(v, V::String(_))
        }
        ("cloud", "url") => matches!(v, V::String(s) if s.is_empty() || s.starts_with("https://")),
        ("console", "listen") => {
            matches!(v, V::String(s) if s.is_empty() || s.parse::<SocketAddr>().is_ok())
        }
        ("console", "admin_password") => matches!(v, V::String(s) if s.is_empty()
            || s.starts_with("$argon2")
            || (s.chars().count() >= MIN_PASSWORD && s.len() <= 1024)),
        ("cloud", "proxy") => matches!(v, V::String(s) if s.is_empty() || s.starts_with("http://")),
        ("server", "plain_http") | ("testing", "manual_clock") | ("metrics", "public") => {
            matches!(v, V::Boolean(_))
        }
        ("server", "max_body_bytes") => int_in(1024, 64 * 1024 * 1024),
        ("server", "workers") => int_in(0, 256),
        ("server", "max_connections") => int_in(16, 1_000_000),
        ("server", "max_connections_per_client") => int_in(1, 1_000_000),
        ("server", "request_head_timeout_seconds") => int_in(1, 300),
        ("server", "body_timeout_seconds") => int_in(1, 3600),
        ("storage", "data_dir") => matches!(v, V::String(s) if !s.trim().is_empty()),
        ("storage", "pool_size") => int_in(1, 64),
        ("storage", "busy_timeout_ms") => int_in(0, 600_000),
        ("storage", "synchronous") => matches!(v, V::String(s) if s == "normal" || s == "full"),
        ("sync", "schedule") => {
            matches!(v, V::String(s) if s.is_empty() || s.parse::<cron::Schedule>().is_ok())
        }
        ("sync", "retry_initial_seconds") => int_in(1, 86_400),
        ("sync", "retry_max_seconds") => int_in(1, 7 * 86_400),
        ("sync", "failure_alert_after") => int_in(1, 100),
        ("sync", "tick_seconds") => int_in(1, 3_600),
        ("log", "level") => {
            matches!(v, V::String(s) if tracing_subscriber::EnvFilter::try_new(s).is_ok())
        }
        ("log", "format") => matches!(v, V::String(s) if s == "text" || s == "json"),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(match (section, key) {
        ("server", "listen") => "an address:port such as 0.0.0.0:443, 127.0.0.1:8443 or [::1]:8443",
        ("server", "hostnames") => {
            "a list of host names or IP addresses, e.g. [\"satellite.example\", \"10.0.0.5\"]"
        }
        ("server", "tls_cert" | "tls_key") => {
            "a path to a PEM file, or \"\" for the self-made certificate"
        }
        ("satellite", "name") => "a string (empty means the host name)",
        ("console", "listen") => {
            "an address:port such as 127.0.0.1:8444 or 0.0.0.0:8444, or \"\" to serve the \
             console on [server] listen"
        }
        ("console", "admin_password") => {
            "a password of at least 10 characters, an argon2 hash, or \"\" for a generated one"
        }
        ("cloud", "ca_file") => "a path to a PEM file, or \"\"",
        ("cloud", "url") => "an https:// URL, or \"\" (plain HTTP to the cloud is never used)",
        ("cloud", "proxy") => "an http:// proxy URL such as http://proxy.example:3128, or \"\"",
        ("server", "plain_http") | ("testing", "manual_clock") | ("metrics", "public") => {
            "true or false"
        }
        ("server", "max_body_bytes") => "an integer from 1024 to 67108864",
        ("server", "workers") => "an integer from 0 (one per core) to 256",
        ("server", "max_connections") => "an integer from 16 to 1000000",
        ("server", "max_connections_per_client") => "an integer from 1 to 1000000",
        ("server", "request_head_timeout_seconds") => "an integer from 1 to 300",
        ("server", "body_timeout_seconds") => "an integer from 1 to 3600",
        ("storage", "data_dir") => "a non-empty directory path",
        ("storage", "pool_size") => "an integer from 1 to 64",
        ("storage", "busy_timeout_ms") => "an integer from 0 to 600000",
        ("storage", "synchronous") => "\"normal\" or \"full\"",
        ("sync", "schedule") => {
            "a cron expression with seconds, e.g. \"0 0 3 * * *\" (03:00 UTC daily), or \"\""
        }
        ("sync", "retry_initial_seconds") => "an integer from 1 to 86400",
        ("sync", "retry_max_seconds") => "an integer from 1 to 604800",
        ("sync", "failure_alert_after") => "an integer from 1 to 100",
        ("sync", "tick_seconds") => "an integer from 1 to 3600",
        ("log", "level") => "error, warn, info, debug, trace or a tracing filter",
        ("log", "format") => "\"text\" or \"json\"",
        _ => "a known key",
    })
}

fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*'))
}

#[cfg(test)]
mod tests;
