//! `satellite sync`: synchronization with the cloud, by file or network.

use super::*;
use crate::states::SyncMode;

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Write a sync request: everything that changed since the cloud last acknowledged
    /// (product instances added, moved, removed; their license usage; events). Upload it
    /// to the cloud, which answers with a response file for `satellite sync import`.
    Export {
        /// Where to write the request (a zip file).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Send everything, not only what changed (a full resync).
        #[arg(long)]
        full: bool,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify a sync response from the cloud and apply it in one transaction: license
    /// pools, acknowledgements, records the cloud refused. The same response again changes
    /// nothing; an older one, one for another satellite, a tampered or expired one is
    /// refused with the reason.
    Import {
        /// The response file downloaded from the cloud.
        file: PathBuf,
        /// Show what would change (licenses added, removed or expired; virtual accounts;
        /// refused records) without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Synchronize now over HTTPS with [cloud] url (the CA pinned at registration is the
    /// only one trusted).
    Now {
        /// Send everything, not only what changed (a full resync).
        #[arg(long)]
        full: bool,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Where the sync stands: last sync, mode, next scheduled, days left before removal,
    /// pending changes, records the cloud refused.
    Status {
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Progress of long work, on stderr (stdout stays the command's answer).
pub(super) fn show_progress(p: crate::sync::Progress) {
    match p.total {
        Some(t) => eprintln!("  {}: {} of {t}", p.what, p.done),
        None => eprintln!("  {}: {}", p.what, p.done),
    }
}

pub(super) fn sync_command(config: Config, cmd: SyncCommand) -> Result<()> {
    use crate::sync;
    match cmd {
        SyncCommand::Export { out, full, json } => {
            let ctx = Context::open(config)?;
            let now = ctx.clock.now();
            ctx.store.write(move |c| sync::deadlines::run(c, now))?;
            let partial = out.with_extension("partial");
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&partial)
                .map_err(|e| Error::file(&partial, e))?;
            let made = sync::request::make(
                &ctx.store,
                now,
                SyncMode::Manual,
                full,
                sync_format::BufferedFile::new(file),
                &mut show_progress,
            );
            let (w, summary) = match made {
                Ok(m) => m,
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e);
                }
            };
            let file = w.into_file().map_err(|e| Error::file(&partial, e))?;
            file.sync_all().map_err(|e| Error::file(&partial, e))?;
            std::fs::rename(&partial, &out).map_err(|e| Error::file(&out, e))?;
            if json {
                println!("{}", to_json(&summary)?);
            } else {
                println!(
                    "wrote {}: {}\nupload it to the cloud, then run `satellite sync import \
                     RESPONSE-FILE`",
                    out.display(),
                    summary.text()
                );
            }
            Ok(())
        }
        SyncCommand::Import {
            file,
            dry_run,
            json,
        } => {
            let input = open_bundle_file(&file)?;
            let ctx = Context::open(config)?;
            let o = sync::apply::import(
                &ctx.store,
                ctx.clock.now(),
                input,
                SyncMode::Manual,
                dry_run,
                &mut show_progress,
            )?;
            if json {
                println!("{}", to_json(&o)?);
            } else {
                println!("{}", o.text());
            }
            Ok(())
        }
        SyncCommand::Now { full, json } => {
            let ctx = Context::open(config)?;
            let (r, o) = sync::network::sync_now(
                &ctx.store,
                &ctx.config,
                ctx.clock.as_ref(),
                full,
                &mut show_progress,
            )?;
            if json {
                println!(
                    "{}",
                    to_json(&serde_json::json!({ "request": r, "response": o }))?
                );
            } else {
                println!("sent {}\n{}", r.text(), o.text());
            }
            Ok(())
        }
        SyncCommand::Status { json } => {
            let ctx = Context::open(config)?;
            let st = sync::status(&ctx.store, &ctx.config, ctx.clock.now())?;
            if json {
                println!("{}", to_json(&st)?);
            } else {
                print!("{}", st.to_text());
            }
            Ok(())
        }
    }
}
