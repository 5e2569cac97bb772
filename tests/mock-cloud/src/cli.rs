//! The `mock-cloud` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use sync_format::payload::LicenseKind;

use super::service::{self, NewLicense};
use super::{Cloud, CloudError, Result};
use satellite::clock;

#[derive(Debug, Parser)]
#[command(
    name = "mock-cloud",
    version,
    about = "A mock of the central license manager, for end-to-end tests and demos: smart \
             accounts, virtual accounts, license pools, satellite registration and sync, with \
             its own SQLite store, CA and HTTPS endpoint.",
    after_help = "Environment: MOCK_CLOUD_TESTING_MANUAL_CLOCK=true enables `clock`; \
                  MOCK_CLOUD_SERVER_LISTEN sets the default of `serve --listen`.\n\
                  Exit codes: 0 ok, 1 runtime failure, 2 usage or input error."
)]
pub struct Cli {
    /// Data directory (database, CA, keys).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "./mock-cloud-data"
    )]
    pub data_dir: PathBuf,

    /// Configuration file (TOML: [server] listen, auto_approve; [testing] manual_clock).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTPS endpoint satellites register and sync with.
    Serve {
        /// Address and port to listen on (default: [server] listen, or 127.0.0.1:8444).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<SocketAddr>,
        /// Authorize every satellite registering over the network at once, with these
        /// virtual accounts (repeatable). Without it requests wait for `satellite approve`.
        #[arg(long = "auto-approve-va", value_name = "VA")]
        auto_approve: Vec<String>,
    },
    /// Smart accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Virtual accounts.
    #[command(subcommand)]
    Va(VaCommand),
    /// License pools.
    #[command(subcommand)]
    License(LicenseCommand),
    /// Satellites: authorize ("New satellite"), approve, list.
    #[command(subcommand)]
    Satellite(SatelliteCommand),
    /// Satellite synchronization by file: process a sync request, write the response.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Product instances the cloud knows (reported by satellites, or registered directly).
    #[command(subcommand)]
    Pi(PiCommand),
    /// Export-controlled (restricted) license requests and returns the cloud answered, with
    /// the licenses locked to devices.
    #[command(subcommand)]
    Export(ExportCommand),
    /// License usage per virtual account and entitlement: purchased, in use, balance,
    /// shortage (as of the satellites' last syncs).
    Usage {
        #[arg(long)]
        va: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the path of the cloud's CA certificate (satellites trust it) on standard
    /// output and its SHA-256 fingerprint on standard error. Give the fingerprint to a
    /// satellite registering by file: `satellite register import FILE
    /// --cloud-ca-fingerprint SHA256:…`.
    Ca {
        /// Print only the fingerprint (`SHA256:AB:CD:…`), on standard output.
        #[arg(long)]
        fingerprint: bool,
        #[command(subcommand)]
        action: Option<CaCommand>,
    },
    /// Show or move the manual test clock (needs MOCK_CLOUD_TESTING_MANUAL_CLOCK=true).
    #[command(subcommand)]
    Clock(ClockCommand),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Roll the CA over: a new CA replaces the current one, which certifies it and stays
    /// trusted (for satellites' bundles) until it expires. Each satellite's next sync
    /// response carries the new CA, cross-signed by the old one, and the satellite pins it.
    /// Prints the new fingerprint.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create a smart account.
    Create {
        name: String,
        /// The account may use export-controlled functionality.
        #[arg(long)]
        export_controlled: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VaCommand {
    /// Create a virtual account in a smart account.
    Create {
        account: String,
        va: String,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Perpetual,
    Term,
    Demo,
    ReportingOnly,
}

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Add a license pool line to a virtual account.
    Add {
        #[arg(long)]
        va: String,
        /// Entitlement tag devices ask for.
        #[arg(long)]
        tag: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Quantity purchased.
        #[arg(long)]
        count: i64,
        #[arg(long, value_enum, default_value = "perpetual")]
        kind: Kind,
        /// Start date (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        start: Option<String>,
        /// End date (RFC 3339 or YYYY-MM-DD); required for term licenses; demo: 60 days.
        #[arg(long)]
        end: Option<String>,
        /// Export-restricted license.
        #[arg(long)]
        restricted: bool,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Add many license lines from a CSV file with the header
    /// `va,tag,name,kind,count,start,end,restricted` (start/end may be empty; restricted is
    /// true or false; fields hold no commas or quotes). All lines or none are added.
    Import { file: PathBuf },
    /// List license pool lines.
    List {
        #[arg(long)]
        va: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Move licenses from one virtual account to another of the same smart account, at most
    /// the source's balance; the satellites learn it at their next sync.
    Transfer {
        /// The virtual account the licenses leave.
        #[arg(long)]
        from: String,
        /// The virtual account they join.
        #[arg(long)]
        to: String,
        /// Entitlement tag.
        #[arg(long)]
        tag: String,
        /// How many.
        #[arg(long)]
        count: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum SatelliteCommand {
    /// List satellites with their state, account and virtual accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// "New satellite": authorize a registration request file and write the authorization.
    Authorize {
        /// The satellite's registration request.
        file: PathBuf,
        /// Name of the satellite in the cloud.
        #[arg(long)]
        name: String,
        /// Virtual accounts to assign (repeatable).
        #[arg(long = "va", required = true)]
        vas: Vec<String>,
        /// Where to write the authorization file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Approve a registration request received over the network.
    Approve {
        /// Satellite id, request id or name.
        satellite: String,
        #[arg(long = "va", required = true)]
        vas: Vec<String>,
        /// Name of the satellite in the cloud (default: the name it asked for).
        #[arg(long)]
        name: Option<String>,
    },
    /// Associate one more virtual account with a satellite; its pools reach the satellite at
    /// its next sync.
    AddVa {
        /// Satellite id, request id or name.
        satellite: String,
        /// The virtual account.
        va: String,
    },
    /// Remove a satellite (the satellite's Actions, "Remove"): its licenses are released and
    /// its virtual accounts disassociated; the satellite learns it at its next sync, by file
    /// or network, and stops serving devices until it is registered again.
    Remove {
        /// Satellite id, request id or name.
        satellite: String,
    },
    /// Write a satellite's authorization file again ("Download Authorization File").
    Authorization {
        satellite: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// What the cloud holds of a satellite's event log: count, head of the hash chain, and
    /// the breaks found (events edited, removed or inserted at the satellite).
    Events {
        /// Satellite id, request id or name.
        satellite: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Process a satellite's sync request ("Upload the Synchronization File") and write the
    /// response ("Download Response File"). The same request again gives the same response.
    Process {
        /// The satellite's sync request.
        file: PathBuf,
        /// Where to write the response.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PiCommand {
    /// List product instances.
    List {
        #[arg(long)]
        va: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Register a device directly with the cloud (not through a satellite).
    Add {
        #[arg(long)]
        va: String,
        #[arg(long)]
        pid: String,
        #[arg(long)]
        sn: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Remove a device registered directly.
    Remove {
        #[arg(long)]
        pid: String,
        #[arg(long)]
        sn: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// List every answered request and return, and whether its lock is held or released.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    Show,
    Set { time: String },
    Advance { duration: String },
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    server: ServerSection,
    testing: TestingSection,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ServerSection {
    listen: Option<SocketAddr>,
    auto_approve: Vec<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TestingSection {
    manual_clock: bool,
}

fn load_config(path: Option<&Path>) -> Result<FileConfig> {
    let mut cfg = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CloudError::Invalid(format!("{}: {e}", p.display())))?;
            toml::from_str(&text)
                .map_err(|e| CloudError::Invalid(format!("{}: {e}", p.display())))?
        }
        None => FileConfig::default(),
    };
    if let Ok(v) = std::env::var("MOCK_CLOUD_TESTING_MANUAL_CLOCK") {
        cfg.testing.manual_clock = match v.as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" | "" => false,
            other => {
                return Err(CloudError::Invalid(format!(
                    "MOCK_CLOUD_TESTING_MANUAL_CLOCK={other:?}: expected true or false"
                )))
            }
        };
    }
    if let Ok(v) = std::env::var("MOCK_CLOUD_SERVER_LISTEN") {
        cfg.server.listen = Some(v.parse().map_err(|_| {
            CloudError::Invalid(format!(
                "MOCK_CLOUD_SERVER_LISTEN={v:?}: expected ADDR:PORT"
            ))
        })?);
    }
    Ok(cfg)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(satellite::datadir::write_public(path, bytes)?)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CloudError::Invalid(format!("{}: {e}", path.display())))?;
    let limit = sync_format::Limits::default().max_compressed;
    if meta.len() > limit {
        return Err(sync_format::Error::TooLarge {
            size: meta.len(),
            limit,
        }
        .into());
    }
    std::fs::read(path).map_err(|e| CloudError::Invalid(format!("{}: {e}", path.display())))
}

fn json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).map_err(|e| CloudError::Internal(e.to_string()))?
    );
    Ok(())
}

pub fn run(cli: Cli) -> Result<()> {
    let cfg = load_config(cli.config.as_deref())?;
    let open = || Cloud::open(&cli.data_dir, cfg.testing.manual_clock);
    match cli.command {
        Command::Serve {
            listen,
            auto_approve,
        } => {
            let cloud = open()?;
            let listen = listen
                .or(cfg.server.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8444)));
            let auto = if auto_approve.is_empty() {
                cfg.server.auto_approve
            } else {
                auto_approve
            };
            actix_web::rt::System::new().block_on(serve(cloud, listen, auto))
        }
        Command::Account(AccountCommand::Create {
            name,
            export_controlled,
        }) => {
            service::account_create(&open()?, &name, export_controlled)?;
            println!(
                "created smart account {name:?}{}",
                if export_controlled {
                    " (export-controlled allowed)"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Command::Va(VaCommand::Create {
            account,
            va,
            description,
        }) => {
            service::va_create(&open()?, &account, &va, &description)?;
            println!("created virtual account {va:?} in {account:?}");
            Ok(())
        }
        Command::License(LicenseCommand::Add {
            va,
            tag,
            name,
            count,
            kind,
            start,
            end,
            restricted,
            description,
        }) => {
            let parse = |s: Option<String>| -> Result<Option<i64>> {
                s.map(|s| clock::parse_time(&s).map_err(|e| CloudError::Invalid(e.to_string())))
                    .transpose()
            };
            let l = NewLicense {
                va,
                tag,
                name,
                description,
                kind: match kind {
                    Kind::Perpetual => LicenseKind::Perpetual,
                    Kind::Term => LicenseKind::Term,
                    Kind::Demo => LicenseKind::Demo,
                    Kind::ReportingOnly => LicenseKind::ReportingOnly,
                },
                count,
                start: parse(start)?,
                end: parse(end)?,
                restricted,
            };
            service::license_add(&open()?, &l)?;
            println!("added {} x {:?} ({}) to {:?}", l.count, l.name, l.tag, l.va);
            Ok(())
        }
        Command::License(LicenseCommand::Import { file }) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CloudError::Invalid(format!("{}: {e}", file.display())))?;
            let n = service::license_import(&open()?, &text)?;
            println!("added {n} license lines from {}", file.display());
            Ok(())
        }
        Command::License(LicenseCommand::List { va, json: as_json }) => {
            let rows = service::license_list(&open()?, va.as_deref())?;
            if as_json {
                return json(&rows);
            }
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}{}",
                    r.va,
                    r.tag,
                    r.name,
                    r.kind,
                    r.quantity,
                    if r.restricted { "\trestricted" } else { "" }
                );
            }
            Ok(())
        }
        Command::Satellite(SatelliteCommand::List { json: as_json }) => {
            let cloud = open()?;
            super::sync::sweep(&cloud, cloud.now()?)?;
            let rows = service::satellite_list(&cloud)?;
            if as_json {
                return json(&rows);
            }
            println!("NAME\tSTATE\tACCOUNT\tVIRTUAL ACCOUNTS\tSATELLITE ID\tLAST SYNC");
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    r.name,
                    r.state,
                    r.account.unwrap_or_default(),
                    r.virtual_accounts.join(","),
                    r.satellite_id,
                    r.last_sync_at.unwrap_or_else(|| "never".into())
                );
            }
            Ok(())
        }
        Command::Satellite(SatelliteCommand::Authorize {
            file,
            name,
            vas,
            out,
        }) => {
            let request = read_file(&file)?;
            let sid =
                service::authorize_file(&open()?, &request, &name, &vas, |b| write_file(&out, b))?;
            println!(
                "authorized satellite {name:?} ({sid}); wrote {}",
                out.display()
            );
            Ok(())
        }
        Command::Satellite(SatelliteCommand::Approve {
            satellite,
            vas,
            name,
        }) => {
            let name = service::approve(&open()?, &satellite, &vas, name.as_deref())?;
            println!(
                "approved satellite {name:?}; it collects its authorization at its next attempt"
            );
            Ok(())
        }
        Command::Satellite(SatelliteCommand::AddVa { satellite, va }) => {
            let name = super::lifecycle::add_va(&open()?, &satellite, &va)?;
            println!("{va:?} now belongs to the satellite {name:?}; its next sync brings it");
            Ok(())
        }
        Command::License(LicenseCommand::Transfer {
            from,
            to,
            tag,
            count,
        }) => {
            super::lifecycle::transfer_licenses(&open()?, &from, &to, &tag, count)?;
            println!("transferred {count} {tag:?} from {from:?} to {to:?}");
            Ok(())
        }
        Command::Satellite(SatelliteCommand::Remove { satellite }) => {
            let name = super::lifecycle::remove_satellite(&open()?, &satellite)?;
            println!(
                "removed satellite {name:?}: its licenses are released and its virtual \
                 accounts free; it learns it at its next sync"
            );
            Ok(())
        }
        Command::Satellite(SatelliteCommand::Authorization { satellite, out }) => {
            let bytes = service::authorization(&open()?, &satellite)?;
            write_file(&out, &bytes)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Satellite(SatelliteCommand::Events {
            satellite,
            json: as_json,
        }) => {
            let chain = service::event_chain(&open()?, &satellite)?;
            if as_json {
                return json(&chain);
            }
            println!(
                "{} events of satellite {:?}, head {}",
                chain.events,
                chain.satellite,
                chain.head.as_deref().unwrap_or("(none)")
            );
            for b in &chain.breaks {
                println!(
                    "BROKEN at event {}: {} (found {})",
                    b.event_id, b.reason, b.detected_at
                );
            }
            if chain.breaks.is_empty() {
                println!("chain intact");
            }
            Ok(())
        }
        Command::Sync(SyncCommand::Process {
            file,
            out,
            json: as_json,
        }) => {
            let input = std::fs::File::open(&file)
                .map_err(|e| CloudError::Invalid(format!("{}: {e}", file.display())))?;
            let (bytes, p) = super::sync::process(&open()?, input, None)?;
            write_file(&out, &bytes)?;
            if as_json {
                return json(&p);
            }
            println!(
                "processed sync request {} of satellite {:?}{}: {} product instances, {} usage \
                 records, {} events ({} chain breaks), {} refused; export requests: {} granted, {} denied, {} \
                 returned; wrote {}",
                p.request_id,
                p.satellite,
                if p.repeated {
                    " (processed before: same response)"
                } else {
                    ""
                },
                p.product_instances,
                p.usage,
                p.events,
                p.chain_breaks,
                p.rejected,
                p.export_granted,
                p.export_denied,
                p.export_returned,
                out.display()
            );
            Ok(())
        }
        Command::Pi(PiCommand::List { va, json: as_json }) => {
            let rows = super::sync::pi_list(&open()?, va.as_deref())?;
            if as_json {
                return json(&rows);
            }
            println!("PI\tVA\tPID\tSN\tSTATE\tSATELLITE\tUSAGE");
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.pi,
                    r.va,
                    r.pid,
                    r.sn,
                    r.state,
                    r.satellite.unwrap_or_else(|| "direct".into()),
                    r.usage
                        .iter()
                        .map(|(t, n)| format!("{t}={n}"))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
            Ok(())
        }
        Command::Export(ExportCommand::List { json: as_json }) => {
            let rows = super::export::list(&open()?)?;
            if as_json {
                return json(&rows);
            }
            println!("REQUEST\tSATELLITE\tOP\tPI\tTAG\tCOUNT\tSTATUS\tLOCK\tREASON");
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.request_id,
                    r.satellite,
                    r.op,
                    r.pi,
                    r.tag,
                    r.count,
                    r.status,
                    r.lock.unwrap_or_else(|| "-".into()),
                    r.reason.unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Pi(PiCommand::Add { va, pid, sn, name }) => {
            let id = super::sync::pi_add_direct(&open()?, &va, &pid, &sn, &name)?;
            println!("registered PID:{pid} SN:{sn} directly in {va:?} ({id})");
            Ok(())
        }
        Command::Pi(PiCommand::Remove { pid, sn }) => {
            super::sync::pi_remove_direct(&open()?, &pid, &sn)?;
            println!("removed PID:{pid} SN:{sn}");
            Ok(())
        }
        Command::Usage { va, json: as_json } => {
            let rows = super::sync::usage(&open()?, va.as_deref())?;
            if as_json {
                return json(&rows);
            }
            println!("VA\tTAG\tPURCHASED\tIN USE\tBALANCE");
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}{}",
                    r.va,
                    r.tag,
                    r.purchased,
                    r.in_use,
                    r.balance,
                    if r.shortage { "\tSHORTAGE" } else { "" }
                );
            }
            Ok(())
        }
        Command::Ca {
            action: Some(CaCommand::Rotate),
            ..
        } => {
            let fp = open()?.rotate_ca()?;
            println!("{fp}");
            eprintln!(
                "rotated the CA: satellites pin the new one at their next sync; the old one \
                 stays trusted until it expires"
            );
            Ok(())
        }
        Command::Ca {
            fingerprint,
            action: None,
        } => {
            let cloud = open()?;
            if fingerprint {
                println!("{}", cloud.ca_fingerprint()?);
            } else {
                println!("{}", cloud.ca_path().display());
                eprintln!("fingerprint: {}", cloud.ca_fingerprint()?);
            }
            Ok(())
        }
        Command::Clock(cmd) => {
            let cloud = open()?;
            let now = match cmd {
                ClockCommand::Show => cloud.now()?,
                ClockCommand::Set { time } => {
                    let at =
                        clock::parse_time(&time).map_err(|e| CloudError::Invalid(e.to_string()))?;
                    cloud.move_clock(Some(at), 0)?
                }
                ClockCommand::Advance { duration } => {
                    let d = clock::parse_duration(&duration)
                        .map_err(|e| CloudError::Invalid(e.to_string()))?;
                    cloud.move_clock(None, d)?
                }
            };
            println!("{}", clock::format(now));
            Ok(())
        }
    }
}

async fn serve(cloud: Cloud, listen: SocketAddr, auto_approve: Vec<String>) -> Result<()> {
    // TLS is checked by the peers' libraries against the system's time, whatever the
    // manual clock says: the transport certificate is dated by the system clock.
    let now = satellite::clock::system_now();
    let tls_key_path = cloud.data_dir.join("tls.key.pem");
    let tls_cert_path = cloud.data_dir.join("tls.crt.pem");
    let key = super::key_file(&tls_key_path)?;
    let cert = satellite::tls::server_certificate(
        &key,
        "mock cloud",
        &["localhost".to_string()],
        now,
        Some((&cloud.ca_cert, cloud.ca_key())),
    )?;
    // After a rollover the chain carries the cross-certificate, so satellites that still
    // pin the CA before can reach the cloud and learn the new one.
    let mut chain = cert.to_pem()?;
    if let Some(cross) = &cloud.ca_cross {
        chain.extend(cross.to_pem()?);
    }
    satellite::datadir::write_public(&tls_cert_path, &chain)?;
    let server_cert = satellite::tls::ServerCert {
        cert_path: tls_cert_path,
        key_path: tls_key_path,
        self_signed: false,
        fingerprint: sync_format::pki::fingerprint(&cert)?,
    };
    let acceptor = satellite::tls::acceptor(&server_cert)?;
    let state = super::http::State {
        cloud: Arc::new(cloud),
        auto_approve: Arc::new(auto_approve),
    };
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().configure(super::http::configure(state.clone()))
    })
    .workers(2)
    .disable_signals()
    .bind_openssl(listen, acceptor)
    .map_err(|e| CloudError::Invalid(format!("cannot listen on {listen}: {e}")))?;
    for a in server.addrs() {
        tracing::info!(addr = %a, "mock cloud listening (https)");
    }
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        let sig = satellite::server::wait_for_signal().await;
        tracing::info!(signal = sig, "mock cloud shutting down");
        handle.stop(true).await;
    });
    server
        .await
        .map_err(|e| CloudError::Internal(e.to_string()))?;
    tracing::info!("mock cloud stopped");
    Ok(())
}
