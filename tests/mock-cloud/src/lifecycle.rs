//! A satellite's life at the cloud beyond its syncs: its certificate renewed, removed by the
//! operator (and told so at its next sync), a virtual account added, licenses transferred
//! between virtual accounts.

use std::io::Cursor;

use diesel::prelude::*;
use sync_format::manifest::{BundleKind, Header};
use sync_format::payload::{Account, SyncResponse};
use sync_format::BundleWriter;

use super::schema::{accounts, licenses, satellite_vas, satellites, virtual_accounts};
use super::service::{SATELLITE_CERT_DAYS, SYNC_INTERVAL_DAYS};
use super::sync::{flag_shortages, release_satellite, usage_report};
use super::{Cloud, CloudError, Result};
use satellite::clock::DAY;

/// Answers a certificate renewal: the request must be a PKCS#10 request signed by its own
/// P-256 key and naming the satellite; the cloud certifies that key for the satellite (its
/// role and id, as at registration) and remembers it, so requests signed by it are the
/// satellite's. The old certificate stays valid until it expires.
#[allow(clippy::too_many_arguments)]
pub(crate) fn renew(
    cloud: &Cloud,
    c: &mut SqliteConnection,
    row: i64,
    name: &str,
    account: &str,
    satellite_id: &str,
    csr_pem: &str,
    now: i64,
) -> Result<String> {
    let csr = openssl::x509::X509Req::from_pem(csr_pem.as_bytes()).map_err(|e| {
        CloudError::Invalid(format!(
            "the certificate renewal request is not a PEM CSR: {e}"
        ))
    })?;
    let key = csr.public_key()?;
    if !csr.verify(&key).unwrap_or(false) || !sync_format::pki::is_p256(&key) {
        return Err(CloudError::Invalid(
            "the certificate renewal request is not signed by its own P-256 key".into(),
        ));
    }
    let named = csr
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .map(|e| e.data().as_slice().to_vec())
        .and_then(|b| String::from_utf8(b).ok());
    if named.as_deref() != Some(satellite_id) {
        return Err(CloudError::Invalid(format!(
            "the certificate renewal request names {named:?}, not the satellite {satellite_id}"
        )));
    }
    let cert = sync_format::pki::issue(
        &cloud.ca_cert,
        cloud.ca_key(),
        &key,
        &sync_format::pki::CertSpec {
            common_name: &format!("satellite {name}"),
            organization: account,
            role: sync_format::pki::CertRole::Bundle(
                sync_format::pki::SignerRole::Satellite,
                satellite_id,
            ),
            now,
            days: SATELLITE_CERT_DAYS,
        },
    )?;
    let cert_pem =
        String::from_utf8(cert.to_pem()?).map_err(|e| CloudError::Internal(e.to_string()))?;
    let key_pem = String::from_utf8(key.public_key_to_pem()?)
        .map_err(|e| CloudError::Internal(e.to_string()))?;
    diesel::update(satellites::table.find(row))
        .set((
            satellites::renewed_key_pem.eq(key_pem),
            satellites::certificate_pem.eq(&cert_pem),
        ))
        .execute(c)?;
    tracing::info!(satellite = %name, "renewed the satellite's certificate");
    Ok(cert_pem)
}

/// When the satellite's latest registration was removed (and it was not registered again):
/// its account and why.
pub(crate) fn removed(
    c: &mut SqliteConnection,
    satellite_id: &str,
) -> Result<Option<(Account, sync_format::payload::Removal)>> {
    /// State, removed at, why, account.
    type Latest = (String, Option<i64>, Option<String>, Option<i64>);
    let latest: Option<Latest> = satellites::table
        .select((
            satellites::state,
            satellites::removed_at,
            satellites::removal_reason,
            satellites::account_id,
        ))
        .filter(satellites::satellite_id.eq(satellite_id))
        .order(satellites::id.desc())
        .first(c)
        .optional()?;
    let Some((state, Some(at), reason, account_id)) = latest else {
        return Ok(None);
    };
    if state != "removed" {
        return Ok(None);
    }
    let account = match account_id {
        Some(id) => {
            let (name, export_controlled_allowed): (String, bool) = accounts::table
                .select((accounts::name, accounts::export_controlled))
                .find(id)
                .first(c)?;
            Account {
                name,
                export_controlled_allowed,
            }
        }
        None => Account {
            name: String::new(),
            export_controlled_allowed: false,
        },
    };
    let removal = sync_format::payload::Removal {
        at,
        reason: reason.unwrap_or_else(|| "removed".into()),
    };
    Ok(Some((account, removal)))
}

/// The answer to a removed satellite's sync request: nothing applied, no virtual account,
/// and why it was removed.
pub(crate) fn removal_response(
    cloud: &Cloud,
    m: &sync_format::manifest::Manifest,
    account: Account,
    removal: sync_format::payload::Removal,
    now: i64,
) -> Result<Vec<u8>> {
    let header = Header {
        kind: BundleKind::SyncResponse,
        bundle_id: uuid::Uuid::new_v4().to_string(),
        sender: cloud.cloud_id.clone(),
        receiver: m.sender.clone(),
        sequence: 0,
        created_at: now,
        not_after: now + SYNC_INTERVAL_DAYS * DAY,
        in_reply_to: Some(m.bundle_id.clone()),
    };
    let mut w = BundleWriter::new(Cursor::new(Vec::new()), header)?;
    w.payload(&SyncResponse {
        payload_version: 1,
        satellite_id: m.sender.clone(),
        acknowledged_request: m.bundle_id.clone(),
        acknowledged_change: 0,
        acknowledged_event: 0,
        rejected: 0,
        account,
        virtual_accounts: Vec::new(),
        next_sync_due: now,
        satellite_certificate_pem: None,
        removed: Some(removal),
        cloud_ca: cloud.rollover()?,
    })?;
    Ok(w.finish(cloud.sync_signer())?.0.into_inner())
}

/// The cloud's operator removes a satellite (seed 001, the satellite's Actions, "Remove"):
/// its product instances' licenses are released and its virtual accounts disassociated
/// (they may be given to another satellite). The satellite learns it at its next sync.
pub fn remove_satellite(cloud: &Cloud, who: &str) -> Result<String> {
    let now = cloud.now()?;
    let mut c = cloud.conn()?;
    c.immediate_transaction(|c| {
        let row = super::service::find_row(c, who, Some("authorized"))?;
        let name: String = satellites::table
            .select(satellites::name)
            .find(row)
            .first(c)?;
        let released = release_satellite(c, row, now)?;
        super::export::release_satellite(c, row, now)?;
        diesel::delete(satellite_vas::table.filter(satellite_vas::satellite_row.eq(row)))
            .execute(c)?;
        diesel::update(satellites::table.find(row))
            .set((
                satellites::state.eq("removed"),
                satellites::removed_at.eq(now),
                satellites::removal_reason.eq("removed by the cloud's operator"),
            ))
            .execute(c)?;
        flag_shortages(c, now)?;
        tracing::warn!(satellite = %name, released, "satellite removed by the operator");
        Ok(name)
    })
}

/// Moves `count` licenses of `tag` from one virtual account to another of the same account
/// (seed 001, "Transfer"), refused beyond the source's balance (purchased, as of now, less
/// what its devices use). The lines keep their kind and dates; the satellites serving the
/// two accounts learn it at their next sync.
pub fn transfer_licenses(cloud: &Cloud, from: &str, to: &str, tag: &str, count: i64) -> Result<()> {
    let now = cloud.now()?;
    let mut c = cloud.conn()?;
    c.immediate_transaction(|c| {
        let from_id = super::service::va_id(c, from)?;
        let to_id = super::service::va_id(c, to)?;
        let accounts_of: Vec<i64> = virtual_accounts::table
            .select(virtual_accounts::account_id)
            .filter(virtual_accounts::id.eq_any([from_id, to_id]))
            .load(c)?;
        if from_id == to_id || accounts_of.first() != accounts_of.last() {
            return Err(CloudError::Invalid(format!(
                "licenses move between two virtual accounts of one smart account, not {from:?} \
                 to {to:?}"
            )));
        }
        let balance = usage_report(c, now)?
            .into_iter()
            .find(|u| u.va_id == from_id && u.tag == tag)
            .map_or(0, |u| u.balance);
        if count < 1 || count > balance {
            return Err(CloudError::Invalid(format!(
                "cannot transfer {count} {tag:?} from {from:?}: its balance is {balance} \
                 (purchased less in use)"
            )));
        }
        // Taken from the lines valid now, longest-lived first.
        type Line = (
            i64,
            String,
            String,
            String,
            i64,
            Option<i64>,
            Option<i64>,
            bool,
        );
        let mut lines: Vec<Line> = licenses::table
            .select((
                licenses::id,
                licenses::name,
                licenses::description,
                licenses::kind,
                licenses::quantity,
                licenses::start_at,
                licenses::end_at,
                licenses::restricted,
            ))
            .filter(licenses::va_id.eq(from_id))
            .filter(licenses::tag.eq(tag))
            .filter(licenses::kind.ne("reporting-only"))
            .load(c)?;
        lines.retain(|l| l.5.is_none_or(|s| s <= now) && l.6.is_none_or(|e| e > now));
        lines.sort_by_key(|l| std::cmp::Reverse(l.6.unwrap_or(i64::MAX)));
        let mut left = count;
        for (id, name, description, kind, quantity, start, end, restricted) in lines {
            if left == 0 {
                break;
            }
            let take = left.min(quantity);
            left -= take;
            if take == quantity {
                diesel::delete(licenses::table.find(id)).execute(c)?;
            } else {
                diesel::update(licenses::table.find(id))
                    .set(licenses::quantity.eq(quantity - take))
                    .execute(c)?;
            }
            diesel::insert_into(licenses::table)
                .values((
                    licenses::va_id.eq(to_id),
                    licenses::tag.eq(tag),
                    licenses::name.eq(name),
                    licenses::description.eq(description),
                    licenses::kind.eq(kind),
                    licenses::quantity.eq(take),
                    licenses::start_at.eq(start),
                    licenses::end_at.eq(end),
                    licenses::restricted.eq(restricted),
                    licenses::created_at.eq(now),
                ))
                .execute(c)?;
        }
        flag_shortages(c, now)?;
        tracing::info!(%from, %to, %tag, count, "transferred licenses");
        Ok(())
    })
}

/// Associates one more virtual account with an authorized satellite (seed 001: "Virtual
/// accounts can be added to a satellite but cannot be deleted"); its pools reach the
/// satellite at the next sync. A virtual account serves one satellite at a time.
pub fn add_va(cloud: &Cloud, who: &str, va: &str) -> Result<String> {
    let mut c = cloud.conn()?;
    c.immediate_transaction(|c| {
        let row = super::service::find_row(c, who, Some("authorized"))?;
        let (name, account_id): (String, Option<i64>) = satellites::table
            .select((satellites::name, satellites::account_id))
            .find(row)
            .first(c)?;
        let va_id = super::service::va_id(c, va)?;
        let va_account: i64 = virtual_accounts::table
            .select(virtual_accounts::account_id)
            .find(va_id)
            .first(c)?;
        if Some(va_account) != account_id {
            return Err(CloudError::Invalid(format!(
                "the virtual account {va:?} belongs to another smart account than the \
                 satellite {name:?}"
            )));
        }
        let taken: Option<(i64, String)> = satellite_vas::table
            .inner_join(satellites::table)
            .select((satellites::id, satellites::name))
            .filter(satellite_vas::va_id.eq(va_id))
            .filter(satellites::state.eq("authorized"))
            .first(c)
            .optional()?;
        match taken {
            Some((r, _)) if r == row => {
                return Err(CloudError::Conflict(format!(
                    "the satellite {name:?} already serves {va:?}"
                )))
            }
            Some((_, other)) => {
                return Err(CloudError::Conflict(format!(
                    "the virtual account {va:?} already belongs to the satellite {other:?}"
                )))
            }
            None => {}
        }
        diesel::insert_into(satellite_vas::table)
            .values((
                satellite_vas::satellite_row.eq(row),
                satellite_vas::va_id.eq(va_id),
            ))
            .execute(c)?;
        Ok(name)
    })
}
