//! The command line: one clap enum of subcommands. Each command only parses, calls the
//! domain layer and prints; exit codes come from [`Error::exit_code`].

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::clock::{self, Clock, ManualClock};
use crate::config::{Config, LogFormat};
use crate::db::Store;
use crate::error::{Error, Result};

mod backup;
mod device;
mod docs;
mod export;
mod journal;
mod license;
mod manual_clock;
mod register;
mod reports;
mod serve;
mod sync;
mod token;
mod users;
pub use device::DeviceCommand;
pub use export::ExportCommand;
pub use license::LicenseCommand;
pub use manual_clock::ClockCommand;
pub use register::RegisterCommand;
pub use reports::{AlertCommand, EventCommand, Format, ReportCommand};
pub use sync::SyncCommand;
pub use token::TokenCommand;
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

    /// Print the completion script of a shell on standard output, e.g.
    /// `satellite completions bash > /usr/share/bash-completion/completions/satellite`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Write the manual pages, satellite(1) and one per command (satellite-sync-import(1),
    /// ...), into a directory; without --out, print satellite(1) on standard output.
    Man {
        /// The directory to write them into (created if needed), e.g. /usr/share/man/man1.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// A command whose reader goes away (`satellite device list --json | head`) ends quietly, as
/// other Unix tools do, instead of panicking on the failed write. Not for `serve`, whose
/// clients may close their connections at any time.
fn quiet_on_closed_pipe() {
    // SAFETY: restoring the default disposition of SIGPIPE, before any thread starts; the
    // process then ends on a write to a closed pipe, which is what a pipeline expects.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    // Documentation of the command line itself needs no configuration.
    match &cli.command {
        Command::Completions { shell } => {
            quiet_on_closed_pipe();
            return docs::completions(*shell);
        }
        Command::Man { out } => {
            quiet_on_closed_pipe();
            return docs::man(out.as_deref());
        }
        _ => {}
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.storage.data_dir = dir;
    }
    let serving = matches!(cli.command, Command::Serve);
    init_logging(&config, serving);
    if !serving {
        quiet_on_closed_pipe();
    }

    match cli.command {
        Command::Serve => serve::serve(config),
        Command::Migrate => {
            let (store, applied) = Store::open(&config.storage)?;
            if applied.is_empty() {
                println!("database {} is up to date", store.db_path().display());
            } else {
                println!(
                    "applied {} to {}: {}",
                    crate::states::plural(applied.len() as i64, "migration", "migrations"),
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
        Command::Clock(cmd) => manual_clock::clock_command(config, cmd),
        Command::Register(cmd) => register::register_command(config, cmd),
        Command::Token(cmd) => token::token_command(config, cmd),
        Command::Device(cmd) => device::device_command(config, cmd),
        Command::License(cmd) => license::license_command(config, cmd),
        Command::Export(cmd) => export::export_command(config, cmd),
        Command::Alert(cmd) => reports::alert_command(config, cmd),
        Command::Event(cmd) => reports::event_command(config, cmd),
        Command::Report(cmd) => reports::report_command(config, cmd),
        Command::User(cmd) => users::user_command(config, cmd),
        Command::Backup {
            out,
            encrypt,
            passphrase_file,
            json,
        } => backup::backup(config, &out, encrypt, passphrase_file.as_deref(), json),
        Command::Restore {
            file,
            force,
            passphrase_file,
            json,
        } => backup::restore(config, &file, force, passphrase_file.as_deref(), json),
        Command::Sync(cmd) => sync::sync_command(config, cmd),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { out } => docs::man(out.as_deref()),
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

/// Who did it, for the event log.
pub(crate) fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .map(|u| format!("cli:{u}"))
        .unwrap_or_else(|_| "cli".into())
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
        // Under systemd: each line starts with its syslog priority (<3> error, <4> warning,
        // <6> info, <7> debug), which journald takes for the entry's, so `journalctl -p`
        // filters; the journal adds the time itself.
        (LogFormat::Text, true) => builder
            .event_format(journal::Priority(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_target(false)
                    .with_ansi(false),
            ))
            .try_init(),
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

    /// Every command, flag and argument says what it is for in `--help`: the test walks
    /// the whole command tree and names what has no help.
    #[test]
    fn every_command_flag_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                let help = a.get_help().or(a.get_long_help());
                if help.is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for s in cmd.get_subcommands() {
                let p = format!("{path} {}", s.get_name());
                if s.get_name() != "help" && s.get_about().or(s.get_long_about()).is_none() {
                    missing.push(p.clone());
                }
                walk(s, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "satellite", &mut missing);
        assert!(missing.is_empty(), "no help for: {missing:#?}");
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
