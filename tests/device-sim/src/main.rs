//! `device-sim`: simulated devices against a satellite's device API.

use clap::Parser;
use device_sim::Cli;

fn main() {
    std::process::exit(device_sim::run(Cli::parse()));
}
