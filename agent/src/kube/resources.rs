//! Extended resource names as kubelet reports them (`nvidia.com/gpu`), and
//! the patterns `agent.devices.gpuResources` accepts: a name, or a name with
//! `*` wildcards after the `/` (`nvidia.com/mig-*`: every MIG profile).

/// Why `pattern` is not a resource name or pattern; `None` when it is one.
/// Kubernetes' rule for extended resources: `<domain>/<name>`, the domain a
/// DNS subdomain outside `kubernetes.io`, the name at most 63 characters of
/// letters, digits, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn pattern_error(pattern: &str) -> Option<String> {
    const EXPECTED: &str = "expected <domain>/<name> (e.g. nvidia.com/gpu; `*` allowed in the name)";
    let Some((domain, name)) = pattern.split_once('/') else {
        return Some(format!("no `/`: {EXPECTED}"));
    };
    if !is_dns_subdomain(domain) {
        return Some(format!("`{domain}` is not a DNS domain: {EXPECTED}"));
    }
    if domain == "kubernetes.io" || domain.ends_with(".kubernetes.io") {
        return Some("the kubernetes.io domain holds no extended resources".into());
    }
    // A wildcard stands for name characters; check the name with it filled in.
    let filled = name.replace('*', "x");
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let body_ok = filled.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if filled.is_empty()
        || filled.len() > 63
        || !body_ok
        || !edge_ok(filled.chars().next())
        || !edge_ok(filled.chars().last())
    {
        return Some(format!("`{name}` is not a resource name: {EXPECTED}"));
    }
    None
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `name` matches `pattern` (`*`: any run of characters, never `/`).
pub fn matches(pattern: &str, name: &str) -> bool {
    let Some((p_domain, p_name)) = pattern.split_once('/') else { return false };
    let Some((domain, rest)) = name.split_once('/') else { return false };
    p_domain == domain && !rest.contains('/') && glob(p_name.as_bytes(), rest.as_bytes())
}

/// Whether any pattern matches `name`.
pub fn any_matches(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| matches(p, name))
}

/// `*`-only glob, iterative with one backtrack point (linear in practice).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_and_patterns() {
        for ok in ["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-1g.10gb", "nvidia.com/mig-*", "a.b/*x*"] {
            assert_eq!(pattern_error(ok), None, "{ok}");
        }
    }

    #[test]
    fn invalid_names_say_why() {
        for (bad, why) in [
            ("gpu", "no `/`"),
            ("nvidia.com/", "not a resource name"),
            ("Nvidia.com/gpu", "not a DNS domain"),
            ("nvidia..com/gpu", "not a DNS domain"),
            ("-x.com/gpu", "not a DNS domain"),
            ("nvidia.com/gpu/x", "not a resource name"),
            ("nvidia.com/-gpu", "not a resource name"),
            ("nvidia.com/gpu.", "not a resource name"),
            ("nvidia.com/g pu", "not a resource name"),
            ("kubernetes.io/gpu", "kubernetes.io"),
            ("x.kubernetes.io/gpu", "kubernetes.io"),
            ("nvidia.*/gpu", "not a DNS domain"),
        ] {
            let e = pattern_error(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(pattern_error(&format!("nvidia.com/{}", "g".repeat(64))).is_some());
    }

    #[test]
    fn globs_stay_in_the_name() {
        let p = "nvidia.com/mig-*";
        assert!(matches(p, "nvidia.com/mig-1g.10gb"));
        assert!(matches(p, "nvidia.com/mig-3g.40gb.shared"));
        assert!(!matches(p, "nvidia.com/gpu"));
        assert!(!matches(p, "example.com/mig-1g.10gb"));
        assert!(!matches(p, "nvidia.com/mig-1g/x"));
        assert!(matches("nvidia.com/gpu", "nvidia.com/gpu"));
        assert!(!matches("nvidia.com/gpu", "nvidia.com/gpu.shared"));
        assert!(matches("nvidia.com/*.shared", "nvidia.com/gpu.shared"));
        assert!(matches("nvidia.com/a*b*c", "nvidia.com/aXbYbc"));
        assert!(!matches("nvidia.com/a*b*c", "nvidia.com/aXbYb"));
        let all: Vec<String> = crate::settings::DEFAULT_GPU_RESOURCES.iter().map(|s| s.to_string()).collect();
        assert!(any_matches(&all, "nvidia.com/gpu.shared") && any_matches(&all, "nvidia.com/mig-7g.80gb"));
        assert!(!any_matches(&all, "amd.com/gpu"));
    }
}
