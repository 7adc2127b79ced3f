//! The digests that key reuse, and fresh run ids.
//!
//! `params_hash` and `inputs_hash` are written into every run row and recomputed from a
//! [`ReuseQuery`](crate::store::ReuseQuery); both sides call the functions here, so a
//! stored run and a query can only agree when their inputs are equal. The encoding is
//! canonical (sorted, length-prefixed) and starts with a versioned domain tag: changing
//! what a digest means requires a new tag, never a silent change.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::RunId;

/// blake3 hex of the params, independent of insertion order.
pub fn params_hash(params: &BTreeMap<String, String>) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"flow.params.v1\0");
    for (key, value) in params {
        write_field(&mut hasher, key);
        write_field(&mut hasher, value);
    }
    hasher.finalize().to_hex().to_string()
}

/// blake3 hex of the upstream `(entry, run)` pairs, independent of their order.
pub fn inputs_hash(upstream: &[(String, RunId)]) -> String {
    let mut pairs: Vec<&(String, RunId)> = upstream.iter().collect();
    pairs.sort();
    pairs.dedup();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"flow.inputs.v1\0");
    for (entry, run) in pairs {
        write_field(&mut hasher, entry);
        write_field(&mut hasher, run);
    }
    hasher.finalize().to_hex().to_string()
}

/// A fresh random-looking run id: 32 lower-case hex chars.
///
/// Time, pid and a process-wide counter make it unique; hashing them spreads ids evenly
/// so short prefixes stay unambiguous.
pub(crate) fn new_run_id() -> RunId {
    new_token(b"flow.run-id.v1\0")[..32].to_string()
}

/// A unique name for a staging file or directory under `tmp/`.
pub(crate) fn new_tmp_name() -> String {
    format!("store-{}", &new_token(b"flow.tmp.v1\0")[..24])
}

fn new_token(domain: &[u8]) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let mut hasher = blake3::Hasher::new();
    hasher.update(domain);
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.finalize().to_hex().to_string()
}

/// Length-prefixing keeps `("ab", "c")` and `("a", "bc")` apart.
fn write_field(hasher: &mut blake3::Hasher, field: &str) {
    hasher.update(&(field.len() as u64).to_le_bytes());
    hasher.update(field.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn params_hash_separates_fields() {
        let ab_c = params(&[("ab", "c")]);
        let a_bc = params(&[("a", "bc")]);
        assert_ne!(params_hash(&ab_c), params_hash(&a_bc));
        assert_eq!(params_hash(&ab_c), params_hash(&params(&[("ab", "c")])));
        assert_ne!(params_hash(&BTreeMap::new()), params_hash(&ab_c));
    }

    #[test]
    fn inputs_hash_ignores_order() {
        let one = vec![
            ("load".to_string(), "a".repeat(32)),
            ("process".to_string(), "b".repeat(32)),
        ];
        let two = vec![one[1].clone(), one[0].clone()];
        assert_eq!(inputs_hash(&one), inputs_hash(&two));
        assert_ne!(inputs_hash(&one), inputs_hash(&one[..1]));
    }

    #[test]
    fn run_ids_are_32_hex_and_unique() {
        let first = new_run_id();
        let second = new_run_id();
        assert_eq!(first.len(), 32);
        assert!(first
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase()));
        assert_ne!(first, second);
    }
}
