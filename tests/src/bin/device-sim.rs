//! `device-sim`: simulated devices against a satellite's device API.

use clap::Parser;
use satellite_e2e::sim::{self, Cli};

fn main() {
    std::process::exit(sim::run(Cli::parse()));
}
