//! Backups of a running satellite and their restore into a stopped data directory.
//!
//! A backup is a zip file: `backup.json` (what it is, of which satellite, when, the schema
//! it was taken at, counts, and the SHA-256 of every other entry), `satellite.db` (a
//! consistent copy made with SQLite's `VACUUM INTO`, which reads in one transaction, so it
//! is taken while devices register and syncs apply), and the files of `keys/` and `tls/`.
//! It holds private keys: it is written 0600; keep it like the data directory itself.
//!
//! Restore refuses a running data directory (the lock `serve` holds), a damaged backup, and
//! a backup of another satellite unless forced. The database it replaces is kept beside it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use diesel::prelude::*;
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::datadir;
use crate::db::{self, Store};
use crate::error::{Error, Result};

pub const FORMAT: &str = "satellite-backup";
pub const VERSION: u32 = 1;
const MANIFEST: &str = "backup.json";
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub product_instances: i64,
    pub license_usage: i64,
    pub tokens: i64,
    pub events: i64,
}

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
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::State(format!(
            "a satellite is running on {} (it holds {}): stop it first ({what})",
            data_dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::file(&path, e)),
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn counts(conn: &mut SqliteConnection) -> Result<Counts> {
    let n = |conn: &mut SqliteConnection, table: &str| -> Result<i64> {
        Ok(
            diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
                .get_result::<Count>(conn)?
                .n,
        )
    };
    Ok(Counts {
        product_instances: n(conn, "product_instances")?,
        license_usage: n(conn, "license_usage")?,
        tokens: n(conn, "registration_tokens")?,
        events: n(conn, "events")?,
    })
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    version: String,
}

fn schema_version(conn: &mut SqliteConnection) -> Result<String> {
    Ok(diesel::sql_query(
        "SELECT version FROM __diesel_schema_migrations ORDER BY version DESC LIMIT 1",
    )
    .get_result::<Version>(conn)
    .optional()?
    .map(|v| v.version)
    .unwrap_or_default())
}

#[derive(QueryableByName)]
struct Who {
    #[diesel(sql_type = Text)]
    satellite_id: String,
    #[diesel(sql_type = Text)]
    name: String,
}

/// (satellite id, name) of a database. Plain SQL on purpose: the target of a restore may
/// be of any schema version, and these two columns are in all of them.
fn identity_of(conn: &mut SqliteConnection) -> Result<(String, String)> {
    let who = diesel::sql_query("SELECT satellite_id, name FROM satellite ORDER BY id LIMIT 1")
        .get_result::<Who>(conn)
        .optional()?
        .ok_or_else(|| Error::State("the database holds no satellite".into()))?;
    Ok((who.satellite_id, who.name))
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
    pub manifest: Manifest,
}

/// Takes a backup of the store (running or not) into `out`.
pub fn backup(store: &Store, now: i64, out: &Path) -> Result<BackupOutcome> {
    let tmp = Scratch(
        store
            .data_dir()
            .join(format!(".backup-{}", uuid::Uuid::new_v4())),
    );
    datadir::ensure_subdir(&tmp.0)?;
    let copy = tmp.0.join(DATABASE);
    // VACUUM INTO reads in one transaction of its own: the copy is one consistent moment,
    // taken while the server writes. What the backup holds is then read from the copy.
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(copy.to_string_lossy().to_string())
        .execute(&mut *store.conn()?)
        .map_err(|e| Error::Internal(format!("copying the database: {e}")))?;
    let (counts, schema, (id, name)) = {
        let mut c = SqliteConnection::establish(&copy.to_string_lossy())
            .map_err(|e| Error::Internal(format!("opening the copy: {e}")))?;
        (
            counts(&mut c)?,
            schema_version(&mut c)?,
            identity_of(&mut c)?,
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

    let partial = out.with_extension("partial");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&partial)
        .map_err(|e| Error::file(&partial, e))?;
    datadir::restrict_file(&partial)?;
    let write = || -> Result<std::fs::File> {
        let mut z = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600);
        let zerr = |e: zip::result::ZipError| Error::Internal(format!("writing the backup: {e}"));
        z.start_file(MANIFEST, opts).map_err(zerr)?;
        z.write_all(
            &serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?,
        )?;
        for (name, path) in &files {
            z.start_file(name.as_str(), opts).map_err(zerr)?;
            let mut f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
            std::io::copy(&mut f, &mut z)?;
        }
        z.finish().map_err(zerr)
    };
    let file = match write() {
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
        manifest,
    })
}

/// A backup's entries: (name, bytes).
pub type Entries = Vec<(String, Vec<u8>)>;

/// Reads and checks a backup: its manifest and every entry against its digest.
pub fn read(path: &Path) -> Result<(Manifest, Entries)> {
    let bad =
        |why: String| Error::Invalid(format!("{} is not a usable backup: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let mut z = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut manifest_bytes = Vec::new();
    z.by_name(MANIFEST)
        .map_err(|_| bad(format!("no {MANIFEST}")))?
        .take(1 << 20)
        .read_to_end(&mut manifest_bytes)?;
    let m: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
    if m.format != FORMAT || m.version != VERSION {
        return Err(bad(format!(
            "format {:?} version {}, expected {FORMAT:?} version {VERSION}",
            m.format, m.version
        )));
    }
    if !m.entries.contains_key(DATABASE) {
        return Err(bad(format!("no {DATABASE}")));
    }
    let mut out = Vec::new();
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
        let mut bytes = Vec::new();
        z.by_name(name)
            .map_err(|_| bad(format!("{name} is missing")))?
            .read_to_end(&mut bytes)?;
        if &digest(&bytes) != expected {
            return Err(bad(format!(
                "{name} does not match its digest (damaged or altered)"
            )));
        }
        out.push((name.clone(), bytes));
    }
    Ok((m, out))
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

/// Restores a backup into a stopped data directory.
pub fn restore(
    storage: &crate::config::StorageConfig,
    path: &Path,
    force: bool,
    now: i64,
) -> Result<RestoreOutcome> {
    let data_dir = storage.data_dir.clone();
    let (m, entries) = read(path)?;
    let _lock = lock(&data_dir, "restore needs the satellite stopped")?;
    let db_path = data_dir.join(DATABASE);
    if db_path.exists() && !force {
        let mut c = SqliteConnection::establish(&db_path.to_string_lossy())
            .map_err(|e| Error::State(format!("{}: {e}", db_path.display())))?;
        if let Ok((id, name)) = identity_of(&mut c) {
            if id != m.satellite_id {
                return Err(Error::Conflict(format!(
                    "this backup is of satellite {} ({:?}), but {} holds satellite {id} \
                     ({name:?}): refusing to replace another satellite; use --force to do it \
                     anyway",
                    m.satellite_id,
                    m.satellite_name,
                    data_dir.display()
                )));
            }
        }
    }
    // Everything is written beside its place first, then moved in.
    let mut staged = Vec::new();
    for (name, bytes) in &entries {
        let target = data_dir.join(name);
        if let Some(parent) = target.parent() {
            datadir::ensure_subdir(parent)?;
        }
        let tmp = target.with_extension("restoring");
        datadir::write_private(&tmp, bytes)?;
        staged.push((tmp, target));
    }
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
    for (tmp, target) in staged {
        std::fs::rename(&tmp, &target).map_err(|e| Error::file(&target, e))?;
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
