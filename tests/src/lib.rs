//! End-to-end test support for the satellite workspace: the mock cloud ([`cloud`], binary
//! `mock-cloud`) and process/HTTPS helpers for the tests ([`harness`]).

pub mod cloud;
pub mod harness;
