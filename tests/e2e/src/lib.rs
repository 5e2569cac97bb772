//! End-to-end test support: find the real binaries (`satellite`, `mock-cloud`,
//! `device-sim`, and refuse stale ones), run them as processes on loopback ports, talk HTTPS
//! to them ([`harness`]), and drive the console in headless Chromium ([`webdriver`]). The
//! tests themselves are in `tests/e2e/`; the mock cloud and the device simulator are crates
//! of their own beside this one (`tests/mock-cloud`, `tests/device-sim`).

pub mod harness;
pub mod webdriver;
