//! Names for runs created without one, in MLflow's `adjective-noun-number` shape.

use std::time::{SystemTime, UNIX_EPOCH};

const ADJECTIVES: [&str; 24] = [
    "amber", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "fleet", "gentle",
    "keen", "lively", "lucid", "merry", "nimble", "quiet", "rapid", "sharp", "steady", "sunny",
    "swift", "tidy", "vivid", "wise",
];

const NOUNS: [&str; 24] = [
    "badger", "bee", "crane", "deer", "dove", "falcon", "finch", "fox", "gull", "hare", "heron",
    "lark", "lynx", "mole", "newt", "otter", "owl", "panda", "robin", "seal", "sparrow", "swan",
    "wolf", "wren",
];

/// A fresh name such as `brave-otter-417`; not guaranteed unique (nor is MLflow's).
pub fn random_run_name() -> String {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let hash = blake3::hash(&seed.to_le_bytes());
    let bytes = hash.as_bytes();
    let number = u16::from_le_bytes([bytes[2], bytes[3]]) % 1000;
    format!(
        "{}-{}-{number}",
        ADJECTIVES[usize::from(bytes[0]) % ADJECTIVES.len()],
        NOUNS[usize::from(bytes[1]) % NOUNS.len()]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_three_parts() {
        let name = random_run_name();
        let parts: Vec<&str> = name.split('-').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert!(ADJECTIVES.contains(&parts[0]) && NOUNS.contains(&parts[1]));
        assert!(parts[2].parse::<u16>().unwrap() < 1000);
    }
}
