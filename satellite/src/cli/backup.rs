//! `satellite backup` and `satellite restore`.

use super::*;
use crate::states::plural;

/// `backup --out FILE [--encrypt [--passphrase-file FILE]]`.
pub fn backup(
    config: Config,
    out: &std::path::Path,
    encrypt: bool,
    passphrase_file: Option<&std::path::Path>,
    json: bool,
) -> Result<()> {
    let passphrase = if encrypt {
        Some(backup_passphrase(passphrase_file)?.ok_or_else(|| {
            Error::invalid(
                "--encrypt needs a passphrase: --passphrase-file FILE or \
                 SATELLITE_BACKUP_PASSPHRASE",
            )
        })?)
    } else {
        None
    };
    let ctx = Context::open(config)?;
    let b = crate::backup::backup(&ctx.store, ctx.clock.now(), out, passphrase.as_deref())?;
    if json {
        println!("{}", to_json(&b)?);
    } else {
        let c = &b.manifest.counts;
        println!(
            "wrote {} ({} bytes): satellite {} ({:?}), schema {}, {}, {}, {}, {}; it holds \
             private keys: keep it safe",
            out.display(),
            b.bytes,
            b.manifest.satellite_id,
            b.manifest.satellite_name,
            b.manifest.schema,
            plural(
                c.product_instances as i64,
                "product instance",
                "product instances"
            ),
            plural(c.license_usage as i64, "usage record", "usage records"),
            plural(c.tokens as i64, "token", "tokens"),
            plural(c.events as i64, "event", "events")
        );
    }
    Ok(())
}

/// `restore FILE [--force] [--passphrase-file FILE]`.
pub fn restore(
    config: Config,
    file: &std::path::Path,
    force: bool,
    passphrase_file: Option<&std::path::Path>,
    json: bool,
) -> Result<()> {
    let now = clock::system_now();
    let passphrase = backup_passphrase(passphrase_file)?;
    let r = crate::backup::restore(&config.storage, file, force, now, passphrase.as_deref())?;
    if json {
        println!("{}", to_json(&r)?);
    } else {
        println!(
            "restored satellite {} ({:?}) from the backup of {}: {}, {}{}{}",
            r.satellite_id,
            r.satellite_name,
            r.backup_created_at,
            plural(
                r.counts.product_instances as i64,
                "product instance",
                "product instances"
            ),
            plural(r.counts.events as i64, "event", "events"),
            r.previous_database
                .as_ref()
                .map(|p| format!("; the previous database is kept as {}", p.display()))
                .unwrap_or_default(),
            if r.migrations_applied.is_empty() {
                String::new()
            } else {
                format!("; migrated: {}", r.migrations_applied.join(", "))
            }
        );
    }
    Ok(())
}

/// The backup passphrase: the first line of `file`, else SATELLITE_BACKUP_PASSPHRASE.
pub(super) fn backup_passphrase(file: Option<&std::path::Path>) -> Result<Option<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
    }
    Ok(std::env::var("SATELLITE_BACKUP_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty()))
}
