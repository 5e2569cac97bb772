//! End-to-end tests: the real binaries, started as processes on loopback ports.
//! One test binary (modules below) keeps link time down on 2 cores.

mod alerts;
mod common;
mod console;
mod devices;
mod everyday;
mod export;
mod foundation;
mod registration;
mod scale;
mod service;
mod sync;
mod trust;
mod years;
