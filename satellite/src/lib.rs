//! The satellite: an on-premises license server.
//!
//! Layers, from the outside in:
//! - front ends that only translate: [`cli`] (the `satellite` command) and [`http`]
//!   (actix-web handlers, one app factory [`http::configure`]);
//! - the domain: plain functions taking a store connection and a [`clock::Clock`]
//!   ([`status`], [`identity`], ...);
//! - persistence: [`db`], diesel on SQLite, one module per table family.
//!
//! The rules that keep it so (each a place to look when adding code):
//! - imports point inwards: front ends → domain → `db` → leaf services ([`config`],
//!   [`clock`], [`crypto`], [`der`], `sync_format`); a leaf imports nothing of the crate
//!   (configuration owns the constants its checks need, such as [`config::MIN_PASSWORD`]);
//! - domain modules do not import each other in a circle: checks that two flows share live
//!   below both ([`guards`] for `devices` and `export`);
//! - no SQL outside [`db`] (tests aside); "is there a satellite?" is one
//!   `db::identity::require`, "is it registered?" one `SatelliteRow::is_registered`.

pub mod alerts;
pub mod backup;
pub mod catalogue;
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
pub mod states;
pub mod status;
pub mod sync;
pub mod tls;
pub mod tokens;

pub use error::{Error, Result};
