//! The mock cloud: a stand-in for the vendor's central license manager, with its own SQLite
//! store, CA, CLI (`mock-cloud`) and HTTPS endpoint. It holds smart accounts, virtual
//! accounts and license pools, authorizes satellites ("New satellite") and, later, processes
//! their syncs.

pub mod cli;
pub mod export;
pub mod http;
pub mod lifecycle;
pub mod schema;
pub mod service;
pub mod sync;

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use satellite::datadir;
use sync_format::pki::{self, CertRole, CertSpec, Signer, SignerRole};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type Conn = PooledConnection<ConnectionManager<SqliteConnection>>;

/// Everything that can go wrong in the mock cloud.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("bundle refused: {0}")]
    Bundle(#[from] sync_format::Error),
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("{0}")]
    Satellite(#[from] satellite::Error),
    #[error("cryptography error: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("{0}")]
    Internal(String),
}

impl CloudError {
    /// 2 for what the caller got wrong, 1 for failures of ours.
    pub fn exit_code(&self) -> i32 {
        match self {
            CloudError::Invalid(_) | CloudError::NotFound(_) | CloudError::Conflict(_) => 2,
            CloudError::Bundle(e) if !e.is_local_failure() => 2,
            CloudError::Satellite(e) => e.exit_code(),
            _ => 1,
        }
    }
}

impl From<diesel::r2d2::PoolError> for CloudError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        CloudError::Internal(format!("database pool: {e}"))
    }
}

pub type Result<T, E = CloudError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy)]
struct Pragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, c: &mut SqliteConnection) -> std::result::Result<(), diesel::r2d2::Error> {
        c.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The mock cloud: its store, its keys and its clock.
pub struct Cloud {
    pool: Pool<ConnectionManager<SqliteConnection>>,
    pub data_dir: PathBuf,
    pub cloud_id: String,
    pub ca_cert: X509,
    ca_key: PKey<Private>,
    signer: Signer,
    /// After a rollover (`ca rotate`): the CA before, still trusted for satellites' bundles
    /// until it expires, and the current CA certified by it.
    pub ca_previous: Option<X509>,
    pub ca_cross: Option<X509>,
    /// Signs sync responses: after a rollover its chain ends in the cross-certificate, so
    /// satellites that still pin the CA before verify it and learn the new one.
    sync_signer: Signer,
    pub manual_clock: bool,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("cloud_id", &self.cloud_id)
            .finish()
    }
}

/// A key in the data directory, made (0600) on first use.
fn key_file(path: &Path) -> Result<PKey<Private>> {
    if let Ok(pem) = std::fs::read(path) {
        return Ok(PKey::private_key_from_pem(&pem)?);
    }
    let key = pki::new_p256_key()?;
    datadir::write_private(path, &key.private_key_to_pem_pkcs8()?)?;
    Ok(key)
}

/// A certificate in the data directory, made by `make` on first use.
fn cert_file(path: &Path, make: impl FnOnce() -> Result<X509>) -> Result<X509> {
    if let Ok(pem) = std::fs::read(path) {
        return Ok(X509::from_pem(&pem)?);
    }
    let cert = make()?;
    datadir::write_public(path, &cert.to_pem()?)?;
    Ok(cert)
}

impl Cloud {
    /// Opens (creating on first use) the data directory, database, CA and signing key.
    pub fn open(data_dir: &Path, manual_clock: bool) -> Result<Cloud> {
        datadir::ensure(data_dir)?;
        let db = data_dir.join("mock-cloud.db");
        let pool = Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(30))
            .connection_customizer(Box::new(Pragmas))
            .build(ConnectionManager::<SqliteConnection>::new(
                db.to_string_lossy(),
            ))
            .map_err(|e| CloudError::Internal(format!("cannot open {}: {e}", db.display())))?;
        {
            let mut c = pool.get()?;
            c.batch_execute("PRAGMA journal_mode = WAL;")?;
            c.run_pending_migrations(MIGRATIONS)
                .map_err(|e| CloudError::Internal(format!("migrations: {e}")))?;
            diesel::insert_or_ignore_into(schema::cloud::table)
                .values((
                    schema::cloud::id.eq(1),
                    schema::cloud::cloud_id.eq(format!("cloud-{}", uuid::Uuid::new_v4())),
                    schema::cloud::created_at.eq(satellite::clock::system_now()),
                ))
                .execute(&mut c)?;
        }
        let cloud_id: String = schema::cloud::table
            .select(schema::cloud::cloud_id)
            .first(&mut pool.get()?)?;

        let now = satellite::clock::system_now();
        let ca_key = key_file(&data_dir.join("ca.key.pem"))?;
        let ca_cert = cert_file(&data_dir.join("ca.crt.pem"), || {
            Ok(pki::self_signed(
                &ca_key,
                &CertSpec {
                    common_name: "Mock Cloud Root CA",
                    organization: "mock cloud",
                    role: CertRole::Ca,
                    now,
                    days: 3650,
                },
            )?)
        })?;
        let signer_key = key_file(&data_dir.join("signer.key.pem"))?;
        let signer_path = data_dir.join("signer.crt.pem");
        let make_signer = || -> Result<X509> {
            Ok(pki::issue(
                &ca_cert,
                &ca_key,
                &signer_key,
                &CertSpec {
                    common_name: "Mock Cloud bundle signer",
                    organization: "mock cloud",
                    role: CertRole::Bundle(SignerRole::Cloud, &cloud_id),
                    now,
                    days: 3650,
                },
            )?)
        };
        let mut signer_cert = cert_file(&signer_path, make_signer)?;
        // A signer made before bundle roles existed (or for another id) cannot sign for the
        // cloud any more: issue it again under the same CA.
        let role = pki::bundle_role(&signer_cert).ok().flatten();
        if role != Some((SignerRole::Cloud, cloud_id.clone())) {
            signer_cert = make_signer()?;
            datadir::write_public(&signer_path, &signer_cert.to_pem()?)?;
        }
        let optional = |name: &str| -> Result<Option<X509>> {
            match std::fs::read(data_dir.join(name)) {
                Ok(pem) => Ok(Some(X509::from_pem(&pem)?)),
                Err(_) => Ok(None),
            }
        };
        let ca_previous = optional("ca-previous.crt.pem")?;
        let ca_cross = optional("ca-cross.crt.pem")?;
        let sync_signer = Signer::new(
            signer_key.clone(),
            vec![
                signer_cert.clone(),
                ca_cross.clone().unwrap_or_else(|| ca_cert.clone()),
            ],
        )?;
        // The chain carries the CA too, so a satellite without a CA yet can pin it.
        let signer = Signer::new(signer_key, vec![signer_cert, ca_cert.clone()])?;
        Ok(Cloud {
            pool,
            data_dir: data_dir.to_path_buf(),
            cloud_id,
            ca_cert,
            ca_key,
            signer,
            ca_previous,
            ca_cross,
            sync_signer,
            manual_clock,
        })
    }

    pub fn conn(&self) -> Result<Conn> {
        Ok(self.pool.get()?)
    }

    /// The cloud's time: the system clock, plus the stored offset when the manual clock is on.
    pub fn now(&self) -> Result<i64> {
        let now = satellite::clock::system_now();
        if !self.manual_clock {
            return Ok(now);
        }
        let offset: i64 = schema::cloud::table
            .select(schema::cloud::clock_offset)
            .first(&mut self.conn()?)?;
        Ok(now + offset)
    }

    /// Moves the manual clock: to `set` if given, then forward by `advance`.
    pub fn move_clock(&self, set: Option<i64>, advance: i64) -> Result<i64> {
        if !self.manual_clock {
            return Err(CloudError::Invalid(
                "the manual clock is disabled: set MOCK_CLOUD_TESTING_MANUAL_CLOCK=true (or \
                 [testing] manual_clock = true)"
                    .into(),
            ));
        }
        let mut c = self.conn()?;
        if let Some(at) = set {
            diesel::update(schema::cloud::table)
                .set(schema::cloud::clock_offset.eq(at - satellite::clock::system_now()))
                .execute(&mut c)?;
        }
        diesel::update(schema::cloud::table)
            .set(schema::cloud::clock_offset.eq(schema::cloud::clock_offset + advance))
            .execute(&mut c)?;
        self.now()
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The signer of sync responses (see [`Cloud::sync_signer`]'s field).
    pub fn sync_signer(&self) -> &Signer {
        &self.sync_signer
    }

    /// The CAs whose certificates the cloud accepts on satellites' bundles: the current one
    /// and, after a rollover, the one before (until it expires).
    pub fn anchors(&self) -> Vec<X509> {
        let mut out = vec![self.ca_cert.clone()];
        out.extend(self.ca_previous.clone());
        out
    }

    /// The rollover a sync response announces, after `ca rotate`.
    pub fn rollover(&self) -> Result<Option<sync_format::payload::CaRollover>> {
        let Some(cross) = &self.ca_cross else {
            return Ok(None);
        };
        let pem = |c: &X509| -> Result<String> {
            String::from_utf8(c.to_pem()?).map_err(|e| CloudError::Internal(e.to_string()))
        };
        Ok(Some(sync_format::payload::CaRollover {
            ca_pem: pem(&self.ca_cert)?,
            cross_signed_pem: pem(cross)?,
        }))
    }

    /// `ca rotate`: a new CA (key and self-signed certificate) replaces the current one,
    /// which certifies it (the cross-certificate) and stays as the previous CA; the bundle
    /// signer is certified again under the new CA. Satellites learn the new CA from their
    /// next sync response. Returns the new CA's fingerprint.
    pub fn rotate_ca(self) -> Result<String> {
        let dir = self.data_dir.clone();
        let now = satellite::clock::system_now();
        let key = pki::new_p256_key()?;
        let name = format!(
            "Mock Cloud Root CA {}",
            &uuid::Uuid::new_v4().to_string()[..8]
        );
        let spec = CertSpec {
            common_name: &name,
            organization: "mock cloud",
            role: CertRole::Ca,
            now,
            days: 3650,
        };
        let ca = pki::self_signed(&key, &spec)?;
        let cross = pki::issue(&self.ca_cert, &self.ca_key, &key, &spec)?;
        let moved = |from: &str, to: &str| -> Result<()> {
            std::fs::rename(dir.join(from), dir.join(to))
                .map_err(|e| CloudError::Internal(format!("{from}: {e}")))
        };
        moved("ca.crt.pem", "ca-previous.crt.pem")?;
        moved("ca.key.pem", "ca-previous.key.pem")?;
        datadir::write_private(&dir.join("ca.key.pem"), &key.private_key_to_pem_pkcs8()?)?;
        datadir::write_public(&dir.join("ca.crt.pem"), &ca.to_pem()?)?;
        datadir::write_public(&dir.join("ca-cross.crt.pem"), &cross.to_pem()?)?;
        // The signer is certified again under the new CA when the cloud next opens.
        let _ = std::fs::remove_file(dir.join("signer.crt.pem"));
        Ok(pki::sha256_fingerprint(&ca)?)
    }

    pub fn ca_key(&self) -> &PKey<Private> {
        &self.ca_key
    }

    /// The CA's SHA-256 fingerprint as `SHA256:AB:CD:…`, which an operator gives a satellite
    /// registering by file (`register import --cloud-ca-fingerprint`).
    pub fn ca_fingerprint(&self) -> Result<String> {
        Ok(pki::sha256_fingerprint(&self.ca_cert)?)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.data_dir.join("ca.crt.pem")
    }
}
