//! TLS for the listeners: a configured certificate and key, or a self-signed ECDSA P-256
//! certificate the satellite makes in its data directory on first start. TLS 1.2+ only.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod, SslVersion};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509Ref, X509};

use crate::config::ServerConfig;
use crate::datadir;
use crate::error::{Error, Result};

/// Days a self-made server certificate is valid; it is made anew when it expires.
const SELF_SIGNED_DAYS: u32 = 825;

/// A new ECDSA P-256 private key.
pub fn new_p256_key() -> Result<PKey<Private>> {
    Ok(sync_format::pki::new_p256_key()?)
}

/// SHA-256 fingerprint of a certificate, as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(cert: &X509) -> Result<String> {
    Ok(sync_format::pki::fingerprint(cert)?)
}

/// Where the server's certificate and key are, and whether we made them.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub self_signed: bool,
    pub fingerprint: String,
}

/// Finds the configured certificate, or makes (or re-uses) the self-signed one in
/// `<data_dir>/tls/`. `now` is the injectable clock's time.
pub fn server_cert(
    cfg: &ServerConfig,
    data_dir: &Path,
    name: &str,
    now: i64,
) -> Result<ServerCert> {
    match (cfg.tls_cert.trim(), cfg.tls_key.trim()) {
        ("", "") => {}
        ("", _) | (_, "") => {
            return Err(Error::invalid(
                "server.tls_cert and server.tls_key must be set together (or both left empty \
                 for the self-made certificate)",
            ))
        }
        (cert, key) => {
            let cert_path = PathBuf::from(cert);
            let pem = std::fs::read(&cert_path).map_err(|e| Error::file(&cert_path, e))?;
            let x509 = X509::from_pem(&pem).map_err(|e| {
                Error::Tls(format!(
                    "{}: not a PEM certificate: {e}",
                    cert_path.display()
                ))
            })?;
            return Ok(ServerCert {
                fingerprint: fingerprint(&x509)?,
                cert_path,
                key_path: PathBuf::from(key),
                self_signed: false,
            });
        }
    }

    let dir = data_dir.join("tls");
    datadir::ensure_subdir(&dir)?;
    let cert_path = dir.join("server.crt.pem");
    let key_path = dir.join("server.key.pem");
    if let Some(cert) = usable_existing(&cert_path, &key_path, now) {
        return Ok(ServerCert {
            fingerprint: fingerprint(&cert)?,
            cert_path,
            key_path,
            self_signed: true,
        });
    }
    let key = new_p256_key()?;
    let cert = server_certificate(
        &key,
        &format!("satellite {name}"),
        &cfg.hostnames,
        now,
        None,
    )?;
    datadir::write_private(&key_path, &key.private_key_to_pem_pkcs8()?)?;
    datadir::write_public(&cert_path, &cert.to_pem()?)?;
    let fp = fingerprint(&cert)?;
    tracing::info!(
        cert = %cert_path.display(),
        sha256_fingerprint = %fp,
        "made a self-signed TLS certificate"
    );
    Ok(ServerCert {
        cert_path,
        key_path,
        self_signed: true,
        fingerprint: fp,
    })
}

/// The existing self-made certificate, if it is readable, matches its key and is valid at `now`.
fn usable_existing(cert_path: &Path, key_path: &Path, now: i64) -> Option<X509> {
    let cert = X509::from_pem(&std::fs::read(cert_path).ok()?).ok()?;
    let key = PKey::private_key_from_pem(&std::fs::read(key_path).ok()?).ok()?;
    let matches = cert.public_key().ok()?.public_eq(&key);
    let at = Asn1Time::from_unix(now).ok()?;
    let valid = cert.not_before() <= at && cert.not_after() > at;
    (matches && valid).then_some(cert)
}

/// A server certificate for `hostnames` plus the loopback names: self-signed, or issued by
/// `issuer` (certificate and key of a CA).
pub fn server_certificate(
    key: &PKey<Private>,
    name: &str,
    hostnames: &[String],
    now: i64,
    issuer: Option<(&X509Ref, &PKeyRef<Private>)>,
) -> Result<X509> {
    let mut subject = X509NameBuilder::new()?;
    subject.append_entry_by_nid(Nid::COMMONNAME, name)?;
    subject.append_entry_by_nid(Nid::ORGANIZATIONNAME, "satellite")?;
    let subject = subject.build();

    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&subject)?;
    match issuer {
        Some((ca, _)) => b.set_issuer_name(ca.subject_name())?,
        None => b.set_issuer_name(&subject)?,
    }
    b.set_pubkey(key)?;
    let not_before = Asn1Time::from_unix(now - 3600)?;
    let not_after = Asn1Time::from_unix(now + i64::from(SELF_SIGNED_DAYS) * 86_400)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;

    let mut san = SubjectAlternativeName::new();
    let mut names: Vec<String> = hostnames.to_vec();
    names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    names.dedup();
    for n in &names {
        if n.parse::<IpAddr>().is_ok() {
            san.ip(n);
        } else {
            san.dns(n);
        }
    }
    let ctx = b.x509v3_context(issuer.map(|(ca, _)| ca), None);
    let san = san.build(&ctx)?;
    b.append_extension(san)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    b.sign(
        issuer.map_or(key.as_ref(), |(_, k)| k),
        MessageDigest::sha256(),
    )?;
    Ok(b.build())
}

/// An acceptor serving `cert` with TLS 1.2 or newer.
pub fn acceptor(cert: &ServerCert) -> Result<SslAcceptorBuilder> {
    let tls = |what: &str, path: &Path, e: openssl::error::ErrorStack| {
        Error::Tls(format!("{what} {}: {e}", path.display()))
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_private_key_file(&cert.key_path, SslFiletype::PEM)
        .map_err(|e| tls("cannot load private key", &cert.key_path, e))?;
    b.set_certificate_chain_file(&cert.cert_path)
        .map_err(|e| tls("cannot load certificate", &cert.cert_path, e))?;
    b.check_private_key()
        .map_err(|e| tls("private key does not match certificate", &cert.cert_path, e))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn self_made_certificate_is_reused_and_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load_from(None, &[]).unwrap();
        let now = crate::clock::system_now();
        let a = server_cert(&cfg.server, dir.path(), "t", now).unwrap();
        assert!(a.self_signed);
        let mode = std::fs::metadata(&a.key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = server_cert(&cfg.server, dir.path(), "t", now).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint, "reused, not made anew");
        // Past its end it is made anew.
        let later = now + i64::from(SELF_SIGNED_DAYS + 1) * 86_400;
        let c = server_cert(&cfg.server, dir.path(), "t", later).unwrap();
        assert_ne!(a.fingerprint, c.fingerprint);
        acceptor(&c).unwrap();
    }

    #[test]
    fn certificate_names_include_loopback_and_configured_hosts() {
        let key = new_p256_key().unwrap();
        let names = ["sat.example".into(), "10.0.0.5".into()];
        let cert = server_certificate(&key, "t", &names, 0, None).unwrap();
        let sans = cert.subject_alt_names().unwrap();
        let dns: Vec<_> = sans
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_string))
            .collect();
        assert!(dns.contains(&"sat.example".to_string()) && dns.contains(&"localhost".to_string()));
        let ips: Vec<_> = sans
            .iter()
            .filter_map(|n| n.ipaddress().map(<[u8]>::to_vec))
            .collect();
        assert!(ips.contains(&vec![127, 0, 0, 1]) && ips.contains(&vec![10, 0, 0, 5]));
    }

    #[test]
    fn half_configured_tls_is_refused() {
        let mut cfg = Config::load_from(None, &[]).unwrap();
        cfg.server.tls_cert = "/x.pem".into();
        let dir = tempfile::tempdir().unwrap();
        let msg = server_cert(&cfg.server, dir.path(), "t", 0)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("tls_key"), "{msg}");
    }
}
