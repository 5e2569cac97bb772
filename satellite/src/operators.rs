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
    conn.immediate_transaction(|conn| {
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
    })
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
    conn.immediate_transaction(|conn| {
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
    })
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
    conn.immediate_transaction(|conn| {
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
    })
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
    conn.immediate_transaction(|conn| {
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
    })
}

/// A new browser session: its secret (the cookie) and the operator.
#[derive(Debug)]
pub struct Session {
    pub secret: String,
    pub principal: Principal,
}

/// Checks a user name and password and opens a session. Unknown user and wrong password
/// give the same answer and take the same time.
pub fn login(
    conn: &mut SqliteConnection,
    username: &str,
    password: &str,
    now: i64,
) -> Result<Session> {
    let wrong = || Error::Unauthorized(Reason::new("login_failed", "wrong user name or password"));
    let row = db::by_name(conn, username)?;
    let hash = row.as_ref().map(|r| r.password_hash.as_str());
    // A fixed dummy hash so an unknown name costs one argon2 verification too.
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default());
    let ok = verify_password(hash.unwrap_or(dummy), password);
    let row = match row {
        Some(r) if ok => r,
        _ => return Err(wrong()),
    };
    let secret = random_hex(32)?;
    let s = db::SessionRow {
        id_hash: secret_hash(&secret),
        operator_id: row.id,
        csrf: random_hex(24)?,
        created_at: now,
        expires_at: now + SESSION_SECONDS,
    };
    conn.immediate_transaction(|conn| {
        db::delete_expired_sessions(conn, now)?;
        db::insert_session(conn, &s)?;
        db::logged_in(conn, row.id, now)
    })?;
    Ok(Session {
        principal: principal(
            &row,
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

/// An operator API token as listed (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiTokenView {
    pub id: i64,
    pub username: String,
    pub description: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub state: TokenState,
}

fn token_view(t: &db::ApiTokenRow, username: String, now: i64) -> ApiTokenView {
    use crate::clock::format as format_time;
    let state = if t.revoked_at.is_some() {
        TokenState::Revoked
    } else if t.expires_at.is_some_and(|e| e <= now) {
        TokenState::Expired
    } else {
        TokenState::Active
    };
    ApiTokenView {
        id: t.id,
        username,
        description: t.description.clone(),
        created_at: format_time(t.created_at),
        expires_at: t.expires_at.map(format_time),
        last_used_at: t.last_used_at.map(format_time),
        state,
    }
}

/// A new API token: shown once.
#[derive(Debug, Clone, Serialize)]
pub struct NewApiToken {
    pub token: String,
    #[serde(flatten)]
    pub info: ApiTokenView,
}

/// Creates an API token for `username`, valid `days` (or until revoked).
pub fn create_api_token(
    conn: &mut SqliteConnection,
    username: &str,
    description: &str,
    days: Option<u32>,
    now: i64,
    actor: &str,
) -> Result<NewApiToken> {
    if description.chars().count() > 200 {
        return Err(Error::invalid(
            "the description is too long: at most 200 characters",
        ));
    }
    if let Some(d) = days {
        if !(1..=3650).contains(&d) {
            return Err(Error::invalid(format!(
                "days must be 1..3650 (or omitted for no expiry), got {d}"
            )));
        }
    }
    let token = format!("{API_TOKEN_PREFIX}{}", random_hex(32)?);
    conn.immediate_transaction(|conn| {
        let row = get(conn, username)?;
        let expires = days.map(|d| now + i64::from(d) * 86_400);
        let id = db::insert_api_token(
            conn,
            row.id,
            description,
            &secret_hash(&token),
            now,
            expires,
        )?;
        log(
            conn,
            now,
            actor,
            format!("API token {id} created for operator account \"{username}\"."),
        )?;
        let t = db::api_token(conn, id)?
            .ok_or_else(|| Error::Internal("the new API token vanished".into()))?;
        Ok(NewApiToken {
            token: token.clone(),
            info: token_view(&t, row.username, now),
        })
    })
}

/// API tokens: all of them for an admin, one's own otherwise.
pub fn list_api_tokens(
    conn: &mut SqliteConnection,
    of: Option<i64>,
    now: i64,
) -> Result<Vec<ApiTokenView>> {
    Ok(db::api_tokens(conn, of)?
        .into_iter()
        .map(|(t, name)| token_view(&t, name, now))
        .collect())
}

/// Revokes an API token. `owner` limits it to that operator's tokens (non-admins).
pub fn revoke_api_token(
    conn: &mut SqliteConnection,
    id: i64,
    owner: Option<i64>,
    now: i64,
    actor: &str,
) -> Result<()> {
    conn.immediate_transaction(|conn| {
        let t = db::api_token(conn, id)?
            .filter(|t| owner.is_none_or(|o| o == t.operator_id))
            .ok_or_else(|| Error::NotFound(format!("no API token {id}").into()))?;
        if t.revoked_at.is_some() {
            return Err(Error::Conflict(
                format!("API token {id} is already revoked").into(),
            ));
        }
        db::revoke_api_token(conn, id, now)?;
        log(conn, now, actor, format!("API token {id} revoked."))
    })
}

/// The operator of a live API token, noting its use.
pub fn by_api_token(
    conn: &mut SqliteConnection,
    token: &str,
    now: i64,
) -> Result<Option<Principal>> {
    if !token.starts_with(API_TOKEN_PREFIX) {
        return Ok(None);
    }
    let Some((t, row)) = db::api_token_by_hash(conn, &secret_hash(token))? else {
        return Ok(None);
    };
    if t.revoked_at.is_some() || t.expires_at.is_some_and(|e| e <= now) {
        return Ok(None);
    }
    // Noted at most once a minute, so scripts do not turn reads into writes.
    if t.last_used_at.is_none_or(|u| now - u >= 60) {
        db::api_token_used(conn, t.id, now)?;
    }
    principal(&row, Via::ApiToken(t.id)).map(Some)
}

/// Failed logins allowed per user name and per client address in [`LOCKOUT_SECONDS`].
pub const MAX_FAILURES: u32 = 5;
pub const LOCKOUT_SECONDS: i64 = 300;
/// Keys remembered at most (oldest windows are forgotten first).
const MAX_KEYS: usize = 10_000;

/// Counts password attempts (logins, and changes of one's own password) per key (user name,
/// client address) in fixed windows. An attempt is counted *before* its password is checked,
/// under one lock, so attempts made at once can never check more than [`MAX_FAILURES`]
/// passwords per key and window; a successful one gives its count back.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl LoginLimiter {
    /// Counts one attempt for each of `keys`, or refuses (counting nothing) when any of them
    /// has used its attempts in its window, naming how long to wait.
    pub fn attempt(&self, keys: &[String], now: i64) -> Result<()> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            if let Some((start, n)) = w.get(k) {
                let left = start + LOCKOUT_SECONDS - now;
                if *n >= MAX_FAILURES && left > 0 {
                    return Err(Error::TooManyRequests(format!(
                        "too many failed logins or password attempts: try again in {left} s"
                    )));
                }
            }
        }
        if w.len() >= MAX_KEYS {
            w.retain(|_, (start, _)| *start + LOCKOUT_SECONDS > now);
        }
        for k in keys {
            let e = w.entry(k.clone()).or_insert((now, 0));
            if e.0 + LOCKOUT_SECONDS <= now {
                *e = (now, 0);
            }
            e.1 += 1;
        }
        Ok(())
    }

    /// The attempt counted for `keys` succeeded: the first key (the account) starts again;
    /// the others (the address) only get that attempt back, so one valid account does not
    /// buy more guesses at the others.
    pub fn succeeded(&self, keys: &[String]) {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((first, rest)) = keys.split_first() {
            w.remove(first);
            for k in rest {
                if let Some(e) = w.get_mut(k) {
                    e.1 = e.1.saturating_sub(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, crate::db::Store) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::load_from(None, &[]).unwrap();
        let mut storage = cfg.storage.clone();
        storage.data_dir = dir.path().join("data");
        let (store, _) = crate::db::Store::open(&storage).unwrap();
        (dir, store)
    }

    #[test]
    fn roles_are_ordered_and_parsed() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Auditor);
        assert_eq!(Role::parse("operator").unwrap(), Role::Operator);
        assert!(Role::parse("root")
            .unwrap_err()
            .to_string()
            .contains("auditor"));
    }

    #[test]
    fn bootstrap_once_then_login_sessions_and_tokens() {
        let (_d, store) = store();
        let conn = &mut *store.conn().unwrap();
        let b = bootstrap(conn, "", 100).unwrap().unwrap();
        let pw = b.generated.unwrap();
        assert_eq!(pw.len(), 20);
        assert!(
            bootstrap(conn, "", 100).unwrap().is_none(),
            "only at first start"
        );

        let err = login(conn, "admin", "wrong password", 100).unwrap_err();
        assert!(matches!(err, Error::Unauthorized(_)));
        let err2 = login(conn, "nobody", "wrong password", 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            err2.to_string(),
            "no hint which one was wrong"
        );

        let s = login(conn, "admin", &pw, 100).unwrap();
        assert_eq!(s.principal.role, Role::Admin);
        assert!(by_session(conn, &s.secret, 101).unwrap().is_some());
        assert!(by_session(conn, &s.secret, 100 + SESSION_SECONDS)
            .unwrap()
            .is_none());
        assert!(by_session(conn, "forged", 101).unwrap().is_none());

        add(
            conn,
            "audit",
            Role::Auditor,
            "auditor-password",
            100,
            "cli:x",
        )
        .unwrap();
        let t = create_api_token(conn, "audit", "reports", Some(1), 100, "cli:x").unwrap();
        let p = by_api_token(conn, &t.token, 200).unwrap().unwrap();
        assert_eq!((p.username.as_str(), p.role), ("audit", Role::Auditor));
        assert!(p.require(Role::Operator).is_err());
        assert!(
            by_api_token(conn, &t.token, 100 + 86_400)
                .unwrap()
                .is_none(),
            "expired"
        );
        revoke_api_token(conn, t.info.id, None, 300, "cli:x").unwrap();
        assert!(
            by_api_token(conn, &t.token, 300).unwrap().is_none(),
            "revoked"
        );

        assert!(matches!(
            change_own_password(conn, "admin", "wrong one!!", "x-long-enough", 400, "t"),
            Err(Error::Invalid(_))
        ));
        // A new password ends sessions; the last admin cannot be removed.
        passwd(conn, "admin", "another-password", 400, "cli:x").unwrap();
        assert!(by_session(conn, &s.secret, 401).unwrap().is_none());
        assert!(matches!(
            remove(conn, "admin", 400, "cli:x").unwrap_err(),
            Error::Conflict(_)
        ));
        remove(conn, "audit", 400, "cli:x").unwrap();
        assert!(list(conn).unwrap().iter().all(|o| o.username == "admin"));
    }

    #[test]
    fn configured_password_or_hash() {
        let (_d, store) = store();
        let conn = &mut *store.conn().unwrap();
        assert!(bootstrap(conn, "short", 1).is_err());
        assert_eq!(db::count(conn).unwrap(), 0, "nothing stored on a refusal");
        let hash = hash_password("configured-secret").unwrap();
        assert!(bootstrap(conn, &hash, 1)
            .unwrap()
            .unwrap()
            .generated
            .is_none());
        assert!(login(conn, "admin", "configured-secret", 2).is_ok());
    }

    #[test]
    fn attempts_lock_out_for_the_window() {
        let l = LoginLimiter::default();
        let keys = vec!["user:admin".to_string(), "ip:1".to_string()];
        for _ in 0..MAX_FAILURES {
            l.attempt(&keys, 10).unwrap();
        }
        let e = l.attempt(&keys, 11).unwrap_err();
        assert!(e.to_string().contains("try again in 299 s"), "{e}");
        l.attempt(&keys, 10 + LOCKOUT_SECONDS).unwrap();
        assert!(l.attempt(&["user:other".to_string()], 11).is_ok());
    }

    #[test]
    fn attempts_at_once_never_check_more_than_the_limit() {
        let l = std::sync::Arc::new(LoginLimiter::default());
        let keys = vec!["user:admin".to_string(), "ip:1".to_string()];
        let passed: u32 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..40)
                .map(|_| {
                    let (l, keys) = (l.clone(), keys.clone());
                    s.spawn(move || u32::from(l.attempt(&keys, 10).is_ok()))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(passed, MAX_FAILURES);
        // A success gives the address its attempt back and clears the account.
        l.succeeded(&keys);
        l.attempt(&["user:admin".to_string()], 10).unwrap();
        l.attempt(&["ip:1".to_string()], 10).unwrap();
        assert!(l.attempt(&["ip:1".to_string()], 10).is_err());
    }
}
