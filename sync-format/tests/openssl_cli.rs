//! The verification script of docs/bundle-format.md, run with the real `openssl` command
//! line on bundles this library wrote: it succeeds on a good bundle and fails on tampered
//! ones.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use sync_format::manifest::{BundleKind, Header};
use sync_format::payload::{PiOp, PiRecord, SyncCounts, SyncRequest};
use sync_format::pki::{self, CertRole, CertSpec, Signer, SignerRole};
use sync_format::BundleWriter;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn spec<'a>(cn: &'a str, role: CertRole<'a>) -> CertSpec<'a> {
    CertSpec {
        common_name: cn,
        organization: "test",
        role,
        now: now(),
        days: 30,
    }
}

/// The script between the verify-script markers of the docs.
fn script() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/bundle-format.md"
    ))
    .unwrap();
    let start = doc.find("<!-- verify-script:start -->").unwrap();
    let end = doc.find("<!-- verify-script:end -->").unwrap();
    let block = &doc[start..end];
    let code_start = block.find("```sh\n").unwrap() + 6;
    let code_end = block.rfind("```").unwrap();
    block[code_start..code_end].to_string()
}

fn run_script(bundle: &Path, ca: &Path) -> (bool, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script())
        .env("BUNDLE", bundle)
        .env("CA", ca)
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A sync request from "sat-1" (a registration request when `kind` says so), signed by `key`.
fn bundle(kind: BundleKind, key: PKey<Private>, chain: Vec<X509>) -> Vec<u8> {
    let h = Header {
        kind,
        bundle_id: "b-1".into(),
        sender: "sat-1".into(),
        receiver: "cloud-1".into(),
        sequence: 1,
        created_at: now(),
        not_after: now() + 3600,
        in_reply_to: None,
    };
    let mut w = BundleWriter::new(Cursor::new(Vec::new()), h).unwrap();
    w.payload(&SyncRequest {
        payload_version: 1,
        satellite_id: "sat-1".into(),
        full: true,
        from_change: 0,
        to_change: 3,
        from_event: 0,
        to_event: 0,
        counts: SyncCounts::default(),
        renewal_csr_pem: None,
    })
    .unwrap();
    if kind != BundleKind::SyncRequest {
        return w
            .finish(&Signer::new(key, chain).unwrap())
            .unwrap()
            .0
            .into_inner();
    }
    let mut n = w.ndjson("product_instances.ndjson").unwrap();
    for i in 0..3 {
        n.write(&PiRecord {
            change: i,
            op: PiOp::Upsert,
            pi: format!("pi-{i}"),
            va: "Lab".into(),
            pid: "PID".into(),
            sn: format!("SN{i}"),
            name: format!("dev-{i}"),
            registered_at: now(),
            last_contact_at: now(),
        })
        .unwrap();
    }
    n.finish();
    w.finish(&Signer::new(key, chain).unwrap())
        .unwrap()
        .0
        .into_inner()
}

#[test]
fn documented_openssl_commands_verify_a_bundle_and_reject_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = pki::new_p256_key().unwrap();
    let ca = pki::self_signed(&ca_key, &spec("cloud CA", CertRole::Ca)).unwrap();
    let key = pki::new_p256_key().unwrap();
    let sat = CertRole::Bundle(SignerRole::Satellite, "sat-1");
    let cert = pki::issue(&ca, &ca_key, &key, &spec("satellite", sat)).unwrap();
    let bytes = bundle(BundleKind::SyncRequest, key.clone(), vec![cert]);

    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.to_pem().unwrap()).unwrap();
    let good = dir.path().join("good.zip");
    std::fs::write(&good, &bytes).unwrap();
    let (ok, out) = run_script(&good, &ca_path);
    assert!(ok, "verification of a good bundle failed:\n{out}");
    assert!(out.contains("signer.pem: OK"), "{out}");
    assert!(out.contains("signer role: satellite sat-1"), "{out}");
    assert_eq!(
        out.matches("Verified OK").count(),
        2,
        "manifest and seal: {out}"
    );
    assert!(
        out.contains("payload.json: OK") && out.contains("product_instances.ndjson: OK"),
        "{out}"
    );

    // Another CA: the chain does not verify.
    let other_key = pki::new_p256_key().unwrap();
    let other = pki::self_signed(&other_key, &spec("other CA", CertRole::Ca)).unwrap();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other.to_pem().unwrap()).unwrap();
    let (ok, out) = run_script(&good, &other_path);
    assert!(!ok, "an untrusted CA must fail:\n{out}");

    // Signed under the right CA by a certificate of the wrong role, of no role, or for
    // another satellite: the role check fails.
    for (what, role) in [
        (
            "the cloud's role",
            CertRole::Bundle(SignerRole::Cloud, "sat-1"),
        ),
        ("no role", CertRole::Signer),
        (
            "another satellite",
            CertRole::Bundle(SignerRole::Satellite, "sat-12"),
        ),
    ] {
        let cert = pki::issue(&ca, &ca_key, &key, &spec("forger", role)).unwrap();
        let p = dir.path().join("forged.zip");
        std::fs::write(&p, bundle(BundleKind::SyncRequest, key.clone(), vec![cert])).unwrap();
        let (ok, out) = run_script(&p, &ca_path);
        assert!(!ok, "a signer of {what} must fail:\n{out}");
        assert!(out.contains("signer.pem: OK"), "only the role fails: {out}");
    }

    // Any single changed byte fails: one in the stored manifest (signature), one in the
    // zip metadata (seal), one in the compressed payload.
    let manifest_at = bytes
        .windows(7)
        .position(|w| w == b"cloud-1")
        .expect("manifest is stored readable");
    for (what, at) in [
        ("manifest", manifest_at + 6),
        ("zip header", 10usize),
        ("payload data", 60usize),
    ] {
        let mut t = bytes.clone();
        t[at] ^= 0x01;
        let p = dir.path().join("tampered.zip");
        std::fs::write(&p, &t).unwrap();
        let (ok, out) = run_script(&p, &ca_path);
        assert!(!ok, "tampered {what} must fail:\n{out}");
    }
}

#[test]
fn a_self_signed_registration_signer_verifies_against_itself() {
    let dir = tempfile::tempdir().unwrap();
    let key = pki::new_p256_key().unwrap();
    let cert = pki::self_signed(&key, &spec("satellite", CertRole::Signer)).unwrap();
    let bytes = bundle(BundleKind::RegistrationRequest, key, vec![cert.clone()]);
    let p = dir.path().join("req.zip");
    std::fs::write(&p, &bytes).unwrap();
    let ca = dir.path().join("self.pem");
    std::fs::write(&ca, cert.to_pem().unwrap()).unwrap();
    let (ok, out) = run_script(&p, &ca);
    assert!(ok, "{out}");
}
