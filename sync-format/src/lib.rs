//! # sync-format: signed bundles
//!
//! Everything the satellite and the cloud say to each other travels as a *bundle*: a zip
//! file holding `manifest.json` (kind, sender, receiver, sequence, validity, and the SHA-256
//! and size of every other entry), the payload entries (JSON, or NDJSON streamed record by
//! record), the signer's certificate chain (`signer.pem`) and a detached ECDSA P-256/SHA-256
//! signature of the manifest (`manifest.sig`). The same bytes go over HTTPS or on a USB
//! stick, and the `openssl` command line alone can check them (see `docs/bundle-format.md`).
//!
//! Writing: [`BundleWriter`]. Reading: [`open`], which refuses anything malformed, altered,
//! hostile, expired, untrusted or addressed to someone else, each with its own [`Error`].

pub mod error;
pub mod limits;
pub mod manifest;
pub mod payload;
pub mod pki;
pub mod reader;
pub mod seal;
pub mod writer;

pub use error::{Error, Result};
pub use limits::Limits;
pub use manifest::{BundleKind, EntryDigest, Header, Manifest, ANY_RECEIVER};
pub use pki::{Signer, Trust};
pub use reader::{open, NdjsonReader, ReadOptions, VerifiedBundle};
pub use writer::{BufferedFile, BundleWriter, NdjsonWriter};

#[cfg(test)]
mod tests;
