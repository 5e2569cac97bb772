//! The typed payloads of each bundle kind, and the records of their NDJSON entries.
//!
//! Every payload carries `payload_version`. A reader refuses a payload newer than it knows
//! with [`Error::NewerPayload`]; within a version, fields are only ever added as optional
//! (`#[serde(default)]`), so an older writer's payload still reads.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::BundleKind;

/// A payload type with a version.
pub trait Versioned {
    /// The kind of bundle that carries it.
    const KIND: BundleKind;
    /// The newest version this build reads and the one it writes.
    const VERSION: u32;
}

/// Decodes a JSON payload: a newer `payload_version` is refused before anything else.
pub fn decode<T: Versioned + DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T> {
    let invalid = |reason: String| Error::PayloadInvalid {
        name: name.to_string(),
        reason,
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let version = v
        .get("payload_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| invalid("payload_version is missing".into()))?;
    if version > u64::from(T::VERSION) {
        return Err(Error::NewerPayload {
            name: name.to_string(),
            found: u32::try_from(version).unwrap_or(u32::MAX),
            supported: T::VERSION,
        });
    }
    serde_json::from_value(v).map_err(|e| invalid(e.to_string()))
}

/// License kinds, as the cloud defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LicenseKind {
    Perpetual,
    Term,
    Demo,
    ReportingOnly,
}

impl LicenseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LicenseKind::Perpetual => "perpetual",
            LicenseKind::Term => "term",
            LicenseKind::Demo => "demo",
            LicenseKind::ReportingOnly => "reporting-only",
        }
    }

    pub fn parse(s: &str) -> Option<LicenseKind> {
        [
            LicenseKind::Perpetual,
            LicenseKind::Term,
            LicenseKind::Demo,
            LicenseKind::ReportingOnly,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One line of a VA's license pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseLine {
    /// Entitlement tag devices ask for.
    pub tag: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: LicenseKind,
    pub quantity: i64,
    /// Unix seconds; term and demo licenses count only between start and end.
    #[serde(default)]
    pub start: Option<i64>,
    #[serde(default)]
    pub end: Option<i64>,
    /// Export-controlled: handed out only with the cloud's consent.
    #[serde(default)]
    pub restricted: bool,
}

/// A virtual account and its pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualAccount {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub licenses: Vec<LicenseLine>,
}

/// The smart account the satellite serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    /// Whether tokens may allow export-controlled functionality.
    pub export_controlled_allowed: bool,
}

/// `registration-request`: a satellite asks to be registered. Signed by the satellite's
/// key with a self-signed certificate (proof that it holds the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRequest {
    pub payload_version: u32,
    pub satellite_id: String,
    pub name: String,
    pub hostname: String,
    pub software_version: String,
    /// The satellite's public key (PEM), to be certified by the cloud.
    pub public_key_pem: String,
}

impl Versioned for RegistrationRequest {
    const KIND: BundleKind = BundleKind::RegistrationRequest;
    const VERSION: u32 = 1;
}

/// `registration-authorization`: the cloud's answer, registering the satellite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationAuthorization {
    pub payload_version: u32,
    pub satellite_id: String,
    /// The name the operator gave the satellite in the cloud ("New satellite").
    pub satellite_name: String,
    /// The satellite's certificate, signed by the cloud's CA.
    pub satellite_certificate_pem: String,
    pub cloud_id: String,
    /// The cloud's CA certificate, which the satellite pins.
    pub cloud_ca_pem: String,
    pub account: Account,
    pub virtual_accounts: Vec<VirtualAccount>,
    /// Unix seconds: the first sync is due by then.
    pub next_sync_due: i64,
}

impl Versioned for RegistrationAuthorization {
    const KIND: BundleKind = BundleKind::RegistrationAuthorization;
    const VERSION: u32 = 1;
}

/// Counts of the records in a sync request's NDJSON entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounts {
    pub product_instances: u64,
    pub usage: u64,
    pub export_requests: u64,
    pub events: u64,
}

/// `sync-request`: what changed on the satellite since the cloud last acknowledged.
/// Records travel in `product_instances.ndjson`, `usage.ndjson`, `export_requests.ndjson`
/// and `events.ndjson`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub payload_version: u32,
    pub satellite_id: String,
    /// A full resync (every record) rather than the changes after `from_change`.
    pub full: bool,
    /// Changes after this sequence number are included...
    pub from_change: u64,
    /// ...up to and including this one.
    pub to_change: u64,
    /// Events with an id after this one are included...
    #[serde(default)]
    pub from_event: u64,
    /// ...up to and including this one.
    #[serde(default)]
    pub to_event: u64,
    pub counts: SyncCounts,
    /// When the satellite's certificate has less than a third of its life left: a PKCS#10
    /// request (PEM) for a new certificate, for a key pair the satellite made and keeps (its
    /// private key never leaves it). The request is signed by that new key; the bundle by
    /// the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_csr_pem: Option<String>,
}

impl Versioned for SyncRequest {
    const KIND: BundleKind = BundleKind::SyncRequest;
    const VERSION: u32 = 1;
}

/// What happened to a product instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiOp {
    /// Added, changed or moved to `va`.
    Upsert,
    Removed,
}

/// A record of `product_instances.ndjson`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiRecord {
    pub change: u64,
    pub op: PiOp,
    pub pi: String,
    pub va: String,
    pub pid: String,
    pub sn: String,
    pub name: String,
    pub registered_at: i64,
    pub last_contact_at: i64,
}

/// A record of `usage.ndjson`: what one device uses of one entitlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub pi: String,
    pub va: String,
    pub tag: String,
    pub count: i64,
}

/// Whether an export record asks for a restricted license or gives one back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportOp {
    Request,
    Return,
}

/// A record of `export_requests.ndjson`: a device asks for a restricted (export-controlled)
/// license, or gives it back. `id` is the satellite's request id; the cloud answers each
/// id once and gives the same answer if the record comes again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub id: String,
    pub op: ExportOp,
    pub pi: String,
    pub va: String,
    pub tag: String,
    pub count: i64,
    /// For a return: the id of the request whose grant it gives back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns: Option<String>,
    /// Unix seconds: when the device asked.
    pub requested_at: i64,
}

/// What the cloud decided about an export record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    /// The restricted license is locked to the device.
    Granted,
    /// Refused; `reason_code` and `reason` say why.
    Denied,
    /// The return is acknowledged: the license is released at the cloud.
    Returned,
}

/// A record of a sync response's `export_answers.ndjson`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportAnswer {
    /// The id of the export record answered.
    pub id: String,
    pub status: ExportStatus,
    pub pi: String,
    pub tag: String,
    pub count: i64,
    /// For a denial: `not_available`, `not_restricted`, `unknown_tag` or `unknown_device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The license's name at the cloud (the tag when it has none).
    pub license_name: String,
    /// "perpetual" or "term" (what the seeds' event texts say).
    pub license_kind: String,
}

/// A record of `events.ndjson`: one event of the satellite's hash-chained log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    #[serde(default)]
    pub va: Option<String>,
    #[serde(default)]
    pub pi: Option<String>,
    #[serde(default)]
    pub license: Option<String>,
    pub message: String,
    pub actor: String,
    pub prev_hash: String,
    pub hash: String,
}

impl EventRecord {
    /// The hash this event should carry, given the hash of the event before it: see
    /// [`event_hash`].
    pub fn expected_hash(&self) -> String {
        event_hash(
            &self.prev_hash,
            self.at,
            &[
                &self.kind,
                self.va.as_deref().unwrap_or(""),
                self.pi.as_deref().unwrap_or(""),
                self.license.as_deref().unwrap_or(""),
                &self.message,
                &self.actor,
            ],
        )
    }
}

/// The hash of an event of the satellite's log: hex SHA-256 over the previous event's hash,
/// the time (decimal seconds) and the fields kind, VA, PI, license, message and actor (an
/// absent one is empty), each preceded by its length in bytes as a big-endian u64, so no two
/// different events hash alike. The first event's previous hash is empty. The satellite
/// computes it when it appends an event; the cloud and `satellite event verify` recompute
/// it, so an edited, inserted or missing event shows.
pub fn event_hash(prev_hash: &str, at: i64, fields: &[&str; 6]) -> String {
    let mut h = openssl::sha::Sha256::new();
    let at = at.to_string();
    for field in [prev_hash, at.as_str()].iter().chain(fields.iter()) {
        h.update(&(field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finish())
}

/// `sync-response`: the cloud's view, answering one sync request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub payload_version: u32,
    pub satellite_id: String,
    /// The sync request (bundle id) this answers.
    pub acknowledged_request: String,
    /// The satellite's changes up to this sequence number are now known to the cloud...
    pub acknowledged_change: u64,
    /// ...and its events up to this id.
    #[serde(default)]
    pub acknowledged_event: u64,
    /// How many records of the request the cloud refused; each is a line of
    /// `item_results.ndjson`, and stays pending on the satellite.
    #[serde(default)]
    pub rejected: u64,
    pub account: Account,
    pub virtual_accounts: Vec<VirtualAccount>,
    /// Unix seconds: the next sync is due by then.
    pub next_sync_due: i64,
    /// The answer to `renewal_csr_pem`: the satellite's new certificate (PEM), issued by
    /// the cloud's CA for the requested key, with the satellite's role and id. The
    /// satellite switches to it as it applies the response; the old one stays valid until
    /// it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satellite_certificate_pem: Option<String>,
    /// The cloud removed this satellite (its operator's "Remove", or 90 days without a
    /// sync): nothing of the request was applied, the virtual accounts are disassociated,
    /// and the satellite stops serving devices until it is registered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removal>,
    /// The cloud rolled its CA over: the new CA, and the same CA certified by the one before
    /// (which the satellite pins). The satellite pins the new one; the old one stays trusted
    /// until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_ca: Option<CaRollover>,
}

/// A CA rollover announced in a sync response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRollover {
    /// The new CA's self-signed certificate (PEM).
    pub ca_pem: String,
    /// The new CA's key and name, certified by the CA before it (PEM).
    pub cross_signed_pem: String,
}

/// Why and when the cloud removed a satellite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// Unix seconds.
    pub at: i64,
    pub reason: String,
}

/// A record of a sync response's `licenses.ndjson`: one line of one VA's pool. The VAs
/// themselves are listed in the payload (with empty `licenses`), so a pool of any size
/// streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseRecord {
    pub va: String,
    #[serde(flatten)]
    pub line: LicenseLine,
}

/// A record of `item_results.ndjson`: a record of the request the cloud refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The product instance the record is about.
    pub pi: String,
    /// Which record: "product_instance" or "usage".
    pub record: String,
    /// Only "rejected" for now; accepted records are not listed.
    pub status: String,
    pub reason: String,
}

impl Versioned for SyncResponse {
    const KIND: BundleKind = BundleKind::SyncResponse;
    const VERSION: u32 = 1;
}
