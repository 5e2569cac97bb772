//! Devices (product instances): registration with a token, identity certificates, signed
//! requests, authorization, renewal, deregistration, and the operator's view (list, show,
//! remove, transfer).
//!
//! Work is split so the single writer only writes: [`prepare`] (verify the CSR, issue the
//! certificate) and [`authenticate`] (check a request's signature) are CPU work on any
//! thread; the `commit_*` functions and [`authorize`] run in the writer's transaction.

use diesel::prelude::*;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509NameBuilder, X509Req, X509};
use serde::{Deserialize, Serialize};

use crate::catalogue::EventKind;
use crate::clock::{self, DAY};
use crate::compliance::{self, Entitlement, EntitlementStatus};
use crate::crypto::DeviceKey;
use crate::db::devices::{self as db, PiRow};
use crate::db::{events, pools, tokens as dbtokens};
use crate::error::{Error, Reason, Result};
use crate::guards::{field_ok, fresh, require_registered};
use crate::identity::{DeviceCa, TokenKey};
use crate::states::PiState;
use crate::tokens;

mod authorize;
mod manage;

pub use authorize::*;
pub use manage::*;

/// An identity certificate is valid a year and renewed every six months.
pub const IDENTITY_DAYS: i64 = 365;
pub const IDENTITY_RENEW_DAYS: i64 = 182;
/// An authorization is valid 90 days and renewed every 30.
pub const AUTHORIZATION_DAYS: i64 = 90;
pub const AUTHORIZATION_RENEW_DAYS: i64 = 30;
/// Most entitlements in one authorization request.
pub const MAX_ENTITLEMENTS: usize = 100;

/// The device's unique identifier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Udi {
    /// Product id, e.g. `ISR4431/K9`.
    pub pid: String,
    /// Serial number.
    pub sn: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub host_id: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

impl Udi {
    pub fn validate(&self) -> Result<()> {
        if !field_ok(&self.pid, 64, b"-_./:+") {
            return Err(Error::invalid(
                "udi.pid must be 1 to 64 of A-Z a-z 0-9 - _ . / : +",
            ));
        }
        if !field_ok(&self.sn, 64, b"-_.:") {
            return Err(Error::invalid(
                "udi.sn must be 1 to 64 of A-Z a-z 0-9 - _ . :",
            ));
        }
        if self.uuid.as_deref().is_some_and(|u| !field_ok(u, 64, b"-")) {
            return Err(Error::invalid("udi.uuid must be 1 to 64 of A-Z a-z 0-9 -"));
        }
        if self
            .host_id
            .as_deref()
            .is_some_and(|u| !field_ok(u, 64, b"-_.:"))
        {
            return Err(Error::invalid(
                "udi.host_id must be 1 to 64 of A-Z a-z 0-9 - _ . :",
            ));
        }
        if self.mac.as_deref().is_some_and(|m| {
            let parts: Vec<&str> = m.split([':', '-']).collect();
            parts.len() != 6
                || !parts
                    .iter()
                    .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        }) {
            return Err(Error::invalid("udi.mac must look like 00:1a:2b:3c:4d:5e"));
        }
        Ok(())
    }
}

/// `POST /api/v1/devices/register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub token: String,
    pub udi: Udi,
    /// PEM certificate signing request for the device's key (ECDSA P-256 or RSA >= 2048).
    pub csr_pem: String,
    /// Display name; default `PID:<pid> SN:<sn>`.
    #[serde(default)]
    pub name: Option<String>,
}

/// A verified request, with its certificate issued, waiting to be committed.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub uuid: String,
    pub name: String,
    pub udi: Udi,
    pub device_key: DeviceKey,
    pub public_key: String,
    pub cert_pem: String,
    pub serial: String,
    pub not_after: i64,
    /// The request's body and its `X-Satellite-Signature`, when it carries one: what proves
    /// that an active device registering again holds its current key.
    pub proof: Option<KeyProof>,
}

/// A registration body and a signature over it (DER, SHA-256), as a device sends them.
#[derive(Debug, Clone)]
pub struct KeyProof {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

/// How long an operator's permission to register again without the key lasts by default.
pub const REREGISTER_DEFAULT_HOURS: i64 = 24;

/// The answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registration {
    pub pi_id: String,
    pub certificate_pem: String,
    /// The device CA: it issued the certificate and signs authorizations.
    pub ca_certificate_pem: String,
    pub not_after: String,
    pub renew_after: String,
    pub virtual_account: String,
    pub account: String,
    /// Set when the registration moved the device from another VA.
    pub moved_from: Option<String>,
    /// Whether the device may use export-controlled functionality (its token allowed it,
    /// and the account allows it): only then may it ask for restricted licenses.
    pub export_controlled: bool,
}

/// Verifies a CSR: well-formed, signed by its own key, a key we accept. P-256 CSRs go
/// through the plain-DER reader ([`crate::der`]), others through OpenSSL.
fn csr_key(csr_pem: &str) -> Result<(DeviceKey, Option<PKey<Public>>)> {
    if csr_pem.len() > 16 * 1024 {
        return Err(Error::invalid("csr_pem is larger than 16 KiB"));
    }
    if let Some(key) = crate::der::p256_csr(csr_pem) {
        return Ok((key?, None));
    }
    let key = openssl_csr_key(csr_pem)?;
    Ok((DeviceKey::from_pkey(&key)?, Some(key)))
}

fn openssl_csr_key(csr_pem: &str) -> Result<PKey<Public>> {
    let csr = X509Req::from_pem(csr_pem.as_bytes()).map_err(|_| {
        Error::Invalid(Reason::new(
            "bad_csr",
            "csr_pem is not a PEM certificate signing request",
        ))
    })?;
    if crate::der::csr_signature_accepted(csr_pem) != Some(true) {
        return Err(Error::Invalid(Reason::new(
            "weak_csr",
            "the CSR must be signed with SHA-256, SHA-384 or SHA-512 (ECDSA or RSA); SHA-1 \
             and MD5 are refused",
        )));
    }
    let key = csr
        .public_key()
        .map_err(|_| Error::invalid("the CSR's public key cannot be read"))?;
    if !csr.verify(&key).unwrap_or(false) {
        return Err(Error::invalid("the CSR is not signed by its own key"));
    }
    let ok = match key.id() {
        Id::EC => sync_format::pki::is_p256(&key),
        Id::RSA => key.bits() >= 2048,
        _ => false,
    };
    if !ok {
        return Err(Error::invalid(
            "the CSR's key must be ECDSA P-256 or RSA of 2048 bits or more",
        ));
    }
    Ok(key)
}

/// Issues an identity certificate for `key` by the device CA, valid from `now` for a year.
fn issue(
    ca: &DeviceCa,
    key: &(DeviceKey, Option<PKey<Public>>),
    udi: &Udi,
    now: i64,
) -> Result<(String, String, i64)> {
    let cn = format!("PID:{} SN:{}", udi.pid, udi.sn);
    let not_after = now + IDENTITY_DAYS * DAY;
    let key = match key {
        (DeviceKey::P256(point), _) => {
            let mut serial = [0u8; 16];
            openssl::rand::rand_bytes(&mut serial)?;
            let (pem, serial) = crate::der::identity_certificate(
                &ca.ec,
                &ca.subject_der,
                point,
                &cn,
                serial,
                now - 300,
                not_after,
            )?;
            return Ok((pem, serial, not_after));
        }
        (_, Some(pkey)) => pkey,
        (DeviceKey::Pem(pem), None) => &PKey::public_key_from_pem(pem.as_bytes())?,
    };
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, &cn)?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "satellite product instance")?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial_hex = serial.to_hex_str()?.to_string();
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(ca.cert.subject_name())?;
    b.set_pubkey(key)?;
    let nb = Asn1Time::from_unix(now - 300)?;
    let na = Asn1Time::from_unix(not_after)?;
    b.set_not_before(&nb)?;
    b.set_not_after(&na)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
    b.sign(&ca.key, MessageDigest::sha256())?;
    let pem = String::from_utf8(b.build().to_pem()?).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((pem, serial_hex, not_after))
}

/// CPU half of a registration: validate, verify the CSR, issue the certificate.
pub fn prepare(req: &RegisterRequest, ca: &DeviceCa, now: i64) -> Result<Prepared> {
    req.udi.validate()?;
    let name = match req.name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => {
            if n.chars().count() > 128 || n.chars().any(char::is_control) {
                return Err(Error::invalid("name must be 1 to 128 printable characters"));
            }
            n.to_string()
        }
        _ => format!("PID:{} SN:{}", req.udi.pid, req.udi.sn),
    };
    let key = csr_key(&req.csr_pem)?;
    let (cert_pem, serial, not_after) = issue(ca, &key, &req.udi, now)?;
    Ok(Prepared {
        uuid: uuid::Uuid::new_v4().to_string(),
        name,
        udi: req.udi.clone(),
        public_key: key.0.to_stored(),
        device_key: key.0,
        cert_pem,
        serial,
        not_after,
        proof: None,
    })
}

/// A device's identity belongs to its key: an active product instance registers again (a
/// new key, or another VA as seed 001 allows) only when the request is signed by its current
/// key, or while an operator lets it through ([`allow_reregister`]). Anyone else holding a
/// token of any VA could otherwise take over its PID:SN and lock the real device out.
fn check_reregistration(old: &PiRow, proof: Option<&KeyProof>, now: i64) -> Result<()> {
    if old.state != PiState::Active || old.reregister_allowed_until.is_some_and(|t| now < t) {
        return Ok(());
    }
    let signed = match proof {
        Some(p) => DeviceKey::from_stored(&old.public_key)?
            .verify(&p.body, &p.signature)
            .unwrap_or(false),
        None => false,
    };
    if signed {
        return Ok(());
    }
    Err(Error::Unauthorized(Reason::new(
        "reregister_needs_key",
        format!(
            "product instance PID:{} SN:{} is registered and active: registering it again needs \
         the signature of its current key (X-Satellite-Signature over the body), or an \
         operator's permission (`satellite device allow-reregister`, or the console)",
            old.pid, old.sn
        ),
    )))
}

/// Lets an active device register again without its current key (it lost it) for `hours`
/// (1..=168), with an event. The next registration of its PID:SN ends the permission.
pub fn allow_reregister(
    conn: &mut SqliteConnection,
    who: &str,
    hours: i64,
    now: i64,
    actor: &str,
) -> Result<DeviceView> {
    if !(1..=168).contains(&hours) {
        return Err(Error::invalid(format!(
            "hours must be 1 to 168, got {hours}"
        )));
    }
    let pi = find(conn, who)?;
    if pi.state != PiState::Active {
        return Err(Error::Conflict(Reason::new(
            "device_removed",
            format!("product instance {who:?} is removed: it registers again with any valid token"),
        )));
    }
    let until = now + hours * 3600;
    db::allow_reregister(conn, pi.id, until)?;
    let va = pools::va_name(conn, pi.va_id)?;
    events::append(
        conn,
        now,
        &events::NewEvent::about_pi(
            EventKind::PiReregisterAllowed,
            &va,
            &pi.uuid,
            format!(
                "The product instance {} may register again without its current key until {}.",
                pi.name,
                clock::format(until)
            ),
            actor,
        ),
    )?;
    show(conn, &pi.uuid)
}

/// Checks a token without writing (to turn bad tokens away before the CPU work).
pub fn precheck_token(
    conn: &mut SqliteConnection,
    key: &TokenKey,
    token: &str,
    now: i64,
) -> Result<()> {
    require_registered(conn, now)?;
    tokens::check(conn, key, token, now)?.map_err(|r| r.error())?;
    Ok(())
}

/// Writer half of a registration: the token decides (again, authoritatively), then the
/// device is added, re-registered, or moved to the token's VA.
pub fn commit_registration(
    conn: &mut SqliteConnection,
    key: &TokenKey,
    token: &str,
    p: &Prepared,
    now: i64,
) -> Result<Registration> {
    let me = require_registered(conn, now)?;
    let tok = tokens::check(conn, key, token, now)?.map_err(|r| r.error())?;
    let va_name = pools::va_name(conn, tok.va_id)?;
    let existing = db::by_udi(conn, &p.udi.pid, &p.udi.sn)?;
    let uuid = existing.as_ref().map_or(p.uuid.clone(), |e| e.uuid.clone());
    let ident = db::Identity {
        uuid: &uuid,
        va_id: tok.va_id,
        pid: &p.udi.pid,
        sn: &p.udi.sn,
        udi_uuid: p.udi.uuid.as_deref(),
        host_id: p.udi.host_id.as_deref(),
        mac: p.udi.mac.as_deref(),
        name: &p.name,
        token_id: tok.id,
        export_controlled: tok.export_controlled,
        public_key: &p.public_key,
        cert_serial: &p.serial,
        cert_not_after: p.not_after,
    };
    let mut moved_from = None;
    match &existing {
        None => {
            db::insert(conn, &ident, now)?;
            new_pi_event(conn, &p.name, &uuid, &va_name, now)?;
        }
        Some(old) => {
            check_reregistration(old, p.proof.as_ref(), now)?;
            if old.state == PiState::Active && old.va_id != tok.va_id {
                // Moving to another VA: its licenses do not follow.
                compliance::release_all(conn, old, now)?;
                let from = pools::va_name(conn, old.va_id)?;
                events::append(
                    conn,
                    now,
                    &events::NewEvent::about_pi(EventKind::PiTransferred, &va_name, &uuid, format!(
                            "The product instance {} was transferred from the Virtual Account \"{from}\" to the Virtual Account \"{va_name}\".",
                            p.name
                        ), "system"),
                )?;
                moved_from = Some(from);
            } else if old.state != PiState::Active {
                new_pi_event(conn, &p.name, &uuid, &va_name, now)?;
            }
            db::reregister(conn, old.id, &ident, now)?;
            if old.va_id != tok.va_id {
                crate::export::moved(conn, old.id, old.va_id, tok.va_id, now)?;
            }
        }
    }
    dbtokens::add_use(conn, tok.id)?;
    Ok(Registration {
        pi_id: uuid,
        certificate_pem: p.cert_pem.clone(),
        ca_certificate_pem: String::new(),
        not_after: clock::format(p.not_after),
        renew_after: clock::format(now + IDENTITY_RENEW_DAYS * DAY),
        virtual_account: va_name,
        account: me.account_name.unwrap_or_default(),
        moved_from,
        export_controlled: tok.export_controlled,
    })
}

fn new_pi_event(
    conn: &mut SqliteConnection,
    name: &str,
    uuid: &str,
    va: &str,
    now: i64,
) -> Result<()> {
    events::append(
        conn,
        now,
        &events::NewEvent::about_pi(EventKind::PiNew, va, uuid, format!("The product instance {name} connected and was added to the Virtual Account \"{va}\"."), "system"),
    )
}

#[cfg(test)]
pub(crate) mod tests;
