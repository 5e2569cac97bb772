//! The cloud's CA can roll over. A sync response may announce a new CA (`cloud_ca`): its
//! self-signed certificate and the same CA certified by the one the satellite pins. The
//! satellite checks that the CA it trusts vouches for the new one, then pins it as it
//! applies the response; the one before stays trusted until it expires. A CA nobody
//! announced this way is never trusted, whatever its names.

use openssl::asn1::Asn1Time;
use openssl::x509::{X509Ref, X509};
use sync_format::payload::CaRollover;

use crate::db::identity::SatelliteRow;
use crate::error::{Error, Reason, Result};

/// The CAs whose bundles the satellite accepts: the pinned one, and the one before the last
/// rollover (until it expires: an expired anchor verifies nothing).
pub fn anchors(me: &SatelliteRow) -> Result<Vec<X509>> {
    let pinned = me
        .cloud_ca_pem
        .as_deref()
        .ok_or_else(|| Error::State("the satellite has no pinned cloud CA".into()))?;
    let mut out = vec![X509::from_pem(pinned.as_bytes())?];
    if let Some(previous) = me.cloud_ca_previous_pem.as_deref() {
        out.push(X509::from_pem(previous.as_bytes())?);
    }
    Ok(out)
}

/// Checks an announced CA against the pinned one at `now`: `None` when it is the pinned one
/// already, the new CA when the pinned one vouches for it; refused otherwise, before
/// anything is written.
pub fn check(pinned: &X509Ref, r: &CaRollover, now: i64) -> Result<Option<X509>> {
    let refuse = |what: &str| {
        Error::Conflict(Reason::new(
            "ca_rollover_refused",
            format!("the sync response announces a new cloud CA, but {what}; nothing changed"),
        ))
    };
    let new = X509::from_pem(r.ca_pem.as_bytes()).map_err(|_| refuse("it is not a certificate"))?;
    if new.to_der()? == pinned.to_der()? {
        return Ok(None);
    }
    let key = new.public_key()?;
    if !new.verify(&key).unwrap_or(false) {
        return Err(refuse("it is not a self-signed CA"));
    }
    let cross = X509::from_pem(r.cross_signed_pem.as_bytes())
        .map_err(|_| refuse("its cross-certificate is not a certificate"))?;
    let pinned_key = pinned.public_key()?;
    if !cross.verify(&pinned_key).unwrap_or(false) {
        return Err(refuse("the CA this satellite trusts did not certify it"));
    }
    if !cross.public_key()?.public_eq(&key)
        || cross.subject_name().to_der()? != new.subject_name().to_der()?
    {
        return Err(refuse("the cross-certificate certifies another CA"));
    }
    let at = Asn1Time::from_unix(now)?;
    for c in [&new, &cross] {
        if c.not_before() > at || c.not_after() < at {
            return Err(refuse("it is not valid now"));
        }
    }
    Ok(Some(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::pkey::{PKey, Private};
    use sync_format::pki::{self, CertRole, CertSpec};

    fn spec(cn: &str, now: i64) -> CertSpec<'_> {
        CertSpec {
            common_name: cn,
            organization: "cloud",
            role: CertRole::Ca,
            now,
            days: 3650,
        }
    }

    fn ca(cn: &str, now: i64) -> (X509, PKey<Private>) {
        let key = pki::new_p256_key().unwrap();
        (pki::self_signed(&key, &spec(cn, now)).unwrap(), key)
    }

    /// `of`'s key and name `cn`, certified by `by`.
    fn cross(by: &(X509, PKey<Private>), of: &(X509, PKey<Private>), cn: &str, now: i64) -> String {
        let c = pki::issue(&by.0, &by.1, &of.1, &spec(cn, now)).unwrap();
        String::from_utf8(c.to_pem().unwrap()).unwrap()
    }

    fn pem(c: &X509) -> String {
        String::from_utf8(c.to_pem().unwrap()).unwrap()
    }

    #[test]
    fn only_a_ca_the_pinned_one_vouches_for_is_pinned() {
        let now = crate::clock::system_now();
        let old = ca("Root", now);
        let new = ca("Root 2", now);
        let stranger = ca("Root 2", now);
        let good = CaRollover {
            ca_pem: pem(&new.0),
            cross_signed_pem: cross(&old, &new, "Root 2", now),
        };
        let got = check(&old.0, &good, now).unwrap().unwrap();
        assert_eq!(got.to_der().unwrap(), new.0.to_der().unwrap());
        // The pinned one announced again: nothing to do.
        let same = CaRollover {
            ca_pem: pem(&old.0),
            cross_signed_pem: String::new(),
        };
        assert!(check(&old.0, &same, now).unwrap().is_none());
        // Certified by a CA nobody pinned, or certifying another key: refused.
        for bad in [
            CaRollover {
                ca_pem: pem(&new.0),
                cross_signed_pem: cross(&stranger, &new, "Root 2", now),
            },
            CaRollover {
                ca_pem: pem(&stranger.0),
                cross_signed_pem: cross(&old, &new, "Root 2", now),
            },
        ] {
            let e = check(&old.0, &bad, now).unwrap_err();
            assert_eq!(e.code(), "ca_rollover_refused", "{e}");
        }
    }

    #[test]
    fn bundles_under_the_ca_before_are_taken_until_it_expires() {
        let now = crate::clock::system_now();
        let day = crate::clock::DAY;
        // The CA before, made ten years ago: it ends in a few days.
        let old = ca("Root", now - 3645 * day);
        let new = ca("Root 2", now);
        let signer_key = pki::new_p256_key().unwrap();
        let signed_under_old = pki::issue(
            &old.0,
            &old.1,
            &signer_key,
            &CertSpec {
                common_name: "signer",
                organization: "cloud",
                role: CertRole::Bundle(pki::SignerRole::Cloud, "cloud-x"),
                now: now - day,
                days: 30,
            },
        )
        .unwrap();
        let anchors = [new.0.clone(), old.0.clone()];
        let chain = [signed_under_old];
        pki::verify_chain(&chain, pki::Trust::Anchors(&anchors), now).unwrap();
        let later = now + 10 * day;
        assert!(
            pki::verify_chain(&chain, pki::Trust::Anchors(&anchors), later).is_err(),
            "the CA before has expired"
        );
    }
}
