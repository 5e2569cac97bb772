//! `satellite serve`: the service, with its first admin.

use super::*;

pub(super) fn serve(config: Config) -> Result<()> {
    // One server per data directory; `restore` waits for it to stop.
    let _lock = crate::backup::lock(&config.storage.data_dir, "one server per data directory")?;
    let ctx = Context::open(config)?;
    tracing::info!(
        data_dir = %ctx.store.data_dir().display(),
        version = env!("CARGO_PKG_VERSION"),
        "starting satellite"
    );
    first_admin(&ctx)?;
    crate::server::run(ctx.config, ctx.store, ctx.clock)
}

/// First start: creates the "admin" account, with the configured password or a generated
/// one shown here, once, on standard error: as a block of text, or, with `[log] format =
/// "json"`, as the `password` field of one JSON log line (a log collector keeps it whole).
/// Never at the `info` level's logs of later starts.
pub(super) fn first_admin(ctx: &Context) -> Result<()> {
    let (password, now) = (ctx.config.console.admin_password.clone(), ctx.clock.now());
    let made = ctx
        .store
        .write(move |c| crate::operators::bootstrap(c, &password, now))?;
    match made {
        Some(crate::operators::Bootstrapped {
            generated: Some(pw),
        }) if ctx.config.log.format == crate::config::LogFormat::Json => {
            tracing::warn!(
                username = "admin",
                password = %pw,
                "created the operator account \"admin\" with a generated password, shown only \
                 this once: log in and change it, or set it with `satellite user passwd admin`"
            );
        }
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
