//! Round trips of every kind, the hostile-bundle corpus (each refusal its own error), and a
//! property test that random mutations never panic and never verify.

use std::io::{Cursor, Read, Write};
use std::sync::OnceLock;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use proptest::prelude::*;
use zip::write::SimpleFileOptions;

use crate::manifest::{BundleKind, Header, ANY_RECEIVER};
use crate::payload::*;
use crate::pki::{self, CertRole, CertSpec, Signer, SignerRole, Trust};
use crate::{open, BundleWriter, Error, Limits, ReadOptions};

const NOW: i64 = 1_800_000_000;
const SAT: &str = "sat-0001";
const CLOUD: &str = "cloud-01";

struct Fixture {
    ca: X509,
    ca_key: PKey<Private>,
    /// The cloud's bundle signer (for CLOUD).
    signer_key: PKey<Private>,
    signer_cert: X509,
    /// A registered satellite (SAT).
    sat_key: PKey<Private>,
    sat_cert: X509,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let spec = |cn, role| CertSpec {
            common_name: cn,
            organization: "test",
            role,
            now: NOW,
            days: 365,
        };
        let ca_key = pki::new_p256_key().unwrap();
        let ca = pki::self_signed(&ca_key, &spec("cloud CA", CertRole::Ca)).unwrap();
        let signer_key = pki::new_p256_key().unwrap();
        let signer_cert = pki::issue(
            &ca,
            &ca_key,
            &signer_key,
            &spec("cloud signer", CertRole::Bundle(SignerRole::Cloud, CLOUD)),
        )
        .unwrap();
        let sat_key = pki::new_p256_key().unwrap();
        let sat_cert = pki::issue(
            &ca,
            &ca_key,
            &sat_key,
            &spec("satellite", CertRole::Bundle(SignerRole::Satellite, SAT)),
        )
        .unwrap();
        Fixture {
            ca,
            ca_key,
            signer_key,
            signer_cert,
            sat_key,
            sat_cert,
        }
    })
}

/// The cloud's bundle signer.
fn signer() -> Signer {
    let f = fixture();
    Signer::new(f.signer_key.clone(), vec![f.signer_cert.clone()]).unwrap()
}

/// The satellite SAT, registered.
fn sat_signer() -> Signer {
    let f = fixture();
    Signer::new(f.sat_key.clone(), vec![f.sat_cert.clone()]).unwrap()
}

fn header(kind: BundleKind) -> Header {
    let sender = if kind == BundleKind::SyncRequest {
        SAT
    } else {
        CLOUD
    };
    Header {
        kind,
        bundle_id: "b-1".into(),
        sender: sender.into(),
        receiver: SAT.into(),
        sequence: 7,
        created_at: NOW,
        not_after: NOW + 86_400,
        in_reply_to: Some("req-1".into()),
    }
}

fn opts(kind: BundleKind) -> ReadOptions<'static> {
    ReadOptions::new(
        kind,
        Trust::Anchors(std::slice::from_ref(&fixture().ca)),
        Some(SAT),
        NOW + 60,
    )
}

fn pi(i: u64) -> PiRecord {
    PiRecord {
        change: i,
        op: PiOp::Upsert,
        pi: format!("pi-{i}"),
        va: "Lab, \"east\" — Ünïcode".into(),
        pid: "ISR4431".into(),
        sn: format!("FOC{i:08}"),
        name: format!("router-{i}"),
        registered_at: NOW,
        last_contact_at: NOW,
    }
}

fn sync_request_payload(n: u64) -> SyncRequest {
    SyncRequest {
        payload_version: 1,
        satellite_id: SAT.into(),
        full: true,
        from_change: 0,
        to_change: n,
        from_event: 0,
        to_event: 0,
        counts: SyncCounts {
            product_instances: n,
            ..SyncCounts::default()
        },
        renewal_csr_pem: None,
    }
}

/// A valid sync request with `n` product instances.
fn sync_request(h: Header, n: u64) -> Vec<u8> {
    let mut w = BundleWriter::new(Cursor::new(Vec::new()), h).unwrap();
    w.payload(&sync_request_payload(n)).unwrap();
    let mut pis = w.ndjson("product_instances.ndjson").unwrap();
    for i in 0..n {
        pis.write(&pi(i)).unwrap();
    }
    assert_eq!(pis.finish(), n);
    w.finish(&sat_signer()).unwrap().0.into_inner()
}

fn valid() -> &'static [u8] {
    static V: OnceLock<Vec<u8>> = OnceLock::new();
    V.get_or_init(|| sync_request(header(BundleKind::SyncRequest), 20))
}

fn open_bytes(bytes: &[u8], o: &ReadOptions<'_>) -> Result<(), Error> {
    let mut b = open(Cursor::new(bytes.to_vec()), o)?;
    let _: SyncRequest = b.payload()?;
    for r in b.ndjson::<PiRecord>("product_instances.ndjson")? {
        r?;
    }
    Ok(())
}

fn refuse(bytes: &[u8]) -> Error {
    open_bytes(bytes, &opts(BundleKind::SyncRequest)).expect_err("must be refused")
}

/// The entries of a zip, in order.
fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().unwrap().to_string(), data)
        })
        .collect()
}

/// A well-formed zip (deflate, valid CRCs) of `entries`, written by the zip crate.
fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        z.start_file(name.as_str(), SimpleFileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A stored zip written byte by byte, for what the zip crate refuses to write: duplicate
/// names, path names, symlinks. Each entry: (name, data, unix mode).
fn raw_zip(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data, mode) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let len = data.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&len.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&(mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_len = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// The valid bundle's entries as a raw zip, with `extra` appended.
fn raw_with(extra: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let e = entries(valid());
    let mut all: Vec<(&str, &[u8], u32)> = e
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice(), 0o100644))
        .collect();
    all.extend_from_slice(extra);
    raw_zip(&all)
}

/// Re-signs a bundle whose manifest JSON was changed by `f`, so the change is signed by a
/// trusted key: what is left to refuse it is the reader's own checks.
fn resigned(f: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let mut e = entries(valid());
    let m = e.iter_mut().find(|(n, _)| n == "manifest.json").unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&m.1).unwrap();
    f(&mut v);
    m.1 = serde_json::to_vec_pretty(&v).unwrap();
    let sig = sat_signer().sign(&m.1).unwrap();
    let s = e.iter_mut().find(|(n, _)| n == "manifest.sig").unwrap();
    s.1 = sig;
    rezip(&e)
}

// ---- round trips ---------------------------------------------------------------------

#[test]
fn every_kind_round_trips() {
    let account = Account {
        name: "Acme".into(),
        export_controlled_allowed: true,
    };
    let vas = vec![VirtualAccount {
        name: "Lab".into(),
        description: "the lab".into(),
        licenses: vec![LicenseLine {
            tag: "regid.2017-01.com.example.dna".into(),
            name: "DNA Advantage".into(),
            description: String::new(),
            kind: LicenseKind::Term,
            quantity: 10,
            start: Some(NOW),
            end: Some(NOW + 365 * 86_400),
            restricted: false,
        }],
    }];

    // registration request: self-signed, to any receiver
    let key = pki::new_p256_key().unwrap();
    let cert = pki::self_signed(
        &key,
        &CertSpec {
            common_name: "sat",
            organization: "t",
            role: CertRole::Signer,
            now: NOW,
            days: 30,
        },
    )
    .unwrap();
    let req = RegistrationRequest {
        payload_version: 1,
        satellite_id: SAT.into(),
        name: "site-a".into(),
        hostname: "sat.example".into(),
        software_version: "0.1.0".into(),
        public_key_pem: String::from_utf8(key.public_key_to_pem().unwrap()).unwrap(),
    };
    let mut h = header(BundleKind::RegistrationRequest);
    h.sender = SAT.into();
    h.receiver = ANY_RECEIVER.into();
    let mut w = BundleWriter::new(Cursor::new(Vec::new()), h).unwrap();
    w.payload(&req).unwrap();
    let bytes = w
        .finish(&Signer::new(key, vec![cert]).unwrap())
        .unwrap()
        .0
        .into_inner();
    let o = ReadOptions::new(
        BundleKind::RegistrationRequest,
        Trust::SelfSigned,
        None,
        NOW,
    );
    let mut b = open(Cursor::new(bytes), &o).unwrap();
    assert_eq!(b.payload::<RegistrationRequest>().unwrap(), req);
    assert_eq!(b.manifest().sender, SAT);

    // authorization
    let auth = RegistrationAuthorization {
        payload_version: 1,
        satellite_id: SAT.into(),
        satellite_name: "site-a".into(),
        satellite_certificate_pem: "PEM".into(),
        cloud_id: CLOUD.into(),
        cloud_ca_pem: "PEM".into(),
        account: account.clone(),
        virtual_accounts: vas.clone(),
        next_sync_due: NOW + 30 * 86_400,
    };
    let mut w = BundleWriter::new(
        Cursor::new(Vec::new()),
        header(BundleKind::RegistrationAuthorization),
    )
    .unwrap();
    w.payload(&auth).unwrap();
    let bytes = w.finish(&signer()).unwrap().0.into_inner();
    let mut b = open(
        Cursor::new(bytes),
        &opts(BundleKind::RegistrationAuthorization),
    )
    .unwrap();
    assert_eq!(b.payload::<RegistrationAuthorization>().unwrap(), auth);

    // sync request with NDJSON records
    let mut b = open(
        Cursor::new(valid().to_vec()),
        &opts(BundleKind::SyncRequest),
    )
    .unwrap();
    assert_eq!(
        b.payload::<SyncRequest>().unwrap(),
        sync_request_payload(20)
    );
    let recs: Vec<PiRecord> = b
        .ndjson("product_instances.ndjson")
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recs.len(), 20);
    assert_eq!(recs[3], pi(3));
    assert_eq!(
        b.ndjson::<UsageRecord>("usage.ndjson").unwrap().count(),
        0,
        "absent reads empty"
    );
    assert_eq!(b.manifest().in_reply_to.as_deref(), Some("req-1"));
    assert_eq!(b.manifest().sequence, 7);

    // sync response
    let resp = SyncResponse {
        payload_version: 1,
        satellite_id: SAT.into(),
        acknowledged_request: "req-9".into(),
        acknowledged_change: 20,
        acknowledged_event: 0,
        rejected: 0,
        account,
        virtual_accounts: vas,
        next_sync_due: NOW + 30 * 86_400,
        satellite_certificate_pem: Some("-----BEGIN CERTIFICATE-----".into()),
        removed: None,
        cloud_ca: None,
    };
    let mut w =
        BundleWriter::new(Cursor::new(Vec::new()), header(BundleKind::SyncResponse)).unwrap();
    w.payload(&resp).unwrap();
    let bytes = w.finish(&signer()).unwrap().0.into_inner();
    let mut b = open(Cursor::new(bytes), &opts(BundleKind::SyncResponse)).unwrap();
    assert_eq!(b.payload::<SyncResponse>().unwrap(), resp);
}

#[test]
fn writer_refuses_entries_the_kind_does_not_allow() {
    let mut w =
        BundleWriter::new(Cursor::new(Vec::new()), header(BundleKind::SyncResponse)).unwrap();
    assert!(matches!(
        w.ndjson("product_instances.ndjson"),
        Err(Error::UnexpectedEntry { .. })
    ));
    assert!(matches!(w.ndjson("../x"), Err(Error::UnsafeEntryName(_))));
    // Without a payload there is no bundle.
    assert!(matches!(w.finish(&signer()), Err(Error::MissingEntry(_))));
}

// ---- the hostile corpus: each refused with its own error -------------------------------

#[test]
fn hostile_corpus() {
    let v = valid();
    let mut codes = Vec::new();
    let mut check = |what: &str, err: Error, ok: fn(&Error) -> bool| {
        assert!(ok(&err), "{what}: unexpected error {err:?}");
        assert!(!err.to_string().is_empty());
        codes.push((what.to_string(), err.code()));
    };

    check("truncated file", refuse(&v[..v.len() / 2]), |e| {
        matches!(e, Error::Corrupt(_))
    });
    check(
        "not a zip",
        refuse(b"this is a text file, not a bundle"),
        |e| matches!(e, Error::NotAZip),
    );

    let mut e = entries(v);
    let p = e
        .iter_mut()
        .find(|(n, _)| n == "product_instances.ndjson")
        .unwrap();
    p.1[10] ^= 0x01;
    check("flipped byte in a payload", refuse(&rezip(&e)), |e| {
        matches!(e, Error::HashMismatch { .. })
    });

    let mut e = entries(v);
    let m = e.iter_mut().find(|(n, _)| n == "manifest.json").unwrap();
    let at = m.1.windows(8).position(|w| w == b"sat-0001").unwrap();
    m.1[at + 7] = b'2';
    check("flipped byte in the manifest", refuse(&rezip(&e)), |e| {
        matches!(e, Error::BadSignature)
    });

    // Signed by a key nobody trusts (its own self-signed certificate).
    let rogue = pki::new_p256_key().unwrap();
    let rogue_cert = pki::self_signed(
        &rogue,
        &CertSpec {
            common_name: "rogue",
            organization: "x",
            role: CertRole::Signer,
            now: NOW,
            days: 30,
        },
    )
    .unwrap();
    let mut w =
        BundleWriter::new(Cursor::new(Vec::new()), header(BundleKind::SyncRequest)).unwrap();
    w.payload(&sync_request_payload(0)).unwrap();
    let bytes = w
        .finish(&Signer::new(rogue, vec![rogue_cert]).unwrap())
        .unwrap()
        .0
        .into_inner();
    check("signature by an untrusted key", refuse(&bytes), |e| {
        matches!(e, Error::UntrustedSigner(_))
    });

    let mut h = header(BundleKind::SyncRequest);
    h.not_after = NOW - 1;
    check("expired", refuse(&sync_request(h, 1)), |e| {
        matches!(e, Error::Expired { .. })
    });

    let mut h = header(BundleKind::SyncRequest);
    h.receiver = "sat-other".into();
    check("wrong receiver", refuse(&sync_request(h, 1)), |e| {
        matches!(e, Error::WrongReceiver { .. })
    });

    check(
        "unknown kind",
        refuse(&resigned(|m| m["kind"] = "license-transfer".into())),
        |e| matches!(e, Error::UnknownKind(_)),
    );
    check(
        "newer format version",
        refuse(&resigned(|m| m["format_version"] = 2.into())),
        |e| matches!(e, Error::NewerFormat { found: 2, .. }),
    );

    check(
        "entry ../x",
        refuse(&raw_with(&[("../x", b"x", 0o100644)])),
        |e| matches!(e, Error::UnsafeEntryName(n) if n == "../x"),
    );
    check(
        "entry /etc/x",
        refuse(&raw_with(&[("/etc/x", b"x", 0o100644)])),
        |e| matches!(e, Error::UnsafeEntryName(n) if n == "/etc/x"),
    );
    let dup = raw_with(&[("payload.json", b"{}", 0o100644)]);
    check("duplicate entry", refuse(&dup), |e| {
        matches!(e, Error::DuplicateEntry(_))
    });

    let mut e = entries(v);
    e.push(("events.ndjson".into(), b"{}\n".to_vec()));
    check(
        "extra unlisted entry",
        refuse(&rezip(&e)),
        |e| matches!(e, Error::UnlistedEntry(n) if n == "events.ndjson"),
    );

    let mut e = entries(v);
    e.retain(|(n, _)| n != "product_instances.ndjson");
    check(
        "missing entry",
        refuse(&rezip(&e)),
        |e| matches!(e, Error::MissingEntry(n) if n == "product_instances.ndjson"),
    );

    let mut e = entries(v);
    e.push(("usage.ndjson".into(), vec![b' '; 20 * 1024 * 1024]));
    let bomb = rezip(&e);
    assert!(
        bomb.len() < 200 * 1024,
        "a small file: {} bytes",
        bomb.len()
    );
    check("zip bomb", refuse(&bomb), |e| {
        matches!(e, Error::CompressionRatio { .. })
    });

    let mut o = opts(BundleKind::SyncRequest);
    o.limits = Limits {
        max_compressed: 1024,
        ..Limits::default()
    };
    check("oversized file", open_bytes(v, &o).unwrap_err(), |e| {
        matches!(e, Error::TooLarge { .. })
    });

    check(
        "symlink entry",
        refuse(&raw_with(&[("link", b"/etc/passwd", 0o120777)])),
        |e| matches!(e, Error::SymlinkEntry(_)),
    );
    check(
        "wrong kind",
        open_bytes(v, &opts(BundleKind::SyncResponse)).unwrap_err(),
        |e| matches!(e, Error::WrongKind { .. }),
    );
    let mut h = header(BundleKind::SyncRequest);
    h.created_at = NOW + 86_400;
    h.not_after = NOW + 2 * 86_400;
    check("from the future", refuse(&sync_request(h, 1)), |e| {
        matches!(e, Error::FromTheFuture { .. })
    });

    // Container bytes no digest covers (here: an entry's modification time in the central
    // directory) are caught by the seal.
    let mut b = v.to_vec();
    let cd = b
        .windows(4)
        .rposition(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .unwrap();
    b[cd + 12] ^= 0x01;
    check("altered container metadata", refuse(&b), |e| {
        matches!(e, Error::BadSeal(_))
    });

    // Each case in the issue's list has an error of its own.
    let listed = [
        "truncated file",
        "not a zip",
        "flipped byte in a payload",
        "flipped byte in the manifest",
        "signature by an untrusted key",
        "expired",
        "wrong receiver",
        "unknown kind",
        "newer format version",
        "entry ../x",
        "duplicate entry",
        "extra unlisted entry",
        "missing entry",
        "zip bomb",
        "oversized file",
    ];
    let mut distinct: Vec<&str> = codes
        .iter()
        .filter(|(w, _)| listed.contains(&w.as_str()))
        .map(|(_, c)| *c)
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), listed.len(), "{codes:?}");
}

#[test]
fn newer_payload_version_is_refused_clearly() {
    #[derive(serde::Serialize)]
    struct Future {
        payload_version: u32,
        satellite_id: String,
    }
    let mut w =
        BundleWriter::new(Cursor::new(Vec::new()), header(BundleKind::SyncResponse)).unwrap();
    w.payload(&Future {
        payload_version: 9,
        satellite_id: SAT.into(),
    })
    .unwrap();
    let bytes = w.finish(&signer()).unwrap().0.into_inner();
    let mut b = open(Cursor::new(bytes), &opts(BundleKind::SyncResponse)).unwrap();
    let err = b.payload::<SyncResponse>().unwrap_err();
    assert!(
        matches!(
            err,
            Error::NewerPayload {
                found: 9,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade"));
}

#[test]
fn a_line_longer_than_the_limit_is_refused_without_reading_it_whole() {
    let mut w =
        BundleWriter::new(Cursor::new(Vec::new()), header(BundleKind::SyncRequest)).unwrap();
    w.payload(&sync_request_payload(1)).unwrap();
    let mut n = w.ndjson("product_instances.ndjson").unwrap();
    let mut long = pi(0);
    // Incompressible, so the ratio check does not catch it first.
    long.name = hex::encode(
        (0..50_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<_>>(),
    );
    n.write(&long).unwrap();
    n.finish();
    let bytes = w.finish(&sat_signer()).unwrap().0.into_inner();
    let mut b = open(Cursor::new(bytes), &opts(BundleKind::SyncRequest)).unwrap();
    let first = b
        .ndjson::<PiRecord>("product_instances.ndjson")
        .unwrap()
        .next()
        .unwrap();
    assert!(
        matches!(first, Err(Error::PayloadInvalid { .. })),
        "{first:?}"
    );
}

// ---- forged signers: only the cloud speaks for the cloud -------------------------------

/// A bundle of `kind` (a sync request's payload, else a sync response's) from `sender`, signed
/// by `key` under `chain`.
fn signed_by(kind: BundleKind, sender: &str, key: PKey<Private>, chain: Vec<X509>) -> Vec<u8> {
    let mut h = header(kind);
    h.sender = sender.into();
    let mut w = BundleWriter::new(Cursor::new(Vec::new()), h).unwrap();
    match kind {
        BundleKind::SyncRequest => w.payload(&sync_request_payload(0)).unwrap(),
        _ => w
            .payload(&SyncResponse {
                payload_version: 1,
                satellite_id: SAT.into(),
                acknowledged_request: "req-1".into(),
                acknowledged_change: 0,
                acknowledged_event: 0,
                rejected: 0,
                account: Account {
                    name: "Acme".into(),
                    export_controlled_allowed: true,
                },
                virtual_accounts: vec![],
                next_sync_due: NOW + 10 * 365 * 86_400,
                satellite_certificate_pem: None,
                removed: None,
                cloud_ca: None,
            })
            .unwrap(),
    }
    w.finish(&Signer::new(key, chain).unwrap())
        .unwrap()
        .0
        .into_inner()
}

fn cert(
    cn: &str,
    role: CertRole<'_>,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> (PKey<Private>, X509) {
    let key = pki::new_p256_key().unwrap();
    let spec = CertSpec {
        common_name: cn,
        organization: "forger",
        role,
        now: NOW,
        days: 365,
    };
    let cert = match issuer {
        Some((c, k)) => pki::issue(c, k, &key, &spec).unwrap(),
        None => pki::self_signed(&key, &spec).unwrap(),
    };
    (key, cert)
}

#[test]
fn forged_signers_never_speak_for_the_cloud() {
    let f = fixture();
    let ca = Some((&f.ca, &f.ca_key));
    let response = BundleKind::SyncResponse;
    let refuse_as = |bytes: &[u8], kind: BundleKind| open_bytes(bytes, &opts(kind)).unwrap_err();

    // The satellite's own key (its cloud-issued certificate chains to the cloud CA), with the
    // cloud's id as sender, or its own.
    for sender in [CLOUD, SAT] {
        let b = signed_by(
            response,
            sender,
            f.sat_key.clone(),
            vec![f.sat_cert.clone()],
        );
        let e = refuse_as(&b, response);
        assert!(matches!(e, Error::WrongSigner { .. }), "{e}");
        assert!(
            e.to_string().contains("only by the cloud's bundle signer"),
            "{e}"
        );
    }
    // The same for an authorization.
    let auth = BundleKind::RegistrationAuthorization;
    let b = signed_by(auth, CLOUD, f.sat_key.clone(), vec![f.sat_cert.clone()]);
    assert!(matches!(refuse_as(&b, auth), Error::WrongSigner { .. }));

    // Another satellite's key.
    let (k, c) = cert(
        "other",
        CertRole::Bundle(SignerRole::Satellite, "sat-0002"),
        ca,
    );
    let e = refuse_as(&signed_by(response, CLOUD, k, vec![c]), response);
    assert!(matches!(e, Error::WrongSigner { .. }), "{e}");

    // A certificate the cloud CA issued with no bundle role (as every satellite's was before
    // roles existed), and the CA's own key.
    let (k, c) = cert("old satellite", CertRole::Signer, ca);
    let e = refuse_as(&signed_by(response, CLOUD, k, vec![c]), response);
    assert!(e.to_string().contains("no bundle role"), "{e}");
    let e = refuse_as(
        &signed_by(response, CLOUD, f.ca_key.clone(), vec![f.ca.clone()]),
        response,
    );
    assert!(matches!(e, Error::WrongSigner { .. }), "{e}");

    // A device CA (self-made) and a device key under it, and a self-made CA with the cloud's
    // names issuing a cloud signer for the cloud's id: none chains to the cloud CA.
    let (dca_key, dca) = cert("device CA", CertRole::Ca, None);
    let (k, c) = cert("device", CertRole::Signer, Some((&dca, &dca_key)));
    let e = refuse_as(
        &signed_by(response, CLOUD, k, vec![c, dca.clone()]),
        response,
    );
    assert!(matches!(e, Error::UntrustedSigner(_)), "{e}");
    let e = refuse_as(
        &signed_by(response, CLOUD, dca_key.clone(), vec![dca]),
        response,
    );
    assert!(matches!(e, Error::UntrustedSigner(_)), "{e}");
    let (rca_key, rca) = cert("cloud CA", CertRole::Ca, None);
    let (k, c) = cert(
        "cloud signer",
        CertRole::Bundle(SignerRole::Cloud, CLOUD),
        Some((&rca, &rca_key)),
    );
    let e = refuse_as(&signed_by(response, CLOUD, k, vec![c, rca]), response);
    assert!(matches!(e, Error::UntrustedSigner(_)), "{e}");

    // The cloud's signer role, but for another cloud than the sender named.
    let (k, c) = cert(
        "signer",
        CertRole::Bundle(SignerRole::Cloud, "cloud-02"),
        ca,
    );
    let e = refuse_as(&signed_by(response, CLOUD, k, vec![c]), response);
    assert!(matches!(e, Error::SenderMismatch { .. }), "{e}");

    // The other way: a sync request signed by the cloud's signer, or by a satellite for
    // another satellite.
    let e = refuse_as(
        &signed_by(
            BundleKind::SyncRequest,
            SAT,
            f.signer_key.clone(),
            vec![f.signer_cert.clone()],
        ),
        BundleKind::SyncRequest,
    );
    assert!(e.to_string().contains("only by a satellite"), "{e}");
    let e = refuse_as(
        &signed_by(
            BundleKind::SyncRequest,
            "sat-0002",
            f.sat_key.clone(),
            vec![f.sat_cert.clone()],
        ),
        BundleKind::SyncRequest,
    );
    assert!(matches!(e, Error::SenderMismatch { .. }), "{e}");

    // And the genuine ones pass.
    let b = signed_by(
        response,
        CLOUD,
        f.signer_key.clone(),
        vec![f.signer_cert.clone()],
    );
    open(Cursor::new(b), &opts(response)).unwrap();
}

// ---- property: mutations never panic and never verify ----------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, mask)| Mutation::Flip { at: i.index(valid().len()), mask }),
        1 => any::<prop::sample::Index>().prop_map(|i| Mutation::Truncate { at: i.index(valid().len()) }),
        1 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, bytes)| Mutation::Insert { at: i.index(valid().len() + 1), bytes }),
        1 => (any::<prop::sample::Index>(), 1usize..32).prop_map(|(i, len)| Mutation::Remove { at: i.index(valid().len()), len }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Flip { at, mask } if len > 0 => bytes[*at % len] ^= mask,
        Mutation::Flip { .. } => {}
        Mutation::Truncate { at } => bytes.truncate((*at).min(len)),
        Mutation::Insert { at, bytes: ins } => {
            let at = (*at).min(len);
            bytes.splice(at..at, ins.iter().copied());
        }
        Mutation::Remove { at, len: n } => {
            let at = (*at).min(len);
            let end = (at + *n).min(len);
            bytes.drain(at..end);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutations_never_panic_and_never_verify(ms in prop::collection::vec(mutation(), 1..4)) {
        let mut bytes = valid().to_vec();
        for m in &ms {
            apply(&mut bytes, m);
        }
        prop_assume!(bytes != valid());
        prop_assert!(open_bytes(&bytes, &opts(BundleKind::SyncRequest)).is_err());
    }
}
