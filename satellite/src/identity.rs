//! The satellite's own identity: its id, name and signing key, made on first start.
//!
//! The key (ECDSA P-256, `<data_dir>/keys/satellite.key.pem`, mode 0600) signs everything
//! the satellite sends the cloud; the id names it in every bundle.

use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};

use crate::clock::Clock;
use crate::config::Config;
use crate::datadir;
use crate::db::{identity, identity::SatelliteRow, Store};
use crate::error::{Error, Result};
use crate::tls::new_p256_key;

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("satellite.key.pem")
}

/// Makes the satellite's row and key if this is the first start; returns the row.
pub fn ensure(store: &Store, cfg: &Config, clock: &dyn Clock) -> Result<SatelliteRow> {
    let path = key_path(store.data_dir());
    if !path.exists() {
        datadir::ensure_subdir(path.parent().unwrap_or(store.data_dir()))?;
        let key = new_p256_key()?;
        datadir::write_private(&path, &key.private_key_to_pem_pkcs8()?)?;
        tracing::info!(key = %path.display(), "made the satellite's signing key");
    }
    let mut conn = store.conn()?;
    let id = uuid::Uuid::new_v4().to_string();
    let row = identity::insert_if_missing(
        &mut conn,
        &id,
        &cfg.satellite_name(),
        &crate::config::hostname(),
        clock.now(),
    )?;
    if row.satellite_id == id {
        tracing::info!(satellite_id = %row.satellite_id, name = %row.name, "initialised a new satellite");
    }
    Ok(row)
}

/// The satellite's signing key.
pub fn signing_key(data_dir: &Path) -> Result<PKey<Private>> {
    let path = key_path(data_dir);
    let pem = std::fs::read(&path).map_err(|e| Error::file(&path, e))?;
    PKey::private_key_from_pem(&pem)
        .map_err(|e| Error::State(format!("{}: not a usable private key: {e}", path.display())))
}
