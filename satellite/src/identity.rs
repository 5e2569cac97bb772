//! The satellite's own identity and keys, made on first start, all in `<data_dir>/keys/`
//! (private keys 0600):
//! - `satellite.key.pem`: signs everything the satellite sends the cloud;
//! - `satellite-renewal.key.pem`: while the satellite's certificate is being renewed, the
//!   new key pair it asked the cloud to certify; it becomes `satellite.key.pem` when the
//!   new certificate arrives;
//! - `device-ca.key.pem` / `device-ca.crt.pem`: the CA that issues devices' identity
//!   certificates and signs their authorizations;
//! - `token.key`: the HMAC key registration tokens are derived from.

use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use openssl::x509::{X509Ref, X509};
use sync_format::pki::{self, SignerRole};

use crate::clock::Clock;
use crate::config::Config;
use crate::datadir;
use crate::db::{identity, identity::SatelliteRow, Store};
use crate::error::{Error, Result};
use crate::tls::new_p256_key;

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("satellite.key.pem")
}

/// The key pair a certificate renewal asks the cloud to certify.
pub fn renewal_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("satellite-renewal.key.pem")
}

fn device_ca_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let k = data_dir.join("keys");
    (k.join("device-ca.key.pem"), k.join("device-ca.crt.pem"))
}

fn token_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("token.key")
}

/// The device CA: issues identity certificates, signs authorizations.
pub struct DeviceCa {
    pub key: PKey<Private>,
    /// The same key, for the fast ECDSA path.
    pub ec: openssl::ec::EcKey<Private>,
    /// DER of the CA's subject name: the issuer of the certificates it writes.
    pub subject_der: Vec<u8>,
    pub cert: X509,
    pub cert_pem: String,
}

impl std::fmt::Debug for DeviceCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCa").finish_non_exhaustive()
    }
}

/// The key registration tokens are derived from.
pub struct TokenKey(pub [u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

fn ensure_device_keys(data_dir: &Path, name: &str, now: i64) -> Result<()> {
    let (key_path, cert_path) = device_ca_paths(data_dir);
    if !key_path.exists() || !cert_path.exists() {
        let key = new_p256_key()?;
        let cert = sync_format::pki::self_signed(
            &key,
            &sync_format::pki::CertSpec {
                common_name: &format!("satellite {name} device CA"),
                organization: "satellite",
                role: sync_format::pki::CertRole::Ca,
                now,
                days: 3650,
            },
        )?;
        datadir::write_private(&key_path, &key.private_key_to_pem_pkcs8()?)?;
        datadir::write_public(&cert_path, &cert.to_pem()?)?;
        tracing::info!(cert = %cert_path.display(), "made the device CA");
    }
    let tk = token_key_path(data_dir);
    if !tk.exists() {
        let mut bytes = [0u8; 32];
        openssl::rand::rand_bytes(&mut bytes)?;
        datadir::write_private(&tk, hex::encode(bytes).as_bytes())?;
    }
    Ok(())
}

/// Loads the device CA.
pub fn device_ca(data_dir: &Path) -> Result<DeviceCa> {
    let (key_path, cert_path) = device_ca_paths(data_dir);
    let key_pem = std::fs::read(&key_path).map_err(|e| Error::file(&key_path, e))?;
    let cert_pem = std::fs::read(&cert_path).map_err(|e| Error::file(&cert_path, e))?;
    let key = PKey::private_key_from_pem(&key_pem)?;
    let cert = X509::from_pem(&cert_pem)?;
    Ok(DeviceCa {
        ec: key.ec_key()?,
        key,
        subject_der: cert.subject_name().to_der()?,
        cert,
        cert_pem: String::from_utf8_lossy(&cert_pem).into_owned(),
    })
}

/// Loads the token key.
pub fn token_key(data_dir: &Path) -> Result<TokenKey> {
    let path = token_key_path(data_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, e))?;
    let bytes = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Error::State(format!("{}: not a token key", path.display()).into()))?;
    Ok(TokenKey(bytes))
}

/// Makes the satellite's row and key if this is the first start; returns the row.
pub fn ensure(store: &Store, cfg: &Config, clock: &dyn Clock) -> Result<SatelliteRow> {
    let path = key_path(store.data_dir());
    if !path.exists() {
        datadir::ensure_subdir(path.parent().unwrap_or(store.data_dir()))?;
        let key = new_p256_key()?;
        datadir::write_private(&path, &key.private_key_to_pem_pkcs8()?)?;
        tracing::info!(key = %path.display(), "made the satellite's signing key");
    }
    let mut conn = store.conn()?;
    let id = uuid::Uuid::new_v4().to_string();
    let row = identity::insert_if_missing(
        &mut conn,
        &id,
        &cfg.satellite_name(),
        &crate::config::hostname(),
        clock.now(),
    )?;
    if row.satellite_id == id {
        tracing::info!(satellite_id = %row.satellite_id, name = %row.name, "initialised a new satellite");
    }
    ensure_device_keys(store.data_dir(), &row.name, clock.now())?;
    // A stop between storing a renewed certificate and switching to its key is finished
    // here.
    promote_renewal(store.data_dir(), row.certificate_pem.as_deref())?;
    Ok(row)
}

/// The satellite's signing key.
pub fn signing_key(data_dir: &Path) -> Result<PKey<Private>> {
    let path = key_path(data_dir);
    let pem = std::fs::read(&path).map_err(|e| Error::file(&path, e))?;
    PKey::private_key_from_pem(&pem).map_err(|e| {
        Error::State(format!("{}: not a usable private key: {e}", path.display()).into())
    })
}

/// The key a certificate renewal asks the cloud to certify: the one made for an earlier
/// request if there is one (a response lost on the way costs nothing: the next sync asks
/// again, for the same key), else a new one.
pub fn renewal_key(data_dir: &Path) -> Result<PKey<Private>> {
    let path = renewal_key_path(data_dir);
    if path.exists() {
        let pem = std::fs::read(&path).map_err(|e| Error::file(&path, e))?;
        return PKey::private_key_from_pem(&pem).map_err(|e| {
            Error::State(format!("{}: not a usable private key: {e}", path.display()).into())
        });
    }
    let key = new_p256_key()?;
    datadir::write_private(&path, &key.private_key_to_pem_pkcs8()?)?;
    tracing::info!(key = %path.display(), "made a key pair for the renewal of the satellite's certificate");
    Ok(key)
}

/// The renewal key's public half, if a renewal is under way.
pub fn pending_renewal_key(data_dir: &Path) -> Result<Option<PKey<Private>>> {
    if renewal_key_path(data_dir).exists() {
        renewal_key(data_dir).map(Some)
    } else {
        Ok(None)
    }
}

/// Once the store holds a certificate for the renewal key, that key becomes the signing
/// key (an atomic rename). Idempotent: it runs after a response is applied and again at
/// every start, so a stop between the two leaves nothing half done. Returns whether it
/// switched.
pub fn promote_renewal(data_dir: &Path, certificate_pem: Option<&str>) -> Result<bool> {
    let Some(pem) = certificate_pem else {
        return Ok(false);
    };
    let Some(renewal) = pending_renewal_key(data_dir)? else {
        return Ok(false);
    };
    let cert = X509::from_pem(pem.as_bytes())?;
    if !cert.public_key()?.public_eq(&renewal) {
        return Ok(false);
    }
    let (from, to) = (renewal_key_path(data_dir), key_path(data_dir));
    std::fs::rename(&from, &to).map_err(|e| Error::file(&to, e))?;
    tracing::info!(key = %to.display(), "the renewed certificate's key now signs for the satellite");
    Ok(true)
}

/// Unix seconds of an ASN.1 time.
pub fn unix_of(t: &Asn1TimeRef) -> Result<i64> {
    let d = Asn1Time::from_unix(0)?.diff(t)?;
    Ok(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// Checks a satellite certificate the cloud issued (`what` names where it came from): it
/// certifies this satellite as a bundle signer, for `key`, issued by `ca` and valid at
/// `now`. Any other is refused with the reason.
pub fn check_certificate<T: HasPublic>(
    pem: &str,
    what: &str,
    satellite_id: &str,
    key: &PKeyRef<T>,
    ca: &X509Ref,
    now: i64,
) -> Result<X509> {
    let cert = X509::from_pem(pem.as_bytes())
        .map_err(|e| Error::invalid(format!("{what}'s satellite certificate is not valid: {e}")))?;
    if pki::bundle_role(&cert)? != Some((SignerRole::Satellite, satellite_id.to_string())) {
        return Err(Error::Conflict(crate::error::Reason::new(
            "certificate_for_another",
            format!(
                "{what}'s satellite certificate does not certify this satellite as a bundle \
                 signer; refusing it"
            ),
        )));
    }
    if !cert.public_key()?.public_eq(key) {
        return Err(Error::Conflict(crate::error::Reason::new(
            "certificate_for_another_key",
            format!("{what} certifies another key than this satellite's"),
        )));
    }
    let at = Asn1Time::from_unix(now)?;
    let ca_key = ca.public_key()?;
    if !cert.verify(&ca_key).unwrap_or(false) || cert.not_before() > at || cert.not_after() < at {
        return Err(Error::Conflict(crate::error::Reason::new(
            "certificate_not_valid",
            format!(
                "the satellite certificate in {what} is not issued by the cloud CA or not \
                 valid now"
            ),
        )));
    }
    Ok(cert)
}
