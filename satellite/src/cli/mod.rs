//! The command line: one clap enum of subcommands. Each command only parses, calls the
//! domain layer and prints; exit codes come from [`Error::exit_code`].

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::clock::{self, Clock, ManualClock};
use crate::config::{Config, LogFormat};
use crate::db::Store;
use crate::error::{Error, Result};
use crate::http::AppState;

mod reports;
mod users;
pub use reports::{AlertCommand, EventCommand, Format, ReportCommand};
pub use users::{ApiTokenCommand, UserCommand};

#[derive(Debug, Parser)]
#[command(
    name = "satellite",
    version,
    about = "On-premises license satellite: devices of an air-gapped site register and report \
             license use here; it syncs with the central license manager over HTTPS or by files.",
    after_help = "Configuration: built-in defaults (config/satellite.toml) < --config FILE < \
                  SATELLITE_<SECTION>_<KEY> environment variables < --data-dir.\n\
                  Exit codes: 0 ok, 1 runtime failure, 2 usage or input error, 3 evidence of \
                  tampering (event verify)."
)]
pub struct Cli {
    /// Configuration file (TOML). Without it the built-in defaults apply.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Data directory (database, keys, TLS certificate); overrides [storage] data_dir.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the satellite: the HTTPS device API with /healthz and /readyz, and the operator
    /// console and API (on [console] listen, https://127.0.0.1:8444/console/ by default).
    ///
    /// On first start, with no operator account yet, creates "admin" with [console]
    /// admin_password or a random password printed once on standard error.
    ///
    /// Creates the data directory and database on first start, applies pending migrations,
    /// makes a self-signed TLS certificate if none is configured (its SHA-256 fingerprint is
    /// logged) and serves until SIGINT or SIGTERM, finishing requests in flight. One server
    /// per data directory. Under systemd (NOTIFY_SOCKET) it reports READY=1, STOPPING=1 and
    /// watchdog pings.
    Serve,

    /// Show the satellite's state: registration, last sync, counts.
    Status {
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Apply pending database migrations and exit.
    Migrate,

    /// Check the configuration and the data directory, print the effective configuration,
    /// and exit (0 when all is well, 2 with the reason when not).
    Configtest,

    /// Show or move the manual test clock (needs `[testing] manual_clock = true`).
    #[command(subcommand)]
    Clock(ClockCommand),

    /// Product-instance registration tokens: create, list, show, download, revoke, remove.
    #[command(subcommand)]
    Token(TokenCommand),

    /// Product instances (devices): list, show, remove, transfer between virtual accounts.
    #[command(subcommand)]
    Device(DeviceCommand),

    /// License pools per virtual account: purchased, in use, balance.
    #[command(subcommand)]
    License(LicenseCommand),

    /// Register this satellite with the cloud: by files carried across the air gap
    /// (`export`, then `import`), or over HTTPS (`network`).
    #[command(subcommand)]
    Register(RegisterCommand),

    /// Synchronize with the cloud: by files carried across the air gap (`export`, then
    /// `import`), or over HTTPS (`now`, and the `[sync] schedule` of a running server).
    #[command(subcommand)]
    Sync(SyncCommand),

    /// Operator accounts of the console and operator API (admin, operator, auditor), and
    /// their API tokens.
    #[command(subcommand)]
    User(UserCommand),

    /// Export-controlled (restricted) license requests and returns: queued for the next
    /// sync, then granted or denied by the cloud, delivered to the device, returned.
    #[command(subcommand)]
    Export(ExportCommand),

    /// Alerts: list (by severity and action due), dismiss, remind later, and run the alert
    /// timers now.
    #[command(subcommand)]
    Alert(AlertCommand),

    /// The event log: list (by virtual account, product instance, license, time) and
    /// verify its hash chain.
    #[command(subcommand)]
    Event(EventCommand),

    /// Reports across all virtual accounts: licenses, product instances (text, JSON or CSV).
    #[command(subcommand)]
    Report(ReportCommand),

    /// Back up the database and keys while the satellite runs (a consistent SQLite copy),
    /// into one file holding private keys (written 0600).
    Backup {
        /// Where to write the backup.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Seal the backup with a passphrase (AES-256-GCM, key by scrypt): taken from
        /// --passphrase-file, else SATELLITE_BACKUP_PASSPHRASE; at least 12 characters.
        #[arg(long)]
        encrypt: bool,
        /// A file whose first line is the passphrase (with --encrypt).
        #[arg(long, value_name = "FILE", requires = "encrypt")]
        passphrase_file: Option<PathBuf>,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Restore a backup into this data directory; the satellite must be stopped. Refuses a
    /// backup of another satellite unless --force. The database it replaces is kept as
    /// `satellite.db.before-restore-<time>`; an older backup is migrated.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Replace even another satellite's data.
        #[arg(long)]
        force: bool,
        /// For an encrypted backup: a file whose first line is the passphrase (default:
        /// SATELLITE_BACKUP_PASSPHRASE).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// List restricted-license requests and returns with their state: queued, sent (in
    /// which sync), granted, denied (with the cloud's reason), delivered, returned.
    List {
        /// Only this state.
        #[arg(long, value_parser = crate::export::STATES)]
        state: Option<String>,
        /// Only this virtual account.
        #[arg(long)]
        va: Option<String>,
        /// Only this product instance (PI id).
        #[arg(long)]
        device: Option<String>,
        /// Only this entitlement tag.
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one request or return by its id.
    Show {
        request_id: String,
        #[arg(long)]
        json: bool,
    },
}

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

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for one virtual account; prints the token (keep it secret).
    Create {
        /// The virtual account devices registered with the token join.
        #[arg(long)]
        va: String,
        /// Days the token stays valid, 1 to 365.
        #[arg(long)]
        days: i64,
        /// Most devices the token may register (default: no limit).
        #[arg(long)]
        max_uses: Option<i64>,
        /// Allow export-controlled functionality for devices registered with it (only if the
        /// smart account allows it).
        #[arg(long)]
        export_controlled: bool,
        /// A note for operators (at most 100 characters).
        #[arg(long, default_value = "")]
        description: String,
        /// Print a JSON object (with a `token` field) instead of the bare token.
        #[arg(long)]
        json: bool,
    },
    /// List tokens with their state (active, expired, used-up, revoked).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one token, the token string included.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Write a token to a text file, to hand to whoever sets up devices.
    Download {
        id: i64,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Revoke a token: it registers no more devices (those it registered stay).
    Revoke { id: i64 },
    /// Remove a revoked token.
    Remove { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List product instances.
    List {
        /// Only this virtual account.
        #[arg(long)]
        va: Option<String>,
        /// Only names containing this text.
        #[arg(long)]
        name: Option<String>,
        /// Only active or removed ones.
        #[arg(long, value_parser = ["active", "removed"])]
        status: Option<String>,
        #[command(flatten)]
        format: Format,
    },
    /// Show one product instance (PI id or PID:SN) with the licenses it uses.
    Show {
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a product instance; its licenses are released at once.
    Remove {
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Let an active product instance that lost its key register again without it. A
    /// device's identity belongs to its key: registering an active PID:SN again needs the
    /// signature of its current key, or this permission (ended by the next registration).
    AllowReregister {
        /// The product instance: PI id or PID:SN.
        device: String,
        /// How long the permission lasts, 1 to 168 hours.
        #[arg(long, default_value_t = crate::devices::REREGISTER_DEFAULT_HOURS)]
        hours: i64,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move a product instance to another of the satellite's virtual accounts. Its licenses
    /// do not follow: it asks again in its new virtual account.
    Transfer {
        device: String,
        /// The virtual account to move it to.
        #[arg(long)]
        va: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Purchased, in use, balance and alerts of every license of every virtual account.
    List {
        /// Only this virtual account.
        #[arg(long)]
        va: Option<String>,
        #[command(flatten)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// Print the satellite's current time (and the offset from the system clock).
    Show {
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set the clock to a time: RFC 3339 (2027-01-31T12:00:00Z) or a date (2027-01-31).
    Set {
        /// The time to set.
        time: String,
    },
    /// Move the clock forward, e.g. `90d`, `12h`, `30m`, `1d12h`.
    Advance {
        /// How far: a number and a unit (s, m, h, d, w).
        duration: String,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.storage.data_dir = dir;
    }
    let serving = matches!(cli.command, Command::Serve);
    init_logging(&config, serving);

    match cli.command {
        Command::Serve => serve(config),
        Command::Migrate => {
            let (store, applied) = Store::open(&config.storage)?;
            if applied.is_empty() {
                println!("database {} is up to date", store.db_path().display());
            } else {
                println!(
                    "applied {} migration(s) to {}: {}",
                    applied.len(),
                    store.db_path().display(),
                    applied.join(", ")
                );
            }
            Ok(())
        }
        Command::Configtest => {
            let ctx = Context::open(config)?;
            print!("{}", ctx.config.to_toml());
            println!(
                "# configuration OK; database {} opened",
                ctx.store.db_path().display()
            );
            Ok(())
        }
        Command::Status { json } => {
            let ctx = Context::open(config)?;
            let status = crate::status::status(&ctx.store, ctx.clock.as_ref())?;
            if json {
                println!("{}", to_json(&status)?);
            } else {
                print!("{}", status.to_text());
            }
            Ok(())
        }
        Command::Clock(cmd) => clock_command(config, cmd),
        Command::Register(cmd) => register_command(config, cmd),
        Command::Token(cmd) => token_command(config, cmd),
        Command::Device(cmd) => device_command(config, cmd),
        Command::License(cmd) => license_command(config, cmd),
        Command::Export(cmd) => export_command(config, cmd),
        Command::Alert(cmd) => reports::alert_command(config, cmd),
        Command::Event(cmd) => reports::event_command(config, cmd),
        Command::Report(cmd) => reports::report_command(config, cmd),
        Command::User(cmd) => users::user_command(config, cmd),
        Command::Backup {
            out,
            encrypt,
            passphrase_file,
            json,
        } => {
            let passphrase = if encrypt {
                Some(
                    backup_passphrase(passphrase_file.as_deref())?.ok_or_else(|| {
                        Error::invalid(
                            "--encrypt needs a passphrase: --passphrase-file FILE or \
                         SATELLITE_BACKUP_PASSPHRASE",
                        )
                    })?,
                )
            } else {
                None
            };
            let ctx = Context::open(config)?;
            let b =
                crate::backup::backup(&ctx.store, ctx.clock.now(), &out, passphrase.as_deref())?;
            if json {
                println!("{}", to_json(&b)?);
            } else {
                let c = &b.manifest.counts;
                println!(
                    "wrote {} ({} bytes): satellite {} ({:?}), schema {}, {} product instances, \
                     {} usage records, {} tokens, {} events; it holds private keys: keep it safe",
                    out.display(),
                    b.bytes,
                    b.manifest.satellite_id,
                    b.manifest.satellite_name,
                    b.manifest.schema,
                    c.product_instances,
                    c.license_usage,
                    c.tokens,
                    c.events
                );
            }
            Ok(())
        }
        Command::Restore {
            file,
            force,
            passphrase_file,
            json,
        } => {
            let now = clock::system_now();
            let passphrase = backup_passphrase(passphrase_file.as_deref())?;
            let r =
                crate::backup::restore(&config.storage, &file, force, now, passphrase.as_deref())?;
            if json {
                println!("{}", to_json(&r)?);
            } else {
                println!(
                    "restored satellite {} ({:?}) from the backup of {}: {} product instances, \
                     {} events{}{}",
                    r.satellite_id,
                    r.satellite_name,
                    r.backup_created_at,
                    r.counts.product_instances,
                    r.counts.events,
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
        Command::Sync(cmd) => sync_command(config, cmd),
    }
}

/// The configuration, the open store and the clock, with the satellite initialised.
pub struct Context {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
}

impl Context {
    pub fn open(config: Config) -> Result<Context> {
        let (store, applied) = Store::open(&config.storage)?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "applied database migrations");
        }
        let clock = clock::from_config(config.testing.manual_clock, &store);
        crate::identity::ensure(&store, &config, clock.as_ref())?;
        Ok(Context {
            config: Arc::new(config),
            store,
            clock,
        })
    }
}

fn serve(config: Config) -> Result<()> {
    // One server per data directory; `restore` waits for it to stop.
    let _lock = crate::backup::lock(&config.storage.data_dir, "one server per data directory")?;
    let ctx = Context::open(config)?;
    tracing::info!(
        data_dir = %ctx.store.data_dir().display(),
        version = env!("CARGO_PKG_VERSION"),
        "starting satellite"
    );
    first_admin(&ctx)?;
    let (writer, writer_thread) = crate::db::writer::Writer::start(&ctx.store)?;
    let state = AppState {
        device_ca: Arc::new(crate::identity::device_ca(ctx.store.data_dir())?),
        token_key: Arc::new(crate::identity::token_key(ctx.store.data_dir())?),
        identities: Arc::default(),
        console: Arc::default(),
        config: ctx.config,
        store: ctx.store,
        clock: ctx.clock,
        writer,
        ready: Arc::new(AtomicBool::new(false)),
    };
    let scheduler = crate::sync::network::Scheduler::start(
        state.store.clone(),
        state.config.clone(),
        state.clock.clone(),
    )?;
    let served = actix_web::rt::System::new().block_on(crate::server::serve(state));
    scheduler.stop();
    // No request is in flight any more: the writer finishes its queue and ends.
    writer_thread.stop();
    tracing::info!("database closed");
    served
}

/// First start: creates the "admin" account, with the configured password or a generated
/// one shown here, once, on standard error (not in the log).
fn first_admin(ctx: &Context) -> Result<()> {
    let made = crate::operators::bootstrap(
        &mut *ctx.store.conn()?,
        &ctx.config.console.admin_password,
        ctx.clock.now(),
    )?;
    match made {
        Some(crate::operators::Bootstrapped {
            generated: Some(pw),
        }) => {
            tracing::warn!(
                "created the operator account \"admin\"; its password is on standard error, once"
            );
            eprintln!(
                "\n  Operator console: created the account \"admin\" with the password\n\n      {pw}\n\n  \
                 It is shown only this once. Log in and change it, or set it with\n  \
                 `satellite user passwd admin`.\n"
            );
        }
        Some(_) => {
            tracing::info!("created the operator account \"admin\" with the configured password")
        }
        None => {}
    }
    Ok(())
}

fn clock_command(config: Config, cmd: ClockCommand) -> Result<()> {
    if !config.testing.manual_clock {
        return Err(Error::ManualClockDisabled);
    }
    // Parse before touching the store, so a typo changes nothing.
    enum Op {
        Show(bool),
        Set(i64),
        Advance(i64),
    }
    let op = match cmd {
        ClockCommand::Show { json } => Op::Show(json),
        ClockCommand::Set { time } => Op::Set(clock::parse_time(&time)?),
        ClockCommand::Advance { duration } => Op::Advance(clock::parse_duration(&duration)?),
    };
    let ctx = Context::open(config)?;
    let manual = ManualClock::new(ctx.store.clone());
    let now = match op {
        Op::Show(json) => {
            let now = manual.now();
            if json {
                let v = serde_json::json!({
                    "now": clock::format(now),
                    "unix": now,
                    "offset_seconds": manual.current_offset(),
                });
                println!("{}", to_json(&v)?);
                return Ok(());
            }
            now
        }
        Op::Set(at) => manual.set(at)?,
        Op::Advance(secs) => manual.advance(secs)?,
    };
    println!(
        "{} (offset from system clock: {}s)",
        clock::format(now),
        manual.current_offset()
    );
    Ok(())
}

/// Who did it, for the event log.
pub(crate) fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .map(|u| format!("cli:{u}"))
        .unwrap_or_else(|_| "cli".into())
}

fn token_command(config: Config, cmd: TokenCommand) -> Result<()> {
    use crate::tokens::{self, NewToken, TokenView};
    let ctx = Context::open(config)?;
    let key = crate::identity::token_key(ctx.store.data_dir())?;
    let now = ctx.clock.now();
    let mut conn = ctx.store.conn()?;
    let line = |t: &TokenView| {
        format!(
            "{:>4}  {:<8}  {:<16}  {:<8}  uses {}{}  expires {}{}  {}",
            t.id,
            t.hint,
            t.virtual_account,
            t.status,
            t.uses,
            t.max_uses.map(|m| format!("/{m}")).unwrap_or_default(),
            t.expires_at,
            if t.export_controlled {
                "  export-controlled"
            } else {
                ""
            },
            t.description
        )
    };
    match cmd {
        TokenCommand::Create {
            va,
            days,
            max_uses,
            export_controlled,
            description,
            json,
        } => {
            let (token, view) = tokens::create(
                &mut conn,
                &key,
                now,
                &NewToken {
                    va,
                    days,
                    max_uses,
                    export_controlled,
                    description,
                    created_by: operator(),
                },
            )?;
            if json {
                let mut v =
                    serde_json::to_value(&view).map_err(|e| Error::Internal(e.to_string()))?;
                v["token"] = serde_json::Value::String(token);
                println!("{}", to_json(&v)?);
            } else {
                println!("{token}");
            }
        }
        TokenCommand::List { json } => {
            let all = tokens::list(&mut conn, now)?;
            if json {
                println!("{}", to_json(&all)?);
            } else if all.is_empty() {
                println!("no tokens (create one with `satellite token create --va VA --days N`)");
            } else {
                println!("  ID  HINT      VIRTUAL ACCOUNT   STATE");
                for t in &all {
                    println!("{}", line(t));
                }
            }
        }
        TokenCommand::Show { id, json } => {
            let (token, view) = tokens::show(&mut conn, &key, id, now)?;
            if json {
                let mut v =
                    serde_json::to_value(&view).map_err(|e| Error::Internal(e.to_string()))?;
                v["token"] = serde_json::Value::String(token);
                println!("{}", to_json(&v)?);
            } else {
                println!("{}\ntoken: {token}", line(&view));
            }
        }
        TokenCommand::Download { id, out } => {
            let (token, view) = tokens::show(&mut conn, &key, id, now)?;
            crate::datadir::write_private(&out, format!("{token}\n").as_bytes())?;
            println!(
                "wrote token {id} of {:?} ({}, expires {}) to {} (mode 0600)",
                view.virtual_account,
                view.status,
                view.expires_at,
                out.display()
            );
        }
        TokenCommand::Revoke { id } => {
            let v = tokens::revoke(&mut conn, id, now, &operator())?;
            println!(
                "revoked token {id} ({}...) of {:?}",
                v.hint, v.virtual_account
            );
        }
        TokenCommand::Remove { id } => {
            tokens::remove(&mut conn, id, now, &operator())?;
            println!("removed token {id}");
        }
    }
    Ok(())
}

fn device_command(config: Config, cmd: DeviceCommand) -> Result<()> {
    use crate::devices::{self, DeviceView};
    let ctx = Context::open(config)?;
    let now = ctx.clock.now();
    let mut conn = ctx.store.conn()?;
    let print = |v: &DeviceView, json: bool| -> Result<()> {
        if json {
            println!("{}", to_json(v)?);
        } else {
            println!(
                "{} {} ({}:{}) in {:?}: {}, last contact {}",
                v.pi_id, v.name, v.pid, v.sn, v.virtual_account, v.state, v.last_contact_at
            );
            for l in &v.licenses {
                println!("  {} x {}: {}", l.count, l.tag, l.status);
            }
        }
        Ok(())
    };
    match cmd {
        DeviceCommand::List {
            va,
            name,
            status,
            format,
        } => {
            let rows = crate::report::devices(
                &mut conn,
                &crate::report::DeviceFilter {
                    vas: va.into_iter().collect(),
                    product_types: Vec::new(),
                    name,
                    state: status,
                },
            )?;
            format.print(&rows, crate::report::devices_table, "product instance(s)")
        }
        DeviceCommand::Show { device, json } => print(&devices::show(&mut conn, &device)?, json),
        DeviceCommand::Remove { device, json } => print(
            &devices::remove(&mut conn, &device, now, &operator())?,
            json,
        ),
        DeviceCommand::AllowReregister {
            device,
            hours,
            json,
        } => print(
            &devices::allow_reregister(&mut conn, &device, hours, now, &operator())?,
            json,
        ),
        DeviceCommand::Transfer { device, va, json } => print(
            &devices::transfer(&mut conn, &device, &va, now, &operator())?,
            json,
        ),
    }
}

fn license_command(config: Config, cmd: LicenseCommand) -> Result<()> {
    let LicenseCommand::List { va, format } = cmd;
    let ctx = Context::open(config)?;
    let mut conn = ctx.store.conn()?;
    let rows = crate::report::licenses(
        &mut conn,
        ctx.clock.now(),
        &crate::report::LicenseFilter {
            vas: va.into_iter().collect(),
            licenses: Vec::new(),
        },
    )?;
    format.print(&rows, crate::report::licenses_table, "license(s)")
}

fn export_command(config: Config, cmd: ExportCommand) -> Result<()> {
    use crate::export::{self, ExportView};
    let ctx = Context::open(config)?;
    let mut conn = ctx.store.conn()?;
    let line = |v: &ExportView| {
        format!(
            "{:<37} {:<8} {:<10} {:<30} {:>6} {:<37} {}",
            v.request_id,
            v.direction,
            v.state,
            v.tag,
            v.count,
            v.pi_id,
            v.reason.as_deref().unwrap_or("")
        )
    };
    match cmd {
        ExportCommand::List {
            state,
            va,
            device,
            tag,
            json,
        } => {
            let all = export::list(
                &mut conn,
                &crate::db::export::Filter {
                    state,
                    va,
                    pi: device,
                    tag,
                    request: None,
                },
            )?;
            if json {
                println!("{}", to_json(&all)?);
            } else {
                println!(
                    "{:<37} {:<8} {:<10} {:<30} {:>6} {:<37} REASON",
                    "REQUEST ID", "KIND", "STATE", "LICENSE", "COUNT", "PI ID"
                );
                for v in &all {
                    println!("{}", line(v));
                }
                println!("{} request(s) and return(s)", all.len());
            }
        }
        ExportCommand::Show { request_id, json } => {
            let v = export::show(&mut conn, &request_id)?;
            if json {
                println!("{}", to_json(&v)?);
            } else {
                println!(
                    "{} {} of {} x {} for {} ({}) in {:?}: {}",
                    v.direction,
                    v.request_id,
                    v.count,
                    v.tag,
                    v.product_instance,
                    v.pi_id,
                    v.virtual_account,
                    v.state
                );
                println!("  queued at {}", v.created_at);
                if let Some(b) = &v.sent_in {
                    println!("  sent in sync request {b}");
                }
                if let Some(a) = &v.answered_at {
                    println!("  answered at {a}");
                }
                if let Some(r) = &v.reason {
                    println!("  reason: {r}");
                }
                if let Some(d) = &v.delivered_at {
                    println!("  delivered to the device at {d}");
                }
                if let Some(r) = &v.returns {
                    println!("  returns the grant of {r}");
                }
            }
        }
    }
    Ok(())
}

fn register_command(config: Config, cmd: RegisterCommand) -> Result<()> {
    use crate::registration::{self, NetworkOutcome, Registered};
    let print_registered =
        |r: &Registered, json: bool| -> Result<()> {
            if json {
                println!("{}", to_json(r)?);
            } else {
                println!(
                "registered with the smart account {:?}: virtual accounts {}; {} license line(s); \
                 export-controlled functionality {}; first sync due by {}",
                r.account,
                r.virtual_accounts.join(", "),
                r.license_lines,
                if r.export_controlled_allowed { "allowed" } else { "not allowed" },
                r.next_sync_due
            );
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
                "manual",
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

/// The backup passphrase: the first line of `file`, else SATELLITE_BACKUP_PASSPHRASE.
fn backup_passphrase(file: Option<&std::path::Path>) -> Result<Option<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
    }
    Ok(std::env::var("SATELLITE_BACKUP_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty()))
}

/// Reads a bundle file given on the command line, refusing what is too large to be one
/// before reading it.
fn read_bundle_file(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_bundle_file(path)?
        .read_to_end(&mut bytes)
        .map_err(|e| Error::file(path, e))?;
    Ok(bytes)
}

/// Progress of long work, on stderr (stdout stays the command's answer).
fn show_progress(p: crate::sync::Progress) {
    match p.total {
        Some(t) => eprintln!("  {}: {} of {t}", p.what, p.done),
        None => eprintln!("  {}: {}", p.what, p.done),
    }
}

fn sync_command(config: Config, cmd: SyncCommand) -> Result<()> {
    use crate::sync::{self, apply::ImportOutcome, request::RequestSummary};
    let request_text = |r: &RequestSummary| {
        format!(
            "sync request {} (sequence {}, {}): {} product instances, {} usage records, {} \
             export requests and returns, {} events{}",
            r.bundle_id,
            r.sequence,
            if r.full {
                "full".to_string()
            } else if r.to_change > r.from_change {
                format!("changes {} to {}", r.from_change + 1, r.to_change)
            } else {
                "no new changes".to_string()
            },
            r.product_instances,
            r.usage,
            r.export_requests,
            r.events,
            if r.resent_rejected > 0 {
                format!(
                    " ({} sent again after the cloud refused them)",
                    r.resent_rejected
                )
            } else {
                String::new()
            }
        )
    };
    let import_text = |o: &ImportOutcome| {
        let mut s = o.message.clone();
        for v in &o.virtual_accounts_added {
            s.push_str(&format!("\n  virtual account added: {v}"));
        }
        for c in &o.license_changes {
            s.push_str(&format!(
                "\n  {} {} in {}: {} -> {} ({})",
                c.change, c.name, c.virtual_account, c.before, c.after, c.tag
            ));
        }
        for r in &o.rejected {
            s.push_str(&format!(
                "\n  refused by the cloud, sent again at the next sync: {} {}: {}",
                r.pi, r.record, r.reason
            ));
        }
        for a in o.export_answers.iter().filter(|a| a.result != "ignored") {
            s.push_str(&format!(
                "\n  export {} {}: {} x {} for {}{}",
                a.result,
                a.request_id,
                a.count,
                a.tag,
                a.pi,
                a.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        if o.status != "already-applied" {
            s.push_str(&format!("\n  next sync due by {}", o.next_sync_due));
        }
        s
    };
    match cmd {
        SyncCommand::Export { out, full, json } => {
            let ctx = Context::open(config)?;
            let now = ctx.clock.now();
            sync::deadlines::run(&mut *ctx.store.conn()?, now)?;
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
                "manual",
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
                    request_text(&summary)
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
                "manual",
                dry_run,
                &mut show_progress,
            )?;
            if json {
                println!("{}", to_json(&o)?);
            } else {
                println!("{}", import_text(&o));
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
                println!("sent {}\n{}", request_text(&r), import_text(&o));
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

/// Opens a bundle file for streaming, refusing what is not a file or is too large.
fn open_bundle_file(path: &std::path::Path) -> Result<std::fs::File> {
    let limit = sync_format::Limits::default().max_compressed;
    let meta = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
    if !meta.is_file() {
        return Err(Error::invalid(format!("{} is not a file", path.display())));
    }
    if meta.len() > limit {
        return Err(Error::Bundle(sync_format::Error::TooLarge {
            size: meta.len(),
            limit,
        }));
    }
    std::fs::File::open(path).map_err(|e| Error::file(path, e))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))
}

/// Logs go to stderr. Under systemd (JOURNAL_STREAM set) without timestamps, since the
/// journal adds its own. `RUST_LOG` wins over `[log] level`. Commands other than `serve`
/// log warnings only unless `RUST_LOG` says otherwise, so their output stays readable.
fn init_logging(config: &Config, serving: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| {
            let level = if serving {
                config.log.level.as_str()
            } else {
                "warn"
            };
            EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
        });
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journald && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match (config.log.format, journald) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_before_and_after_the_subcommand() {
        let a = Cli::try_parse_from(["satellite", "--data-dir", "/d", "status", "--json"]).unwrap();
        let b = Cli::try_parse_from(["satellite", "status", "--json", "--data-dir", "/d"]).unwrap();
        assert_eq!(a.data_dir, b.data_dir);
        let c = Cli::try_parse_from(["satellite", "clock", "advance", "90d", "--config", "/c"])
            .unwrap();
        assert_eq!(c.config, Some(PathBuf::from("/c")));
    }
}
