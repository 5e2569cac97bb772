//! `satellite completions SHELL` and `satellite man`: the command line documents itself,
//! from the same clap definitions that parse it.

use std::path::Path;

use clap::CommandFactory;

use super::Cli;
use crate::error::{Error, Result};

/// Prints the completion script of `shell` on standard output.
pub(super) fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "satellite", &mut std::io::stdout());
    Ok(())
}

/// Writes satellite(1) and a page per command into `out`, or prints satellite(1).
pub(super) fn man(out: Option<&Path>) -> Result<()> {
    let cmd = Cli::command();
    let Some(dir) = out else {
        return clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .map_err(Error::Io);
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    clap_mangen::generate_to(cmd, dir).map_err(|e| Error::file(dir, e))?;
    let pages = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, e))?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".1"))
        })
        .count();
    println!(
        "wrote {} into {}",
        crate::states::plural(pages as i64, "manual page", "manual pages"),
        dir.display()
    );
    Ok(())
}
