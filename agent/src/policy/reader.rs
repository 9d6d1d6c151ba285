//! Generic typed access to the marked YAML tree: checked mappings, scalars
//! typed by YAML 1.2 core rules, keywords. Errors carry field paths.
use std::ops::RangeInclusive;

use super::error::{Diag, Loc, quoted, shown};
use super::model::{DefaultAction, Mode, Protocol};
use super::names::{closest, is_valid_name, name_rule};
use super::yaml::{Node, Plain, Style, Value, resolve_plain};

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// "a list", "an integer", ... for "expected X, found Y" messages.
pub(super) fn describe(node: &Node) -> &'static str {
    match &node.value {
        Value::Null => "null",
        Value::Seq(_) => "a list",
        Value::Map(_) => "a mapping",
        Value::Scalar(_, Style::Quoted) => "a string",
        Value::Scalar(s, Style::Plain) => match resolve_plain(s) {
            Plain::Bool(_) => "a boolean",
            Plain::Int(_) | Plain::BigInt => "an integer",
            Plain::Float(_) => "a number",
            Plain::Str => "a string",
        },
    }
}

/// A checked mapping: its keys are all known and unique.
pub(super) struct MapView<'n> {
    pub loc: Loc,
    pub path: String,
    pairs: Vec<(&'n str, &'n Node)>,
}

impl<'n> MapView<'n> {
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    pub(super) fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

pub(super) struct Reader<'d> {
    pub diag: &'d mut Diag,
}

impl Reader<'_> {
    pub(super) fn err(&mut self, node: &Node, field: &str, reason: impl Into<String>) {
        self.diag.at(node.loc, field, reason);
    }

    pub(super) fn expected(&mut self, node: &Node, field: &str, what: &str) {
        let found = describe(node);
        let hint = if what == "a string" && matches!(node.value, Value::Scalar(..)) {
            " (quote it to use it as a string)"
        } else {
            ""
        };
        self.err(node, field, format!("expected {what}, found {found}{hint}"));
    }

    pub(super) fn map<'n>(&mut self, node: &'n Node, path: &str, allowed: &[&str]) -> Option<MapView<'n>> {
        let Value::Map(pairs) = &node.value else {
            self.expected(node, path, "a mapping");
            return None;
        };
        let mut view = MapView { loc: node.loc, path: path.to_string(), pairs: Vec::new() };
        let mut seen: Vec<(&str, Loc)> = Vec::new();
        for (k, v) in pairs {
            let Value::Scalar(key, _) = &k.value else {
                let field = if path.is_empty() { "document" } else { path };
                self.err(k, field, "mapping keys must be strings");
                continue;
            };
            let field = join(path, key);
            if let Some((_, first)) = seen.iter().find(|(s, _)| s == key) {
                let reason = format!("duplicate key (first given at line {}:{})", first.line, first.column);
                self.err(k, &field, reason);
                continue;
            }
            seen.push((key, k.loc));
            if !allowed.contains(&key.as_str()) {
                let hint = closest(key, allowed.iter().copied())
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                let reason = format!("unknown key {}{hint}; allowed keys: {}", quoted(key), allowed.join(", "));
                self.err(k, &field, reason);
                continue;
            }
            view.pairs.push((key, v));
        }
        Some(view)
    }

    pub(super) fn required<'n>(&mut self, m: &MapView<'n>, key: &str) -> Option<&'n Node> {
        let node = m.get(key);
        if node.is_none() {
            self.diag.at(m.loc, &m.field(key), format!("missing required key `{key}`"));
        }
        node
    }

    /// A string without control characters: no name, path or glob has
    /// one, and a quoted `"\0"` or `"\e"` is a mistake or a trick.
    pub(super) fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        self.text(node, field, &[])
    }

    /// A string in which only the control characters in `allowed` may appear.
    pub(super) fn text(&mut self, node: &Node, field: &str, allowed: &[char]) -> Option<String> {
        let s = match &node.value {
            Value::Scalar(s, Style::Quoted) => s,
            Value::Scalar(s, Style::Plain) if resolve_plain(s) == Plain::Str => s,
            _ => {
                self.expected(node, field, "a string");
                return None;
            }
        };
        match s.chars().find(|c| c.is_control() && !allowed.contains(c)) {
            Some('\0') => self.err(node, field, "contains a NUL byte"),
            Some(c) => self.err(node, field, format!("contains control character U+{:04X}", c as u32)),
            None => return Some(s.clone()),
        }
        None
    }

    pub(super) fn nonempty_string(&mut self, node: &Node, field: &str) -> Option<String> {
        let s = self.string(node, field)?;
        if s.is_empty() || s.contains('\0') {
            self.err(node, field, "must be a non-empty string without NUL characters");
            return None;
        }
        Some(s)
    }

    /// An integer in `valid`. One outside, even a literal too long for 64
    /// bits, is reported as `why(the value as written)`.
    pub(super) fn integer(
        &mut self,
        node: &Node,
        field: &str,
        valid: RangeInclusive<i64>,
        why: impl FnOnce(&str) -> String,
    ) -> Option<i64> {
        if let Value::Scalar(s, Style::Plain) = &node.value {
            match resolve_plain(s) {
                Plain::Int(v) if valid.contains(&v) => return Some(v),
                Plain::Int(v) => self.err(node, field, why(&v.to_string())),
                Plain::BigInt => self.err(node, field, why(&shown(s))),
                _ => self.expected(node, field, "an integer"),
            }
            return None;
        }
        self.expected(node, field, "an integer");
        None
    }

    pub(super) fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        if let Value::Scalar(s, Style::Plain) = &node.value
            && let Plain::Bool(v) = resolve_plain(s)
        {
            return Some(v);
        }
        self.expected(node, field, "true or false");
        None
    }

    pub(super) fn list<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) if items.is_empty() => {
                self.err(node, field, "must not be empty");
                None
            }
            Value::Seq(items) => Some(items),
            _ => {
                self.expected(node, field, "a list");
                None
            }
        }
    }

    /// Top-level lists: absent, null or `[]` mean "none".
    pub(super) fn list_or_null<'n>(&mut self, node: Option<&'n Node>, field: &str, max: usize) -> &'n [Node] {
        match node.map(|n| (n, &n.value)) {
            None | Some((_, Value::Null)) => &[],
            Some((n, Value::Seq(items))) => {
                if items.len() > max {
                    self.err(n, field, format!("{} entries; at most {max} are supported", items.len()));
                }
                items
            }
            Some((n, _)) => {
                self.expected(n, field, "a list");
                &[]
            }
        }
    }

    pub(super) fn keyword<T: Copy>(&mut self, node: &Node, field: &str, options: &[(&str, T)]) -> Option<T> {
        let s = self.string(node, field)?;
        if let Some((_, v)) = options.iter().find(|(k, _)| *k == s) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
        self.err(node, field, format!("invalid value {}; expected one of: {}", quoted(&s), names.join(", ")));
        None
    }

    pub(super) fn mode(&mut self, node: &Node, field: &str) -> Option<Mode> {
        self.keyword(node, field, &[("enforce", Mode::Enforce), ("audit", Mode::Audit)])
    }

    pub(super) fn default_action(&mut self, node: &Node, field: &str) -> Option<DefaultAction> {
        self.keyword(node, field, &[("allow", DefaultAction::Allow), ("deny", DefaultAction::Deny)])
    }

    pub(super) fn protocol(&mut self, node: &Node, field: &str) -> Option<Protocol> {
        self.keyword(node, field, &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp), ("any", Protocol::Any)])
    }

    pub(super) fn name(&mut self, node: &Node, field: &str) -> Option<String> {
        let s = self.string(node, field)?;
        if !is_valid_name(&s) {
            self.err(node, field, format!("invalid name {}: {}", quoted(&s), name_rule()));
        }
        Some(s)
    }

    pub(super) fn opt_mode(&mut self, m: &MapView, key: &str) -> Option<Mode> {
        m.get(key).and_then(|n| self.mode(n, &m.field(key)))
    }
}
