//! End-to-end test support for the satellite workspace: the mock cloud ([`cloud`], binary
//! `mock-cloud`), the device simulator ([`sim`], binary `device-sim`) and process/HTTPS
//! helpers for the tests ([`harness`]).

pub mod cloud;
pub mod harness;
pub mod sim;
pub mod webdriver;
