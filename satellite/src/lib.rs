//! The satellite: an on-premises license server.
//!
//! Layers, from the outside in:
//! - front ends that only translate: [`cli`] (the `satellite` command, one file per command
//!   group) and [`http`] (the device API; the operator API and the console, whose pages are
//!   maud templates, one module per page); [`server`] assembles the running server;
//! - the domain, one module per flow of the brief ([`registration`], [`tokens`], [`devices`],
//!   [`compliance`], [`export`], [`sync`], [`alerts`], [`backup`], [`operators`], [`report`]):
//!   plain functions taking a store connection and a time or [`clock::Clock`];
//! - persistence: [`db`], diesel on SQLite, one module per table family;
//! - leaves: [`config`], [`clock`], [`crypto`], [`der`], the vocabulary ([`states`],
//!   [`catalogue`]) and `sync_format`.
//!
//! The rules that keep it so (each a place to look when adding code):
//! - imports point inwards: front ends → domain → `db` → leaves; a leaf imports nothing of
//!   the crate but the error type and the vocabulary macro (configuration owns the constants
//!   its checks need, such as [`config::MIN_PASSWORD`]);
//! - front ends reach storage only through the domain: they hold the [`db::Store`] handle
//!   and the writer, never a table;
//! - domain modules do not import each other in a circle: checks that two flows share live
//!   below both ([`guards`] for `devices` and `export`);
//! - one write path: domain functions run in the caller's write and never begin a
//!   transaction; [`db::Store::write`] begins it (in the server through the single
//!   [`db::writer::Writer`], whose pool only reads), [`db::read_snapshot`] gives long reads
//!   one consistent view without a lock; `GET` routes and status pages never write;
//! - no SQL outside [`db`] (tests aside); "is there a satellite?" is one
//!   `db::identity::require`, "is it registered?" one `SatelliteRow::is_registered`;
//! - a state, kind or mode is a type from [`states`] or [`catalogue`], mapped once to its
//!   column, JSON, flag and text; a refusal carries a stable code ([`error::Reason`]).

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
pub mod metrics;
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

#[cfg(test)]
mod layers_tests;
