//! Backups of a running satellite and their restore into a stopped data directory.
//!
//! A backup is a zip file: `backup.json` (what it is, of which satellite, when, the schema
//! it was taken at, counts, and the SHA-256 of every other entry), `backup.sig` (the
//! satellite's ECDSA P-256/SHA-256 signature of the exact bytes of `backup.json`),
//! `satellite.db` (a consistent copy made with SQLite's `VACUUM INTO`, which reads in one
//! transaction, so it is taken while devices register and syncs apply), and the files of
//! `keys/` and `tls/`. It holds private keys: it is written 0600; keep it like the data
//! directory itself. With a passphrase (`backup --encrypt`) the whole zip is sealed with
//! AES-256-GCM under a key derived by scrypt (memory-hard), so a stolen copy reveals nothing
//! and cannot be altered unnoticed.
//!
//! Restore refuses a running data directory (the lock `serve` holds), a damaged, altered or
//! unsigned backup, and a backup of another satellite unless forced. It never inflates an
//! entry beyond its declared size (nor a size out of proportion to its compressed one), and
//! streams entries to disk. The database it replaces is kept beside it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::datadir;
use crate::db::{self, Store};
use crate::error::{Error, Result};

mod sealed;
pub use sealed::check_passphrase;
use sealed::{decrypt, encrypt, is_encrypted};

pub const FORMAT: &str = "satellite-backup";
/// 2: signed (`backup.sig`). 1 (unsigned) is refused.
pub const VERSION: u32 = 2;
const MANIFEST: &str = "backup.json";
const SIGNATURE: &str = "backup.sig";
/// The most one entry may inflate to; and how far beyond its compressed size (entries under
/// a MiB excepted), so a small hostile file cannot make a restore write gigabytes.
const MAX_ENTRY: u64 = 64 << 30;
const MAX_RATIO: u64 = 1000;
const RATIO_EXEMPT: u64 = 1 << 20;
const DATABASE: &str = "satellite.db";
/// Subdirectories of the data directory a backup carries.
const DIRS: [&str; 2] = ["keys", "tls"];
/// The lock `serve` holds on its data directory.
pub const LOCK_FILE: &str = "satellite.lock";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub satellite_id: String,
    pub satellite_name: String,
    pub created_at: String,
    pub software_version: String,
    /// The newest migration applied to the copied database.
    pub schema: String,
    pub counts: Counts,
    /// SHA-256 (hex) of every other entry, by name.
    pub entries: std::collections::BTreeMap<String, String>,
}

pub use crate::db::backup::Counts;

/// Holds the data directory's lock for as long as it lives (`serve`, `restore`).
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the data directory's lock, or says who holds it.
pub fn lock(data_dir: &Path, what: &str) -> Result<DataDirLock> {
    datadir::ensure(data_dir)?;
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::file(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::State(
            format!(
                "a satellite is running on {} (it holds {}): stop it first ({what})",
                data_dir.display(),
                path.display()
            )
            .into(),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::file(&path, e)),
    }
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(bytes))
}

/// A scratch directory inside the data directory (same file system), removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a backup holds, for the operator.
#[derive(Debug, Clone, Serialize)]
pub struct BackupOutcome {
    pub file: PathBuf,
    pub bytes: u64,
    /// Sealed with a passphrase.
    pub encrypted: bool,
    pub manifest: Manifest,
}

/// Takes a backup of the store (running or not) into `out`, sealed with `passphrase` if
/// one is given.
pub fn backup(
    store: &Store,
    now: i64,
    out: &Path,
    passphrase: Option<&str>,
) -> Result<BackupOutcome> {
    if let Some(p) = passphrase {
        check_passphrase(p)?;
    }
    let tmp = Scratch(
        store
            .data_dir()
            .join(format!(".backup-{}", uuid::Uuid::new_v4())),
    );
    datadir::ensure_subdir(&tmp.0)?;
    let copy = tmp.0.join(DATABASE);
    // VACUUM INTO reads in one transaction of its own: the copy is one consistent moment,
    // taken while the server writes. What the backup holds is then read from the copy.
    db::backup::vacuum_into(&mut *store.conn()?, &copy)?;
    let (counts, schema, (id, name)) = {
        let mut c = SqliteConnection::establish(&copy.to_string_lossy())
            .map_err(|e| Error::Internal(format!("opening the copy: {e}")))?;
        (
            db::backup::counts(&mut c)?,
            db::backup::schema_version(&mut c)?,
            db::backup::identity_of(&mut c)?,
        )
    };

    let mut files: Vec<(String, PathBuf)> = vec![(DATABASE.to_string(), copy.clone())];
    for dir in DIRS {
        let d = store.data_dir().join(dir);
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for p in names {
            if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                files.push((format!("{dir}/{n}"), p.clone()));
            }
        }
    }
    let mut entries = std::collections::BTreeMap::new();
    for (name, path) in &files {
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        entries.insert(name.clone(), digest(&bytes));
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        satellite_id: id,
        satellite_name: name,
        created_at: clock::format(now),
        software_version: env!("CARGO_PKG_VERSION").into(),
        schema,
        counts,
        entries,
    };

    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    let signature = {
        let key = crate::identity::signing_key(store.data_dir())?;
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key)?;
        signer.update(&manifest_bytes)?;
        signer.sign_to_vec()?
    };

    let partial = out.with_extension("partial");
    // An encrypted backup's zip is written in the scratch directory first (the zip writer
    // seeks), then sealed into `partial`.
    let zip_path = match passphrase {
        Some(_) => tmp.0.join("backup.zip"),
        None => partial.clone(),
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&zip_path)
        .map_err(|e| Error::file(&zip_path, e))?;
    datadir::restrict_file(&zip_path)?;
    let write = || -> Result<std::fs::File> {
        let mut z = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600);
        let zerr = |e: zip::result::ZipError| Error::Internal(format!("writing the backup: {e}"));
        z.start_file(MANIFEST, opts).map_err(zerr)?;
        z.write_all(&manifest_bytes)?;
        z.start_file(SIGNATURE, opts).map_err(zerr)?;
        z.write_all(&signature)?;
        for (name, path) in &files {
            z.start_file(name.as_str(), opts).map_err(zerr)?;
            let mut f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
            std::io::copy(&mut f, &mut z)?;
        }
        z.finish().map_err(zerr)
    };
    let sealed = write().and_then(|file| match passphrase {
        None => Ok(file),
        Some(p) => {
            drop(file);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&partial)
                .map_err(|e| Error::file(&partial, e))?;
            datadir::restrict_file(&partial)?;
            encrypt(&zip_path, &mut f, p)?;
            Ok(f)
        }
    });
    let file = match sealed {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    file.sync_all().map_err(|e| Error::file(&partial, e))?;
    std::fs::rename(&partial, out).map_err(|e| Error::file(out, e))?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    tracing::info!(file = %out.display(), bytes, "backup written");
    Ok(BackupOutcome {
        file: out.to_path_buf(),
        bytes,
        encrypted: passphrase.is_some(),
        manifest,
    })
}

/// A backup read and checked: its manifest, the exact bytes it was signed over, its
/// signature, and its entries written to files (name, staged path).
struct Unpacked {
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    signature: Option<Vec<u8>>,
    staged: Vec<(String, PathBuf)>,
}

/// Reads the backup zip at `zip_path` (shown as `shown`): its manifest, its signature, and
/// every entry, each streamed into `stage` and checked against its digest, inflated no
/// further than its declared size (and that in proportion to its compressed size).
fn read_into(zip_path: &Path, shown: &Path, stage: &Path) -> Result<Unpacked> {
    let bad = |why: String| {
        Error::Invalid(format!("{} is not a usable backup: {why}", shown.display()).into())
    };
    let file = std::fs::File::open(zip_path).map_err(|e| Error::file(zip_path, e))?;
    let mut z = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let small =
        |z: &mut zip::ZipArchive<std::fs::File>, name: &str, max: u64| -> Result<Option<Vec<u8>>> {
            let Ok(f) = z.by_name(name) else {
                return Ok(None);
            };
            let mut out = Vec::new();
            f.take(max + 1).read_to_end(&mut out)?;
            if out.len() as u64 > max {
                return Err(bad(format!("{name} is larger than {max} bytes")));
            }
            Ok(Some(out))
        };
    let manifest_bytes =
        small(&mut z, MANIFEST, 1 << 20)?.ok_or_else(|| bad(format!("no {MANIFEST}")))?;
    let signature = small(&mut z, SIGNATURE, 1024)?;
    let m: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
    if m.format != FORMAT || !(1..=VERSION).contains(&m.version) {
        return Err(bad(format!(
            "format {:?} version {}, expected {FORMAT:?} version 1 to {VERSION}",
            m.format, m.version
        )));
    }
    if !m.entries.contains_key(DATABASE) {
        return Err(bad(format!("no {DATABASE}")));
    }
    let unexpected = z
        .file_names_raw()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .find(|n| n != MANIFEST && n != SIGNATURE && !m.entries.contains_key(n));
    if let Some(name) = unexpected {
        return Err(bad(format!("unexpected entry {name:?}")));
    }
    let mut staged = Vec::new();
    let mut total: u64 = 0;
    for (name, expected) in &m.entries {
        let ok_name = name == DATABASE
            || DIRS.iter().any(|d| {
                name.strip_prefix(d)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|f| !f.is_empty() && !f.contains('/') && !f.starts_with('.'))
            });
        if !ok_name {
            return Err(bad(format!("unexpected entry {name:?}")));
        }
        let f = z
            .by_name(name)
            .map_err(|_| bad(format!("{name} is missing")))?;
        let (size, packed) = (f.size(), f.compressed_size());
        if size > MAX_ENTRY || (size > RATIO_EXEMPT && size / packed.max(1) > MAX_RATIO) {
            return Err(bad(format!(
                "{name} would inflate to {size} bytes from {packed}: refusing to read it"
            )));
        }
        total = total.saturating_add(size);
        if total > MAX_ENTRY {
            return Err(bad(format!(
                "its entries inflate to more than {MAX_ENTRY} bytes"
            )));
        }
        let target = stage.join(name);
        if let Some(parent) = target.parent() {
            datadir::ensure_subdir(parent)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&target)
            .map_err(|e| Error::file(&target, e))?;
        datadir::restrict_file(&target)?;
        // Never more than declared, whatever the data inflates to.
        let mut r = f.take(size + 1);
        let mut hasher = openssl::sha::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got: u64 = 0;
        loop {
            let n = r.read(&mut buf).map_err(|e| bad(format!("{name}: {e}")))?;
            if n == 0 {
                break;
            }
            got += n as u64;
            if got > size {
                return Err(bad(format!("{name} inflates beyond its declared size")));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        if &hex::encode(hasher.finish()) != expected {
            return Err(bad(format!(
                "{name} does not match its digest (damaged or altered)"
            )));
        }
        out.sync_all().map_err(|e| Error::file(&target, e))?;
        staged.push((name.clone(), target));
    }
    Ok(Unpacked {
        manifest: m,
        manifest_bytes,
        signature,
        staged,
    })
}

/// The signature of `backup.json` must be by this satellite's key: the key of the data
/// directory it is restored into when that directory holds the same satellite (a backup
/// signed again by any other key is refused), else the key the backup itself carries.
fn verify_signature(
    r: &Unpacked,
    data_dir: &Path,
    target_is_same: bool,
    shown: &Path,
) -> Result<()> {
    let bad = |why: String| {
        Error::Invalid(format!("{} is not a usable backup: {why}", shown.display()).into())
    };
    let Some(sig) = &r.signature else {
        return Err(bad(format!(
            "it is not signed ({MANIFEST} without {SIGNATURE}, version {}); a backup of \
             version 1, made before backups were signed, is restored by the version that made \
             it",
            r.manifest.version
        )));
    };
    let key = if target_is_same && crate::identity::key_path(data_dir).exists() {
        crate::identity::signing_key(data_dir)?
    } else {
        let path = r
            .staged
            .iter()
            .find(|(n, _)| *n == "keys/satellite.key.pem")
            .map(|(_, p)| p)
            .ok_or_else(|| bad("it carries no satellite key".into()))?;
        let pem = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        openssl::pkey::PKey::private_key_from_pem(&pem)
            .map_err(|_| bad("its satellite key is not readable".into()))?
    };
    let mut v = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key)?;
    v.update(&r.manifest_bytes)?;
    if v.verify(sig).unwrap_or(false) {
        Ok(())
    } else {
        Err(bad(format!(
            "its signature does not verify: {MANIFEST} was altered after the backup was made, \
             or it was signed by another key than this satellite's"
        )))
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    pub satellite_id: String,
    pub satellite_name: String,
    pub backup_created_at: String,
    pub counts: Counts,
    /// Where the database that was there before now is, if there was one.
    pub previous_database: Option<PathBuf>,
    pub migrations_applied: Vec<String>,
}

/// Restores a backup into a stopped data directory. An encrypted backup needs its
/// `passphrase`. `force` replaces another satellite's data.
pub fn restore(
    storage: &crate::config::StorageConfig,
    path: &Path,
    force: bool,
    now: i64,
    passphrase: Option<&str>,
) -> Result<RestoreOutcome> {
    let data_dir = storage.data_dir.clone();
    if !path.is_file() {
        return Err(Error::file(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such backup file"),
        ));
    }
    let _lock = lock(&data_dir, "restore needs the satellite stopped")?;
    // Everything is unpacked beside its place first (same file system), then moved in.
    let stage = Scratch(data_dir.join(format!(".restore-{}", uuid::Uuid::new_v4())));
    datadir::ensure_subdir(&stage.0)?;
    let zip_path = if is_encrypted(path)? {
        let p = passphrase.ok_or_else(|| {
            Error::invalid(format!(
                "{} is encrypted: give its passphrase (SATELLITE_BACKUP_PASSPHRASE or \
                 --passphrase-file)",
                path.display()
            ))
        })?;
        let plain = stage.0.join(".backup.zip");
        decrypt(path, &plain, p)?;
        plain
    } else {
        path.to_path_buf()
    };
    let files = stage.0.join("files");
    datadir::ensure_subdir(&files)?;
    let r = read_into(&zip_path, path, &files)?;
    let m = r.manifest.clone();
    let db_path = data_dir.join(DATABASE);
    let target = if db_path.exists() {
        let mut c = SqliteConnection::establish(&db_path.to_string_lossy())
            .map_err(|e| Error::State(format!("{}: {e}", db_path.display()).into()))?;
        db::backup::identity_of(&mut c).ok()
    } else {
        None
    };
    if let Some((id, name)) = &target {
        if *id != m.satellite_id && !force {
            return Err(Error::Conflict(
                format!(
                    "this backup is of satellite {} ({:?}), but {} holds satellite {id} \
                 ({name:?}): refusing to replace another satellite; use --force to do it \
                 anyway",
                    m.satellite_id,
                    m.satellite_name,
                    data_dir.display()
                )
                .into(),
            ));
        }
    }
    let same = target.as_ref().is_some_and(|(id, _)| *id == m.satellite_id);
    verify_signature(&r, &data_dir, same, path)?;

    let previous = if db_path.exists() {
        let keep = data_dir.join(format!("satellite.db.before-restore-{now}"));
        std::fs::rename(&db_path, &keep).map_err(|e| Error::file(&db_path, e))?;
        Some(keep)
    } else {
        None
    };
    for suffix in ["-wal", "-shm"] {
        let p = data_dir.join(format!("{DATABASE}{suffix}"));
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::file(&p, e))?;
        }
    }
    for (name, staged) in &r.staged {
        let target = data_dir.join(name);
        if let Some(parent) = target.parent() {
            datadir::ensure_subdir(parent)?;
        }
        std::fs::rename(staged, &target).map_err(|e| Error::file(&target, e))?;
    }
    // Open it as the server would: migrations bring an older backup up to date.
    let (_store, applied) = db::Store::open(storage)?;
    tracing::info!(file = %path.display(), satellite = %m.satellite_id, "backup restored");
    Ok(RestoreOutcome {
        satellite_id: m.satellite_id,
        satellite_name: m.satellite_name,
        backup_created_at: m.created_at,
        counts: m.counts,
        previous_database: previous,
        migrations_applied: applied,
    })
}

#[cfg(test)]
mod tests;
