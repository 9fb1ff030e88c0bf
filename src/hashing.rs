//! Content hashes: revisions, document and chunk ids, cache keys and the hashed suffix of
//! bounded child names all use the same SHA-256 hex digest.

use sha2::{Digest, Sha256};

/// Lower-case hex of a SHA-256 digest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
