//! Kubernetes label selectors (`matchLabels` + `matchExpressions`), with the
//! semantics and syntax rules Kubernetes defines for them.
use std::collections::BTreeMap;

use super::error::quoted;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOp {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRequirement {
    pub key: String,
    pub op: LabelOp,
    pub values: Vec<String>,
}

/// All requirements must hold; an empty selector matches every pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: Vec<(String, String)>,
    pub match_expressions: Vec<LabelRequirement>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.op {
                    LabelOp::In => value.is_some_and(|v| r.values.contains(v)),
                    // As in Kubernetes: a pod without the key satisfies NotIn.
                    LabelOp::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    LabelOp::Exists => value.is_some(),
                    LabelOp::DoesNotExist => value.is_none(),
                }
            })
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// A "qualified name" part: at most 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn name_part_error(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("the name part is empty");
    }
    if s.len() > 63 {
        return Some("the name part is longer than 63 characters");
    }
    let b = s.as_bytes();
    let body_ok = b.iter().all(|&c| is_alnum(c) || matches!(c, b'-' | b'_' | b'.'));
    (!body_ok || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]))
        .then_some("must be alphanumeric, `-`, `_` or `.`, starting and ending alphanumeric")
}

/// A DNS subdomain (RFC 1123), as used for namespaces' and labels' prefixes.
pub fn dns_subdomain_error(s: &str) -> Option<&'static str> {
    if s.is_empty() || s.len() > 253 {
        return Some("must be 1 to 253 characters");
    }
    let ok = s.split('.').all(|l| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    });
    (!ok).then_some("must be lower-case alphanumeric or `-`, in dot-separated parts")
}

/// Why `key` is not a valid label key (`[prefix/]name`), if it is not.
pub fn key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && let Some(e) = dns_subdomain_error(p)
    {
        return Some(format!("label key prefix {} {e}", quoted(p)));
    }
    name_part_error(name).map(|e| format!("label key {}: {e}", quoted(key)))
}

/// Why `value` is not a valid label value (empty is valid), if it is not.
pub fn value_error(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    name_part_error(value).map(|e| format!("label value {}: {e}", quoted(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: LabelOp, values: &[&str]) -> LabelRequirement {
        LabelRequirement { key: key.into(), op, values: values.iter().map(|v| v.to_string()).collect() }
    }

    #[test]
    fn kubernetes_semantics() {
        let pod = labels(&[("app", "trainer"), ("tier", "gpu")]);
        let bare = labels(&[]);
        assert!(LabelSelector::default().matches(&pod) && LabelSelector::default().matches(&bare));
        let s = LabelSelector { match_labels: vec![("app".into(), "trainer".into())], ..Default::default() };
        assert!(s.matches(&pod) && !s.matches(&bare));
        let cases = [
            (req("tier", LabelOp::In, &["gpu", "cpu"]), true, false),
            (req("tier", LabelOp::NotIn, &["gpu"]), false, true),
            (req("tier", LabelOp::Exists, &[]), true, false),
            (req("tier", LabelOp::DoesNotExist, &[]), false, true),
        ];
        for (r, on_pod, on_bare) in cases {
            let s = LabelSelector { match_expressions: vec![r.clone()], ..Default::default() };
            assert_eq!((s.matches(&pod), s.matches(&bare)), (on_pod, on_bare), "{r:?}");
        }
    }

    #[test]
    fn syntax() {
        assert_eq!(key_error("app"), None);
        assert_eq!(key_error("app.kubernetes.io/name"), None);
        assert!(key_error("-app").is_some());
        assert!(key_error("Bad_Prefix/x").is_some());
        assert!(key_error("a/").is_some());
        assert!(key_error(&"k".repeat(64)).is_some());
        assert_eq!(value_error(""), None);
        assert_eq!(value_error("v1.2_x-y"), None);
        assert!(value_error("a b").is_some());
        assert_eq!(dns_subdomain_error("ml-training"), None);
        assert!(dns_subdomain_error("ML").is_some());
    }
}
