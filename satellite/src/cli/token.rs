//! `satellite token`: registration tokens.

use super::*;

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
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one token, the token string included.
    Show {
        /// The token's id, as `token list` shows it.
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a token to a text file, to hand to whoever sets up devices.
    Download {
        /// The token's id, as `token list` shows it.
        id: i64,
        /// The file to write the token into (mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Revoke a token: it registers no more devices (those it registered stay).
    Revoke {
        /// The token's id, as `token list` shows it.
        id: i64,
    },
    /// Remove a revoked token.
    Remove {
        /// The token's id, as `token list` shows it.
        id: i64,
    },
}

pub(super) fn token_command(config: Config, cmd: TokenCommand) -> Result<()> {
    use crate::tokens::{self, NewToken, TokenView};
    let ctx = Context::open(config)?;
    let key = std::sync::Arc::new(crate::identity::token_key(ctx.store.data_dir())?);
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
            let n = NewToken {
                va,
                days,
                max_uses,
                export_controlled,
                description,
                created_by: operator(),
            };
            let key = key.clone();
            let (token, view) = ctx.store.write(move |c| tokens::create(c, &key, now, &n))?;
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
            let v = ctx
                .store
                .write(move |c| tokens::revoke(c, id, now, &operator()))?;
            println!(
                "revoked token {id} ({}...) of {:?}",
                v.hint, v.virtual_account
            );
        }
        TokenCommand::Remove { id } => {
            ctx.store
                .write(move |c| tokens::remove(c, id, now, &operator()))?;
            println!("removed token {id}");
        }
    }
    Ok(())
}
