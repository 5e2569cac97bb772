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
    conn.immediate_transaction(|conn| {
        let pi = find(conn, who)?;
        if pi.state != PiState::Active {
            return Err(Error::Conflict(Reason::new(
                "device_removed",
                format!(
                    "product instance {who:?} is removed: it registers again with any valid token"
                ),
            )));
        }
        let until = now + hours * 3600;
        db::allow_reregister(conn, pi.id, until)?;
        let va = pools::va_name(conn, pi.va_id)?;
        events::append(
            conn,
            now,
            &events::NewEvent {
                va_name: Some(&va),
                pi_uuid: Some(&pi.uuid),
                message: format!(
                    "The product instance {} may register again without its current key until {}.",
                    pi.name,
                    clock::format(until)
                ),
                actor,
                ..events::NewEvent::of(EventKind::PiReregisterAllowed)
            },
        )?;
        show(conn, &pi.uuid)
    })
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
                    &events::NewEvent {
                        va_name: Some(&va_name),
                        pi_uuid: Some(&uuid),
                        message: format!(
                            "The product instance {} was transferred from the Virtual Account \"{from}\" to the Virtual Account \"{va_name}\".",
                            p.name
                        ),
                        actor: "system",
                        ..events::NewEvent::of(EventKind::PiTransferred)
                    },
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
        &events::NewEvent {
            va_name: Some(va),
            pi_uuid: Some(uuid),
            message: format!("The product instance {name} connected and was added to the Virtual Account \"{va}\"."),
            actor: "system",
            ..events::NewEvent::of(EventKind::PiNew)
        },
    )
}

// ---- signed requests ---------------------------------------------------------------------

/// The fields every signed request carries.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    pub pi_id: String,
    pub counter: i64,
}

impl Envelope {
    pub fn parse(body: &[u8]) -> Result<Envelope> {
        let env: Envelope = serde_json::from_slice(body)
            .map_err(|e| Error::invalid(format!("invalid request body: {e}")))?;
        if env.counter <= 0 {
            return Err(Error::invalid("counter must be a positive integer"));
        }
        Ok(env)
    }
}

/// What checking a device's signature needs: its key and how long its identity is valid.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    pub key: DeviceKey,
    pub not_after: i64,
}

/// The identity of an active product instance, from the store.
pub fn identity_of(conn: &mut SqliteConnection, pi_uuid: &str) -> Result<DeviceIdentity> {
    let pi = db::by_uuid(conn, pi_uuid)?
        .filter(|p| p.state == PiState::Active)
        .ok_or_else(|| {
            Error::Unauthorized(Reason::new(
                "device_removed",
                format!("unknown or removed product instance {pi_uuid:?}: register again"),
            ))
        })?;
    Ok(DeviceIdentity {
        key: DeviceKey::from_stored(&pi.public_key)?,
        not_after: pi.cert_not_after.unwrap_or(0),
    })
}

/// Checks a signed request: the signature (base64 DER over SHA-256 of the exact body) is by
/// the instance's key, and its identity certificate is still valid at `now`. Whether the
/// instance is still active and the counter is fresh is checked in the writer.
pub fn check_signature(
    pi_uuid: &str,
    id: &DeviceIdentity,
    body: &[u8],
    signature_b64: Option<&str>,
    now: i64,
) -> Result<()> {
    let sig = signature_b64.ok_or_else(|| {
        Error::Unauthorized(Reason::new(
            "signature_missing",
            "missing X-Satellite-Signature header: sign the body with the device key",
        ))
    })?;
    let sig = openssl::base64::decode_block(sig.trim()).map_err(|_| {
        Error::Unauthorized(Reason::new(
            "bad_signature",
            "X-Satellite-Signature is not base64",
        ))
    })?;
    if !id.key.verify(body, &sig)? {
        return Err(Error::Unauthorized(Reason::new(
            "bad_signature",
            format!("the request is not signed by the key of product instance {pi_uuid}"),
        )));
    }
    if id.not_after <= now {
        return Err(Error::Unauthorized(Reason::new(
            "identity_expired",
            format!(
            "the identity certificate of product instance {pi_uuid} expired at {}: register again",
            clock::format(id.not_after)
        ),
        )));
    }
    Ok(())
}

/// The identities of devices the server has seen, so a signed request needs neither a
/// store read nor a PEM decode. Only the server changes keys (registration, renewal), and
/// it updates the cache when it does; whether a device is still active is always checked
/// in the writer.
#[derive(Debug, Default)]
pub struct IdentityCache {
    map: std::sync::RwLock<std::collections::HashMap<String, DeviceIdentity>>,
}

/// Entries kept at most; beyond, the cache starts over.
const IDENTITY_CACHE_MAX: usize = 2_000_000;

impl IdentityCache {
    pub fn get(&self, pi_uuid: &str) -> Option<DeviceIdentity> {
        self.map.read().ok()?.get(pi_uuid).cloned()
    }

    pub fn put(&self, pi_uuid: &str, id: DeviceIdentity) {
        if let Ok(mut m) = self.map.write() {
            if m.len() >= IDENTITY_CACHE_MAX {
                m.clear();
            }
            m.insert(pi_uuid.to_string(), id);
        }
    }

    pub fn remove(&self, pi_uuid: &str) {
        if let Ok(mut m) = self.map.write() {
            m.remove(pi_uuid);
        }
    }
}

/// `POST /api/v1/devices/authorize`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRequest {
    pub pi_id: String,
    pub counter: i64,
    /// The device's random nonce, echoed in the signed answer.
    pub nonce: String,
    /// Everything the device uses now (an entitlement left out is released).
    pub entitlements: Vec<Entitlement>,
}

impl AuthorizationRequest {
    pub fn validate(&self) -> Result<()> {
        if !field_ok(&self.nonce, 128, b"-_.:+/=") {
            return Err(Error::invalid(
                "nonce must be 1 to 128 of A-Z a-z 0-9 - _ . : + / =",
            ));
        }
        if self.entitlements.len() > MAX_ENTITLEMENTS {
            return Err(Error::invalid(format!(
                "at most {MAX_ENTITLEMENTS} entitlements per request"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.entitlements {
            if !field_ok(&e.tag, 200, b"-_.:/+") {
                return Err(Error::invalid(
                    "an entitlement tag must be 1 to 200 of A-Z a-z 0-9 - _ . : / +",
                ));
            }
            if !(0..=1_000_000).contains(&e.count) {
                return Err(Error::Invalid(Reason::new(
                    "count_out_of_range",
                    format!("count of {:?} must be 0 to 1000000", e.tag),
                )));
            }
            if !seen.insert(&e.tag) {
                return Err(Error::invalid(format!(
                    "entitlement {:?} is listed twice",
                    e.tag
                )));
            }
        }
        Ok(())
    }
}

/// The authorization a device gets, signed by the device CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Authorization {
    pub pi_id: String,
    pub satellite_id: String,
    pub nonce: String,
    pub issued_at: String,
    pub not_after: String,
    pub renew_after: String,
    pub entitlements: Vec<EntitlementStatus>,
    /// Restricted (export-controlled) licenses: pending, granted, denied (once), or being
    /// returned. Absent when the device has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restricted: Vec<crate::export::RestrictedStatus>,
}

/// In the writer: records what the device uses and answers per entitlement.
pub fn authorize(
    conn: &mut SqliteConnection,
    req: &AuthorizationRequest,
    now: i64,
) -> Result<Authorization> {
    let me = require_registered(conn, now)?;
    let pi = fresh(conn, &req.pi_id, req.counter, now)?;
    let entitlements = compliance::report_usage(conn, &pi, &req.entitlements, now)?;
    let restricted = if pi.export_controlled {
        crate::export::deliver(conn, &pi, now)?
    } else {
        Vec::new()
    };
    Ok(Authorization {
        pi_id: pi.uuid,
        satellite_id: me.satellite_id,
        nonce: req.nonce.clone(),
        issued_at: clock::format(now),
        not_after: clock::format(now + AUTHORIZATION_DAYS * DAY),
        renew_after: clock::format(now + AUTHORIZATION_RENEW_DAYS * DAY),
        entitlements,
        restricted,
    })
}

/// The signed form of an authorization: the JSON bytes (base64) and their signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedAuthorization {
    /// base64 of the authorization's JSON bytes: verify the signature over these bytes.
    pub payload: String,
    /// base64 DER ECDSA P-256/SHA-256 signature by the device CA's key.
    pub signature: String,
    /// The same authorization, decoded, for convenience (trust `payload`).
    pub authorization: Authorization,
}

pub fn sign_authorization(ca: &DeviceCa, a: Authorization) -> Result<SignedAuthorization> {
    let bytes = serde_json::to_vec(&a).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(SignedAuthorization {
        payload: openssl::base64::encode_block(&bytes),
        signature: openssl::base64::encode_block(&crate::crypto::sign_p256(&ca.ec, &bytes)?),
        authorization: a,
    })
}

/// `POST /api/v1/devices/renew`: a new identity certificate (for a new key if the CSR has one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub pi_id: String,
    pub counter: i64,
    pub csr_pem: String,
}

/// CPU half of a renewal.
pub fn prepare_renewal(
    conn: &mut SqliteConnection,
    req: &RenewRequest,
    ca: &DeviceCa,
    now: i64,
) -> Result<Prepared> {
    let pi = &db::by_uuid(conn, &req.pi_id)?.ok_or_else(|| {
        Error::Unauthorized(Reason::new(
            "unknown_device",
            format!("unknown product instance {:?}", req.pi_id),
        ))
    })?;
    let key = csr_key(&req.csr_pem)?;
    let udi = Udi {
        pid: pi.pid.clone(),
        sn: pi.sn.clone(),
        uuid: pi.udi_uuid.clone(),
        host_id: pi.host_id.clone(),
        mac: pi.mac.clone(),
    };
    let (cert_pem, serial, not_after) = issue(ca, &key, &udi, now)?;
    Ok(Prepared {
        uuid: pi.uuid.clone(),
        name: pi.name.clone(),
        udi,
        public_key: key.0.to_stored(),
        device_key: key.0,
        cert_pem,
        serial,
        not_after,
        // A renewal is a signed request already.
        proof: None,
    })
}

/// The answer to a renewal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Renewal {
    pub pi_id: String,
    pub certificate_pem: String,
    pub not_after: String,
    pub renew_after: String,
}

pub fn commit_renewal(
    conn: &mut SqliteConnection,
    req: &RenewRequest,
    p: &Prepared,
    now: i64,
) -> Result<Renewal> {
    require_registered(conn, now)?;
    let pi = fresh(conn, &req.pi_id, req.counter, now)?;
    db::renew_identity(conn, pi.id, &p.public_key, &p.serial, p.not_after)?;
    let va = pools::va_name(conn, pi.va_id)?;
    events::append(
        conn,
        now,
        &events::NewEvent {
            va_name: Some(&va),
            pi_uuid: Some(&pi.uuid),
            message: format!(
                "The product instance {} in the Virtual Account \"{va}\" connected and successfully renewed its identity certificate.",
                pi.name
            ),
            actor: "system",
            ..events::NewEvent::of(EventKind::PiRenewedCertificate)
        },
    )?;
    Ok(Renewal {
        pi_id: pi.uuid,
        certificate_pem: p.cert_pem.clone(),
        not_after: clock::format(p.not_after),
        renew_after: clock::format(now + IDENTITY_RENEW_DAYS * DAY),
    })
}

/// `POST /api/v1/devices/deregister`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeregisterRequest {
    pub pi_id: String,
    pub counter: i64,
}

/// Deregisters a device: its licenses are released at once.
pub fn deregister(conn: &mut SqliteConnection, req: &DeregisterRequest, now: i64) -> Result<()> {
    let pi = fresh(conn, &req.pi_id, req.counter, now)?;
    remove_pi(conn, &pi, now, "system")
}

/// Removes a device: its ordinary licenses are released at once; the returns of its
/// restricted ones are queued (they stay consumed until the cloud acknowledges).
fn remove_pi(conn: &mut SqliteConnection, pi: &PiRow, now: i64, actor: &str) -> Result<()> {
    compliance::release_all(conn, pi, now)?;
    crate::export::return_all(conn, pi, now)?;
    db::mark_removed(conn, pi.id, now)?;
    let va = pools::va_name(conn, pi.va_id)?;
    events::append(
        conn,
        now,
        &events::NewEvent {
            va_name: Some(&va),
            pi_uuid: Some(&pi.uuid),
            message: format!(
                "The product instance \"{}\" was removed from Smart Software Manager.",
                pi.name
            ),
            actor,
            ..events::NewEvent::of(EventKind::PiRemoved)
        },
    )
}

// ---- operators ---------------------------------------------------------------------------

/// A device as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub pi_id: String,
    pub name: String,
    pub pid: String,
    pub sn: String,
    pub uuid: Option<String>,
    pub host_id: Option<String>,
    pub mac: Option<String>,
    pub virtual_account: String,
    pub state: PiState,
    pub export_controlled: bool,
    pub registered_at: String,
    pub last_contact_at: String,
    pub identity_not_after: Option<String>,
    pub licenses: Vec<EntitlementStatus>,
    /// Restricted (export-controlled) licenses: pending, held, being returned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restricted: Vec<crate::export::RestrictedStatus>,
}

fn view(conn: &mut SqliteConnection, pi: PiRow, va: String) -> Result<DeviceView> {
    let licenses = db::usage_of(conn, pi.id)?
        .into_iter()
        .map(|u| EntitlementStatus {
            tag: u.tag,
            count: u.count,
            status: u.status,
        })
        .collect();
    let restricted = crate::export::of_device(conn, pi.id)?;
    Ok(DeviceView {
        pi_id: pi.uuid,
        name: pi.name,
        pid: pi.pid,
        sn: pi.sn,
        uuid: pi.udi_uuid,
        host_id: pi.host_id,
        mac: pi.mac,
        virtual_account: va,
        state: pi.state,
        export_controlled: pi.export_controlled,
        registered_at: clock::format(pi.registered_at),
        last_contact_at: clock::format(pi.last_contact_at),
        identity_not_after: pi.cert_not_after.map(clock::format),
        licenses,
        restricted,
    })
}

pub fn list(conn: &mut SqliteConnection, f: &db::Filter) -> Result<Vec<DeviceView>> {
    db::list(conn, f)?
        .into_iter()
        .map(|(pi, va)| view(conn, pi, va))
        .collect()
}

/// Finds a device by PI id, or by UDI written `PID:SN`.
fn find(conn: &mut SqliteConnection, who: &str) -> Result<PiRow> {
    if let Some(pi) = db::by_uuid(conn, who)? {
        return Ok(pi);
    }
    if let Some((pid, sn)) = who.rsplit_once(':') {
        if let Some(pi) = db::by_udi(conn, pid, sn)? {
            return Ok(pi);
        }
    }
    Err(Error::NotFound(
        format!("no product instance {who:?} (give its PI id or PID:SN)").into(),
    ))
}

pub fn show(conn: &mut SqliteConnection, who: &str) -> Result<DeviceView> {
    let pi = find(conn, who)?;
    let va = pools::va_name(conn, pi.va_id)?;
    view(conn, pi, va)
}

/// Removes a device (operator): its licenses are released.
pub fn remove(conn: &mut SqliteConnection, who: &str, now: i64, actor: &str) -> Result<DeviceView> {
    conn.immediate_transaction(|conn| {
        let pi = find(conn, who)?;
        if pi.state != PiState::Active {
            return Err(Error::Conflict(
                format!("product instance {who:?} is already removed").into(),
            ));
        }
        remove_pi(conn, &pi, now, actor)?;
        show(conn, &pi.uuid)
    })
}

/// Transfers a device to another of the satellite's VAs; its licenses do not follow.
pub fn transfer(
    conn: &mut SqliteConnection,
    who: &str,
    to_va: &str,
    now: i64,
    actor: &str,
) -> Result<DeviceView> {
    conn.immediate_transaction(|conn| {
        let pi = find(conn, who)?;
        if pi.state != PiState::Active {
            return Err(Error::Conflict(format!("product instance {who:?} is removed").into()));
        }
        let to = pools::va_id(conn, to_va)?
            .ok_or_else(|| Error::NotFound(format!("no virtual account {to_va:?} on this satellite").into()))?;
        if to == pi.va_id {
            return Err(Error::Conflict(format!("product instance {who:?} is already in {to_va:?}").into()));
        }
        let from = pools::va_name(conn, pi.va_id)?;
        compliance::release_all(conn, &pi, now)?;
        db::set_va(conn, pi.id, to)?;
        // Restricted licenses go with the device (seed 001); the others stay behind.
        crate::export::moved(conn, pi.id, pi.va_id, to, now)?;
        events::append(
            conn,
            now,
            &events::NewEvent {
                va_name: Some(to_va),
                pi_uuid: Some(&pi.uuid),
                message: format!(
                    "The product instance {} was transferred from the Virtual Account \"{from}\" to the Virtual Account \"{to_va}\".",
                    pi.name
                ),
                actor,
                ..events::NewEvent::of(EventKind::PiTransferred)
            },
        )?;
        show(conn, &pi.uuid)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::config::Config;
    use crate::guards::counter_ceiling;
    use diesel::connection::InstrumentationEvent;
    use std::sync::{Arc, Mutex};

    /// 10 perpetual licenses of "tag".
    pub(crate) fn ten_of_tag() -> sync_format::payload::LicenseLine {
        sync_format::payload::LicenseLine {
            tag: "tag".into(),
            name: "License".into(),
            description: String::new(),
            kind: sync_format::payload::LicenseKind::Perpetual,
            quantity: 10,
            start: None,
            end: None,
            restricted: false,
        }
    }

    /// A registered satellite with VA "Lab" holding 10 of "tag", a token, and its key.
    fn site() -> (
        crate::db::Store,
        tempfile::TempDir,
        String,
        TokenKey,
        DeviceCa,
    ) {
        site_with(&[("Lab", ten_of_tag())], false)
    }

    /// A registered satellite with these (VA, license line)s and a token for the first VA.
    pub(crate) fn site_with(
        lines: &[(&str, sync_format::payload::LicenseLine)],
        export_controlled: bool,
    ) -> (
        crate::db::Store,
        tempfile::TempDir,
        String,
        TokenKey,
        DeviceCa,
    ) {
        let (store, dir) = crate::db::testing::store();
        let mut cfg = Config::load_from(None, &[]).unwrap();
        cfg.storage.data_dir = store.data_dir().to_path_buf();
        crate::identity::ensure(&store, &cfg, &SystemClock).unwrap();
        let mut c = store.conn().unwrap();
        diesel::sql_query("UPDATE satellite SET state = 'registered', account_name = 'Acme'")
            .execute(&mut c)
            .unwrap();
        let mut vas: Vec<sync_format::payload::VirtualAccount> = Vec::new();
        for (va, line) in lines {
            match vas.iter_mut().find(|v| v.name == *va) {
                Some(v) => v.licenses.push(line.clone()),
                None => vas.push(sync_format::payload::VirtualAccount {
                    name: va.to_string(),
                    description: String::new(),
                    licenses: vec![line.clone()],
                }),
            }
        }
        pools::replace(&mut c, 0, &vas).unwrap();
        let key = crate::identity::token_key(store.data_dir()).unwrap();
        let now = SystemClock.now();
        if export_controlled {
            diesel::sql_query("UPDATE satellite SET export_controlled_allowed = 1")
                .execute(&mut c)
                .unwrap();
        }
        let new = tokens::NewToken {
            va: lines[0].0.into(),
            days: 30,
            max_uses: None,
            export_controlled,
            description: String::new(),
            created_by: "t".into(),
        };
        let (token, _) = tokens::create(&mut c, &key, now, &new).unwrap();
        let ca = crate::identity::device_ca(store.data_dir()).unwrap();
        (store, dir, token, key, ca)
    }

    pub(crate) fn register(
        c: &mut SqliteConnection,
        key: &TokenKey,
        ca: &DeviceCa,
        token: &str,
        sn: &str,
    ) -> String {
        let dkey = sync_format::pki::new_p256_key().unwrap();
        let mut b = openssl::x509::X509Req::builder().unwrap();
        b.set_pubkey(&dkey).unwrap();
        b.sign(&dkey, MessageDigest::sha256()).unwrap();
        let req = RegisterRequest {
            token: token.into(),
            udi: Udi {
                pid: "P".into(),
                sn: sn.into(),
                uuid: None,
                host_id: None,
                mac: None,
            },
            csr_pem: String::from_utf8(b.build().to_pem().unwrap()).unwrap(),
            name: None,
        };
        let now = SystemClock.now();
        let p = prepare(&req, ca, now).unwrap();
        c.transaction(|c| commit_registration(c, key, token, &p, now))
            .unwrap()
            .pi_id
    }

    fn csr_with(key: &PKey<openssl::pkey::Private>, md: MessageDigest) -> String {
        let mut b = openssl::x509::X509Req::builder().unwrap();
        b.set_pubkey(key).unwrap();
        b.sign(key, md).unwrap();
        String::from_utf8(b.build().to_pem().unwrap()).unwrap()
    }

    #[test]
    fn csrs_signed_with_sha1_or_md5_are_refused() {
        let ec = sync_format::pki::new_p256_key().unwrap();
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        for (key, md) in [
            (&ec, MessageDigest::sha256()),
            (&ec, MessageDigest::sha384()),
            (&rsa, MessageDigest::sha256()),
            (&rsa, MessageDigest::sha512()),
        ] {
            csr_key(&csr_with(key, md)).unwrap();
        }
        for (key, md) in [
            (&ec, MessageDigest::sha1()),
            (&rsa, MessageDigest::sha1()),
            (&rsa, MessageDigest::md5()),
        ] {
            let e = csr_key(&csr_with(key, md)).unwrap_err();
            assert!(e.to_string().contains("SHA-1 and MD5 are refused"), "{e}");
        }
    }

    #[test]
    fn an_active_device_registers_again_only_with_its_key_or_an_operators_permission() {
        let (store, _dir, token, key, ca) = site();
        let mut c = store.conn().unwrap();
        let now = SystemClock.now();
        let request = |k: &PKey<openssl::pkey::Private>| RegisterRequest {
            token: token.clone(),
            udi: Udi {
                pid: "P".into(),
                sn: "SN-K".into(),
                uuid: None,
                host_id: None,
                mac: None,
            },
            csr_pem: csr_with(k, MessageDigest::sha256()),
            name: None,
        };
        let sign = |k: &PKey<openssl::pkey::Private>, body: &[u8]| {
            let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), k).unwrap();
            s.update(body).unwrap();
            KeyProof {
                body: body.to_vec(),
                signature: s.sign_to_vec().unwrap(),
            }
        };
        let mut register = |k: &PKey<openssl::pkey::Private>, proof: Option<KeyProof>| {
            let mut p = prepare(&request(k), &ca, now).unwrap();
            p.proof = proof;
            c.transaction(|c| commit_registration(c, &key, &token, &p, now))
        };
        let k1 = sync_format::pki::new_p256_key().unwrap();
        let pi = register(&k1, None).unwrap().pi_id;

        // Someone with a token but not the key: refused, with or without a signature of
        // their own; the device keeps its key.
        let k2 = sync_format::pki::new_p256_key().unwrap();
        for proof in [None, Some(sign(&k2, b"body"))] {
            let e = register(&k2, proof).unwrap_err();
            assert!(matches!(e, Error::Unauthorized(_)), "{e}");
            assert!(
                e.to_string().contains("signature of its current key"),
                "{e}"
            );
        }
        let stored = |c: &mut SqliteConnection| db::by_uuid(c, &pi).unwrap().unwrap().public_key;
        let mut c2 = store.conn().unwrap();
        let before = stored(&mut c2);

        // The device itself, signing with its current key, moves to a new key.
        register(&k2, Some(sign(&k1, b"body"))).unwrap();
        assert_ne!(stored(&mut c2), before);

        // Lost key: an operator lets it through once.
        let k3 = sync_format::pki::new_p256_key().unwrap();
        assert!(register(&k3, None).is_err());
        allow_reregister(&mut c2, "P:SN-K", 1, now, "cli:op").unwrap();
        register(&k3, None).unwrap();
        assert!(register(&sync_format::pki::new_p256_key().unwrap(), None).is_err());
        assert!(allow_reregister(&mut c2, "P:SN-K", 0, now, "cli:op").is_err());
    }

    #[test]
    fn a_counter_cannot_jump_where_no_request_could_follow() {
        let (store, _dir, token, key, ca) = site();
        let mut c = store.conn().unwrap();
        let pi = register(&mut c, &key, &ca, &token, "SN-C");
        let now = SystemClock.now();
        let e = fresh(&mut c, &pi, i64::MAX, now).unwrap_err();
        assert!(e.to_string().contains("jumps too far ahead"), "{e}");
        // Nothing was recorded: a sane counter still passes, and so does a timestamp in ms.
        fresh(&mut c, &pi, 1, now).unwrap();
        fresh(&mut c, &pi, now * 1000, now).unwrap();
        assert!(fresh(&mut c, &pi, counter_ceiling(now * 1000, now) + 1, now).is_err());
        fresh(&mut c, &pi, counter_ceiling(now * 1000, now), now).unwrap();
    }

    /// The statements of the writer's hot paths are prepared once and then served from the
    /// connection's statement cache: SQLite compiling SQL on every write was the largest
    /// cost of the writer (see BENCHMARKS.md).
    #[test]
    fn hot_path_statements_come_from_the_statement_cache() {
        let (store, _dir, token, key, ca) = site();
        // A connection of its own, so everything it prepares is seen.
        let mut c = SqliteConnection::establish(&store.db_path().to_string_lossy()).unwrap();
        let events: Arc<Mutex<Vec<(bool, String)>>> = Arc::default();
        let sink = events.clone();
        c.set_instrumentation(move |e: InstrumentationEvent<'_>| {
            let entry = match e {
                InstrumentationEvent::StartQuery { query, .. } => (false, format!("{query}")),
                InstrumentationEvent::CacheQuery { sql, .. } => (true, sql.to_string()),
                _ => return,
            };
            let sql = entry
                .1
                .split(" -- binds")
                .next()
                .unwrap_or_default()
                .to_string();
            sink.lock().unwrap().push((entry.0, sql));
        });
        let pi = register(&mut c, &key, &ca, &token, "SN1");
        let mut run = |counter: i64| {
            let req = AuthorizationRequest {
                pi_id: pi.clone(),
                counter,
                nonce: "n".into(),
                entitlements: vec![Entitlement {
                    tag: "tag".into(),
                    count: 1,
                }],
            };
            let a = c
                .transaction(|c| authorize(c, &req, SystemClock.now()))
                .unwrap();
            assert_eq!(a.entitlements[0].status, compliance::AUTHORIZED);
        };
        run(1);
        // Keep what round 1 put in the cache; forget its queries.
        events.lock().unwrap().retain(|e| e.0);
        run(2);
        let ev = events.lock().unwrap();
        let cached: std::collections::HashSet<&str> =
            ev.iter().filter(|e| e.0).map(|e| e.1.as_str()).collect();
        let uncached: std::collections::BTreeSet<&str> = ev
            .iter()
            .filter(|e| !e.0 && !cached.contains(e.1.as_str()) && !e.1.contains("SAVEPOINT"))
            .map(|e| e.1.as_str())
            .collect();
        let writes: Vec<&&str> = uncached
            .iter()
            .filter(|s| !matches!(**s, "BEGIN" | "COMMIT"))
            .collect();
        // A device asking again for what it has: only its contact is written.
        assert!(
            writes
                .iter()
                .all(|s| s.starts_with("UPDATE `product_instances` SET `last_contact_at`")),
            "statements compiled on every call: {writes:#?}"
        );
    }
}
