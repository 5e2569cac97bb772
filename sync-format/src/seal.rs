//! The seal: the archive's zip comment, a fixed-length line holding a signature (by the
//! bundle's signer) of every byte of the file before it.
//!
//! The manifest's signature and digests cover everything a bundle *says*; the seal also
//! covers the zip container's own bytes (header fields, timestamps, attributes, deflate
//! padding bits), so no byte of a bundle can change without the bundle being refused. It is
//! checkable with the `openssl` command line (see `docs/bundle-format.md`).
//!
//! Layout (exactly [`SEAL_LEN`] bytes, the last bytes of the file):
//! `satellite-seal-v1 <base64 of the DER ECDSA P-256/SHA-256 signature>` padded with spaces.

use crate::error::{Error, Result};

/// Length of the seal, which is also the zip comment's length.
pub const SEAL_LEN: usize = 128;
const PREFIX: &str = "satellite-seal-v1 ";

/// The comment written before the seal is computed.
pub fn placeholder() -> String {
    " ".repeat(SEAL_LEN)
}

/// The seal line for a signature.
pub fn comment(signature: &[u8]) -> Result<String> {
    let mut s = format!("{PREFIX}{}", openssl::base64::encode_block(signature));
    if s.len() > SEAL_LEN {
        return Err(Error::BadSeal("signature too long for the seal".into()));
    }
    while s.len() < SEAL_LEN {
        s.push(' ');
    }
    Ok(s)
}

/// The signature in a seal line. Only the exact form [`comment`] writes is accepted, so no
/// two seal lines carry the same signature.
pub fn parse(tail: &[u8]) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::BadSeal(why.to_string());
    let text = std::str::from_utf8(tail).map_err(|_| bad("the seal is not text"))?;
    let rest = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| bad("the archive has no seal (its zip comment is not a satellite seal)"))?;
    let b64 = rest.trim_end_matches(' ');
    let signature = openssl::base64::decode_block(b64)
        .map_err(|_| bad("the seal's signature is not base64"))?;
    if comment(&signature)?.as_bytes() != tail {
        return Err(bad("the seal is not in canonical form"));
    }
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_lines_round_trip_and_only_canonical_ones_parse() {
        let sig = vec![0x30, 0x45, 1, 2, 3, 250];
        let line = comment(&sig).unwrap();
        assert_eq!(line.len(), SEAL_LEN);
        assert_eq!(parse(line.as_bytes()).unwrap(), sig);
        let mut altered = line.clone().into_bytes();
        altered[SEAL_LEN - 1] = b'x';
        assert!(parse(&altered).is_err());
        assert!(parse(placeholder().as_bytes()).is_err());
    }
}
