//! Random identifiers and secrets from the operating system's CSPRNG.

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOWER_ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `len` characters drawn uniformly from `alphabet` (rejection sampling: no modulo bias).
pub fn random_from(alphabet: &[u8], len: usize) -> String {
    debug_assert!(alphabet.len() <= 256);
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        // The OS CSPRNG failing is not something a server can recover from.
        getrandom::fill(&mut buf).unwrap_or_else(|e| panic!("the operating system's random source failed: {e}"));
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// Secrets and tokens: `[A-Za-z0-9]`.
pub fn alphanumeric(len: usize) -> String {
    random_from(ALPHANUMERIC, len)
}

/// Identifiers that appear in host names and Kong-style ids: `[a-z0-9]`.
pub fn lower_alphanumeric(len: usize) -> String {
    random_from(LOWER_ALPHANUMERIC, len)
}

pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).unwrap_or_else(|e| panic!("the operating system's random source failed: {e}"));
    out
}

/// A uniform integer in `0..bound` (rejection sampling); 0 when `bound` is 0.
pub fn below(bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    let zone = u64::MAX - (u64::MAX - bound + 1) % bound;
    loop {
        let v = u64::from_le_bytes(bytes::<8>());
        if v <= zone {
            return v % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn shapes_and_uniqueness() {
        let a = alphanumeric(32);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        let l = lower_alphanumeric(16);
        assert!(l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        let many: HashSet<_> = (0..1000).map(|_| alphanumeric(32)).collect();
        assert_eq!(many.len(), 1000);
        assert!((0..1000).all(|_| below(7) < 7));
        assert_eq!(below(0), 0);
        assert_eq!(below(1), 0);
    }
}
