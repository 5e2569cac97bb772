//! Reading bundles, treating every byte as hostile until proven otherwise.
//!
//! [`open`] checks, in order: the file's size; that it is a zip; the entry count, names
//! (no separators, no `..`, no duplicates), types (no symlinks or directories), compression
//! methods and declared sizes and ratios; the manifest's format and version; the signer's
//! chain against the caller's trust at the caller's time; the signature of `manifest.json`;
//! the kind, the receiver and the validity window; that the entries are exactly those the
//! manifest lists and the kind allows; and that every entry's SHA-256 and size match. Only
//! then does it hand out a [`VerifiedBundle`], whose readers check the digests again as they
//! stream, so a file changed between the checks and the reading is still caught.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::marker::PhantomData;

use openssl::sha::Sha256;
use openssl::x509::{X509Ref, X509};
use serde::de::DeserializeOwned;
use zip::read::ZipFile;
use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::manifest::{
    safe_entry_name, BundleKind, EntryDigest, Manifest, MANIFEST, PAYLOAD, SIGNATURE, SIGNER_CHAIN,
};
use crate::payload::Versioned;
use crate::pki::{self, Trust};
use crate::seal;

/// Most certificates accepted in `signer.pem`.
const MAX_CHAIN: usize = 4;
/// Largest `manifest.sig` (a DER ECDSA P-256 signature is at most 72 bytes).
const MAX_SIGNATURE: u64 = 1024;
/// Largest `signer.pem`.
const MAX_CHAIN_PEM: u64 = 64 * 1024;
/// Entries this small cannot be bombs; the ratio check skips them.
const RATIO_EXEMPT: u64 = 64 * 1024;

/// What the reader expects and trusts.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions<'a> {
    /// The kind the caller expects.
    pub kind: BundleKind,
    /// Whom the caller trusts to sign it.
    pub trust: Trust<'a>,
    /// The caller's own id; `None` accepts any receiver (only for registration requests,
    /// which are made before the satellite knows the cloud).
    pub receiver: Option<&'a str>,
    /// The caller's time, Unix seconds (from its injectable clock).
    pub now: i64,
    /// How far in the future `created_at` may be (clock skew between the two sides).
    pub max_clock_skew: i64,
    pub limits: Limits,
}

impl<'a> ReadOptions<'a> {
    pub fn new(kind: BundleKind, trust: Trust<'a>, receiver: Option<&'a str>, now: i64) -> Self {
        ReadOptions {
            kind,
            trust,
            receiver,
            now,
            max_clock_skew: 300,
            limits: Limits::default(),
        }
    }
}

/// A bundle whose signature, addressing, validity and entry digests all checked out.
pub struct VerifiedBundle<R: Read + Seek> {
    manifest: Manifest,
    chain: Vec<X509>,
    archive: ZipArchive<R>,
    limits: Limits,
}

impl<R: Read + Seek> std::fmt::Debug for VerifiedBundle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedBundle")
            .field("manifest", &self.manifest)
            .finish()
    }
}

fn zip_error(e: ZipError) -> Error {
    match e {
        ZipError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Corrupt("unexpected end of file".into())
        }
        ZipError::Io(e) => Error::Io(e),
        ZipError::InvalidArchive(m) => Error::Corrupt(m.to_string()),
        ZipError::UnsupportedArchive(m) => Error::Corrupt(m.to_string()),
        other => Error::Corrupt(other.to_string()),
    }
}

/// An I/O error while inflating an entry: corrupt data, or a real I/O failure.
fn read_error(name: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::InvalidData
        | std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::Other => Error::Corrupt(format!("entry {name:?}: {e}")),
        _ => Error::Io(e),
    }
}

/// Opens and verifies a bundle. See the module documentation for the checks.
pub fn open<R: Read + Seek>(mut input: R, opts: &ReadOptions<'_>) -> Result<VerifiedBundle<R>> {
    let limits = opts.limits;

    // The file as a whole.
    let size = input.seek(SeekFrom::End(0))?;
    if size > limits.max_compressed {
        return Err(Error::TooLarge {
            size,
            limit: limits.max_compressed,
        });
    }
    input.seek(SeekFrom::Start(0))?;
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut input, &mut magic)?;
    if got < 4 || !(magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06") {
        return Err(Error::NotAZip);
    }
    input.seek(SeekFrom::Start(0))?;
    let (manifest, chain) = {
        let mut archive = ZipArchive::new(&mut input).map_err(zip_error)?;
        verify_contents(&mut archive, opts)?
    };
    // The seal last: everything above says more precisely what is wrong, when it can.
    verify_seal(&mut input, size, &chain[0])?;
    input.seek(SeekFrom::Start(0))?;
    let archive = ZipArchive::new(input).map_err(zip_error)?;
    Ok(VerifiedBundle {
        manifest,
        chain,
        archive,
        limits,
    })
}

/// Every check of the archive's entries, manifest, signer and digests.
fn verify_contents<A: Read + Seek>(
    archive: &mut ZipArchive<A>,
    opts: &ReadOptions<'_>,
) -> Result<(Manifest, Vec<X509>)> {
    let limits = opts.limits;

    // The entries, before inflating anything.
    if archive.len() > limits.max_entries {
        return Err(Error::TooManyEntries {
            count: archive.len(),
            limit: limits.max_entries,
        });
    }
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for raw in archive.file_names_raw() {
        let name = String::from_utf8_lossy(raw).into_owned();
        if std::str::from_utf8(raw).is_err() || !safe_entry_name(&name) {
            return Err(Error::UnsafeEntryName(name));
        }
        if !seen.insert(name.clone()) {
            return Err(Error::DuplicateEntry(name));
        }
        names.push(name);
    }
    if archive.has_duplicate_names() {
        return Err(Error::DuplicateEntry(
            duplicate_in_central_directory(&names).unwrap_or_default(),
        ));
    }
    if archive.has_overlapping_files().map_err(zip_error)? {
        return Err(Error::Corrupt(
            "entries share compressed data (an overlapping zip bomb)".into(),
        ));
    }
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let f = archive.by_index_raw(i).map_err(zip_error)?;
        let name = names.get(i).cloned().unwrap_or_default();
        if f.is_symlink() {
            return Err(Error::SymlinkEntry(name));
        }
        if f.is_dir() {
            return Err(Error::DirectoryEntry(name));
        }
        if f.encrypted() {
            return Err(Error::EncryptedEntry { name });
        }
        match f.compression() {
            CompressionMethod::Stored | CompressionMethod::Deflated => {}
            other => {
                return Err(Error::UnsupportedCompression {
                    name,
                    method: format!("{other:?}"),
                })
            }
        }
        check_entry_size(&name, f.size(), f.compressed_size(), &limits)?;
        total = total.saturating_add(f.size());
        if total > limits.max_total {
            return Err(Error::TotalTooLarge {
                limit: limits.max_total,
            });
        }
    }
    for fixed in [MANIFEST, SIGNATURE, SIGNER_CHAIN] {
        if !seen.contains(fixed) {
            return Err(Error::MissingEntry(fixed.to_string()));
        }
    }

    // The manifest, untrusted until its signature checks.
    let manifest_bytes = read_small(archive, MANIFEST, limits.max_small_entry, &limits)?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    let chain_pem = read_small(archive, SIGNER_CHAIN, MAX_CHAIN_PEM, &limits)?;
    let chain = pki::parse_chain(&chain_pem, MAX_CHAIN)?;
    let signature = read_small(archive, SIGNATURE, MAX_SIGNATURE, &limits)?;
    pki::verify_chain(&chain, opts.trust, opts.now)?;
    pki::verify_signature(&chain[0], &manifest_bytes, &signature)?;

    // Now the manifest is the signer's word: check what it says.
    if manifest.kind != opts.kind {
        return Err(Error::WrongKind {
            expected: opts.kind.to_string(),
            found: manifest.kind.to_string(),
        });
    }
    check_signer(&manifest, &chain[0], opts.trust)?;
    if let Some(me) = opts.receiver {
        if manifest.receiver != me {
            return Err(Error::WrongReceiver {
                expected: me.to_string(),
                found: manifest.receiver.clone(),
            });
        }
    }
    if opts.now > manifest.not_after {
        return Err(Error::Expired {
            not_after: manifest.not_after,
            now: opts.now,
        });
    }
    if manifest.created_at > opts.now.saturating_add(opts.max_clock_skew) {
        return Err(Error::FromTheFuture {
            created_at: manifest.created_at,
            now: opts.now,
        });
    }

    // Exactly the listed entries, each allowed for the kind, each matching its digest.
    let allowed = manifest.kind.allowed_entries();
    let mut listed = HashSet::new();
    for e in &manifest.entries {
        if !safe_entry_name(&e.name) {
            return Err(Error::UnsafeEntryName(e.name.clone()));
        }
        if !allowed.contains(&e.name.as_str()) {
            return Err(Error::UnexpectedEntry {
                name: e.name.clone(),
                kind: manifest.kind.to_string(),
            });
        }
        if !listed.insert(e.name.as_str()) {
            return Err(Error::DuplicateEntry(e.name.clone()));
        }
        if !seen.contains(&e.name) {
            return Err(Error::MissingEntry(e.name.clone()));
        }
    }
    if !listed.contains(PAYLOAD) {
        return Err(Error::MissingEntry(PAYLOAD.to_string()));
    }
    for name in &names {
        let fixed = [MANIFEST, SIGNATURE, SIGNER_CHAIN].contains(&name.as_str());
        if !fixed && !listed.contains(name.as_str()) {
            return Err(Error::UnlistedEntry(name.clone()));
        }
    }
    for e in &manifest.entries {
        let f = archive.by_name(&e.name).map_err(zip_error)?;
        let (digest, size) = hash_entry(f, e, &limits)?;
        check_digest(e, &digest, size)?;
    }

    Ok((manifest, chain))
}

/// Only the role the kind needs may sign it, and only for itself: the certificate's bundle
/// role must be the kind's and the identity it names must be the manifest's `sender`. A
/// self-signed registration request has no role to check (its reader decides about the key).
fn check_signer(manifest: &Manifest, leaf: &X509Ref, trust: Trust<'_>) -> Result<()> {
    if matches!(trust, Trust::SelfSigned) {
        return Ok(());
    }
    let found = pki::bundle_role(leaf)?;
    let Some(expected) = manifest.kind.signer_role() else {
        // A registration request is only ever read as self-signed.
        return Err(Error::WrongSigner {
            kind: manifest.kind.to_string(),
            expected: "the satellite's own self-signed key".into(),
            found: describe_signer(found.as_ref(), leaf),
        });
    };
    match found {
        Some((role, id)) if role == expected => {
            if id != manifest.sender {
                return Err(Error::SenderMismatch {
                    sender: manifest.sender.clone(),
                    certified: id,
                });
            }
            Ok(())
        }
        other => Err(Error::WrongSigner {
            kind: manifest.kind.to_string(),
            expected: expected.describe().to_string(),
            found: describe_signer(other.as_ref(), leaf),
        }),
    }
}

/// Who a signer is, for a refusal: its role and holder, or its subject.
fn describe_signer(role: Option<&(pki::SignerRole, String)>, leaf: &X509Ref) -> String {
    match role {
        Some((r, id)) => format!("{} ({id})", r.describe()),
        None => {
            let cn = leaf
                .subject_name()
                .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                .next()
                .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
                .unwrap_or_default();
            format!("a certificate with no bundle role (subject {cn:?})")
        }
    }
}

/// Checks the seal: the file's last [`seal::SEAL_LEN`] bytes sign every byte before them.
fn verify_seal<R: Read + Seek>(input: &mut R, size: u64, signer: &X509Ref) -> Result<()> {
    let sealed_len = size
        .checked_sub(seal::SEAL_LEN as u64)
        .ok_or_else(|| Error::BadSeal("the file is shorter than a seal".into()))?;
    input.seek(SeekFrom::Start(sealed_len))?;
    let mut tail = vec![0u8; seal::SEAL_LEN];
    input.read_exact(&mut tail)?;
    let signature = seal::parse(&tail)?;
    input.seek(SeekFrom::Start(0))?;
    if pki::verify_stream(signer, input.take(sealed_len), &signature)? {
        Ok(())
    } else {
        Err(Error::BadSeal("signature mismatch".into()))
    }
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn duplicate_in_central_directory(names: &[String]) -> Option<String> {
    let mut seen = HashSet::new();
    names.iter().find(|n| !seen.insert(n.as_str())).cloned()
}

fn check_entry_size(name: &str, size: u64, compressed: u64, limits: &Limits) -> Result<()> {
    if size > limits.max_entry {
        return Err(Error::EntryTooLarge {
            name: name.to_string(),
            limit: limits.max_entry,
        });
    }
    if size > RATIO_EXEMPT && size / compressed.max(1) > limits.max_ratio {
        return Err(Error::CompressionRatio {
            name: name.to_string(),
            limit: limits.max_ratio,
        });
    }
    Ok(())
}

/// The most bytes an entry may inflate to while being read, whatever its header claims.
fn inflate_bound(compressed: u64, limits: &Limits) -> u64 {
    limits
        .max_entry
        .min(RATIO_EXEMPT.max(compressed.saturating_mul(limits.max_ratio)))
}

/// Reads a small entry whole, bounded by `max` whatever its header claims.
fn read_small<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    name: &str,
    max: u64,
    limits: &Limits,
) -> Result<Vec<u8>> {
    let f = archive.by_name(name).map_err(zip_error)?;
    let bound = max.min(inflate_bound(f.compressed_size(), limits));
    let mut out = Vec::new();
    f.take(bound + 1)
        .read_to_end(&mut out)
        .map_err(|e| read_error(name, e))?;
    if out.len() as u64 > bound {
        return Err(Error::EntryTooLarge {
            name: name.to_string(),
            limit: bound,
        });
    }
    Ok(out)
}

/// Streams an entry through SHA-256, bounded by its manifest size (plus one byte, to tell
/// "longer than listed" from "exactly as listed") and by the inflation limits.
fn hash_entry<R: Read>(
    f: ZipFile<'_, R>,
    e: &EntryDigest,
    limits: &Limits,
) -> Result<([u8; 32], u64)> {
    let bound = e.size.min(inflate_bound(f.compressed_size(), limits));
    let mut r = f.take(bound + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size: u64 = 0;
    loop {
        let n = r.read(&mut buf).map_err(|err| read_error(&e.name, err))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    if size > bound && bound < e.size {
        return Err(Error::CompressionRatio {
            name: e.name.clone(),
            limit: limits.max_ratio,
        });
    }
    Ok((hasher.finish(), size))
}

fn check_digest(e: &EntryDigest, digest: &[u8; 32], size: u64) -> Result<()> {
    if size != e.size {
        return Err(Error::SizeMismatch {
            name: e.name.clone(),
            manifest: e.size,
            actual: size,
        });
    }
    if hex::encode(digest) != e.sha256 {
        return Err(Error::HashMismatch {
            name: e.name.clone(),
        });
    }
    Ok(())
}

impl<R: Read + Seek> VerifiedBundle<R> {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The signer's certificate chain, leaf first.
    pub fn signer_chain(&self) -> &[X509] {
        &self.chain
    }

    pub fn signer(&self) -> &X509Ref {
        &self.chain[0]
    }

    fn digest(&self, name: &str) -> Option<EntryDigest> {
        self.manifest
            .entries
            .iter()
            .find(|e| e.name == name)
            .cloned()
    }

    /// Whether the bundle carries entry `name`.
    pub fn has(&self, name: &str) -> bool {
        self.digest(name).is_some()
    }

    /// The typed payload (`payload.json`); a newer payload version is refused clearly.
    pub fn payload<T: Versioned + DeserializeOwned>(&mut self) -> Result<T> {
        self.json(PAYLOAD)
    }

    /// A whole JSON entry, typed.
    pub fn json<T: Versioned + DeserializeOwned>(&mut self, name: &str) -> Result<T> {
        let e = self
            .digest(name)
            .ok_or_else(|| Error::MissingEntry(name.to_string()))?;
        let max = self.limits.max_small_entry;
        let bytes = read_small(&mut self.archive, name, max, &self.limits)?;
        check_digest(&e, &openssl::sha::sha256(&bytes), bytes.len() as u64)?;
        crate::payload::decode(name, &bytes)
    }

    /// Streams the records of an NDJSON entry. An entry the bundle does not carry reads as
    /// empty. The digest is checked again at the end: a mismatch is the last item.
    pub fn ndjson<T: DeserializeOwned>(&mut self, name: &str) -> Result<NdjsonReader<'_, R, T>> {
        let limits = self.limits;
        let Some(e) = self.digest(name) else {
            return Ok(NdjsonReader {
                inner: None,
                expected: EntryDigest {
                    name: name.to_string(),
                    sha256: String::new(),
                    size: 0,
                },
                hasher: None,
                size: 0,
                line: Vec::new(),
                max_line: limits.max_line,
                done: true,
                _t: PhantomData,
            });
        };
        let f = self.archive.by_name(name).map_err(zip_error)?;
        let bound = e.size.min(inflate_bound(f.compressed_size(), &limits));
        Ok(NdjsonReader {
            inner: Some(BufReader::with_capacity(64 * 1024, f.take(bound + 1))),
            expected: e,
            hasher: Some(Sha256::new()),
            size: 0,
            line: Vec::with_capacity(512),
            max_line: limits.max_line,
            done: false,
            _t: PhantomData,
        })
    }
}

/// Records of an NDJSON entry, one per line, read with bounded memory.
pub struct NdjsonReader<'a, R: Read, T> {
    inner: Option<BufReader<std::io::Take<ZipFile<'a, R>>>>,
    expected: EntryDigest,
    hasher: Option<Sha256>,
    size: u64,
    line: Vec<u8>,
    max_line: usize,
    done: bool,
    _t: PhantomData<T>,
}

impl<R: Read, T: DeserializeOwned> NdjsonReader<'_, R, T> {
    fn fail(&mut self, e: Error) -> Option<Result<T>> {
        self.done = true;
        Some(Err(e))
    }
}

impl<R: Read, T: DeserializeOwned> Iterator for NdjsonReader<'_, R, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        let inner = self.inner.as_mut()?;
        self.line.clear();
        let limit = self.max_line as u64 + 1;
        let read = inner.by_ref().take(limit).read_until(b'\n', &mut self.line);
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                let e = read_error(&self.expected.name, e);
                return self.fail(e);
            }
        };
        if n == 0 {
            // End of entry: the digest must match what the manifest promised.
            self.done = true;
            let digest = self.hasher.take().map(|h| h.finish()).unwrap_or_default();
            return check_digest(&self.expected, &digest, self.size)
                .err()
                .map(Err);
        }
        self.size += n as u64;
        if self.size > self.expected.size {
            let e = Error::SizeMismatch {
                name: self.expected.name.clone(),
                manifest: self.expected.size,
                actual: self.size,
            };
            return self.fail(e);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&self.line);
        }
        if self.line.last() != Some(&b'\n') {
            if n as u64 >= limit {
                let e = Error::PayloadInvalid {
                    name: self.expected.name.clone(),
                    reason: format!("a line is longer than {} bytes", self.max_line),
                };
                return self.fail(e);
            }
        } else {
            self.line.pop();
        }
        match serde_json::from_slice::<T>(&self.line) {
            Ok(v) => Some(Ok(v)),
            Err(err) => {
                let e = Error::PayloadInvalid {
                    name: self.expected.name.clone(),
                    reason: err.to_string(),
                };
                self.fail(e)
            }
        }
    }
}
