//! The satellite: an on-premises license server.
//!
//! Layers, from the outside in:
//! - front ends that only translate: [`cli`] (the `satellite` command) and [`http`]
//!   (actix-web handlers, one app factory [`http::configure`]);
//! - the domain: plain functions taking a store connection and a [`clock::Clock`]
//!   ([`status`], [`identity`], ...);
//! - persistence: [`db`], diesel on SQLite, one module per table family.

pub mod alerts;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod cloud_client;
pub mod compliance;
pub mod config;
pub mod crypto;
pub mod datadir;
pub mod db;
pub mod der;
pub mod devices;
pub mod error;
pub mod export;
pub mod guards;
pub mod http;
pub mod identity;
pub mod notify;
pub mod operators;
pub mod registration;
pub mod report;
pub mod server;
pub mod status;
pub mod sync;
pub mod tls;
pub mod tokens;

pub use error::{Error, Result};
