//! Reading a workload's `selector:`: cgroup globs and identity criteria.
use super::error::quoted;
use super::labels::{LabelOp, LabelRequirement, LabelSelector, dns_subdomain_error, key_error, value_error};
use super::model::MetaSelector;
use super::reader::{MapView, Reader};
use super::select;
use super::yaml::{Node, Value};

pub(super) const SELECTOR_KEYS: &[&str] =
    &["cgroup", "namespace", "podLabels", "serviceAccount", "container", "image", "slurm", "unit"];
const SLURM_KEYS: &[&str] = &["user", "account", "partition", "job"];
const LABEL_KEYS: &[&str] = &["matchLabels", "matchExpressions"];
const EXPRESSION_KEYS: &[&str] = &["key", "operator", "values"];
/// Kubernetes caps nothing here, but a selector is read per cgroup.
const MAX_LABEL_TERMS: usize = 64;

impl Reader<'_> {
    /// `(cgroup globs, identity criteria)`; at least one key must be given.
    pub(super) fn selector(&mut self, node: &Node, path: &str) -> Option<(Vec<String>, MetaSelector)> {
        let s = self.map(node, path, SELECTOR_KEYS)?;
        let mut meta = MetaSelector::default();
        let cgroup = s.get("cgroup").map(|n| self.globs(n, &s.field("cgroup"))).unwrap_or_default();
        meta.namespace = self.names_of(&s, "namespace", true);
        meta.service_account = self.names_of(&s, "serviceAccount", false);
        meta.container = self.names_of(&s, "container", false);
        meta.image = self.names_of(&s, "image", false);
        meta.unit = self.names_of(&s, "unit", false);
        meta.pod_labels = s.get("podLabels").and_then(|n| self.label_selector(n, &s.field("podLabels")));
        if let Some(n) = s.get("slurm")
            && let Some(m) = self.map(n, &s.field("slurm"), SLURM_KEYS)
        {
            meta.slurm_user = self.names_of(&m, "user", false);
            meta.slurm_account = self.names_of(&m, "account", false);
            meta.slurm_partition = self.names_of(&m, "partition", false);
            meta.slurm_job = self.jobs(&m);
            if matches!(&n.value, Value::Map(pairs) if pairs.is_empty()) {
                self.err(n, &s.field("slurm"), "give at least one of `user`, `account`, `partition`, `job`");
            }
        }
        if SELECTOR_KEYS.iter().all(|k| s.get(k).is_none()) {
            self.err(
                node,
                path,
                format!("an empty selector matches nothing; give one of: {}", SELECTOR_KEYS.join(", ")),
            );
        }
        Some((cgroup, meta))
    }

    /// Items of a "one value or a non-empty list" field, with their field paths.
    fn one_or_list<'n>(&mut self, node: &'n Node, field: &str) -> Vec<(&'n Node, String)> {
        match &node.value {
            Value::Seq(_) => self
                .list(node, field)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, n)| (n, format!("{field}[{i}]")))
                .collect(),
            _ => vec![(node, field.to_string())],
        }
    }

    /// `cgroup:` is one glob or a non-empty list of them.
    pub(super) fn globs(&mut self, node: &Node, field: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (n, f) in self.one_or_list(node, field) {
            let Some(s) = self.string(n, &f) else { continue };
            if let Some(e) = select::glob_error(&s) {
                self.err(n, &f, e);
                continue;
            }
            let pattern = select::normalise(&s);
            match select::glob(pattern) {
                Ok(_) => out.push(pattern.to_string()),
                Err(e) => self.err(n, &f, format!("invalid glob {}: {}", quoted(&s), e.kind())),
            }
        }
        out
    }

    /// A name criterion: one glob or a list of them. Namespaces without
    /// wildcards must be valid DNS labels (catches typos like `ML`).
    fn names_of(&mut self, m: &MapView, key: &str, dns: bool) -> Vec<String> {
        let Some(node) = m.get(key) else { return Vec::new() };
        let mut out = Vec::new();
        for (n, f) in self.one_or_list(node, &m.field(key)) {
            let Some(s) = self.nonempty_string(n, &f) else { continue };
            let literal = !s.contains(['*', '?', '[', '{']);
            if let Err(e) = select::name_glob(&s) {
                self.err(n, &f, format!("invalid glob {}: {}", quoted(&s), e.kind()));
            } else if dns
                && literal
                && let Some(e) = dns_subdomain_error(&s)
            {
                self.err(n, &f, format!("{} is not a valid namespace: {e}", quoted(&s)));
            } else {
                out.push(s);
            }
        }
        out
    }

    fn jobs(&mut self, m: &MapView) -> Vec<u64> {
        let Some(node) = m.get("job") else { return Vec::new() };
        let mut out = Vec::new();
        for (n, f) in self.one_or_list(node, &m.field("job")) {
            // Slurm numbers jobs with 32 bits.
            let why = |v: &str| format!("{v} is not a Slurm job id (1..=4294967295)");
            if let Some(v) = self.integer(n, &f, 1..=u32::MAX.into(), why) {
                out.push(v as u64);
            }
        }
        out
    }

    fn label_selector(&mut self, node: &Node, field: &str) -> Option<LabelSelector> {
        let m = self.map(node, field, LABEL_KEYS)?;
        let mut out = LabelSelector::default();
        if let Some(n) = m.get("matchLabels") {
            let f = m.field("matchLabels");
            if let Value::Map(pairs) = &n.value {
                for (k, v) in pairs {
                    let (Some(key), Some(value)) = (self.string(k, &f), self.string(v, &format!("{f}.{}", scalar(k))))
                    else {
                        continue;
                    };
                    let vf = format!("{f}.{key}");
                    match key_error(&key).or_else(|| value_error(&value)) {
                        Some(e) => self.err(v, &vf, e),
                        None => out.match_labels.push((key, value)),
                    }
                }
            } else {
                self.expected(n, &f, "a mapping of label: value");
            }
        }
        if let Some(n) = m.get("matchExpressions") {
            let f = m.field("matchExpressions");
            for (i, item) in self.list(n, &f).unwrap_or_default().iter().enumerate() {
                if let Some(r) = self.label_requirement(item, &format!("{f}[{i}]")) {
                    out.match_expressions.push(r);
                }
            }
        }
        if out.match_labels.len() + out.match_expressions.len() > MAX_LABEL_TERMS {
            self.err(node, field, format!("more than {MAX_LABEL_TERMS} label terms"));
        }
        Some(out)
    }

    fn label_requirement(&mut self, node: &Node, path: &str) -> Option<LabelRequirement> {
        let m = self.map(node, path, EXPRESSION_KEYS)?;
        let key_node = self.required(&m, "key");
        let op_node = self.required(&m, "operator");
        let key = key_node.and_then(|n| self.string(n, &m.field("key")));
        let ops = [
            ("In", LabelOp::In),
            ("NotIn", LabelOp::NotIn),
            ("Exists", LabelOp::Exists),
            ("DoesNotExist", LabelOp::DoesNotExist),
        ];
        let op = op_node.and_then(|n| self.keyword(n, &m.field("operator"), &ops));
        let mut values = Vec::new();
        if let Some(n) = m.get("values") {
            let f = m.field("values");
            if let Value::Seq(items) = &n.value {
                for (i, item) in items.iter().enumerate() {
                    let vf = format!("{f}[{i}]");
                    let Some(v) = self.string(item, &vf) else { continue };
                    match value_error(&v) {
                        Some(e) => self.err(item, &vf, e),
                        None => values.push(v),
                    }
                }
            } else {
                self.expected(n, &f, "a list");
            }
        }
        let (key, op) = (key?, op?);
        if let Some(e) = key_error(&key) {
            self.err(key_node?, &m.field("key"), e);
            return None;
        }
        let set_op = matches!(op, LabelOp::In | LabelOp::NotIn);
        match (set_op, m.get("values")) {
            (true, None) => self.err(node, &m.field("values"), "`In` and `NotIn` need a non-empty `values` list"),
            (true, Some(n)) if values.is_empty() && matches!(&n.value, Value::Seq(v) if v.is_empty()) => {
                self.err(n, &m.field("values"), "`In` and `NotIn` need a non-empty `values` list")
            }
            (false, Some(n)) => self.err(n, &m.field("values"), "`Exists` and `DoesNotExist` take no `values`"),
            _ => {}
        }
        Some(LabelRequirement { key, op, values })
    }
}

fn scalar(n: &Node) -> &str {
    match &n.value {
        Value::Scalar(s, _) => s,
        _ => "?",
    }
}
