//! `satellite register`: registering the satellite with the cloud.

use super::*;
use crate::states::SyncMode;

#[derive(Debug, Subcommand)]
pub enum RegisterCommand {
    /// Write a registration request bundle to upload to the cloud ("New satellite").
    Export {
        /// Where to write the request (a zip file).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify the cloud's authorization bundle and register with what it carries (account,
    /// virtual accounts, license pools, the cloud's CA to pin).
    Import {
        /// The authorization file downloaded from the cloud.
        file: PathBuf,
        /// The SHA-256 fingerprint of the cloud's CA, read from the cloud out of band (the
        /// mock cloud prints it with `mock-cloud ca`), e.g. SHA256:AB:CD:…. Needed for a
        /// first registration when [cloud] ca_file is not set: the satellite never trusts a
        /// CA just because an authorization carries it.
        #[arg(long, value_name = "SHA256:FINGERPRINT")]
        cloud_ca_fingerprint: Option<String>,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send the registration request to the cloud over HTTPS and import its authorization.
    /// If the cloud holds the request for approval, the satellite shows "Authorization
    /// Pending"; run the command again (or use --wait) to collect the answer.
    Network {
        /// The cloud's URL (default: [cloud] url).
        #[arg(long, value_name = "URL")]
        cloud: Option<String>,
        /// CA certificate (PEM) to trust for the cloud (default: [cloud] ca_file, or the CA
        /// pinned by an earlier registration). It vouches for the authorization too when it is
        /// the CA that signed it.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// The SHA-256 fingerprint of the cloud's bundle CA, when it is not the CA of --ca
        /// (see `register import`).
        #[arg(long, value_name = "SHA256:FINGERPRINT")]
        cloud_ca_fingerprint: Option<String>,
        /// Keep asking for the answer this long, e.g. 60s or 10m (default: do not wait).
        #[arg(long, value_name = "DURATION")]
        wait: Option<String>,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn register_command(config: Config, cmd: RegisterCommand) -> Result<()> {
    use crate::registration::{self, NetworkOutcome, Registered};
    let print_registered = |r: &Registered, json: bool| -> Result<()> {
        if json {
            println!("{}", to_json(r)?);
        } else {
            println!("{}", r.summary());
        }
        Ok(())
    };
    match cmd {
        RegisterCommand::Export { out } => {
            let ctx = Context::open(config)?;
            let (bytes, id) = registration::make_request(
                &ctx.store,
                &ctx.config,
                ctx.clock.as_ref(),
                SyncMode::Manual,
                None,
            )?;
            crate::datadir::write_public(&out, &bytes)?;
            println!(
                "wrote the registration request {} ({id}); upload it to the cloud \
                 (\"New satellite\"), then run `satellite register import AUTHORIZATION-FILE`",
                out.display()
            );
            Ok(())
        }
        RegisterCommand::Import {
            file,
            cloud_ca_fingerprint,
            json,
        } => {
            let accept = registration::accepted_ca(cloud_ca_fingerprint.as_deref())?;
            let bytes = read_bundle_file(&file)?;
            let ctx = Context::open(config)?;
            let r = registration::import_authorization(
                &ctx.store,
                &ctx.config,
                ctx.clock.as_ref(),
                &bytes,
                accept.as_ref(),
            )?;
            print_registered(&r, json)
        }
        RegisterCommand::Network {
            cloud,
            ca,
            cloud_ca_fingerprint,
            wait,
            json,
        } => {
            let accept = registration::accepted_ca(cloud_ca_fingerprint.as_deref())?;
            let wait = match wait {
                Some(w) => {
                    std::time::Duration::from_secs(clock::parse_duration(&w)?.unsigned_abs())
                }
                None => std::time::Duration::ZERO,
            };
            let url = cloud.unwrap_or_else(|| config.cloud.url.clone());
            if url.is_empty() {
                return Err(Error::invalid(
                    "no cloud URL: pass --cloud URL or set [cloud] url",
                ));
            }
            let ctx = Context::open(config)?;
            match registration::register_network(
                &ctx.store,
                &ctx.config,
                ctx.clock.as_ref(),
                &url,
                ca.as_deref(),
                accept.as_ref(),
                wait,
            )? {
                NetworkOutcome::Registered(r) => print_registered(&r, json),
                NetworkOutcome::Pending {
                    request_id,
                    message,
                } => {
                    if json {
                        let v = serde_json::json!({
                            "state": "pending", "request_id": request_id, "message": message
                        });
                        println!("{}", to_json(&v)?);
                    } else {
                        println!(
                            "Authorization Pending: the cloud holds registration request \
                             {request_id} until an operator approves it ({message}); run this \
                             command again to collect the authorization"
                        );
                    }
                    Ok(())
                }
            }
        }
    }
}
