//! Hot-path cryptography without OpenSSL 3's per-call algorithm fetches: HMAC-SHA256 over
//! the low-level SHA-256, and ECDSA P-256 through `EcdsaSig` on a precomputed digest.
//! (`Signer`/`Verifier` look up the algorithm by name on every call, and PEM decoding goes
//! through the provider decoders: fine once, measurably slow thousands of times a second.)

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sha::{sha256, Sha256};

use crate::error::{Error, Result};

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(&block.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(&block.map(|b| b ^ 0x5c));
    outer.update(&inner.finish());
    outer.finish()
}

/// The P-256 group, made once: building it costs more than a signature check.
fn p256() -> Result<&'static EcGroup> {
    static GROUP: std::sync::OnceLock<Option<EcGroup>> = std::sync::OnceLock::new();
    GROUP
        .get_or_init(|| EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).ok())
        .as_ref()
        .ok_or_else(|| Error::Internal("P-256 is not available in this OpenSSL".into()))
}

/// A device's public key in its cheapest form to keep and to check with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKey {
    /// An uncompressed P-256 point (65 bytes).
    P256(Vec<u8>),
    /// Any other key (RSA), as PEM.
    Pem(String),
}

impl DeviceKey {
    pub fn from_pkey(key: &PKey<Public>) -> Result<DeviceKey> {
        if key.id() == Id::EC {
            let ec = key.ec_key()?;
            if ec.group().curve_name() == Some(Nid::X9_62_PRIME256V1) {
                let mut ctx = BigNumContext::new()?;
                let bytes = ec.public_key().to_bytes(
                    ec.group(),
                    PointConversionForm::UNCOMPRESSED,
                    &mut ctx,
                )?;
                return Ok(DeviceKey::P256(bytes));
            }
        }
        Ok(DeviceKey::Pem(
            String::from_utf8(key.public_key_to_pem()?)
                .map_err(|e| Error::Internal(e.to_string()))?,
        ))
    }

    /// The form kept in the store: `p256:<hex of the point>`, or the PEM of another key.
    pub fn to_stored(&self) -> String {
        match self {
            DeviceKey::P256(point) => format!("p256:{}", hex::encode(point)),
            DeviceKey::Pem(pem) => pem.clone(),
        }
    }

    pub fn from_stored(s: &str) -> Result<DeviceKey> {
        match s.strip_prefix("p256:") {
            Some(h) => {
                Ok(DeviceKey::P256(hex::decode(h).map_err(|e| {
                    Error::Internal(format!("stored device key: {e}"))
                })?))
            }
            None => Ok(DeviceKey::Pem(s.to_string())),
        }
    }

    /// Whether `signature` (DER) signs SHA-256 of `data` with this key.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> Result<bool> {
        match self {
            DeviceKey::P256(point) => {
                let group = p256()?;
                let mut ctx = BigNumContext::new()?;
                let point = EcPoint::from_bytes(group, point, &mut ctx)?;
                let key = EcKey::from_public_key(group, &point)?;
                let Ok(sig) = EcdsaSig::from_der(signature) else {
                    return Ok(false);
                };
                // Only the canonical DER encoding, so a signature has one form.
                if sig.to_der().ok().as_deref() != Some(signature) {
                    return Ok(false);
                }
                Ok(sig.verify(&sha256(data), &key).unwrap_or(false))
            }
            DeviceKey::Pem(pem) => {
                let key = PKey::public_key_from_pem(pem.as_bytes())?;
                let mut v =
                    openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key)?;
                v.update(data)?;
                Ok(v.verify(signature).unwrap_or(false))
            }
        }
    }
}

/// DER ECDSA signature of SHA-256(`data`) by a P-256 key.
pub fn sign_p256(key: &EcKey<Private>, data: &[u8]) -> Result<Vec<u8>> {
    Ok(EcdsaSig::sign(&sha256(data), key)?.to_der()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_openssl() {
        let key = b"0123456789abcdef0123456789abcdef";
        let pkey = PKey::hmac(key).unwrap();
        let mut s =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
        s.update(b"hello ").unwrap();
        s.update(b"world").unwrap();
        assert_eq!(
            s.sign_to_vec().unwrap(),
            hmac_sha256(key, &[b"hello ", b"world"]).to_vec()
        );
    }

    #[test]
    fn p256_sign_verify_and_openssl_interop() {
        let pkey = sync_format::pki::new_p256_key().unwrap();
        let ec = pkey.ec_key().unwrap();
        let pub_pem = String::from_utf8(pkey.public_key_to_pem().unwrap()).unwrap();
        let dk =
            DeviceKey::from_pkey(&PKey::public_key_from_pem(pub_pem.as_bytes()).unwrap()).unwrap();
        assert!(matches!(dk, DeviceKey::P256(ref b) if b.len() == 65));
        // A signature made through the EVP API verifies on the fast path, and back.
        let mut s =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
        s.update(b"body").unwrap();
        assert!(dk.verify(b"body", &s.sign_to_vec().unwrap()).unwrap());
        let sig = sign_p256(&ec, b"body").unwrap();
        let mut v =
            openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
        v.update(b"body").unwrap();
        assert!(v.verify(&sig).unwrap());
        assert!(!dk.verify(b"bodY", &sig).unwrap());
        assert!(!dk.verify(b"body", b"garbage").unwrap());
    }
}
