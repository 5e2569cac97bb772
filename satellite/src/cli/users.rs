//! `satellite user`: operator accounts of the web console and operator API, and their API
//! tokens.

use std::io::BufRead;

use clap::Subcommand;

use super::{operator, to_json, Context};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::operators::{self, Role};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an operator account. Without --password-stdin a random password is made and
    /// printed once.
    Add {
        /// User name: letters, digits and . _ - @ (at most 64).
        username: String,
        /// admin (everything, accounts, registration), operator (tokens, devices, alerts,
        /// sync) or auditor (read-only).
        #[arg(long, value_parser = ["admin", "operator", "auditor"])]
        role: String,
        /// Read the password (10 characters or more) from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the accounts.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set a new password (ends the account's console sessions). Without --password-stdin a
    /// random password is made and printed once.
    Passwd {
        /// The account's user name.
        username: String,
        /// Read the new password from the first line of standard input instead of
        /// generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account with its sessions and API tokens. The last admin cannot be removed.
    Remove {
        /// The account's user name.
        username: String,
    },
    /// API tokens for scripts (`Authorization: Bearer TOKEN`), acting with the account's role.
    #[command(subcommand)]
    ApiToken(ApiTokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Create an API token for an account; the token is printed once.
    Create {
        /// The account the token acts as.
        username: String,
        /// What the token is for, shown in `user api-token list`.
        #[arg(long, default_value = "")]
        description: String,
        /// Days until it expires (1 to 3650); without it the token lasts until revoked.
        #[arg(long)]
        days: Option<u32>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the API tokens (never their secrets).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API token.
    Revoke {
        /// The API token's id, as `user api-token list` shows it.
        id: i64,
    },
}

/// The password from standard input, or a generated one (shown by the caller).
fn password(from_stdin: bool) -> Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::invalid(format!("cannot read the password from stdin: {e}")))?;
        Ok((line.trim_end_matches(['\r', '\n']).to_string(), false))
    } else {
        Ok((operators::generate_password()?, true))
    }
}

pub fn user_command(config: Config, cmd: UserCommand) -> Result<()> {
    let ctx = Context::open(config)?;
    let now = ctx.clock.now();
    let mut conn = ctx.store.conn()?;
    match cmd {
        UserCommand::Add {
            username,
            role,
            password_stdin,
            json,
        } => {
            let (pw, generated) = password(password_stdin)?;
            let (role, secret) = (Role::parse(&role)?, pw.clone());
            let v = ctx
                .store
                .write(move |c| operators::add(c, &username, role, &secret, now, &operator()))?;
            if json {
                let mut out =
                    serde_json::to_value(&v).map_err(|e| Error::Internal(e.to_string()))?;
                if generated {
                    out["password"] = serde_json::Value::String(pw);
                }
                println!("{}", to_json(&out)?);
            } else {
                println!("added {} with the role {}", v.username, v.role);
                if generated {
                    println!("password (shown once): {pw}");
                }
            }
        }
        UserCommand::List { json } => {
            let all = operators::list(&mut conn)?;
            if json {
                println!("{}", to_json(&all)?);
            } else {
                println!("{:<24} {:<9} {:<21} LAST LOGIN", "USER", "ROLE", "CREATED");
                for u in &all {
                    println!(
                        "{:<24} {:<9} {:<21} {}",
                        u.username,
                        u.role,
                        u.created_at,
                        u.last_login_at.as_deref().unwrap_or("never")
                    );
                }
            }
        }
        UserCommand::Passwd {
            username,
            password_stdin,
        } => {
            let (pw, generated) = password(password_stdin)?;
            let (name, secret) = (username.clone(), pw.clone());
            ctx.store
                .write(move |c| operators::passwd(c, &name, &secret, now, &operator()))?;
            println!("changed the password of {username}; its console sessions ended");
            if generated {
                println!("password (shown once): {pw}");
            }
        }
        UserCommand::Remove { username } => {
            let name = username.clone();
            ctx.store
                .write(move |c| operators::remove(c, &name, now, &operator()))?;
            println!("removed {username}");
        }
        UserCommand::ApiToken(ApiTokenCommand::Create {
            username,
            description,
            days,
            json,
        }) => {
            let t = ctx.store.write(move |c| {
                operators::create_api_token(c, &username, &description, days, now, &operator())
            })?;
            if json {
                println!("{}", to_json(&t)?);
            } else {
                println!("{}", t.token);
            }
        }
        UserCommand::ApiToken(ApiTokenCommand::List { json }) => {
            let all = operators::list_api_tokens(&mut conn, None, now)?;
            if json {
                println!("{}", to_json(&all)?);
            } else {
                println!(
                    "{:>4}  {:<20} {:<8} {:<21} {:<21} DESCRIPTION",
                    "ID", "USER", "STATE", "CREATED", "EXPIRES"
                );
                for t in &all {
                    println!(
                        "{:>4}  {:<20} {:<8} {:<21} {:<21} {}",
                        t.id,
                        t.username,
                        t.state,
                        t.created_at,
                        t.expires_at.as_deref().unwrap_or("never"),
                        t.description
                    );
                }
            }
        }
        UserCommand::ApiToken(ApiTokenCommand::Revoke { id }) => {
            ctx.store
                .write(move |c| operators::revoke_api_token(c, id, None, now, &operator()))?;
            println!("revoked API token {id}");
        }
    }
    Ok(())
}
