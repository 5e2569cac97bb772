//! Writing bundles. Entries stream into the zip as they are written (NDJSON record by
//! record), hashed on the way, so a bundle of a million records needs no more memory than
//! one record; the manifest listing every entry's SHA-256 and size is written last, then its
//! signature and the signer's chain. Last, the archive is sealed: its zip comment holds a
//! signature of every byte before it (see [`crate::seal`]).

use std::io::{Read, Seek, SeekFrom, Write};

use openssl::sha::Sha256;
use serde::Serialize;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::error::{Error, Result};
use crate::manifest::{
    safe_entry_name, EntryDigest, Header, Manifest, MANIFEST, PAYLOAD, SIGNATURE, SIGNER_CHAIN,
};
use crate::pki::Signer;

fn zip_err(e: zip::result::ZipError) -> Error {
    Error::Zip(e.to_string())
}

/// Writes one bundle. Add entries, then [`BundleWriter::finish`] signs it.
pub struct BundleWriter<W: Read + Write + Seek> {
    zip: ZipWriter<W>,
    header: Header,
    entries: Vec<EntryDigest>,
}

impl<W: Read + Write + Seek> BundleWriter<W> {
    pub fn new(out: W, header: Header) -> Result<BundleWriter<W>> {
        let mut zip = ZipWriter::new(out);
        zip.set_comment(crate::seal::placeholder())
            .map_err(|e| Error::Zip(e.to_string()))?;
        Ok(BundleWriter {
            zip,
            header,
            entries: Vec::new(),
        })
    }

    fn check_name(&self, name: &str) -> Result<()> {
        if !safe_entry_name(name) {
            return Err(Error::UnsafeEntryName(name.to_string()));
        }
        if !self.header.kind.allowed_entries().contains(&name) {
            return Err(Error::UnexpectedEntry {
                name: name.to_string(),
                kind: self.header.kind.to_string(),
            });
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(Error::DuplicateEntry(name.to_string()));
        }
        Ok(())
    }

    fn start(&mut self, name: &str) -> Result<()> {
        self.check_name(name)?;
        // Level 2: a million devices' NDJSON comes out 10% larger than at the default level
        // 6, in 40% less time (BENCHMARKS.md, "sync-format").
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(2))
            .unix_permissions(0o644);
        self.zip.start_file(name, opts).map_err(zip_err)
    }

    /// Writes the typed payload (`payload.json`).
    pub fn payload<T: Serialize>(&mut self, value: &T) -> Result<()> {
        self.json(PAYLOAD, value)
    }

    /// Writes a whole JSON entry (pretty, for people reading it with `unzip -p`).
    pub fn json<T: Serialize>(&mut self, name: &str, value: &T) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::PayloadInvalid {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        self.start(name)?;
        self.zip.write_all(&bytes)?;
        self.entries.push(EntryDigest {
            name: name.to_string(),
            sha256: hex::encode(openssl::sha::sha256(&bytes)),
            size: bytes.len() as u64,
        });
        Ok(())
    }

    /// Starts an NDJSON entry: one JSON record per line, written one at a time.
    pub fn ndjson(&mut self, name: &str) -> Result<NdjsonWriter<'_, W>> {
        self.start(name)?;
        Ok(NdjsonWriter {
            bundle: self,
            name: name.to_string(),
            hasher: Sha256::new(),
            size: 0,
            records: 0,
            line: Vec::with_capacity(256),
        })
    }

    /// Writes the manifest, its signature and the signer's chain; returns the output.
    pub fn finish(mut self, signer: &Signer) -> Result<(W, Manifest)> {
        let mut names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        if !names.contains(&PAYLOAD) {
            return Err(Error::MissingEntry(PAYLOAD.to_string()));
        }
        let manifest = Manifest::new(&self.header, std::mem::take(&mut self.entries));
        let mut bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        bytes.push(b'\n');
        let signature = signer.sign(&bytes)?;
        // Stored, not deflated: small, and readable as they are in the file.
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .unix_permissions(0o644);
        for (name, data) in [
            (MANIFEST, bytes.as_slice()),
            (SIGNATURE, signature.as_slice()),
            (SIGNER_CHAIN, signer.chain_pem()?.as_slice()),
        ] {
            self.zip.start_file(name, opts).map_err(zip_err)?;
            self.zip.write_all(data)?;
        }
        let mut out = self.zip.finish().map_err(zip_err)?;
        seal_archive(&mut out, signer)?;
        Ok((out, manifest))
    }
}

/// An NDJSON entry being written. Call [`NdjsonWriter::finish`] when done.
pub struct NdjsonWriter<'a, W: Read + Write + Seek> {
    bundle: &'a mut BundleWriter<W>,
    name: String,
    hasher: Sha256,
    size: u64,
    records: u64,
    line: Vec<u8>,
}

impl<W: Read + Write + Seek> NdjsonWriter<'_, W> {
    /// Writes one record as one line.
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).map_err(|e| Error::PayloadInvalid {
            name: self.name.clone(),
            reason: e.to_string(),
        })?;
        self.line.push(b'\n');
        self.hasher.update(&self.line);
        self.size += self.line.len() as u64;
        self.records += 1;
        self.bundle.zip.write_all(&self.line)?;
        Ok(())
    }

    /// Records the entry's digest in the manifest; returns how many records it holds.
    pub fn finish(self) -> u64 {
        self.bundle.entries.push(EntryDigest {
            name: self.name,
            sha256: hex::encode(self.hasher.finish()),
            size: self.size,
        });
        self.records
    }
}

/// Replaces the placeholder comment at the end of the archive with the seal: a signature of
/// every byte before it.
fn seal_archive<W: Read + Write + Seek>(out: &mut W, signer: &Signer) -> Result<()> {
    let len = out.seek(SeekFrom::End(0))?;
    let sealed_len = len
        .checked_sub(crate::seal::SEAL_LEN as u64)
        .ok_or_else(|| Error::Zip("archive shorter than its seal".into()))?;
    out.seek(SeekFrom::Start(0))?;
    let signature = signer.sign_stream(Read::by_ref(out).take(sealed_len))?;
    let comment = crate::seal::comment(&signature)?;
    out.seek(SeekFrom::Start(sealed_len))?;
    out.write_all(comment.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A file with a write buffer that still reads and seeks (the writer re-reads the archive
/// to seal it).
pub struct BufferedFile {
    inner: std::io::BufWriter<std::fs::File>,
}

impl BufferedFile {
    /// Flushes the buffer and gives the file back.
    pub fn into_file(self) -> std::io::Result<std::fs::File> {
        self.inner.into_inner().map_err(|e| e.into_error())
    }

    pub fn new(f: std::fs::File) -> Self {
        BufferedFile {
            inner: std::io::BufWriter::with_capacity(256 * 1024, f),
        }
    }
}

impl std::io::Write for BufferedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl std::io::Seek for BufferedFile {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl std::io::Read for BufferedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Write;
        self.inner.flush()?;
        self.inner.get_mut().read(buf)
    }
}
