//! Signed requests of a registered device: its identity and signature, authorization of
//! its license use, renewal of its identity certificate, and deregistration.

use super::*;

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
        &events::NewEvent::about_pi(
            EventKind::PiRenewedCertificate,
            &va,
            &pi.uuid,
            format!(
                "The product instance {} in the Virtual Account \"{va}\" connected and \
                 successfully renewed its identity certificate.",
                pi.name
            ),
            "system",
        ),
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
pub(super) fn remove_pi(
    conn: &mut SqliteConnection,
    pi: &PiRow,
    now: i64,
    actor: &str,
) -> Result<()> {
    release_and_mark_removed(conn, pi, now)?;
    let va = pools::va_name(conn, pi.va_id)?;
    events::append(
        conn,
        now,
        &events::NewEvent::about_pi(
            EventKind::PiRemoved,
            &va,
            &pi.uuid,
            format!(
                "The product instance \"{}\" was removed from Smart Software Manager.",
                pi.name
            ),
            actor,
        ),
    )
}

/// What removing a product instance does, however it goes: its licenses released (its
/// restricted ones returned through the cloud), its state, and its alerts cleared.
pub(super) fn release_and_mark_removed(
    conn: &mut SqliteConnection,
    pi: &PiRow,
    now: i64,
) -> Result<()> {
    compliance::release_all(conn, pi, now)?;
    crate::export::return_all(conn, pi, now)?;
    db::mark_removed(conn, pi.id, now)?;
    crate::db::alerts::clear_about(conn, now, &pi.uuid)?;
    Ok(())
}
