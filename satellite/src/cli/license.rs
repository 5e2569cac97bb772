//! `satellite license`: the licenses of every virtual account.

use super::*;

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

pub(super) fn license_command(config: Config, cmd: LicenseCommand) -> Result<()> {
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
    format.print(
        &rows,
        crate::report::licenses_table,
        ("license", "licenses"),
    )
}
