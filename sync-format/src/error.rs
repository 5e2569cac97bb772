//! Every way a bundle can be refused, each a distinct variant that says what was wrong.
//! Nothing here knows about HTTP or exit codes.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    #[error("bundle is too large: {size} bytes, the limit is {limit}")]
    TooLarge { size: u64, limit: u64 },

    #[error("not a bundle: the file is not a zip archive")]
    NotAZip,

    #[error("bundle is truncated or corrupt: {0}")]
    Corrupt(String),

    #[error("bundle has {count} entries, the limit is {limit}")]
    TooManyEntries { count: usize, limit: usize },

    #[error("unsafe entry name {0:?}: names may only use letters, digits, '.', '-' and '_', with no path separators or '..'")]
    UnsafeEntryName(String),

    #[error("duplicate entry {0:?}")]
    DuplicateEntry(String),

    #[error("entry {0:?} is a symbolic link")]
    SymlinkEntry(String),

    #[error("entry {0:?} is a directory")]
    DirectoryEntry(String),

    #[error("entry {name:?} is encrypted")]
    EncryptedEntry { name: String },

    #[error(
        "entry {name:?} uses compression method {method}; only stored and deflate are accepted"
    )]
    UnsupportedCompression { name: String, method: String },

    #[error("entry {name:?} inflates to more than {limit} bytes")]
    EntryTooLarge { name: String, limit: u64 },

    #[error("entries inflate to more than {limit} bytes in total")]
    TotalTooLarge { limit: u64 },

    #[error("entry {name:?} inflates more than {limit}:1 (a zip bomb?)")]
    CompressionRatio { name: String, limit: u64 },

    #[error("entry {0:?} is listed in the manifest but missing from the bundle")]
    MissingEntry(String),

    #[error("entry {0:?} is in the bundle but not listed in the manifest")]
    UnlistedEntry(String),

    #[error("entry {name:?} does not belong in a {kind} bundle")]
    UnexpectedEntry { name: String, kind: String },

    #[error("entry {name:?} does not match the SHA-256 in the manifest (altered after signing)")]
    HashMismatch { name: String },

    #[error("entry {name:?} is {actual} bytes, the manifest says {manifest}")]
    SizeMismatch {
        name: String,
        manifest: u64,
        actual: u64,
    },

    #[error("manifest.json is invalid: {0}")]
    ManifestInvalid(String),

    #[error("bundle format version {found} is newer than this reader understands (up to {supported}); upgrade the software")]
    NewerFormat { found: u64, supported: u64 },

    #[error("unknown bundle kind {0:?}")]
    UnknownKind(String),

    #[error("expected a {expected} bundle, this is a {found} bundle")]
    WrongKind { expected: String, found: String },

    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),

    #[error("signer certificate is invalid: {0}")]
    BadCertificate(String),

    #[error("bundle is signed by an untrusted certificate: {0}")]
    UntrustedSigner(String),

    #[error("bundle is signed under a cloud CA this satellite does not trust yet (its SHA-256 fingerprint is {found})")]
    UnpinnedCa { found: String },

    #[error("{0}")]
    BadFingerprint(String),

    #[error("a {kind} bundle may be signed only by {expected}, but this one is signed by {found}")]
    WrongSigner {
        kind: String,
        expected: String,
        found: String,
    },

    #[error("the manifest names the sender {sender:?}, but the signer's certificate is for {certified:?}")]
    SenderMismatch { sender: String, certified: String },

    #[error("signature of manifest.json does not verify (the manifest was altered or signed by another key)")]
    BadSignature,

    #[error("the archive's seal does not verify ({0}): the file was altered after signing")]
    BadSeal(String),

    #[error("bundle expired at {not_after} (now {now})")]
    Expired { not_after: i64, now: i64 },

    #[error("bundle was made in the future ({created_at}, now {now}): check the clocks")]
    FromTheFuture { created_at: i64, now: i64 },

    #[error("bundle is addressed to {found:?}, not to us ({expected:?})")]
    WrongReceiver { expected: String, found: String },

    #[error("entry {name:?} is invalid: {reason}")]
    PayloadInvalid { name: String, reason: String },

    #[error("payload version {found} of {name:?} is newer than this reader understands (up to {supported}); upgrade the software")]
    NewerPayload {
        name: String,
        found: u32,
        supported: u32,
    },

    #[error("cryptography error: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),

    #[error("zip error: {0}")]
    Zip(String),
}

impl Error {
    /// Whether the failure is ours (I/O, cryptography library) rather than the bundle's.
    pub fn is_local_failure(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Crypto(_) | Error::Zip(_))
    }

    /// A short stable code, for logs and for callers that map errors to their own.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io(_) => "io",
            Error::TooLarge { .. } => "too_large",
            Error::NotAZip => "not_a_zip",
            Error::Corrupt(_) => "corrupt",
            Error::TooManyEntries { .. } => "too_many_entries",
            Error::UnsafeEntryName(_) => "unsafe_entry_name",
            Error::DuplicateEntry(_) => "duplicate_entry",
            Error::SymlinkEntry(_) => "symlink_entry",
            Error::DirectoryEntry(_) => "directory_entry",
            Error::EncryptedEntry { .. } => "encrypted_entry",
            Error::UnsupportedCompression { .. } => "unsupported_compression",
            Error::EntryTooLarge { .. } => "entry_too_large",
            Error::TotalTooLarge { .. } => "total_too_large",
            Error::CompressionRatio { .. } => "compression_ratio",
            Error::MissingEntry(_) => "missing_entry",
            Error::UnlistedEntry(_) => "unlisted_entry",
            Error::UnexpectedEntry { .. } => "unexpected_entry",
            Error::HashMismatch { .. } => "hash_mismatch",
            Error::SizeMismatch { .. } => "size_mismatch",
            Error::ManifestInvalid(_) => "manifest_invalid",
            Error::NewerFormat { .. } => "newer_format",
            Error::UnknownKind(_) => "unknown_kind",
            Error::WrongKind { .. } => "wrong_kind",
            Error::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Error::BadCertificate(_) => "bad_certificate",
            Error::UntrustedSigner(_) => "untrusted_signer",
            Error::UnpinnedCa { .. } => "unpinned_ca",
            Error::BadFingerprint(_) => "bad_fingerprint",
            Error::WrongSigner { .. } => "wrong_signer",
            Error::SenderMismatch { .. } => "sender_mismatch",
            Error::BadSignature => "bad_signature",
            Error::BadSeal(_) => "bad_seal",
            Error::Expired { .. } => "expired",
            Error::FromTheFuture { .. } => "from_the_future",
            Error::WrongReceiver { .. } => "wrong_receiver",
            Error::PayloadInvalid { .. } => "payload_invalid",
            Error::NewerPayload { .. } => "newer_payload",
            Error::Crypto(_) => "crypto",
            Error::Zip(_) => "zip",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
