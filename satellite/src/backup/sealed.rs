//! Encrypted backups: the whole backup zip sealed with AES-256-GCM under a key derived from
//! the operator's passphrase by scrypt (memory-hard). The magic line and the parameters line
//! are authenticated with the data; nothing is read before the tag checks.

use std::io::{BufRead, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::datadir;
use crate::error::{Error, Result};

/// The first bytes of an encrypted backup; a JSON line of parameters follows, then the
/// ciphertext and the 16-byte GCM tag. The magic and the parameter line are authenticated.
pub(super) const ENCRYPTED_MAGIC: &[u8] = b"satellite-backup-encrypted-v1\n";
/// scrypt cost: 2^15 x 8 x 128 bytes = 32 MiB of memory per derivation.
const SCRYPT_N: u64 = 1 << 15;
const SCRYPT_R: u64 = 8;
const SCRYPT_P: u64 = 1;
/// A backup passphrase: at least 12 characters.
pub fn check_passphrase(p: &str) -> Result<()> {
    if p.chars().count() < 12 {
        return Err(Error::invalid(
            "the backup passphrase must be at least 12 characters",
        ));
    }
    Ok(())
}

fn scrypt_key(passphrase: &str, salt: &[u8]) -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    openssl::pkcs5::scrypt(
        passphrase.as_bytes(),
        salt,
        SCRYPT_N,
        SCRYPT_R,
        SCRYPT_P,
        64 << 20,
        &mut key,
    )?;
    Ok(key)
}

/// The parameters line of an encrypted backup.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    kdf: String,
    n: u64,
    r: u64,
    p: u64,
    salt: String,
    cipher: String,
    nonce: String,
}

/// Encrypts the file `plain` into `out` (AES-256-GCM, key from `passphrase` by scrypt).
pub(super) fn encrypt(plain: &Path, out: &mut std::fs::File, passphrase: &str) -> Result<()> {
    use openssl::symm::{Cipher, Crypter, Mode};
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    openssl::rand::rand_bytes(&mut salt)?;
    openssl::rand::rand_bytes(&mut nonce)?;
    let key = scrypt_key(passphrase, &salt)?;
    let b64 = openssl::base64::encode_block;
    let params = Sealed {
        kdf: "scrypt".into(),
        n: SCRYPT_N,
        r: SCRYPT_R,
        p: SCRYPT_P,
        salt: b64(&salt),
        cipher: "aes-256-gcm".into(),
        nonce: b64(&nonce),
    };
    let mut head = ENCRYPTED_MAGIC.to_vec();
    head.extend(serde_json::to_vec(&params).map_err(|e| Error::Internal(e.to_string()))?);
    head.push(b'\n');
    let cipher = Cipher::aes_256_gcm();
    let mut c = Crypter::new(cipher, Mode::Encrypt, &key, Some(&nonce))?;
    c.aad_update(&head)?;
    out.write_all(&head)?;
    let mut input = std::fs::File::open(plain).map_err(|e| Error::file(plain, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut enc = vec![0u8; 64 * 1024 + cipher.block_size()];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let k = c.update(&buf[..n], &mut enc)?;
        out.write_all(&enc[..k])?;
    }
    let k = c.finalize(&mut enc)?;
    out.write_all(&enc[..k])?;
    let mut tag = [0u8; 16];
    c.get_tag(&mut tag)?;
    out.write_all(&tag)?;
    Ok(())
}

/// Whether the file at `path` is an encrypted backup.
pub(super) fn is_encrypted(path: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let mut magic = vec![0u8; ENCRYPTED_MAGIC.len()];
    let mut got = 0;
    while got < magic.len() {
        match f.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got == magic.len() && magic == ENCRYPTED_MAGIC)
}

/// Decrypts the encrypted backup `path` into the file `plain`; refuses a wrong passphrase or
/// any changed byte (the tag is checked before the caller reads anything of `plain`).
pub(super) fn decrypt(path: &Path, plain: &Path, passphrase: &str) -> Result<()> {
    use openssl::symm::{Cipher, Crypter, Mode};
    let bad = |why: &str| {
        Error::Invalid(format!("{} is not a usable backup: {why}", path.display()).into())
    };
    let len = std::fs::metadata(path)
        .map_err(|e| Error::file(path, e))?
        .len();
    let mut f =
        std::io::BufReader::new(std::fs::File::open(path).map_err(|e| Error::file(path, e))?);
    let mut head = Vec::new();
    (&mut f).take(4096).read_until(b'\n', &mut head)?;
    let mut line = Vec::new();
    (&mut f).take(4096).read_until(b'\n', &mut line)?;
    if head != ENCRYPTED_MAGIC || line.last() != Some(&b'\n') {
        return Err(bad("its encryption header is damaged"));
    }
    let params: Sealed = serde_json::from_slice(&line[..line.len() - 1])
        .map_err(|e| bad(&format!("its encryption header is damaged: {e}")))?;
    let b64d = |s: &str| {
        openssl::base64::decode_block(s).map_err(|_| bad("its encryption header is damaged"))
    };
    let (salt, nonce) = (b64d(&params.salt)?, b64d(&params.nonce)?);
    if params.kdf != "scrypt"
        || params.cipher != "aes-256-gcm"
        || nonce.len() != 12
        || params.n > 1 << 20
        || params.r > 32
        || params.p > 16
    {
        return Err(bad(
            "it is sealed with parameters this version does not use",
        ));
    }
    let mut key = [0u8; 32];
    openssl::pkcs5::scrypt(
        passphrase.as_bytes(),
        &salt,
        params.n,
        params.r,
        params.p,
        1 << 30,
        &mut key,
    )?;
    head.extend_from_slice(&line);
    let body = len
        .checked_sub(head.len() as u64 + 16)
        .ok_or_else(|| bad("it is truncated"))?;
    let cipher = Cipher::aes_256_gcm();
    let mut c = Crypter::new(cipher, Mode::Decrypt, &key, Some(&nonce))?;
    c.aad_update(&head)?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(plain)
        .map_err(|e| Error::file(plain, e))?;
    datadir::restrict_file(plain)?;
    let mut r = (&mut f).take(body);
    let mut buf = vec![0u8; 64 * 1024];
    let mut dec = vec![0u8; 64 * 1024 + cipher.block_size()];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let k = c.update(&buf[..n], &mut dec)?;
        out.write_all(&dec[..k])?;
    }
    let mut tag = [0u8; 16];
    f.read_exact(&mut tag).map_err(|_| bad("it is truncated"))?;
    c.set_tag(&tag)?;
    let k = c
        .finalize(&mut dec)
        .map_err(|_| bad("the passphrase is wrong, or the file was altered"))?;
    out.write_all(&dec[..k])?;
    out.sync_all().map_err(|e| Error::file(plain, e))?;
    Ok(())
}
