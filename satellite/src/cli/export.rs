//! `satellite export`: export-controlled requests and returns.

use super::*;

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// List restricted-license requests and returns with their state: queued, sent (in
    /// which sync), granted, denied (with the cloud's reason), delivered, returned.
    List {
        /// Only this state.
        #[arg(long)]
        state: Option<crate::states::ExportState>,
        /// Only this virtual account.
        #[arg(long)]
        va: Option<String>,
        /// Only this product instance (PI id).
        #[arg(long)]
        device: Option<String>,
        /// Only this entitlement tag.
        #[arg(long)]
        tag: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one request or return by its id.
    Show {
        /// The request's id, as `export list` shows it.
        request_id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn export_command(config: Config, cmd: ExportCommand) -> Result<()> {
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
                &export::Filter {
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
                println!(
                    "{}",
                    crate::states::plural(
                        all.len() as i64,
                        "request or return",
                        "requests and returns"
                    )
                );
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
