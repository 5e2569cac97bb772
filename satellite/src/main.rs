//! The `satellite` binary: parse, dispatch, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use satellite::cli::{self, Cli};

/// mimalloc instead of glibc's malloc: the device API allocates and frees many small buffers
/// per request on two threads, where glibc's allocator cost about a tenth of the server's CPU
/// (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("satellite: error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
