//! End-to-end test support for the satellite workspace: process and HTTPS helpers
//! ([`harness`]). The mock cloud and the device simulator live here too as they are built.

pub mod harness;
