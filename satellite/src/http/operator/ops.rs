//! The operations the operator API and the console share: each front end turns its own
//! request (JSON, query string, form) into one of these and shows the answer its own way; the
//! console never calls the API's handlers, and neither reaches the store but through these
//! and the domain.

use std::io::Cursor;

use actix_web::http::header;
use actix_web::web::{self, Bytes, Path};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{act, db};
use crate::error::{Error, Result};
use crate::http::{blocking, AppState};
use crate::operators::{self, Principal, Role};
use crate::states::SyncMode;

/// Changes the caller's own password (API and console), under the same limit on attempts as
/// logins: counted before the current password is checked, per account and client address.
pub async fn change_own_password(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    current: String,
    new: String,
) -> Result<operators::OperatorView> {
    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let keys = vec![
        format!("password:{}", who.username),
        format!("password-ip:{ip}"),
    ];
    state.console.logins.attempt(&keys, state.clock.now())?;
    let name = who.username.clone();
    let changed = act(state, who, move |c, now, actor| {
        operators::change_own_password(c, &name, &current, &new, now, actor)
    })
    .await;
    if changed.is_ok() {
        state.console.logins.succeeded(&keys);
    }
    changed
}

/// Creates a registration token; the answer holds the token itself.
pub async fn create_token(
    state: &AppState,
    who: &operators::Principal,
    b: NewTokenBody,
) -> Result<serde_json::Value> {
    let key = state.token_key.clone();
    let now = state.clock.now();
    let n = crate::tokens::NewToken {
        va: b.virtual_account,
        days: b.days,
        max_uses: b.max_uses,
        export_controlled: b.export_controlled,
        description: b.description,
        created_by: who.actor(),
    };
    let (token, view) = state
        .writer
        .write(move |c| crate::tokens::create(c, &key, now, &n))
        .await?;
    let mut v = serde_json::to_value(&view).map_err(|e| Error::Internal(e.to_string()))?;
    v["token"] = serde_json::Value::String(token);
    Ok(v)
}

/// Reads an authorization file (as `satellite register import`); `cloud_ca_fingerprint`
/// vouches for the cloud CA on a first registration.
pub async fn import_registration_file(
    state: &AppState,
    bytes: Bytes,
    cloud_ca_fingerprint: Option<&str>,
) -> Result<crate::registration::Registered> {
    let state = state.clone();
    let accept = crate::registration::accepted_ca(cloud_ca_fingerprint)?;
    blocking(move || {
        crate::registration::import_authorization(
            &state.store,
            &state.config,
            state.clock.as_ref(),
            &bytes,
            accept.as_ref(),
        )
    })
    .await
}

/// Reads a sync response (as `satellite sync import`); `dry_run` only previews.
pub async fn import_sync_file(
    state: &AppState,
    bytes: Bytes,
    dry_run: bool,
) -> Result<crate::sync::apply::ImportOutcome> {
    let (store, clock) = (state.store.clone(), state.clock.clone());
    blocking(move || {
        crate::sync::apply::import(
            &store,
            clock.now(),
            Cursor::new(bytes),
            SyncMode::Manual,
            dry_run,
            &mut |_| {},
        )
    })
    .await
}

/// Makes the registration request file (as `satellite register export`).
pub async fn make_registration_file(state: &AppState) -> Result<(Vec<u8>, String)> {
    let state = state.clone();
    blocking(move || {
        crate::registration::make_request(
            &state.store,
            &state.config,
            state.clock.as_ref(),
            SyncMode::Manual,
            None,
        )
    })
    .await
}

/// Makes a sync request file (as `satellite sync export`): its bytes and summary.
pub async fn make_sync_file(
    state: &AppState,
    full: bool,
) -> Result<(Vec<u8>, crate::sync::request::RequestSummary)> {
    let (store, clock) = (state.store.clone(), state.clock.clone());
    blocking(move || {
        let now = clock.now();
        store.write(move |c| crate::sync::deadlines::run(c, now))?;
        let (out, summary) = crate::sync::request::make(
            &store,
            now,
            SyncMode::Manual,
            full,
            Cursor::new(Vec::new()),
            &mut |_| {},
        )?;
        Ok((out.into_inner(), summary))
    })
    .await
}

/// A token with its secret.
pub async fn show_token(state: &AppState, id: i64) -> Result<(String, crate::tokens::TokenView)> {
    let key = state.token_key.clone();
    let now = state.clock.now();
    db(state, move |c| crate::tokens::show(c, &key, id, now)).await
}

/// The token as a text file, as the vendor's "Download" gives it.
pub async fn token_download(state: web::Data<AppState>, id: Path<i64>) -> Result<HttpResponse> {
    let id = id.into_inner();
    let (token, _) = show_token(&state, id).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"registration-token-{id}.txt\""),
        ))
        .body(format!("{token}\n")))
}

/// An admin sees every API token; others their own.
pub fn token_scope(who: &operators::Principal) -> Option<i64> {
    (who.role < Role::Admin).then_some(who.operator_id)
}

/// A bundle to download.
pub fn zip(bytes: Vec<u8>, filename: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .body(bytes)
}

/// The body of `POST /tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    pub virtual_account: String,
    pub days: i64,
    #[serde(default)]
    pub max_uses: Option<i64>,
    #[serde(default)]
    pub export_controlled: bool,
    #[serde(default)]
    pub description: String,
}
