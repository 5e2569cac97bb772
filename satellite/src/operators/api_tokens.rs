//! Operators' API tokens: creating (the secret shown once), listing, revoking, and
//! authenticating a request by one.

use super::*;

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
    principal(&row, Via::ApiToken(t.id)).map(Some)
}

/// Whether the use of API token `id` at `now` is to be noted: at most once a minute, so
/// scripts do not turn reads into writes. A read; [`note_api_token_use`] writes it.
pub fn api_token_use_due(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<bool> {
    Ok(db::api_token_last_used(conn, id)?.is_none_or(|u| now - u >= 60))
}

/// Notes that API token `id` was used at `now`, in the caller's write.
pub fn note_api_token_use(conn: &mut SqliteConnection, id: i64, now: i64) -> Result<()> {
    db::api_token_used(conn, id, now)
}
