//! What each OpenSSL operation on the device-registration path costs, per call:
//!
//!     cargo run --release -p satellite --example crypto_costs
//!
//! Written to find where a registration's CPU goes (see BENCHMARKS.md).

use std::time::Instant;
fn t<F: FnMut()>(name: &str, n: u32, mut f: F) {
    let s = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{name:<28} {:>8.1} us",
        s.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
fn main() {
    use openssl::hash::MessageDigest;
    let key = sync_format::pki::new_p256_key().unwrap();
    let mut b = openssl::x509::X509Req::builder().unwrap();
    b.set_pubkey(&key).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let csr = String::from_utf8(b.build().to_pem().unwrap()).unwrap();
    let ca_key = sync_format::pki::new_p256_key().unwrap();
    let ca = sync_format::pki::self_signed(
        &ca_key,
        &sync_format::pki::CertSpec {
            common_name: "ca",
            organization: "o",
            role: sync_format::pki::CertRole::Ca,
            now: 1_800_000_000,
            days: 10,
        },
    )
    .unwrap();
    let n = 2000;
    t("X509Req::from_pem", n, || {
        openssl::x509::X509Req::from_pem(csr.as_bytes()).unwrap();
    });
    let req = openssl::x509::X509Req::from_pem(csr.as_bytes()).unwrap();
    t("csr.public_key", n, || {
        req.public_key().unwrap();
    });
    let pk = req.public_key().unwrap();
    t("csr.verify", n, || {
        assert!(req.verify(&pk).unwrap());
    });
    t("public_key_to_pem", n, || {
        pk.public_key_to_pem().unwrap();
    });
    t("DeviceKey::from_pkey", n, || {
        satellite::crypto::DeviceKey::from_pkey(&pk).unwrap();
    });
    t("issue cert (builder+sign)", n, || {
        let mut b = openssl::x509::X509::builder().unwrap();
        b.set_pubkey(&pk).unwrap();
        b.set_issuer_name(ca.subject_name()).unwrap();
        b.sign(&ca_key, MessageDigest::sha256()).unwrap();
        b.build().to_pem().unwrap();
    });
    let ec = ca_key.ec_key().unwrap();
    t("sign_p256 (EcdsaSig)", n, || {
        satellite::crypto::sign_p256(&ec, b"hello world").unwrap();
    });
    t("EVP Signer sign", n, || {
        let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &ca_key).unwrap();
        s.update(b"hello").unwrap();
        s.sign_to_vec().unwrap();
    });
    let dk = satellite::crypto::DeviceKey::from_pkey(&pk).unwrap();
    let sig = satellite::crypto::sign_p256(&key.ec_key().unwrap(), b"body").unwrap();
    t("DeviceKey::verify", n, || {
        assert!(dk.verify(b"body", &sig).unwrap());
    });
    t("new_p256_key", n, || {
        sync_format::pki::new_p256_key().unwrap();
    });
    t("der::p256_csr (fast path)", n, || {
        satellite::der::p256_csr(&csr).unwrap().unwrap();
    });
    let satellite::crypto::DeviceKey::P256(point) =
        satellite::der::p256_csr(&csr).unwrap().unwrap()
    else {
        panic!()
    };
    let issuer = ca.subject_name().to_der().unwrap();
    let ca_ec = ca_key.ec_key().unwrap();
    t("der::identity_certificate", n, || {
        satellite::der::identity_certificate(
            &ca_ec,
            &issuer,
            &point,
            "PID:X SN:Y",
            [7; 16],
            1_800_000_000,
            1_900_000_000,
        )
        .unwrap();
    });
    t("make CSR (client)", n, || {
        let mut b = openssl::x509::X509Req::builder().unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build().to_pem().unwrap();
    });
}
