//! Product-instance registration tokens (seed 001, "Creating a Product Instance Registration
//! Token"): made for one virtual account, valid 1 to 365 days, optionally limited in uses,
//! optionally allowing export-controlled functionality; revoked, then removed.
//!
//! A token is `base64url(id || HMAC-SHA256(key, id))`: the store keeps only the id, so a copy
//! of the database gives nobody a usable token, while the satellite (holding the key in
//! `keys/token.key`) can check a token and show or download it again at any time.

use diesel::prelude::*;
use serde::Serialize;

use crate::catalogue::EventKind;
use crate::clock::{self, DAY};
use crate::db::{events, identity, tokens as db, tokens::TokenRow};
use crate::error::{Error, Result};
use crate::identity::TokenKey;
use crate::states::TokenState;

const ID_LEN: usize = 16;
const MAC_LEN: usize = 32;

/// What to create.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub va: String,
    pub days: i64,
    pub max_uses: Option<i64>,
    pub export_controlled: bool,
    pub description: String,
    pub created_by: String,
}

/// A token as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: i64,
    /// The token's first characters, to recognise it.
    pub hint: String,
    pub virtual_account: String,
    pub description: String,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: String,
    pub uses: i64,
    pub max_uses: Option<i64>,
    pub export_controlled: bool,
    pub status: TokenState,
}

fn b64url(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes)
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string()
}

fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.is_empty()
        || s.len() > 200
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let mut std = s.replace('-', "+").replace('_', "/");
    while !std.len().is_multiple_of(4) {
        std.push('=');
    }
    openssl::base64::decode_block(&std).ok()
}

fn mac(key: &TokenKey, id: &[u8]) -> Result<Vec<u8>> {
    Ok(crate::crypto::hmac_sha256(&key.0, &[b"satellite-registration-token-v1", id]).to_vec())
}

/// The lookup id of a token whose MAC checks, without touching the store: a forged or
/// mistyped token is turned away before any other work.
pub fn authentic(key: &TokenKey, token: &str) -> Result<Option<String>> {
    let Some(bytes) = b64url_decode(token.trim()).filter(|b| b.len() == ID_LEN + MAC_LEN) else {
        return Ok(None);
    };
    let (id, given) = bytes.split_at(ID_LEN);
    Ok(openssl::memcmp::eq(&mac(key, id)?, given).then(|| hex::encode(id)))
}

/// The token string of a stored lookup id.
pub fn derive(key: &TokenKey, lookup_id: &str) -> Result<String> {
    let id = hex::decode(lookup_id).map_err(|e| Error::Internal(e.to_string()))?;
    let mut bytes = id.clone();
    bytes.extend_from_slice(&mac(key, &id)?);
    Ok(b64url(&bytes))
}

fn status(row: &TokenRow, now: i64) -> TokenState {
    if row.revoked_at.is_some() {
        TokenState::Revoked
    } else if now >= row.expires_at {
        TokenState::Expired
    } else if row.max_uses.is_some_and(|m| row.uses >= m) {
        TokenState::UsedUp
    } else {
        TokenState::Active
    }
}

fn view(row: &TokenRow, va: String, now: i64) -> TokenView {
    TokenView {
        id: row.id,
        hint: row.hint.clone(),
        virtual_account: va,
        description: row.description.clone(),
        created_at: clock::format(row.created_at),
        created_by: row.created_by.clone(),
        expires_at: clock::format(row.expires_at),
        uses: row.uses,
        max_uses: row.max_uses,
        export_controlled: row.export_controlled,
        status: status(row, now),
    }
}

/// Creates a token; returns it (shown in full) and its view.
pub fn create(
    conn: &mut SqliteConnection,
    key: &TokenKey,
    now: i64,
    n: &NewToken,
) -> Result<(String, TokenView)> {
    if !(1..=365).contains(&n.days) {
        return Err(Error::invalid(format!(
            "a token is valid for 1 to 365 days, not {}",
            n.days
        )));
    }
    if let Some(m) = n.max_uses.filter(|m| *m < 1) {
        return Err(Error::invalid(format!(
            "a token registers at least 1 device when it has a limit, not {m}"
        )));
    }
    if n.description.chars().count() > 100 {
        return Err(Error::invalid("the description has at most 100 characters"));
    }
    let me = identity::require(conn)?;
    if !me.is_registered() {
        return Err(Error::State(
            format!(
                "the satellite is {}: tokens are made once it is registered",
                me.state
            )
            .into(),
        ));
    }
    if n.export_controlled && !me.export_controlled_allowed {
        return Err(Error::invalid(
            "the smart account does not allow export-controlled functionality, so a token \
             cannot allow it",
        ));
    }
    let va_id = crate::db::pools::va_id(conn, &n.va)?
        .filter(|id| crate::db::pools::served(conn, *id).unwrap_or(false))
        .ok_or_else(|| unknown_va(conn, &n.va))?;
    let mut id = [0u8; ID_LEN];
    openssl::rand::rand_bytes(&mut id)?;
    let lookup_id = hex::encode(id);
    let token = derive(key, &lookup_id)?;
    let hint: String = token.chars().take(8).collect();
    let expires_at = now + n.days * DAY;
    let row_id = db::insert(
        conn,
        &db::NewTokenRow {
            va_id,
            lookup_id: &lookup_id,
            hint: &hint,
            description: &n.description,
            created_at: now,
            created_by: &n.created_by,
            expires_at,
            max_uses: n.max_uses,
            export_controlled: n.export_controlled,
        },
    )?;
    events::append(
        conn,
        now,
        &events::NewEvent {
            va_name: Some(&n.va),
            message: format!(
                "A product instance registration token ({hint}...) was created for the \
                 Virtual Account \"{}\", valid until {}{}.",
                n.va,
                clock::format(expires_at),
                if n.export_controlled {
                    ", allowing export-controlled functionality"
                } else {
                    ""
                }
            ),
            actor: &n.created_by,
            ..events::NewEvent::of(EventKind::TokenCreated)
        },
    )?;
    let row = db::by_id(conn, row_id)?.ok_or_else(|| Error::Internal("token vanished".into()))?;
    Ok((token, view(&row, n.va.clone(), now)))
}

fn unknown_va(conn: &mut SqliteConnection, name: &str) -> Error {
    let names: Vec<String> = crate::db::pools::served_names(conn)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    Error::NotFound(
        format!(
            "no virtual account {name:?} on this satellite (it has: {})",
            names.join(", ")
        )
        .into(),
    )
}

/// Why a token does not register a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
    Revoked,
    UsedUp,
    /// Its virtual account is no longer served (the satellite was registered again
    /// without it).
    VaNotServed,
}

impl Refusal {
    /// The stable code a device gets.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Unknown => "token_unknown",
            Refusal::Expired => "token_expired",
            Refusal::Revoked => "token_revoked",
            Refusal::UsedUp => "token_used_up",
            Refusal::VaNotServed => "token_va_not_served",
        }
    }

    /// The refusal as the device API's error (401 with its code).
    pub fn error(self) -> Error {
        Error::Unauthorized(crate::error::Reason::new(self.code(), self.message()))
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unknown => {
                "unknown registration token (mistyped, or removed from the satellite)"
            }
            Refusal::Expired => "the registration token has expired",
            Refusal::Revoked => "the registration token has been revoked",
            Refusal::UsedUp => "the registration token has been used its maximum number of times",
            Refusal::VaNotServed => {
                "the registration token's virtual account is no longer served by this satellite \
                 (it was registered again without it): ask for a token of a virtual account it \
                 serves"
            }
        }
    }
}

/// Checks a token at `now`: the row it names, or why it does not register.
pub fn check(
    conn: &mut SqliteConnection,
    key: &TokenKey,
    token: &str,
    now: i64,
) -> Result<std::result::Result<TokenRow, Refusal>> {
    let Some(bytes) = b64url_decode(token.trim()).filter(|b| b.len() == ID_LEN + MAC_LEN) else {
        return Ok(Err(Refusal::Unknown));
    };
    let (id, given) = bytes.split_at(ID_LEN);
    if !openssl::memcmp::eq(&mac(key, id)?, given) {
        return Ok(Err(Refusal::Unknown));
    }
    let Some(row) = db::by_lookup(conn, &hex::encode(id))? else {
        return Ok(Err(Refusal::Unknown));
    };
    Ok(match status(&row, now) {
        TokenState::Revoked => Err(Refusal::Revoked),
        TokenState::Expired => Err(Refusal::Expired),
        TokenState::UsedUp => Err(Refusal::UsedUp),
        TokenState::Active if !crate::db::pools::served(conn, row.va_id)? => {
            Err(Refusal::VaNotServed)
        }
        TokenState::Active => Ok(row),
    })
}

/// The virtual accounts a token can be made for, by name.
pub fn virtual_accounts(conn: &mut SqliteConnection) -> Result<Vec<String>> {
    let mut names: Vec<String> = crate::db::pools::served_names(conn)?
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    names.sort();
    Ok(names)
}

pub fn list(conn: &mut SqliteConnection, now: i64) -> Result<Vec<TokenView>> {
    Ok(db::list(conn)?
        .into_iter()
        .map(|(row, va)| view(&row, va, now))
        .collect())
}

fn get(conn: &mut SqliteConnection, id: i64) -> Result<(TokenRow, String)> {
    db::with_va(conn, id)?
        .ok_or_else(|| Error::NotFound(format!("no token {id} (see the token list)").into()))
}

/// A token and its full string, for `show` and `download`.
pub fn show(
    conn: &mut SqliteConnection,
    key: &TokenKey,
    id: i64,
    now: i64,
) -> Result<(String, TokenView)> {
    let (row, va) = get(conn, id)?;
    Ok((derive(key, &row.lookup_id)?, view(&row, va, now)))
}

pub fn revoke(conn: &mut SqliteConnection, id: i64, now: i64, actor: &str) -> Result<TokenView> {
    let (row, va) = get(conn, id)?;
    if row.revoked_at.is_some() {
        return Err(Error::Conflict(
            format!("token {id} is already revoked").into(),
        ));
    }
    db::revoke(conn, id, now)?;
    events::append(
        conn,
        now,
        &events::NewEvent {
            va_name: Some(&va),
            message: format!(
                "The product instance registration token ({}...) of the Virtual Account \"{va}\" was revoked.",
                row.hint
            ),
            actor,
            ..events::NewEvent::of(EventKind::TokenRevoked)
        },
    )?;
    let (row, va) = get(conn, id)?;
    Ok(view(&row, va, now))
}

/// Removes a revoked token (a token must be revoked first, as in the vendor's manager).
pub fn remove(conn: &mut SqliteConnection, id: i64, now: i64, actor: &str) -> Result<()> {
    let (row, va) = get(conn, id)?;
    if row.revoked_at.is_none() {
        return Err(Error::Conflict(
            format!("token {id} is not revoked: revoke it first").into(),
        ));
    }
    db::delete(conn, id)?;
    events::append(
        conn,
        now,
        &events::NewEvent {
            va_name: Some(&va),
            message: format!(
                "The revoked product instance registration token ({}...) of the Virtual Account \"{va}\" was removed.",
                row.hint
            ),
            actor,
            ..events::NewEvent::of(EventKind::TokenRemoved)
        },
    )?;
    Ok(())
}
