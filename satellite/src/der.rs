//! The registration hot path's X.509 work in plain DER: reading an ECDSA P-256 certificate
//! signing request and writing a device identity certificate.
//!
//! Through OpenSSL 3.0, parsing a PEM CSR costs about 300 µs and building and signing a
//! certificate about 490 µs, almost all of it in provider look-ups and decoders
//! (`cargo run --release -p satellite --example crypto_costs`); a registration does both.
//! For the common case (a P-256 key signing with ECDSA/SHA-256) this module does the same
//! work directly: a strict DER reader (definite minimal lengths only, nothing trailing), a
//! fixed certificate template, and the ECDSA operations of [`crate::crypto`]. Anything else
//! (RSA keys, unusual structures) goes through OpenSSL as before, and every certificate
//! written here is checked by OpenSSL in the tests.

use crate::crypto::{sign_p256, DeviceKey};
use crate::error::{Error, Result};
use openssl::ec::EcKey;
use openssl::pkey::Private;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const BOOLEAN: u8 = 0x01;

/// 1.2.840.10045.4.3.2 ecdsa-with-SHA256
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// 1.2.840.10045.2.1 id-ecPublicKey
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 prime256v1
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// One element: its tag, its content, and the bytes of the whole element.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Reads one DER element from the front of `input`; returns it and the rest.
fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags never appear in what we read
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        if bytes[0] == 0 {
            return None; // not minimal
        }
        let len = bytes.iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        if len < 0x80 {
            return None; // not minimal
        }
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    let (content, rest) = rest.split_at(len);
    Some((
        Tlv {
            tag,
            content,
            whole: &input[..header + len],
        },
        rest,
    ))
}

/// Reads an element of `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
    read(input).filter(|(t, _)| t.tag == tag)
}

/// The DER of a PEM block labelled `label`.
pub fn pem_to_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem
        .trim()
        .strip_prefix(begin.as_str())?
        .strip_suffix(end.as_str())?;
    let b64: String = body.split_whitespace().collect();
    openssl::base64::decode_block(&b64).ok()
}

/// A P-256 CSR, verified: the key it certifies (its signature is by that key).
/// `None` when the CSR is not of the P-256/ECDSA-SHA256 form this reader handles; the
/// caller then uses OpenSSL. `Err` when it is of that form but its signature is wrong.
pub fn p256_csr(pem: &str) -> Option<Result<DeviceKey>> {
    let der = pem_to_der(pem, "CERTIFICATE REQUEST")?;
    let (csr, rest) = expect(&der, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (info, after_info) = expect(csr.content, SEQUENCE)?;
    let (alg, after_alg) = expect(after_info, SEQUENCE)?;
    let (sig, end) = expect(after_alg, BIT_STRING)?;
    if !end.is_empty() {
        return None;
    }
    let (alg_oid, alg_rest) = expect(alg.content, OID)?;
    if alg_oid.content != OID_ECDSA_SHA256 || !alg_rest.is_empty() {
        return None;
    }
    // certificationRequestInfo: version 0, subject, SPKI, [0] attributes
    let (version, r) = expect(info.content, INTEGER)?;
    if version.content != [0] {
        return None;
    }
    let (_subject, r) = expect(r, SEQUENCE)?;
    let (spki, r) = expect(r, SEQUENCE)?;
    let (_attributes, r) = read(r).filter(|(t, _)| t.tag == 0xa0)?;
    if !r.is_empty() {
        return None;
    }
    let (spki_alg, r) = expect(spki.content, SEQUENCE)?;
    let (bits, r2) = expect(r, BIT_STRING)?;
    if !r2.is_empty() {
        return None;
    }
    let (o1, o) = expect(spki_alg.content, OID)?;
    let (o2, o) = expect(o, OID)?;
    if o1.content != OID_EC_PUBLIC_KEY || o2.content != OID_P256 || !o.is_empty() {
        return None;
    }
    let point = bits.content.strip_prefix(&[0u8])?;
    if point.len() != 65 || point[0] != 0x04 {
        return None;
    }
    let signature = sig.content.strip_prefix(&[0u8])?;
    let key = DeviceKey::P256(point.to_vec());
    Some(match key.verify(info.whole, signature) {
        Ok(true) => Ok(key),
        Ok(false) => Err(Error::invalid("the CSR is not signed by its own key")),
        // Not a point on the curve, or another decoding failure.
        Err(_) => Err(Error::invalid(
            "the CSR's public key is not a valid P-256 key",
        )),
    })
}

/// Signature algorithms a CSR may use: ECDSA or RSA PKCS#1 v1.5 with SHA-256, -384 or -512.
/// SHA-1 and MD5 (collisions can be made) and anything else are refused.
const CSR_SIGNATURE_ALGORITHMS: &[&[u8]] = &[
    OID_ECDSA_SHA256,
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03], // ecdsa-with-SHA384
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04], // ecdsa-with-SHA512
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b], // sha256WithRSAEncryption
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
];

/// Whether a CSR (PEM) is signed with one of [`CSR_SIGNATURE_ALGORITHMS`]; `None` when its
/// outer structure cannot be read.
pub fn csr_signature_accepted(pem: &str) -> Option<bool> {
    let der = pem_to_der(pem, "CERTIFICATE REQUEST")?;
    let (csr, _) = expect(&der, SEQUENCE)?;
    let (_info, after_info) = expect(csr.content, SEQUENCE)?;
    let (alg, _) = expect(after_info, SEQUENCE)?;
    let (oid, _) = expect(alg.content, OID)?;
    Some(CSR_SIGNATURE_ALGORITHMS.contains(&oid.content))
}

// ---- writing -------------------------------------------------------------------------

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// UTCTime before 2050, GeneralizedTime from then on (RFC 5280 4.1.2.5).
fn time(ts: i64) -> Result<Vec<u8>> {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp(ts, 0)
        .ok_or_else(|| Error::Internal(format!("time {ts} out of range")))?;
    Ok(if t.format("%Y").to_string().as_str() < "2050" {
        tlv(UTC_TIME, t.format("%y%m%d%H%M%SZ").to_string().as_bytes())
    } else {
        tlv(
            GENERALIZED_TIME,
            t.format("%Y%m%d%H%M%SZ").to_string().as_bytes(),
        )
    })
}

fn name_attr(oid: &[u8], value: &str) -> Vec<u8> {
    tlv(
        SET,
        &seq(&[&tlv(OID, oid), &tlv(UTF8_STRING, value.as_bytes())]),
    )
}

/// A device identity certificate for a P-256 `point`, issued by the CA whose subject name
/// is `issuer_der` and whose key is `ca_key`. `serial` is 16 random bytes. Returns the PEM
/// and the serial in hex.
pub fn identity_certificate(
    ca_key: &EcKey<Private>,
    issuer_der: &[u8],
    point: &[u8],
    common_name: &str,
    mut serial: [u8; 16],
    not_before: i64,
    not_after: i64,
) -> Result<(String, String)> {
    serial[0] = (serial[0] & 0x7f) | 0x01; // positive, and no leading zero byte
    let alg = seq(&[&tlv(OID, OID_ECDSA_SHA256)]);
    let subject = seq(&[
        &name_attr(&[0x55, 0x04, 0x03], common_name),
        &name_attr(&[0x55, 0x04, 0x0a], "satellite product instance"),
    ]);
    let mut key_bits = vec![0u8];
    key_bits.extend_from_slice(point);
    let spki = seq(&[
        &seq(&[&tlv(OID, OID_EC_PUBLIC_KEY), &tlv(OID, OID_P256)]),
        &tlv(BIT_STRING, &key_bits),
    ]);
    let critical = tlv(BOOLEAN, &[0xff]);
    let extensions = seq(&[
        // basicConstraints: critical, CA:FALSE
        &seq(&[
            &tlv(OID, &[0x55, 0x1d, 0x13]),
            &critical,
            &tlv(OCTET_STRING, &seq(&[])),
        ]),
        // keyUsage: critical, digitalSignature
        &seq(&[
            &tlv(OID, &[0x55, 0x1d, 0x0f]),
            &critical,
            &tlv(OCTET_STRING, &tlv(BIT_STRING, &[0x07, 0x80])),
        ]),
        // extKeyUsage: clientAuth
        &seq(&[
            &tlv(OID, &[0x55, 0x1d, 0x25]),
            &tlv(
                OCTET_STRING,
                &seq(&[&tlv(OID, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02])]),
            ),
        ]),
    ]);
    let tbs = seq(&[
        &tlv(0xa0, &tlv(INTEGER, &[2])),
        &tlv(INTEGER, &serial),
        &alg,
        issuer_der,
        &seq(&[&time(not_before)?, &time(not_after)?]),
        &subject,
        &spki,
        &tlv(0xa3, &extensions),
    ]);
    let mut sig_bits = vec![0u8];
    sig_bits.extend_from_slice(&sign_p256(ca_key, &tbs)?);
    let cert = seq(&[&tbs, &alg, &tlv(BIT_STRING, &sig_bits)]);
    let b64 = openssl::base64::encode_block(&cert);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    Ok((pem, hex::encode_upper(serial)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::x509::{X509Req, X509};
    use sync_format::pki::{self, CertRole, CertSpec};

    fn csr_of(key: &openssl::pkey::PKey<Private>, cn: &str) -> String {
        let mut b = X509Req::builder().unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        b.set_subject_name(&name.build()).unwrap();
        b.set_pubkey(key).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        String::from_utf8(b.build().to_pem().unwrap()).unwrap()
    }

    #[test]
    fn reads_the_key_of_an_openssl_csr() {
        let key = pki::new_p256_key().unwrap();
        let pem = csr_of(&key, "PID:X SN:Y");
        let got = p256_csr(&pem).unwrap().unwrap();
        assert_eq!(
            got,
            DeviceKey::from_pkey(
                &openssl::pkey::PKey::public_key_from_pem(&key.public_key_to_pem().unwrap())
                    .unwrap()
            )
            .unwrap()
        );
    }

    #[test]
    fn a_csr_signed_by_another_key_is_refused_and_odd_ones_fall_back() {
        let key = pki::new_p256_key().unwrap();
        let other = pki::new_p256_key().unwrap();
        // Subject key of `key`, signed by `other`.
        let mut b = X509Req::builder().unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&other, MessageDigest::sha256()).unwrap();
        let pem = String::from_utf8(b.build().to_pem().unwrap()).unwrap();
        assert!(matches!(p256_csr(&pem), Some(Err(_))));
        // Not a CSR, truncated, RSA: not this reader's (OpenSSL decides).
        assert!(p256_csr("hello").is_none());
        let good = csr_of(&key, "x");
        let der = pem_to_der(&good, "CERTIFICATE REQUEST").unwrap();
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            let b64 = openssl::base64::encode_block(&der[..cut]);
            let pem = format!(
                "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
            );
            assert!(!matches!(p256_csr(&pem), Some(Ok(_))), "cut at {cut}");
        }
        let rsa =
            openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        assert!(p256_csr(&csr_of(&rsa, "r")).is_none());
    }

    #[test]
    fn every_byte_flip_of_a_csr_is_refused_or_falls_back() {
        let key = pki::new_p256_key().unwrap();
        let der = pem_to_der(&csr_of(&key, "PID:X SN:Y"), "CERTIFICATE REQUEST").unwrap();
        for i in 0..der.len() {
            let mut d = der.clone();
            d[i] ^= 0x01;
            let b64 = openssl::base64::encode_block(&d);
            let pem = format!(
                "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
            );
            assert!(
                !matches!(p256_csr(&pem), Some(Ok(_))),
                "byte {i} flipped, still accepted"
            );
        }
    }

    #[test]
    fn certificates_written_here_verify_with_openssl() {
        let now = 1_800_000_000;
        let ca_key = pki::new_p256_key().unwrap();
        let ca = pki::self_signed(
            &ca_key,
            &CertSpec {
                common_name: "device CA",
                organization: "t",
                role: CertRole::Ca,
                now,
                days: 30_000,
            },
        )
        .unwrap();
        let dev = pki::new_p256_key().unwrap();
        let DeviceKey::P256(point) = p256_csr(&csr_of(&dev, "x")).unwrap().unwrap() else {
            panic!()
        };
        for (nb, na) in [(now, now + 365 * 86_400), (2_600_000_000, 2_700_000_000)] {
            let (pem, serial) = identity_certificate(
                &ca_key.ec_key().unwrap(),
                &ca.subject_name().to_der().unwrap(),
                &point,
                "PID:ISR4431/K9 SN:FOC1",
                [0xff; 16],
                nb,
                na,
            )
            .unwrap();
            let cert = X509::from_pem(pem.as_bytes()).unwrap();
            assert!(
                cert.verify(&ca.public_key().unwrap()).unwrap(),
                "signed by the CA"
            );
            assert!(cert.public_key().unwrap().public_eq(&dev));
            assert_eq!(
                cert.not_after()
                    .compare(&openssl::asn1::Asn1Time::from_unix(na).unwrap())
                    .unwrap(),
                std::cmp::Ordering::Equal
            );
            assert_eq!(
                cert.not_before()
                    .compare(&openssl::asn1::Asn1Time::from_unix(nb).unwrap())
                    .unwrap(),
                std::cmp::Ordering::Equal
            );
            assert_eq!(
                cert.serial_number()
                    .to_bn()
                    .unwrap()
                    .to_hex_str()
                    .unwrap()
                    .to_string(),
                serial
            );
            let cn = cert
                .subject_name()
                .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                .next()
                .unwrap();
            assert_eq!(cn.data().to_string().unwrap(), "PID:ISR4431/K9 SN:FOC1");
            assert_eq!(
                cert.issuer_name().to_der().unwrap(),
                ca.subject_name().to_der().unwrap()
            );
            // And the chain verifies the way a device (or `openssl verify`) would check it.
            let mut store = openssl::x509::store::X509StoreBuilder::new().unwrap();
            store.add_cert(ca.clone()).unwrap();
            let mut param = openssl::x509::verify::X509VerifyParam::new().unwrap();
            param.set_time(nb + 10);
            store.set_param(&param).unwrap();
            let store = store.build();
            let mut ctx = openssl::x509::X509StoreContext::new().unwrap();
            let chain = openssl::stack::Stack::new().unwrap();
            let (ok, why) = ctx
                .init(&store, &cert, &chain, |c| {
                    Ok((c.verify_cert()?, c.error().error_string().to_string()))
                })
                .unwrap();
            assert!(ok, "chain verifies: {why}");
        }
    }
}
