//! `manifest.json`: what a bundle is, who sent it to whom, when it expires, and the SHA-256
//! and size of every other entry. The signature (`manifest.sig`) covers these bytes exactly,
//! the kind and the signature algorithm included, so a signature made for one kind can
//! never pass as another.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The value of `format` in every manifest.
pub const FORMAT_NAME: &str = "satellite-bundle";
/// The manifest format this library writes and the newest it reads.
pub const FORMAT_VERSION: u64 = 1;
/// The only signature algorithm: ECDSA over P-256 with SHA-256, DER-encoded signature.
pub const SIGNATURE_ALGORITHM: &str = "ecdsa-p256-sha256";

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const SIGNER_CHAIN: &str = "signer.pem";
/// The typed payload every kind carries.
pub const PAYLOAD: &str = "payload.json";

/// What a bundle is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BundleKind {
    /// Satellite to cloud: "please register me".
    RegistrationRequest,
    /// Cloud to satellite: "you are registered": certificate, account, VAs, pools.
    RegistrationAuthorization,
    /// Satellite to cloud: what changed since the last acknowledged sync.
    SyncRequest,
    /// Cloud to satellite: pools as the cloud sees them, answers, acknowledgement.
    SyncResponse,
}

impl BundleKind {
    pub const ALL: [BundleKind; 4] = [
        BundleKind::RegistrationRequest,
        BundleKind::RegistrationAuthorization,
        BundleKind::SyncRequest,
        BundleKind::SyncResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::RegistrationRequest => "registration-request",
            BundleKind::RegistrationAuthorization => "registration-authorization",
            BundleKind::SyncRequest => "sync-request",
            BundleKind::SyncResponse => "sync-response",
        }
    }

    pub fn parse(s: &str) -> Result<BundleKind> {
        BundleKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::UnknownKind(s.to_string()))
    }

    /// Payload entries a bundle of this kind may carry (besides manifest, signature and
    /// chain). `payload.json` is always required.
    /// Who may sign a bundle of this kind under a trusted CA: the cloud's bundle signer for
    /// what speaks for the cloud, a satellite for its sync requests; `None` for a
    /// registration request, which its satellite signs with a self-signed certificate.
    pub fn signer_role(self) -> Option<crate::pki::SignerRole> {
        use crate::pki::SignerRole;
        match self {
            BundleKind::RegistrationRequest => None,
            BundleKind::RegistrationAuthorization | BundleKind::SyncResponse => {
                Some(SignerRole::Cloud)
            }
            BundleKind::SyncRequest => Some(SignerRole::Satellite),
        }
    }

    pub fn allowed_entries(self) -> &'static [&'static str] {
        match self {
            BundleKind::RegistrationRequest | BundleKind::RegistrationAuthorization => &[PAYLOAD],
            BundleKind::SyncRequest => &[
                PAYLOAD,
                "product_instances.ndjson",
                "usage.ndjson",
                "export_requests.ndjson",
                "events.ndjson",
            ],
            BundleKind::SyncResponse => &[
                PAYLOAD,
                "licenses.ndjson",
                "export_answers.ndjson",
                "item_results.ndjson",
            ],
        }
    }
}

impl std::fmt::Display for BundleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One payload entry as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryDigest {
    pub name: String,
    /// Lower-case hex SHA-256 of the entry's (inflated) bytes.
    pub sha256: String,
    /// Inflated size in bytes.
    pub size: u64,
}

/// The addressing and timing of a bundle, chosen by its writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: BundleKind,
    /// Unique id of this bundle (a UUID).
    pub bundle_id: String,
    /// Id of the sender (satellite id or cloud id).
    pub sender: String,
    /// Id of the receiver. A registration request, sent before the satellite knows the
    /// cloud, uses [`ANY_RECEIVER`].
    pub receiver: String,
    /// The sender's sequence number for bundles of this kind (increasing).
    pub sequence: u64,
    /// Unix seconds, UTC.
    pub created_at: i64,
    /// Unix seconds, UTC: the bundle is refused after this.
    pub not_after: i64,
    /// The bundle this one answers, if any.
    pub in_reply_to: Option<String>,
}

/// The receiver of a registration request: whichever cloud it is carried to.
pub const ANY_RECEIVER: &str = "*";

/// The manifest as written in `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub format_version: u64,
    pub kind: BundleKind,
    pub signature_algorithm: String,
    pub bundle_id: String,
    pub sender: String,
    pub receiver: String,
    pub sequence: u64,
    pub created_at: i64,
    pub not_after: i64,
    pub in_reply_to: Option<String>,
    pub entries: Vec<EntryDigest>,
}

impl Manifest {
    pub fn new(h: &Header, entries: Vec<EntryDigest>) -> Manifest {
        Manifest {
            format: FORMAT_NAME.to_string(),
            format_version: FORMAT_VERSION,
            kind: h.kind,
            signature_algorithm: SIGNATURE_ALGORITHM.to_string(),
            bundle_id: h.bundle_id.clone(),
            sender: h.sender.clone(),
            receiver: h.receiver.clone(),
            sequence: h.sequence,
            created_at: h.created_at,
            not_after: h.not_after,
            in_reply_to: h.in_reply_to.clone(),
            entries,
        }
    }

    /// Parses untrusted manifest bytes in steps, so each problem gets its own error: not
    /// JSON, another format, a newer version, an unknown kind, then the full structure.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| Error::ManifestInvalid("not a JSON object".into()))?;
        match obj.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT_NAME) => {}
            other => {
                return Err(Error::ManifestInvalid(format!(
                    "format is {other:?}, expected {FORMAT_NAME:?}"
                )))
            }
        }
        let version = obj
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::ManifestInvalid("format_version is missing".into()))?;
        if version > FORMAT_VERSION {
            return Err(Error::NewerFormat {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let kind = obj
            .get("kind")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::ManifestInvalid("kind is missing".into()))?;
        BundleKind::parse(kind)?;
        let m: Manifest =
            serde_json::from_value(v).map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        if m.signature_algorithm != SIGNATURE_ALGORITHM {
            return Err(Error::UnsupportedAlgorithm(m.signature_algorithm));
        }
        Ok(m)
    }

    pub fn header(&self) -> Header {
        Header {
            kind: self.kind,
            bundle_id: self.bundle_id.clone(),
            sender: self.sender.clone(),
            receiver: self.receiver.clone(),
            sequence: self.sequence,
            created_at: self.created_at,
            not_after: self.not_after,
            in_reply_to: self.in_reply_to.clone(),
        }
    }
}

/// Entry names are plain file names: ASCII letters, digits, '.', '-', '_'; no separators,
/// no leading dot, no "..", at most 64 characters.
pub fn safe_entry_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        for ok in ["manifest.json", "usage.ndjson", "a-b_c.1"] {
            assert!(safe_entry_name(ok), "{ok}");
        }
        for bad in [
            "", "../x", "/etc/x", "a/b", "a\\b", ".hidden", "..", "a..b", "é", "a\0b",
        ] {
            assert!(!safe_entry_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn kinds_round_trip() {
        for k in BundleKind::ALL {
            assert_eq!(BundleKind::parse(k.as_str()).unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert!(matches!(
            BundleKind::parse("sync-reply"),
            Err(Error::UnknownKind(_))
        ));
    }
}
