//! Backups made, altered, sealed and restored.

use super::sealed::ENCRYPTED_MAGIC;
use super::*;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;

/// A satellite's store (initialised) and the storage config of a fresh data directory.
fn site() -> (Store, tempfile::TempDir, crate::config::StorageConfig) {
    let (store, dir) = crate::db::testing::store();
    let mut cfg = Config::load_from(None, &[]).unwrap();
    cfg.storage.data_dir = store.data_dir().to_path_buf();
    crate::identity::ensure(&store, &cfg, &SystemClock).unwrap();
    let mut elsewhere = cfg.storage.clone();
    elsewhere.data_dir = dir.path().join("elsewhere");
    (store, dir, elsewhere)
}

fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (String::from_utf8_lossy(f.name_raw()).into_owned(), b)
        })
        .collect()
}

fn rezip(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let o = zip::write::SimpleFileOptions::default();
    for (n, b) in entries {
        z.start_file(n.as_str(), o).unwrap();
        z.write_all(b).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn a_signed_backup_restores_and_an_altered_one_is_refused() {
    let (store, dir, elsewhere) = site();
    let now = SystemClock.now();
    let file = dir.path().join("b.zip");
    backup(&store, now, &file, None).unwrap();
    restore(&elsewhere, &file, false, now, None).unwrap();

    // The database edited and its digest recomputed: the signature no longer holds.
    let mut e = entries(&file);
    let db = e.iter().position(|(n, _)| n == DATABASE).unwrap();
    e[db].1.extend_from_slice(b"\0tampered");
    let digest_of_db = digest(&e[db].1);
    let m = e.iter().position(|(n, _)| n == MANIFEST).unwrap();
    let mut manifest: Manifest = serde_json::from_slice(&e[m].1).unwrap();
    manifest.entries.insert(DATABASE.into(), digest_of_db);
    e[m].1 = serde_json::to_vec_pretty(&manifest).unwrap();
    let tampered = dir.path().join("t.zip");
    rezip(&tampered, &e);
    let err = restore(&elsewhere, &tampered, false, now, None).unwrap_err();
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );

    // Signed again by another key (with that key put in the backup): refused over the
    // satellite whose backup it claims to be.
    let other = crate::tls::new_p256_key().unwrap();
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &other).unwrap();
    s.update(&e[m].1).unwrap();
    let sig = e.iter().position(|(n, _)| n == SIGNATURE).unwrap();
    e[sig].1 = s.sign_to_vec().unwrap();
    let k = e
        .iter()
        .position(|(n, _)| n == "keys/satellite.key.pem")
        .unwrap();
    e[k].1 = other.private_key_to_pem_pkcs8().unwrap();
    manifest.entries.insert(k_name(), digest(&e[k].1));
    e[m].1 = serde_json::to_vec_pretty(&manifest).unwrap();
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &other).unwrap();
    s.update(&e[m].1).unwrap();
    e[sig].1 = s.sign_to_vec().unwrap();
    rezip(&tampered, &e);
    let before = std::fs::read(elsewhere.data_dir.join(DATABASE)).unwrap();
    let err = restore(&elsewhere, &tampered, false, now, None).unwrap_err();
    assert!(err.to_string().contains("signed by another key"), "{err}");
    assert_eq!(
        std::fs::read(elsewhere.data_dir.join(DATABASE)).unwrap(),
        before
    );

    // No signature at all: refused.
    e.retain(|(n, _)| n != SIGNATURE);
    rezip(&tampered, &e);
    let err = restore(&elsewhere, &tampered, false, now, None).unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");
}

fn k_name() -> String {
    "keys/satellite.key.pem".into()
}

#[test]
fn an_encrypted_backup_needs_its_passphrase_and_every_byte() {
    let (store, dir, elsewhere) = site();
    let now = SystemClock.now();
    let file = dir.path().join("b.enc");
    let pass = "correct horse battery staple";
    assert!(backup(&store, now, &file, Some("short")).is_err());
    let b = backup(&store, now, &file, Some(pass)).unwrap();
    assert!(b.encrypted);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(ENCRYPTED_MAGIC));
    for plain in [&b"PRIVATE KEY"[..], b"SQLite format", b"backup.json"] {
        assert!(
            !bytes.windows(plain.len()).any(|w| w == plain),
            "plaintext in it"
        );
    }
    let err = restore(&elsewhere, &file, false, now, None).unwrap_err();
    assert!(err.to_string().contains("is encrypted"), "{err}");
    let err = restore(&elsewhere, &file, false, now, Some("wrong passphrase!")).unwrap_err();
    assert!(err.to_string().contains("passphrase is wrong"), "{err}");
    for at in [ENCRYPTED_MAGIC.len() + 20, bytes.len() / 2, bytes.len() - 1] {
        let mut t = bytes.clone();
        t[at] ^= 1;
        let p = dir.path().join("t.enc");
        std::fs::write(&p, &t).unwrap();
        assert!(
            restore(&elsewhere, &p, false, now, Some(pass)).is_err(),
            "{at}"
        );
    }
    assert!(!elsewhere.data_dir.join(DATABASE).exists());
    restore(&elsewhere, &file, false, now, Some(pass)).unwrap();
    assert!(elsewhere.data_dir.join(DATABASE).exists());
}

#[test]
fn an_entry_is_never_inflated_beyond_bounds() {
    let (_store, dir, elsewhere) = site();
    // 64 MiB of zeros deflates about 1030:1: refused before a byte is inflated.
    let zeros = vec![0u8; 64 << 20];
    let mut entries = BTreeMapLike::new();
    entries.insert(DATABASE.to_string(), digest(&zeros));
    let m = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        satellite_id: "x".into(),
        satellite_name: "x".into(),
        created_at: String::new(),
        software_version: String::new(),
        schema: String::new(),
        counts: Counts::default(),
        entries,
    };
    let path = dir.path().join("bomb.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9));
    z.start_file(MANIFEST, o).unwrap();
    z.write_all(&serde_json::to_vec(&m).unwrap()).unwrap();
    z.start_file(DATABASE, o).unwrap();
    z.write_all(&zeros).unwrap();
    z.finish().unwrap();
    let err = restore(&elsewhere, &path, false, 0, None).unwrap_err();
    assert!(err.to_string().contains("would inflate"), "{err}");
    assert!(!elsewhere.data_dir.join(DATABASE).exists());
}

type BTreeMapLike = std::collections::BTreeMap<String, String>;
