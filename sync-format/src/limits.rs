//! Bounds on what a reader accepts, so a hostile file cannot exhaust memory or disk.

/// Limits applied while reading a bundle. The defaults fit a sync of a million devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bundle file, in bytes.
    pub max_compressed: u64,
    /// Largest inflated size of one entry.
    pub max_entry: u64,
    /// Largest inflated size of all entries together.
    pub max_total: u64,
    /// Largest inflated/compressed ratio of an entry (deflate tops out near 1032:1, real
    /// NDJSON sits far below 100:1).
    pub max_ratio: u64,
    /// Most entries in one bundle.
    pub max_entries: usize,
    /// Largest `manifest.json`, `signer.pem`, `manifest.sig` and JSON payload entries.
    pub max_small_entry: u64,
    /// Longest line of an NDJSON entry.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed: 512 * 1024 * 1024,
            max_entry: 2 * 1024 * 1024 * 1024,
            max_total: 4 * 1024 * 1024 * 1024,
            max_ratio: 200,
            max_entries: 32,
            max_small_entry: 16 * 1024 * 1024,
            max_line: 64 * 1024,
        }
    }
}
