//! The satellite's certificate renews through sync. When it has less than a third of its
//! life left, every sync request (file or network) carries a PKCS#10 request for a new key
//! pair the satellite keeps ([`crate::identity::renewal_key`]); the cloud answers with a new
//! certificate in the sync response, which is checked before anything is written and stored
//! with the rest of the response, in one transaction. The old certificate stays valid until
//! it expires, so a response lost on the way costs nothing: the next sync asks again.
//!
//! Alerts: "Satellite Certificate Expiring" (minor) 60 days before the certificate ends,
//! "Satellite Certificate Expiring (14 Day)" (major) 14 days before; a renewal clears both.

use std::path::Path;

use openssl::hash::MessageDigest;
use openssl::x509::{X509NameBuilder, X509Req, X509};

use crate::catalogue::AlertKind;
use crate::clock::{self, DAY};
use crate::db::alerts::{self, NewAlert};
use crate::db::identity::SatelliteRow;
use crate::error::{Error, Result};
use crate::identity::unix_of;
use diesel::SqliteConnection;

/// The first warning, this long before the certificate ends (minor).
pub const WARN_BEFORE: i64 = 60 * DAY;
/// The second, this long before (major).
pub const URGENT_BEFORE: i64 = 14 * DAY;

/// When the satellite's certificate is valid: (not before, not after), Unix seconds.
pub fn validity(me: &SatelliteRow) -> Result<Option<(i64, i64)>> {
    let Some(pem) = me.certificate_pem.as_deref() else {
        return Ok(None);
    };
    let cert = X509::from_pem(pem.as_bytes())?;
    Ok(Some((
        unix_of(cert.not_before())?,
        unix_of(cert.not_after())?,
    )))
}

/// Whether a certificate valid over `[not_before, not_after]` is due for renewal at `now`:
/// less than a third of its life left.
pub fn due(not_before: i64, not_after: i64, now: i64) -> bool {
    (not_after - now) * 3 < not_after - not_before
}

/// The renewal request a sync request carries at `now`, if the certificate is due: a
/// PKCS#10 request (PEM) naming the satellite, signed by the renewal key.
pub fn request(data_dir: &Path, me: &SatelliteRow, now: i64) -> Result<Option<String>> {
    let Some((from, to)) = validity(me)? else {
        return Ok(None);
    };
    if !due(from, to, now) {
        return Ok(None);
    }
    let key = crate::identity::renewal_key(data_dir)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", &me.satellite_id)?;
    let mut req = X509Req::builder()?;
    req.set_subject_name(&name.build())?;
    req.set_pubkey(&key)?;
    req.sign(&key, MessageDigest::sha256())?;
    let pem = req.build().to_pem()?;
    String::from_utf8(pem)
        .map(Some)
        .map_err(|e| Error::Internal(format!("CSR is not UTF-8: {e}")))
}

/// Checks a renewed certificate from a sync response before anything is written: it
/// certifies this satellite, for the key the satellite asked for, under the CA it pins,
/// and is valid now. Returns it with its expiry.
pub fn check(
    data_dir: &Path,
    me: &SatelliteRow,
    pem: &str,
    ca: &X509,
    now: i64,
) -> Result<(String, i64)> {
    let key = crate::identity::pending_renewal_key(data_dir)?.ok_or_else(|| {
        Error::Conflict(crate::error::Reason::new(
            "renewal_not_asked",
            "the sync response carries a new satellite certificate, but this satellite asked \
             for none; refusing it",
        ))
    })?;
    let cert = crate::identity::check_certificate(
        pem,
        "the sync response",
        &me.satellite_id,
        &key,
        ca,
        now,
    )?;
    Ok((pem.to_string(), unix_of(cert.not_after())?))
}

/// The certificate alerts at `now`: raised as the end comes near, cleared once renewed.
pub fn alerts(conn: &mut SqliteConnection, me: &SatelliteRow, now: i64) -> Result<Vec<String>> {
    let mut raised = Vec::new();
    let Some((_, not_after)) = validity(me)? else {
        return Ok(raised);
    };
    let left = not_after - now;
    let days = (left.max(0) + DAY - 1) / DAY;
    let message = format!(
        "The satellite's certificate expires on {} ({days} days): after that the cloud refuses \
         its syncs. A sync renews it (the satellite asks for a new one at every sync once less \
         than a third of its life is left); synchronize now.",
        clock::format(not_after)
    );
    let satellite = |kind| NewAlert {
        kind,
        source_type: "satellite",
        source_id: None,
        va_id: None,
        message: message.clone(),
        action_due_at: Some(not_after),
    };
    if me.is_registered() && left <= URGENT_BEFORE {
        alerts::clear(conn, now, AlertKind::CertificateExpiring)?;
        if alerts::raise(conn, now, &satellite(AlertKind::CertificateExpiringSoon))? {
            raised.push(AlertKind::CertificateExpiringSoon.to_string());
        }
    } else if me.is_registered() && left <= WARN_BEFORE {
        alerts::clear(conn, now, AlertKind::CertificateExpiringSoon)?;
        if alerts::raise(conn, now, &satellite(AlertKind::CertificateExpiring))? {
            raised.push(AlertKind::CertificateExpiring.to_string());
        }
    } else {
        alerts::clear(conn, now, AlertKind::CertificateExpiring)?;
        alerts::clear(conn, now, AlertKind::CertificateExpiringSoon)?;
    }
    Ok(raised)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::db::{identity, Store};
    use diesel::prelude::*;
    use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
    use sync_format::pki::{self, CertRole, CertSpec, SignerRole};

    #[test]
    fn due_when_less_than_a_third_of_its_life_is_left() {
        let (from, to) = (0, 730 * DAY);
        assert!(!due(from, to, 0));
        assert!(!due(from, to, 486 * DAY));
        assert!(due(from, to, 487 * DAY));
        assert!(due(from, to, 800 * DAY), "expired: still asks");
    }

    struct Ca {
        cert: X509,
        key: PKey<Private>,
    }

    fn ca(now: i64) -> Ca {
        let key = pki::new_p256_key().unwrap();
        let spec = CertSpec {
            common_name: "ca",
            organization: "test",
            role: CertRole::Ca,
            now,
            days: 3650,
        };
        let cert = pki::self_signed(&key, &spec).unwrap();
        Ca { cert, key }
    }

    /// A satellite certificate from `ca` for `key`, naming `id`, valid `days` from `now`.
    fn cert(ca: &Ca, key: &PKeyRef<impl HasPublic>, id: &str, now: i64, days: u32) -> String {
        let spec = CertSpec {
            common_name: "sat",
            organization: "test",
            role: CertRole::Bundle(SignerRole::Satellite, id),
            now,
            days,
        };
        let c = pki::issue(&ca.cert, &ca.key, key, &spec).unwrap();
        String::from_utf8(c.to_pem().unwrap()).unwrap()
    }

    /// A registered satellite whose certificate from `ca` is valid 730 days from `now`.
    fn registered(ca: &Ca, now: i64) -> (Store, tempfile::TempDir, SatelliteRow) {
        let (store, dir) = crate::db::testing::store();
        let mut cfg = Config::load_from(None, &[]).unwrap();
        cfg.storage.data_dir = store.data_dir().to_path_buf();
        let me = crate::identity::ensure(&store, &cfg, &crate::clock::SystemClock).unwrap();
        let key = crate::identity::signing_key(store.data_dir()).unwrap();
        let pem = cert(ca, &key, &me.satellite_id, now, 730);
        let c = &mut *store.conn().unwrap();
        diesel::sql_query(
            "UPDATE satellite SET state = 'registered', registered_at = ?, certificate_pem = ?",
        )
        .bind::<diesel::sql_types::BigInt, _>(now)
        .bind::<diesel::sql_types::Text, _>(&pem)
        .execute(c)
        .unwrap();
        let me = identity::require(c).unwrap();
        (store, dir, me)
    }

    #[test]
    fn a_renewed_certificate_must_be_for_the_key_asked_for_this_satellite_under_the_pinned_ca() {
        let now = clock::system_now();
        let cloud = ca(now);
        let (store, _d, me) = registered(&cloud, now);
        let dir = store.data_dir();
        let later = now + 500 * DAY;
        // Not due yet: no request, no key.
        assert!(request(dir, &me, now).unwrap().is_none());
        assert!(crate::identity::pending_renewal_key(dir).unwrap().is_none());
        // A certificate the satellite did not ask for is refused.
        let stranger = pki::new_p256_key().unwrap();
        let unasked = cert(&cloud, &stranger, &me.satellite_id, later, 730);
        let e = check(dir, &me, &unasked, &cloud.cert, later).unwrap_err();
        assert_eq!(e.code(), "renewal_not_asked", "{e}");

        // Due: a CSR for a new key, the same key when asked again.
        let csr = |pem: String| openssl::x509::X509Req::from_pem(pem.as_bytes()).unwrap();
        let req = csr(request(dir, &me, later).unwrap().unwrap());
        let again = csr(request(dir, &me, later).unwrap().unwrap());
        assert!(req
            .public_key()
            .unwrap()
            .public_eq(&again.public_key().unwrap()));
        let asked = crate::identity::pending_renewal_key(dir).unwrap().unwrap();
        assert!(req.public_key().unwrap().public_eq(&asked));
        assert!(req.verify(&asked).unwrap());

        // For another key, another satellite, or from another CA: refused.
        let other_ca = ca(now);
        for (pem, code) in [
            (
                cert(&cloud, &stranger, &me.satellite_id, later, 730),
                "certificate_for_another_key",
            ),
            (
                cert(&cloud, &asked, "another-satellite", later, 730),
                "certificate_for_another",
            ),
            (
                cert(&other_ca, &asked, &me.satellite_id, later, 730),
                "certificate_not_valid",
            ),
        ] {
            let e = check(dir, &me, &pem, &cloud.cert, later).unwrap_err();
            assert_eq!(e.code(), code, "{e}");
        }
        // The right one passes, with its end; once stored, its key becomes the signing key.
        let good = cert(&cloud, &asked, &me.satellite_id, later, 730);
        let (pem, until) = check(dir, &me, &good, &cloud.cert, later).unwrap();
        assert_eq!(until, later + 730 * DAY);
        assert!(!crate::identity::promote_renewal(dir, me.certificate_pem.as_deref()).unwrap());
        assert!(crate::identity::promote_renewal(dir, Some(&pem)).unwrap());
        let signing = crate::identity::signing_key(dir).unwrap();
        assert!(signing.public_eq(&asked));
        assert!(crate::identity::pending_renewal_key(dir).unwrap().is_none());
    }

    #[test]
    fn the_certificate_alerts_come_60_and_14_days_before_its_end() {
        let now = clock::system_now();
        let cloud = ca(now);
        let (store, _d, me) = registered(&cloud, now);
        let c = &mut *store.conn().unwrap();
        let end = now + 730 * DAY;
        let active = |c: &mut SqliteConnection| -> Vec<(AlertKind, crate::catalogue::Severity)> {
            crate::db::alerts::active(c)
                .unwrap()
                .into_iter()
                .map(|a| (a.kind, a.severity))
                .collect()
        };
        assert!(alerts(c, &me, end - 61 * DAY).unwrap().is_empty());
        assert!(active(c).is_empty());
        alerts(c, &me, end - 59 * DAY).unwrap();
        assert_eq!(
            active(c),
            vec![(
                AlertKind::CertificateExpiring,
                crate::catalogue::Severity::Minor
            )]
        );
        alerts(c, &me, end - 13 * DAY).unwrap();
        assert_eq!(
            active(c),
            vec![(
                AlertKind::CertificateExpiringSoon,
                crate::catalogue::Severity::Major
            )]
        );
        // Renewed: a certificate with its life ahead clears them.
        let key = crate::identity::signing_key(store.data_dir()).unwrap();
        let renewed = SatelliteRow {
            certificate_pem: Some(cert(&cloud, &key, &me.satellite_id, end - 13 * DAY, 730)),
            ..me.clone()
        };
        alerts(c, &renewed, end - 13 * DAY).unwrap();
        assert!(active(c).is_empty());
    }
}
