//! Keys, certificates and signatures: ECDSA P-256 with SHA-256, through openssl, so that the
//! `openssl` command line can check everything this library makes.

use openssl::asn1::Asn1Object;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use openssl::sign::{Signer as OsslSigner, Verifier};
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509NameBuilder, X509Ref, X509StoreContext, X509};

use crate::error::{Error, Result};

/// A new ECDSA P-256 private key.
pub fn new_p256_key() -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

/// Whether `key` is an EC key on P-256.
pub fn is_p256<T: HasPublic>(key: &PKeyRef<T>) -> bool {
    key.ec_key()
        .ok()
        .and_then(|k| k.group().curve_name())
        .is_some_and(|n| n == Nid::X9_62_PRIME256V1)
}

/// SHA-256 fingerprint as `AB:CD:...`, as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(cert: &X509Ref) -> Result<String> {
    let d = cert.digest(MessageDigest::sha256())?;
    Ok(d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(data))
}

/// Who may sign bundles of which kinds. Every certificate the cloud CA issues for signing
/// bundles carries exactly one of these roles as an extended key usage (a private OID, so no
/// other kind of certificate has it by chance) and names its holder in a
/// `subjectAltName` URI `satellite-bundle:ROLE/ID`. A reader that trusts the cloud CA accepts
/// a bundle only from the role its kind needs ([`BundleKind::signer_role`]) and only when the
/// manifest's `sender` is the identity the certificate names: a satellite's or a device's
/// certificate can never pass for the cloud's, although all of them chain to the same CA.
///
/// [`BundleKind::signer_role`]: crate::manifest::BundleKind::signer_role
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerRole {
    /// The cloud's bundle-signing identity: registration authorizations and sync responses.
    Cloud,
    /// A registered satellite: its sync requests.
    Satellite,
}

impl SignerRole {
    pub const ALL: [SignerRole; 2] = [SignerRole::Cloud, SignerRole::Satellite];

    /// The extended key usage OID that marks the role (an OID under `2.25`, made from a
    /// random UUID as ITU-T X.667 allows, so it needs no registration and clashes with none).
    pub fn oid(self) -> &'static str {
        match self {
            SignerRole::Cloud => "2.25.138752071253603706663956168542288546953",
            SignerRole::Satellite => "2.25.334956293596368969357404171877253491623",
        }
    }

    /// The `subjectAltName` URI of the holder `id`.
    pub fn uri(self, id: &str) -> String {
        format!("{}{id}", self.uri_prefix())
    }

    fn uri_prefix(self) -> &'static str {
        match self {
            SignerRole::Cloud => "satellite-bundle:cloud/",
            SignerRole::Satellite => "satellite-bundle:satellite/",
        }
    }

    /// How messages name the role.
    pub fn describe(self) -> &'static str {
        match self {
            SignerRole::Cloud => "the cloud's bundle signer",
            SignerRole::Satellite => "a satellite",
        }
    }
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRole<'a> {
    /// A CA that signs other certificates (the cloud's root).
    Ca,
    /// A signing key with no bundle role: the self-signed certificate of a registration
    /// request (proof of possession only). No reader that trusts a CA accepts it.
    Signer,
    /// A bundle signer of `role` for the holder named (the cloud's id, a satellite's id).
    Bundle(SignerRole, &'a str),
}

/// Parameters of a new certificate.
#[derive(Debug, Clone)]
pub struct CertSpec<'a> {
    pub common_name: &'a str,
    pub organization: &'a str,
    pub role: CertRole<'a>,
    /// Unix seconds; the certificate is valid from an hour before (clock skew).
    pub now: i64,
    pub days: u32,
}

fn build(
    spec: &CertSpec<'_>,
    subject_key: &PKeyRef<impl HasPublic>,
    issuer: Option<(&X509Ref, &PKeyRef<Private>)>,
    self_key: Option<&PKeyRef<Private>>,
) -> Result<X509> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, spec.common_name)?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, spec.organization)?;
    let name = name.build();

    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    match issuer {
        Some((cert, _)) => b.set_issuer_name(cert.subject_name())?,
        None => b.set_issuer_name(&name)?,
    }
    b.set_pubkey(subject_key)?;
    let not_before = Asn1Time::from_unix(spec.now - 3600)?;
    let not_after = Asn1Time::from_unix(spec.now + i64::from(spec.days) * 86_400)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    match spec.role {
        CertRole::Ca => {
            b.append_extension(BasicConstraints::new().critical().ca().pathlen(1).build()?)?;
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()?,
            )?;
        }
        CertRole::Signer => {
            b.append_extension(BasicConstraints::new().critical().build()?)?;
            b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
        }
        CertRole::Bundle(role, id) => {
            b.append_extension(BasicConstraints::new().critical().build()?)?;
            b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
            b.append_extension(
                ExtendedKeyUsage::new()
                    .critical()
                    .other(role.oid())
                    .build()?,
            )?;
            let san = SubjectAlternativeName::new()
                .uri(&role.uri(id))
                .build(&b.x509v3_context(issuer.map(|i| i.0), None))?;
            b.append_extension(san)?;
        }
    }
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(issuer.map(|i| i.0), None))?;
    b.append_extension(ski)?;
    if let Some((cert, _)) = issuer {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(cert), None))?;
        b.append_extension(aki)?;
    }
    let signing_key = match (issuer, self_key) {
        (Some((_, k)), _) => k,
        (None, Some(k)) => k,
        (None, None) => return Err(Error::BadCertificate("no key to sign with".into())),
    };
    b.sign(signing_key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// A self-signed certificate for `key` (a CA, or a signer not yet certified by anyone, as a
/// satellite is when it asks to be registered).
pub fn self_signed(key: &PKeyRef<Private>, spec: &CertSpec<'_>) -> Result<X509> {
    build(spec, key, None, Some(key))
}

/// A certificate for `subject_key`, issued by `ca_cert`/`ca_key`.
pub fn issue(
    ca_cert: &X509Ref,
    ca_key: &PKeyRef<Private>,
    subject_key: &PKeyRef<impl HasPublic>,
    spec: &CertSpec<'_>,
) -> Result<X509> {
    build(spec, subject_key, Some((ca_cert, ca_key)), None)
}

/// A private key and the certificate chain that vouches for it (leaf first).
pub struct Signer {
    key: PKey<Private>,
    chain: Vec<X509>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field(
                "subject",
                &self
                    .chain
                    .first()
                    .map(|c| format!("{:?}", c.subject_name())),
            )
            .finish()
    }
}

impl Signer {
    /// Checks that the key is P-256 and that the first certificate is the key's.
    pub fn new(key: PKey<Private>, chain: Vec<X509>) -> Result<Signer> {
        if !is_p256(&key) {
            return Err(Error::UnsupportedAlgorithm(
                "signing key is not ECDSA P-256".into(),
            ));
        }
        let leaf = chain
            .first()
            .ok_or_else(|| Error::BadCertificate("empty certificate chain".into()))?;
        if !leaf.public_key()?.public_eq(&key) {
            return Err(Error::BadCertificate(
                "the first certificate of the chain is not the signing key's".into(),
            ));
        }
        Ok(Signer { key, chain })
    }

    /// DER-encoded ECDSA signature of SHA-256(`data`), as `openssl dgst -sha256 -sign` makes.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>> {
        let mut s = OsslSigner::new(MessageDigest::sha256(), &self.key)?;
        s.update(data)?;
        Ok(s.sign_to_vec()?)
    }

    /// As [`Signer::sign`], reading the data from `r` in bounded chunks.
    pub fn sign_stream(&self, mut r: impl std::io::Read) -> Result<Vec<u8>> {
        let mut s = OsslSigner::new(MessageDigest::sha256(), &self.key)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf)? {
                0 => break,
                n => s.update(&buf[..n])?,
            }
        }
        Ok(s.sign_to_vec()?)
    }

    /// The chain as concatenated PEM, leaf first.
    pub fn chain_pem(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for c in &self.chain {
            out.extend_from_slice(&c.to_pem()?);
        }
        Ok(out)
    }

    pub fn certificate(&self) -> &X509Ref {
        // `new` guarantees a non-empty chain.
        &self.chain[0]
    }
}

/// Checks a DER ECDSA P-256/SHA-256 signature of `data` by `cert`'s key.
pub fn verify_signature(cert: &X509Ref, data: &[u8], signature: &[u8]) -> Result<()> {
    let key = cert.public_key()?;
    if !is_p256(&key) {
        return Err(Error::UnsupportedAlgorithm(
            "signer key is not ECDSA P-256".into(),
        ));
    }
    let mut v = Verifier::new(MessageDigest::sha256(), &key)?;
    v.update(data)?;
    match v.verify(signature) {
        Ok(true) => Ok(()),
        _ => Err(Error::BadSignature),
    }
}

/// As [`verify_signature`], reading the data from `r` in bounded chunks. Returns whether the
/// signature verifies.
pub fn verify_stream(cert: &X509Ref, mut r: impl std::io::Read, signature: &[u8]) -> Result<bool> {
    let key = cert.public_key()?;
    let mut v = Verifier::new(MessageDigest::sha256(), &key)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf)? {
            0 => break,
            n => v.update(&buf[..n])?,
        }
    }
    Ok(v.verify(signature).unwrap_or(false))
}

/// Whom a reader trusts to sign.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The chain must lead to one of these certificates.
    Anchors(&'a [X509]),
    /// The signer certificate must be self-signed (proof of possession only: used for a
    /// registration request, whose sender nobody has certified yet). The caller decides
    /// whether to trust the key.
    SelfSigned,
    /// The first registration of a satellite that has no cloud CA yet: the chain must end in
    /// a self-signed CA certificate that `signer.pem` itself carries, whose SHA-256
    /// fingerprint is the one given (the operator read it from the cloud out of band), and
    /// lead to it. Without a fingerprint, or with another, the bundle is refused with
    /// [`Error::UnpinnedCa`], which names the fingerprint found. Never trust on first use.
    Fingerprint(Option<&'a [u8; 32]>),
}

/// Reads a CA fingerprint as an operator gives it: `SHA256:AB:CD:…` (as `mock-cloud ca`
/// prints it), `sha256 Fingerprint=AB:CD:…` (as `openssl x509 -fingerprint -sha256` prints
/// it), or 64 hex digits, with or without colons, in either case.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32]> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let hexpart = ["sha256 fingerprint=", "sha256:"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    let digits: String = hexpart.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    match hex::decode_to_slice(&digits, &mut out) {
        Ok(()) => Ok(out),
        Err(_) => Err(Error::BadFingerprint(format!(
            "{t:?} is not a SHA-256 fingerprint: expected SHA256: and 32 bytes in hex, as \
             `openssl x509 -noout -fingerprint -sha256 -in ca.crt.pem` prints them"
        ))),
    }
}

/// The SHA-256 of `cert`'s DER: what a fingerprint is, as bytes.
pub fn sha256_of(cert: &X509Ref) -> Result<[u8; 32]> {
    Ok(openssl::sha::sha256(&cert.to_der()?))
}

/// The SHA-256 fingerprint of `cert` as `SHA256:AB:CD:…`.
pub fn sha256_fingerprint(cert: &X509Ref) -> Result<String> {
    Ok(format!("SHA256:{}", fingerprint(cert)?))
}

/// The bundle role a certificate carries, and the identity it names: `None` for a
/// certificate with no bundle role (a CA, a self-signed request key, a device). A certificate
/// claiming two roles, or a role without exactly one identity of it, is refused.
pub fn bundle_role(cert: &X509Ref) -> Result<Option<(SignerRole, String)>> {
    let der = cert.to_der()?;
    let ekus = extended_key_usages(&der)
        .ok_or_else(|| Error::BadCertificate("unreadable extended key usage".into()))?;
    let mut roles = Vec::new();
    for role in SignerRole::ALL {
        let oid = Asn1Object::from_str(role.oid())?;
        if ekus.iter().any(|e| *e == oid.as_slice()) {
            roles.push(role);
        }
    }
    let role = match roles.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        _ => {
            return Err(Error::BadCertificate(
                "the certificate claims more than one bundle role".into(),
            ))
        }
    };
    let ids: Vec<String> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.uri())
                .filter_map(|u| u.strip_prefix(role.uri_prefix()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    match ids.as_slice() {
        [id] if !id.is_empty() => Ok(Some((role, id.clone()))),
        _ => Err(Error::BadCertificate(format!(
            "a certificate of {} must name exactly one holder as {}ID",
            role.describe(),
            role.uri_prefix()
        ))),
    }
}

/// One DER element at the front of `input`: its tag, its content and the rest.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (
            bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b)),
            rest,
        )
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// The OIDs (content bytes) of a certificate's extended key usage extension, empty when it
/// has none; `None` when the DER cannot be walked.
fn extended_key_usages(cert_der: &[u8]) -> Option<Vec<&[u8]>> {
    const SEQUENCE: u8 = 0x30;
    const EXTENSIONS: u8 = 0xa3;
    const OID: u8 = 0x06;
    const EKU: &[u8] = &[0x55, 0x1d, 0x25]; // 2.5.29.37
    let (tag, cert, _) = der_next(cert_der)?;
    let (tbs_tag, mut tbs, _) = der_next(cert)?;
    if tag != SEQUENCE || tbs_tag != SEQUENCE {
        return None;
    }
    while !tbs.is_empty() {
        let (tag, content, rest) = der_next(tbs)?;
        tbs = rest;
        if tag != EXTENSIONS {
            continue;
        }
        let (_, mut exts, _) = der_next(content)?;
        while !exts.is_empty() {
            let (_, ext, rest) = der_next(exts)?;
            exts = rest;
            let (oid_tag, oid, mut fields) = der_next(ext)?;
            if oid_tag != OID || oid != EKU {
                continue;
            }
            // An optional `critical` BOOLEAN, then the OCTET STRING holding the value.
            let mut value = None;
            while !fields.is_empty() {
                let (tag, content, rest) = der_next(fields)?;
                fields = rest;
                if tag == 0x04 {
                    value = Some(content);
                }
            }
            let (_, mut oids, _) = der_next(value?)?;
            let mut out = Vec::new();
            while !oids.is_empty() {
                let (tag, oid, rest) = der_next(oids)?;
                oids = rest;
                if tag == OID {
                    out.push(oid);
                }
            }
            return Some(out);
        }
    }
    Some(Vec::new())
}

/// Verifies `chain` (leaf first) under `trust` at time `now` (Unix seconds).
pub fn verify_chain(chain: &[X509], trust: Trust<'_>, now: i64) -> Result<()> {
    let leaf = chain
        .first()
        .ok_or_else(|| Error::BadCertificate("signer.pem holds no certificate".into()))?;
    match trust {
        Trust::SelfSigned => {
            if chain.len() != 1 {
                return Err(Error::UntrustedSigner(
                    "a self-signed signer must send exactly one certificate".into(),
                ));
            }
            let key = leaf.public_key()?;
            if !leaf.verify(&key).unwrap_or(false) {
                return Err(Error::UntrustedSigner(
                    "certificate is not self-signed".into(),
                ));
            }
            let at = Asn1Time::from_unix(now)?;
            if leaf.not_before() > at || leaf.not_after() < at {
                return Err(Error::UntrustedSigner(
                    "certificate is not valid at this time".into(),
                ));
            }
            Ok(())
        }
        Trust::Fingerprint(expected) => {
            let root = chain.last().filter(|_| chain.len() >= 2).ok_or_else(|| {
                Error::UntrustedSigner("signer.pem carries no CA certificate".into())
            })?;
            let root_key = root.public_key()?;
            if !root.verify(&root_key).unwrap_or(false) {
                return Err(Error::UntrustedSigner(
                    "the last certificate of signer.pem is not a self-signed CA".into(),
                ));
            }
            if expected != Some(&sha256_of(root)?) {
                return Err(Error::UnpinnedCa {
                    found: sha256_fingerprint(root)?,
                });
            }
            verify_chain(
                &chain[..chain.len() - 1],
                Trust::Anchors(std::slice::from_ref(root)),
                now,
            )
        }
        Trust::Anchors(anchors) => {
            let mut store = X509StoreBuilder::new()?;
            for a in anchors {
                store.add_cert(a.clone())?;
            }
            let mut param = X509VerifyParam::new()?;
            param.set_time(now);
            store.set_param(&param)?;
            let store = store.build();
            let mut untrusted = Stack::new()?;
            for c in &chain[1..] {
                untrusted.push(c.clone())?;
            }
            let mut ctx = X509StoreContext::new()?;
            let (ok, reason) = ctx.init(&store, leaf, &untrusted, |c| {
                let ok = c.verify_cert()?;
                Ok((ok, c.error().error_string().to_string()))
            })?;
            if ok {
                Ok(())
            } else {
                Err(Error::UntrustedSigner(reason))
            }
        }
    }
}

/// Parses concatenated PEM certificates, bounded to `max` certificates.
pub fn parse_chain(pem: &[u8], max: usize) -> Result<Vec<X509>> {
    let chain = X509::stack_from_pem(pem).map_err(|e| Error::BadCertificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(Error::BadCertificate(
            "signer.pem holds no certificate".into(),
        ));
    }
    if chain.len() > max {
        return Err(Error::BadCertificate(format!(
            "signer.pem holds {} certificates, at most {max} are accepted",
            chain.len()
        )));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(cn: &'a str, role: CertRole<'a>, now: i64) -> CertSpec<'a> {
        CertSpec {
            common_name: cn,
            organization: "test",
            role,
            now,
            days: 365,
        }
    }

    #[test]
    fn chain_to_anchor_verifies_and_untrusted_does_not() {
        let now = 1_800_000_000;
        let ca_key = new_p256_key().unwrap();
        let ca = self_signed(&ca_key, &spec("ca", CertRole::Ca, now)).unwrap();
        let leaf_key = new_p256_key().unwrap();
        let leaf = issue(
            &ca,
            &ca_key,
            &leaf_key,
            &spec("leaf", CertRole::Signer, now),
        )
        .unwrap();
        verify_chain(
            std::slice::from_ref(&leaf),
            Trust::Anchors(std::slice::from_ref(&ca)),
            now,
        )
        .unwrap();

        let other_key = new_p256_key().unwrap();
        let other = self_signed(&other_key, &spec("other", CertRole::Ca, now)).unwrap();
        let err =
            verify_chain(std::slice::from_ref(&leaf), Trust::Anchors(&[other]), now).unwrap_err();
        assert!(matches!(err, Error::UntrustedSigner(_)), "{err}");

        // Outside its validity, the chain does not verify.
        let later = now + 400 * 86_400;
        let err = verify_chain(&[leaf], Trust::Anchors(&[ca]), later).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn a_fingerprint_pins_the_root_the_chain_carries() {
        let now = 1_800_000_000;
        let ca_key = new_p256_key().unwrap();
        let ca = self_signed(&ca_key, &spec("ca", CertRole::Ca, now)).unwrap();
        let key = new_p256_key().unwrap();
        let leaf = issue(&ca, &ca_key, &key, &spec("leaf", CertRole::Signer, now)).unwrap();
        let fp = parse_fingerprint(&sha256_fingerprint(&ca).unwrap()).unwrap();
        let chain = [leaf.clone(), ca.clone()];
        verify_chain(&chain, Trust::Fingerprint(Some(&fp)), now).unwrap();
        // No fingerprint, or another: refused, naming the fingerprint found.
        let err = verify_chain(&chain, Trust::Fingerprint(None), now).unwrap_err();
        assert!(
            matches!(&err, Error::UnpinnedCa { found } if *found == sha256_fingerprint(&ca).unwrap()),
            "{err}"
        );
        let mut other = fp;
        other[0] ^= 1;
        assert!(matches!(
            verify_chain(&chain, Trust::Fingerprint(Some(&other)), now),
            Err(Error::UnpinnedCa { .. })
        ));
        // No CA carried: refused.
        assert!(verify_chain(
            std::slice::from_ref(&leaf),
            Trust::Fingerprint(Some(&fp)),
            now
        )
        .is_err());
        // A CA that did not issue the leaf, with its own fingerprint: refused.
        let other_key = new_p256_key().unwrap();
        let other = self_signed(&other_key, &spec("other", CertRole::Ca, now)).unwrap();
        let ofp = parse_fingerprint(&sha256_fingerprint(&other).unwrap()).unwrap();
        assert!(matches!(
            verify_chain(&[leaf, other], Trust::Fingerprint(Some(&ofp)), now),
            Err(Error::UntrustedSigner(_))
        ));
    }

    #[test]
    fn fingerprints_in_the_forms_operators_copy() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        for text in [
            format!("SHA256:{colons}"),
            format!("sha256 Fingerprint={colons}"),
            hex.clone(),
            format!("  sha256:{hex}\n"),
        ] {
            assert_eq!(parse_fingerprint(&text).unwrap(), [0xab; 32], "{text}");
        }
        for bad in ["", "SHA256:", "SHA1:AB", &"ab".repeat(31), &"zz".repeat(32)] {
            assert!(
                matches!(parse_fingerprint(bad), Err(Error::BadFingerprint(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bundle_roles_are_read_back_and_only_ours_count() {
        let now = 1_800_000_000;
        let ca_key = new_p256_key().unwrap();
        let ca = self_signed(&ca_key, &spec("ca", CertRole::Ca, now)).unwrap();
        let key = new_p256_key().unwrap();
        for role in SignerRole::ALL {
            let cert = issue(
                &ca,
                &ca_key,
                &key,
                &spec("x", CertRole::Bundle(role, "id-1"), now),
            )
            .unwrap();
            assert_eq!(
                bundle_role(&cert).unwrap(),
                Some((role, "id-1".to_string()))
            );
        }
        assert_eq!(bundle_role(&ca).unwrap(), None);
        let plain = issue(&ca, &ca_key, &key, &spec("x", CertRole::Signer, now)).unwrap();
        assert_eq!(bundle_role(&plain).unwrap(), None);
    }

    #[test]
    fn signatures() {
        let key = new_p256_key().unwrap();
        let cert = self_signed(&key, &spec("s", CertRole::Signer, 1_800_000_000)).unwrap();
        let s = Signer::new(key, vec![cert.clone()]).unwrap();
        let sig = s.sign(b"hello").unwrap();
        verify_signature(&cert, b"hello", &sig).unwrap();
        assert!(matches!(
            verify_signature(&cert, b"hellO", &sig),
            Err(Error::BadSignature)
        ));
        verify_chain(&[cert], Trust::SelfSigned, 1_800_000_000).unwrap();
    }

    #[test]
    fn signer_refuses_a_chain_of_another_key() {
        let key = new_p256_key().unwrap();
        let other = new_p256_key().unwrap();
        let cert = self_signed(&other, &spec("s", CertRole::Signer, 0)).unwrap();
        assert!(Signer::new(key, vec![cert]).is_err());
    }
}
