//! Registering the satellite with the cloud, by file or over the network.
//!
//! 1. [`make_request`] writes a registration request bundle (our id, name, host name,
//!    version, public key), signed with our key under a self-signed certificate, and records
//!    its id: only an answer to a request we made is accepted, and only once.
//! 2. The cloud turns it into an authorization bundle: our certificate signed by its CA, its
//!    CA, the smart account, the virtual accounts and their pools.
//! 3. [`import_authorization`] verifies it and registers the satellite in one transaction.
//!
//! Trust in the cloud's CA: the CA of `[cloud] ca_file` if configured, else the CA an earlier
//! registration pinned, else (a first registration) the CA the authorization carries, but only
//! when its SHA-256 fingerprint is the one the operator gives (read from the cloud out of
//! band); it must have signed the authorization and be the CA the payload names, and is pinned
//! from then on. Never trust on first use. Whatever the CA, only the cloud's bundle signer
//! may sign an authorization (`sync_format::pki::SignerRole`).

use std::io::Cursor;
use std::time::{Duration, Instant};

use openssl::x509::X509;
use sync_format::manifest::{BundleKind, Header, ANY_RECEIVER};
use sync_format::payload::{RegistrationAuthorization, RegistrationRequest};
use sync_format::pki::{self, CertRole, CertSpec, Signer, Trust};
use sync_format::{BundleWriter, ReadOptions};

use crate::catalogue::AlertKind;
use crate::catalogue::EventKind;
use crate::clock::{self, Clock, DAY};
use crate::cloud_client::{Answer, CloudClient};
use crate::config::Config;
use crate::db::{alerts, events, identity, pools, registration as reg, Store};
use crate::error::{Error, Reason, Result};
use crate::states::SyncMode;

/// How long a registration request may wait for its answer.
const REQUEST_VALID_DAYS: i64 = 30;

/// The alert raised while the cloud holds a network registration request (seed 001,
/// "Satellite Alert Messages").
const AUTHORIZATION_PENDING_TEXT: &str =
    "A satellite Authorization File is required to complete the registration process.";

/// Writes a registration request bundle and records it. `mode` is "manual" or "network".
pub fn make_request(
    store: &Store,
    config: &Config,
    clock: &dyn Clock,
    mode: SyncMode,
    cloud_url: Option<&str>,
) -> Result<(Vec<u8>, String)> {
    let now = clock.now();
    let mut conn = store.conn()?;
    let me = identity::require(&mut conn)?;
    if me.is_registered() {
        return Err(Error::State(Reason::new(
            "already_registered",
            format!(
                "the satellite is already registered with the smart account {:?}; a satellite \
             registers again only after it has been removed",
                me.account_name.unwrap_or_default()
            ),
        )));
    }
    let key = crate::identity::signing_key(store.data_dir())?;
    let name = config.satellite_name();
    let cert = pki::self_signed(
        &key,
        &CertSpec {
            common_name: &format!("satellite {name}"),
            organization: "satellite registration request",
            role: CertRole::Signer,
            now,
            days: REQUEST_VALID_DAYS as u32,
        },
    )?;
    let public_key_pem =
        String::from_utf8(key.public_key_to_pem()?).map_err(|e| Error::Internal(e.to_string()))?;
    let bundle_id = uuid::Uuid::new_v4().to_string();
    let header = Header {
        kind: BundleKind::RegistrationRequest,
        bundle_id: bundle_id.clone(),
        sender: me.satellite_id.clone(),
        receiver: ANY_RECEIVER.to_string(),
        sequence: u64::try_from(reg::request_count(&mut conn)?).unwrap_or(0) + 1,
        created_at: now,
        not_after: now + REQUEST_VALID_DAYS * DAY,
        in_reply_to: None,
    };
    let mut w = BundleWriter::new(Cursor::new(Vec::new()), header)?;
    w.payload(&RegistrationRequest {
        payload_version: 1,
        satellite_id: me.satellite_id.clone(),
        name,
        hostname: crate::config::hostname(),
        software_version: env!("CARGO_PKG_VERSION").to_string(),
        public_key_pem,
    })?;
    let (out, _) = w.finish(&Signer::new(key, vec![cert])?)?;
    drop(conn);
    let (id, url) = (bundle_id.clone(), cloud_url.map(str::to_string));
    store.write(move |conn| {
        reg::insert_request(conn, &id, now, mode, url.as_deref())?;
        // By files the authorization comes back by hand: the alert says one is awaited until
        // it is imported (over the network, once the cloud says it holds the request).
        if mode == SyncMode::Manual {
            raise_pending(conn, now)?;
        }
        Ok(())
    })?;
    tracing::info!(%bundle_id, %mode, "made a registration request");
    Ok((out.into_inner(), bundle_id))
}

/// What a successful registration brought.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Registered {
    pub account: String,
    pub cloud_id: String,
    pub virtual_accounts: Vec<String>,
    pub license_lines: usize,
    pub export_controlled_allowed: bool,
    pub next_sync_due: String,
}

impl Registered {
    /// What a registration did, in one sentence (CLI and console).
    pub fn summary(&self) -> String {
        format!(
            "registered with the smart account {:?}: {} {}; {}; export-controlled \
             functionality {}; first sync due by {}",
            self.account,
            if self.virtual_accounts.len() == 1 {
                "virtual account"
            } else {
                "virtual accounts"
            },
            self.virtual_accounts.join(", "),
            crate::states::plural(self.license_lines as i64, "license line", "license lines"),
            if self.export_controlled_allowed {
                "allowed"
            } else {
                "not allowed"
            },
            self.next_sync_due
        )
    }
}

/// The CA this satellite trusts for the cloud before reading an authorization, if any.
pub(crate) fn trusted_ca(config: &Config, pinned: Option<&str>) -> Result<Option<X509>> {
    let pem = if !config.cloud.ca_file.is_empty() {
        let path = std::path::Path::new(&config.cloud.ca_file);
        std::fs::read(path).map_err(|e| Error::file(path, e))?
    } else if let Some(p) = pinned {
        p.as_bytes().to_vec()
    } else {
        return Ok(None);
    };
    X509::from_pem(&pem)
        .map(Some)
        .map_err(|e| Error::invalid(format!("the cloud CA is not a PEM certificate: {e}")))
}

/// Reads the cloud CA fingerprint an operator gives, if any (`SHA256:AB:…`, openssl's form,
/// or hex; empty is none).
pub fn accepted_ca(text: Option<&str>) -> Result<Option<[u8; 32]>> {
    text.filter(|t| !t.trim().is_empty())
        .map(|t| pki::parse_fingerprint(t).map_err(|e| Error::invalid(e.to_string())))
        .transpose()
}

/// Verifies an authorization bundle and registers the satellite with what it carries.
/// `accept_ca` is the SHA-256 fingerprint of the cloud CA the operator vouches for, needed
/// when no CA is configured or pinned. Refusals change nothing and say why.
pub fn import_authorization(
    store: &Store,
    config: &Config,
    clock: &dyn Clock,
    bytes: &[u8],
    accept_ca: Option<&[u8; 32]>,
) -> Result<Registered> {
    let now = clock.now();
    let mut conn = store.conn()?;
    let me = identity::require(&mut conn)?;

    let anchor = trusted_ca(config, me.cloud_ca_pem.as_deref())?;
    if let (Some(a), Some(given)) = (&anchor, accept_ca) {
        if pki::sha256_of(a)? != *given {
            return Err(Error::invalid(format!(
                "the cloud CA fingerprint given does not match the cloud CA this satellite \
                 already trusts ({}); leave it out, or correct it",
                pki::sha256_fingerprint(a)?
            )));
        }
    }
    let anchors: Vec<X509> = anchor.iter().cloned().collect();
    let trust = if anchors.is_empty() {
        Trust::Fingerprint(accept_ca)
    } else {
        Trust::Anchors(&anchors)
    };
    let opts = ReadOptions::new(
        BundleKind::RegistrationAuthorization,
        trust,
        Some(&me.satellite_id),
        now,
    );
    let mut bundle = match sync_format::open(Cursor::new(bytes), &opts) {
        Err(sync_format::Error::UnpinnedCa { found }) => {
            return Err(Error::UntrustedCloudCa { found })
        }
        other => other?,
    };
    let auth: RegistrationAuthorization = bundle.payload()?;
    let manifest = bundle.manifest().clone();

    // An answer to a request we made, not yet answered.
    let Some(request_id) = manifest.in_reply_to.as_deref() else {
        return Err(Error::Conflict(
            "this authorization does not answer any registration request".into(),
        ));
    };
    let Some(request) = reg::request(&mut conn, request_id)? else {
        return Err(Error::Conflict(
            format!(
                "this authorization answers registration request {request_id}, which this \
             satellite never made (was it made for another satellite or another data directory?)"
            )
            .into(),
        ));
    };
    if let Some(at) = request.answered_at {
        return Err(Error::Conflict(
            format!(
                "this authorization was already imported at {}; nothing changed",
                clock::format(at)
            )
            .into(),
        ));
    }
    if auth.satellite_id != me.satellite_id {
        return Err(Error::Conflict(
            format!(
                "this authorization is for satellite {}, not for this one ({})",
                auth.satellite_id, me.satellite_id
            )
            .into(),
        ));
    }

    // The CA it names is the one that signed it, and the one we trust.
    let ca = X509::from_pem(auth.cloud_ca_pem.as_bytes())
        .map_err(|e| Error::invalid(format!("the authorization's cloud CA is not valid: {e}")))?;
    let signing_root = match &anchor {
        Some(a) => a.clone(),
        None => bundle
            .signer_chain()
            .last()
            .cloned()
            .ok_or_else(|| Error::Internal("empty signer chain".into()))?,
    };
    if ca.to_der()? != signing_root.to_der()? {
        return Err(Error::Conflict(
            format!(
                "the authorization names the cloud CA {:?} but was signed under {:?}, the CA this \
             satellite trusts; refusing it",
                pki::fingerprint(&ca)?,
                pki::fingerprint(&signing_root)?
            )
            .into(),
        ));
    }

    // Our certificate: for our key, issued by that CA, valid now.
    let key = crate::identity::signing_key(store.data_dir())?;
    crate::identity::check_certificate(
        &auth.satellite_certificate_pem,
        "the authorization",
        &me.satellite_id,
        &key,
        &ca,
        now,
    )?;

    let mut checked = crate::compliance::LineTotals::default();
    for va in &auth.virtual_accounts {
        for line in &va.licenses {
            checked.add(&va.name, line)?;
        }
    }
    let lines = auth.virtual_accounts.iter().map(|v| v.licenses.len()).sum();
    let va_names: Vec<String> = auth
        .virtual_accounts
        .iter()
        .map(|v| v.name.clone())
        .collect();
    let ca_pem = String::from_utf8(ca.to_pem()?).map_err(|e| Error::Internal(e.to_string()))?;
    drop(conn);
    let (auth, names, cloud_id, request_id) = (
        std::sync::Arc::new(auth),
        va_names.clone(),
        manifest.sender.clone(),
        request_id.to_string(),
    );
    let a = auth.clone();
    store.write(move |conn| {
        let (auth, va_names, request_id) = (&*a, names, request_id.as_str());
        reg::set_registered(
            conn,
            now,
            &reg::Registered {
                name: &auth.satellite_name,
                cloud_id: &cloud_id,
                account_name: &auth.account.name,
                cloud_ca_pem: &ca_pem,
                certificate_pem: &auth.satellite_certificate_pem,
                export_controlled_allowed: auth.account.export_controlled_allowed,
                next_sync_due_at: auth.next_sync_due,
            },
        )?;
        pools::replace(conn, now, &auth.virtual_accounts)?;
        crate::compliance::recompute_all(conn, now)?;
        reg::mark_answered(conn, request_id, now)?;
        // A cloud that registers us knows nothing of our devices: the next sync sends all.
        crate::db::sync::reset_for_registration(conn, now)?;
        alerts::clear(conn, now, AlertKind::AuthorizationPending)?;
        alerts::clear(conn, now, AlertKind::SatelliteRemoved)?;
        events::append(
            conn,
            now,
            &events::NewEvent {
                message: format!(
                    "The satellite \"{}\" was registered to the Smart Account \"{}\" with the \
                     Virtual Accounts {}.",
                    auth.satellite_name,
                    auth.account.name,
                    va_names
                        .iter()
                        .map(|n| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                actor: "system",
                ..events::NewEvent::of(EventKind::SatelliteRegistered)
            },
        )?;
        Ok(())
    })?;
    tracing::info!(account = %auth.account.name, vas = ?va_names, "satellite registered");
    Ok(Registered {
        account: auth.account.name.clone(),
        cloud_id: manifest.sender,
        virtual_accounts: va_names,
        license_lines: lines,
        export_controlled_allowed: auth.account.export_controlled_allowed,
        next_sync_due: clock::format(auth.next_sync_due),
    })
}

/// How a network registration ended.
#[derive(Debug)]
pub enum NetworkOutcome {
    Registered(Registered),
    /// The cloud holds the request for an operator's approval.
    Pending {
        request_id: String,
        message: String,
    },
}

/// Registers over HTTPS: posts a request (or, if one is pending, asks for its answer), and
/// imports the authorization when the cloud gives it, waiting up to `wait`.
pub fn register_network(
    store: &Store,
    config: &Config,
    clock: &dyn Clock,
    url: &str,
    ca_override: Option<&std::path::Path>,
    accept_ca: Option<&[u8; 32]>,
    wait: Duration,
) -> Result<NetworkOutcome> {
    let mut conn = store.conn()?;
    let me = identity::require(&mut conn)?;
    // The CA configured or pinned, read once: for TLS unless --ca names another, and to tell
    // a first registration.
    let anchor = trusted_ca(config, me.cloud_ca_pem.as_deref())?;
    let ca_pem = match ca_override {
        Some(p) => std::fs::read(p).map_err(|e| Error::file(p, e))?,
        None => match &anchor {
            Some(ca) => ca.to_pem()?,
            None => {
                return Err(Error::invalid(
                    "no CA to trust for the cloud: set [cloud] ca_file (or \
                     SATELLITE_CLOUD_CA_FILE) or pass --ca FILE; TLS verification is never \
                     disabled",
                ))
            }
        },
    };
    let client = CloudClient::new(url, &ca_pem, &config.cloud.proxy)?;
    // On a first registration (no CA configured or pinned), the CA the operator gave for the
    // cloud's TLS vouches for the authorization too, when it is the CA that signed it;
    // otherwise the operator gives its fingerprint.
    let tls_ca = match (accept_ca, ca_override) {
        (None, Some(_)) if anchor.is_none() => {
            let ca = X509::from_pem(&ca_pem).map_err(|e| {
                Error::invalid(format!(
                    "the CA given for the cloud's TLS is not a PEM certificate: {e}"
                ))
            })?;
            Some(pki::sha256_of(&ca)?)
        }
        _ => None,
    };
    let accept_ca = accept_ca.or(tls_ca.as_ref());

    // The request the cloud holds, if we are waiting for one from this cloud.
    let pending = match (me.state, me.registration_request_id.as_deref()) {
        (crate::states::SatelliteState::Pending, Some(id)) => reg::request(&mut conn, id)?
            .filter(|r| r.answered_at.is_none() && r.cloud_url.as_deref() == Some(url)),
        _ => None,
    };
    let (mut answer, request_id) = match pending {
        Some(r) => (
            client.poll_registration(&me.satellite_id, &r.bundle_id)?,
            r.bundle_id,
        ),
        None => {
            let (bytes, id) = make_request(store, config, clock, SyncMode::Network, Some(url))?;
            (client.register(&bytes)?, id)
        }
    };
    let started = Instant::now();
    loop {
        match answer {
            Answer::Bundle(bytes) => {
                return import_authorization(store, config, clock, &bytes, accept_ca)
                    .map(NetworkOutcome::Registered)
            }
            Answer::Pending(message) => {
                if started.elapsed() >= wait {
                    mark_pending(store, clock, &request_id)?;
                    return Ok(NetworkOutcome::Pending {
                        request_id,
                        message,
                    });
                }
                std::thread::sleep(Duration::from_secs(2).min(wait));
                answer = client.poll_registration(&me.satellite_id, &request_id)?;
            }
        }
    }
}

fn mark_pending(store: &Store, clock: &dyn Clock, request_id: &str) -> Result<()> {
    let now = clock.now();
    let request_id = request_id.to_string();
    store.write(move |conn| {
        reg::set_pending(conn, &request_id)?;
        raise_pending(conn, now)
    })
}

/// The Authorization Pending alert, until the authorization is imported.
fn raise_pending(conn: &mut diesel::SqliteConnection, now: i64) -> Result<()> {
    alerts::raise(
        conn,
        now,
        &alerts::NewAlert {
            kind: AlertKind::AuthorizationPending,
            source_type: "satellite",
            source_id: None,
            va_id: None,
            message: AUTHORIZATION_PENDING_TEXT.to_string(),
            action_due_at: None,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
