//! `satellite device`: product instances.

use super::*;

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
        #[arg(long, value_enum)]
        status: Option<crate::states::PiState>,
        #[command(flatten)]
        paging: super::reports::Paging,
        #[command(flatten)]
        format: Format,
    },
    /// Show one product instance (PI id or PID:SN) with the licenses it uses.
    Show {
        /// The product instance: its PI id, PID:SN, or its name.
        device: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a product instance; its licenses are released at once.
    Remove {
        /// The product instance: its PI id, PID:SN, or its name.
        device: String,
        /// Print JSON instead of text.
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
        /// The product instance: its PI id, PID:SN, or its name.
        device: String,
        /// The virtual account to move it to.
        #[arg(long)]
        va: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn device_command(config: Config, cmd: DeviceCommand) -> Result<()> {
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
            paging,
            format,
        } => {
            let f = crate::report::DeviceFilter {
                vas: va.into_iter().collect(),
                product_types: Vec::new(),
                name,
                state: status,
            };
            super::reports::print_devices(&mut conn, &f, paging, format)
        }
        DeviceCommand::Show { device, json } => print(&devices::show(&mut conn, &device)?, json),
        DeviceCommand::Remove { device, json } => print(
            &ctx.store
                .write(move |c| devices::remove(c, &device, now, &operator()))?,
            json,
        ),
        DeviceCommand::AllowReregister {
            device,
            hours,
            json,
        } => print(
            &ctx.store
                .write(move |c| devices::allow_reregister(c, &device, hours, now, &operator()))?,
            json,
        ),
        DeviceCommand::Transfer { device, va, json } => print(
            &ctx.store
                .write(move |c| devices::transfer(c, &device, &va, now, &operator()))?,
            json,
        ),
    }
}
