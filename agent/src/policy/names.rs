//! Name rules for segments and workloads, and "did you mean" suggestions.

/// Longest segment/workload name (fits a DNS label, so names can become labels).
pub const MAX_NAME_LEN: usize = 63;

/// `[a-z0-9][-a-z0-9_.]*`, at most 63 characters.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c))
}

pub fn name_rule() -> String {
    format!("use 1-{MAX_NAME_LEN} characters from a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit")
}

/// The candidate closest to `name` within edit distance 2, if any.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` or nothing.
pub fn hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default()
}

/// Levenshtein distance over chars (inputs are short names; bail out early on long ones).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 2 || a.len() > 256 || b.len() > 256 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("object-store"));
        assert!(is_valid_name("a.b_c-1"));
        assert!(is_valid_name("0"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("-a"));
        assert!(!is_valid_name("Trainer"));
        assert!(!is_valid_name("a b"));
        assert!(is_valid_name(&"a".repeat(63)));
        assert!(!is_valid_name(&"a".repeat(64)));
    }

    #[test]
    fn suggestions() {
        let c = ["object-store", "tenant-b", "metadata-api"];
        assert_eq!(closest("object-stor", c), Some("object-store"));
        assert_eq!(closest("tenant-c", c), Some("tenant-b"));
        assert_eq!(closest("tenant-xyz", c), None);
        assert_eq!(hint("metdata-api", c), "; did you mean `metadata-api`?");
    }
}
