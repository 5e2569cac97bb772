//! Operator access: accounts with roles, passwords (argon2id), browser sessions, API tokens
//! for scripts, and the limit on failed logins.
//!
//! Three roles, each allowed what the one below is: an **auditor** reads everything, an
//! **operator** also changes tokens, devices, alerts and syncs, an **admin** also manages
//! accounts and registers the satellite. Secrets the client holds (session ids, API tokens)
//! are stored only as their SHA-256, passwords only as argon2id PHC strings.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use diesel::prelude::*;
use serde::Serialize;

use crate::catalogue::EventKind;
use crate::db::events::{self, NewEvent};
use crate::db::operators as db;
use crate::error::{Error, Reason, Result};
use crate::states::TokenState;

/// What an account may do. Ordered: each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Auditor,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Auditor, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown role {s:?}: expected admin (everything, accounts), operator \
                     (tokens, devices, alerts, sync) or auditor (read-only)"
                ))
            })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a browser session lasts at most, in seconds.
pub const SESSION_SECONDS: i64 = 8 * 3600;
/// Shortest password accepted.
pub use crate::config::MIN_PASSWORD;

mod limiter;
pub use limiter::*;

mod api_tokens;
pub use api_tokens::*;
const MAX_PASSWORD: usize = 1024;
/// Prefix of operator API tokens, so a leaked one is recognisable in logs and scanners.
pub const API_TOKEN_PREFIX: &str = "satop_";

/// An operator account as shown to operators (never the hash).
#[derive(Debug, Clone, Serialize)]
pub struct OperatorView {
    pub username: String,
    pub role: Role,
    pub created_at: String,
    pub password_changed_at: String,
    pub last_login_at: Option<String>,
}

fn view(r: &db::OperatorRow) -> Result<OperatorView> {
    Ok(OperatorView {
        username: r.username.clone(),
        role: Role::parse(&r.role)?,
        created_at: crate::clock::format(r.created_at),
        password_changed_at: crate::clock::format(r.password_changed_at),
        last_login_at: r.last_login_at.map(crate::clock::format),
    })
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    pub operator_id: i64,
    pub username: String,
    pub role: Role,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session, with its form token.
    Session { id_hash: String, csrf: String },
    /// An API token.
    ApiToken(i64),
}

impl Principal {
    /// Refuses unless the caller's role is at least `needed`.
    pub fn require(&self, needed: Role) -> Result<()> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(Error::Forbidden(
                format!(
                    "{} has the role {}; this needs the role {needed} or higher",
                    self.username, self.role
                )
                .into(),
            ))
        }
    }

    /// The name recorded in the event log for what this caller does.
    pub fn actor(&self) -> String {
        match self.via {
            Via::Session { .. } => format!("console:{}", self.username),
            Via::ApiToken(_) => format!("api:{}", self.username),
        }
    }
}

fn principal(r: &db::OperatorRow, via: Via) -> Result<Principal> {
    Ok(Principal {
        operator_id: r.id,
        username: r.username.clone(),
        role: Role::parse(&r.role)?,
        via,
    })
}

/// Hex SHA-256 of a secret a client holds.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(openssl::sha::sha256(secret.as_bytes()))
}

/// `n` random bytes, hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b)?;
    Ok(hex::encode(b))
}

/// A random password of 20 characters from an alphabet without look-alikes.
pub fn generate_password() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 20];
    openssl::rand::rand_bytes(&mut b)?;
    Ok(b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect())
}

pub fn check_username(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(Reason::new(
            "bad_username",
            format!(
                "invalid user name {name:?}: 1 to 64 characters of letters, digits and . _ - @"
            ),
        )))
    }
}

pub fn check_password(pw: &str) -> Result<()> {
    let n = pw.chars().count();
    if n < MIN_PASSWORD {
        return Err(Error::Invalid(Reason::new(
            "password_too_short",
            format!("the password is too short ({n} characters): use at least {MIN_PASSWORD}"),
        )));
    }
    if pw.len() > MAX_PASSWORD {
        return Err(Error::Invalid(Reason::new(
            "password_too_long",
            format!("the password is too long: at most {MAX_PASSWORD} bytes"),
        )));
    }
    Ok(())
}

/// The argon2id PHC string of a password (argon2's default cost: 19 MiB, 2 passes).
pub fn hash_password(pw: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    openssl::rand::rand_bytes(&mut salt)?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::Internal(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))
}

/// Whether `pw` matches the stored PHC string. A hash that does not parse matches nothing.
pub fn verify_password(hash: &str, pw: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A password given in configuration: a PHC string (`$argon2id$...`) is taken as the hash,
/// anything else as the password itself.
fn configured_hash(configured: &str) -> Result<String> {
    if configured.starts_with("$argon2") {
        PasswordHash::new(configured).map_err(|e| {
            Error::invalid(format!(
                "[console] admin_password looks like an argon2 hash but does not parse: {e}"
            ))
        })?;
        Ok(configured.to_string())
    } else {
        check_password(configured)
            .map_err(|e| Error::invalid(format!("[console] admin_password: {e}")))?;
        hash_password(configured)
    }
}

fn log(conn: &mut SqliteConnection, now: i64, actor: &str, message: String) -> Result<()> {
    events::append(
        conn,
        now,
        &NewEvent {
            message,
            actor,
            ..NewEvent::of(EventKind::OperatorAccount)
        },
    )
}

/// First start: with no account at all, creates `admin` with the configured password, or a
/// generated one that is returned so the caller shows it once.
pub fn bootstrap(
    conn: &mut SqliteConnection,
    configured: &str,
    now: i64,
) -> Result<Option<Bootstrapped>> {
    if db::count(conn)? > 0 {
        return Ok(None);
    }
    let (hash, generated) = if configured.is_empty() {
        let pw = generate_password()?;
        (hash_password(&pw)?, Some(pw))
    } else {
        (configured_hash(configured)?, None)
    };
    db::insert(conn, "admin", Role::Admin.as_str(), &hash, now)?;
    log(
        conn,
        now,
        "system",
        "Operator account \"admin\" created with the role admin at first start.".into(),
    )?;
    Ok(Some(Bootstrapped { generated }))
}

/// The first admin account was created; `generated` is its password when none was
/// configured.
#[derive(Debug)]
pub struct Bootstrapped {
    pub generated: Option<String>,
}

pub fn list(conn: &mut SqliteConnection) -> Result<Vec<OperatorView>> {
    db::all(conn)?.iter().map(view).collect()
}

fn get(conn: &mut SqliteConnection, username: &str) -> Result<db::OperatorRow> {
    db::by_name(conn, username)?
        .ok_or_else(|| Error::NotFound(format!("no operator account named {username:?}").into()))
}

pub fn add(
    conn: &mut SqliteConnection,
    username: &str,
    role: Role,
    password: &str,
    now: i64,
    actor: &str,
) -> Result<OperatorView> {
    check_username(username)?;
    check_password(password)?;
    let hash = hash_password(password)?;
    if db::by_name(conn, username)?.is_some() {
        return Err(Error::Conflict(Reason::new(
            "user_exists",
            format!("an operator account named {username:?} already exists"),
        )));
    }
    db::insert(conn, username, role.as_str(), &hash, now)?;
    log(
        conn,
        now,
        actor,
        format!("Operator account \"{username}\" created with the role {role}."),
    )?;
    view(&get(conn, username)?)
}

/// Sets a new password and ends the account's browser sessions.
pub fn passwd(
    conn: &mut SqliteConnection,
    username: &str,
    password: &str,
    now: i64,
    actor: &str,
) -> Result<OperatorView> {
    check_password(password)?;
    let hash = hash_password(password)?;
    let row = get(conn, username)?;
    db::set_password(conn, row.id, &hash, now)?;
    db::delete_sessions_of(conn, row.id)?;
    log(
        conn,
        now,
        actor,
        format!("The password of operator account \"{username}\" was changed."),
    )?;
    view(&get(conn, username)?)
}

/// An operator changes their own password, proving the current one. Ends their sessions.
pub fn change_own_password(
    conn: &mut SqliteConnection,
    username: &str,
    current: &str,
    new: &str,
    now: i64,
    actor: &str,
) -> Result<OperatorView> {
    let row = get(conn, username)?;
    if !verify_password(&row.password_hash, current) {
        return Err(Error::Invalid(Reason::new(
            "wrong_password",
            "the current password is wrong",
        )));
    }
    if current == new {
        return Err(Error::Invalid(Reason::new(
            "password_unchanged",
            "the new password is the current one",
        )));
    }
    passwd(conn, username, new, now, actor)
}

/// Removes an account with its sessions and API tokens. The last admin cannot go.
pub fn remove(conn: &mut SqliteConnection, username: &str, now: i64, actor: &str) -> Result<()> {
    let row = get(conn, username)?;
    if row.role == Role::Admin.as_str() && db::admins(conn)? <= 1 {
        return Err(Error::Conflict(Reason::new(
            "last_admin",
            format!("{username:?} is the last admin: add another admin before removing it"),
        )));
    }
    db::delete(conn, row.id)?;
    log(
        conn,
        now,
        actor,
        format!("Operator account \"{username}\" removed."),
    )
}

/// A new browser session: its secret (the cookie) and the operator.
#[derive(Debug)]
pub struct Session {
    pub secret: String,
    pub principal: Principal,
}

/// Checks a user name and password (a read: the slow argon2 verification holds no write
/// lock); [`open_session`] then opens the session. Unknown user and wrong password give the
/// same answer and take the same time.
pub fn authenticate(
    conn: &mut SqliteConnection,
    username: &str,
    password: &str,
) -> Result<db::OperatorRow> {
    let wrong = || Error::Unauthorized(Reason::new("login_failed", "wrong user name or password"));
    let row = db::by_name(conn, username)?;
    let hash = row.as_ref().map(|r| r.password_hash.as_str());
    // A fixed dummy hash so an unknown name costs one argon2 verification too.
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default());
    let ok = verify_password(hash.unwrap_or(dummy), password);
    match row {
        Some(r) if ok => Ok(r),
        _ => Err(wrong()),
    }
}

/// Opens a browser session for an operator [`authenticate`] let in, in the caller's write.
pub fn open_session(
    conn: &mut SqliteConnection,
    row: &db::OperatorRow,
    now: i64,
) -> Result<Session> {
    let secret = random_hex(32)?;
    let s = db::SessionRow {
        id_hash: secret_hash(&secret),
        operator_id: row.id,
        csrf: random_hex(24)?,
        created_at: now,
        expires_at: now + SESSION_SECONDS,
    };
    db::delete_expired_sessions(conn, now)?;
    db::insert_session(conn, &s)?;
    db::logged_in(conn, row.id, now)?;
    Ok(Session {
        principal: principal(
            row,
            Via::Session {
                id_hash: s.id_hash,
                csrf: s.csrf,
            },
        )?,
        secret,
    })
}

/// The operator of a live session.
pub fn by_session(
    conn: &mut SqliteConnection,
    secret: &str,
    now: i64,
) -> Result<Option<Principal>> {
    let Some((s, row)) = db::session(conn, &secret_hash(secret), now)? else {
        return Ok(None);
    };
    principal(
        &row,
        Via::Session {
            id_hash: s.id_hash,
            csrf: s.csrf,
        },
    )
    .map(Some)
}

pub fn logout(conn: &mut SqliteConnection, id_hash: &str) -> Result<()> {
    db::delete_session(conn, id_hash)
}
#[cfg(test)]
mod tests;
