//! A small position-marked YAML tree built from yaml-rust2's event parser.
//!
//! We pull events ourselves (instead of `Parser::load`, which recurses per
//! nesting level) so depth is bounded and hostile input cannot overflow the
//! stack. Anchors, aliases, tags and multiple documents are rejected: a policy
//! should read the same to a human as to the agent.
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::error::{Diag, Loc};

/// Deepest nesting of lists/mappings accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Unquoted: subject to YAML type resolution (`443` is an integer).
    Plain,
    /// Quoted or block scalar: always a string.
    Quoted,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Scalar(String, Style),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

/// What a plain scalar means under the YAML 1.2 core schema.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Plain {
    Bool(bool),
    Int(i64),
    /// An integer literal beyond 64 bits: still an integer, out of every range.
    BigInt,
    Float(f64),
    Str,
}

pub fn resolve_plain(s: &str) -> Plain {
    match s {
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Plain::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Plain::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Plain::Float(f64::NAN),
        _ => {}
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8)] {
        if let Some(digits) = s.strip_prefix(prefix)
            && !digits.is_empty()
            && digits.chars().all(|c| c.is_digit(radix))
        {
            return i64::from_str_radix(digits, radix).map_or(Plain::BigInt, Plain::Int);
        }
    }
    let numeric = !s.is_empty()
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    if numeric {
        if let Ok(v) = s.parse::<i64>() {
            return Plain::Int(v);
        }
        // Too long for i64, yet an integer: not "a number" with a fraction.
        if s.strip_prefix(['+', '-']).unwrap_or(s).bytes().all(|b| b.is_ascii_digit()) {
            return Plain::BigInt;
        }
        if let Ok(v) = s.parse::<f64>() {
            return Plain::Float(v);
        }
    }
    Plain::Str
}

/// Reports every control character but tab and line breaks, which YAML
/// forbids in a file and the parser does not refuse: a NUL ends its input
/// (the rest of the file would go unread), and the others would reach
/// names and terminals. Returns whether the text is clean.
pub(crate) fn check_chars(text: &str, diag: &mut Diag) -> bool {
    let mut clean = true;
    for (i, line) in text.split('\n').enumerate() {
        for (column, c) in line.chars().enumerate() {
            if !c.is_control() || c == '\t' || c == '\r' {
                continue;
            }
            let what =
                if c == '\0' { "a NUL byte".to_string() } else { format!("control character U+{:04X}", c as u32) };
            let reason =
                format!("contains {what}; a policy file is text, with no control characters but tab and line breaks");
            diag.at(Loc { line: i + 1, column: column + 1 }, "file", reason);
            clean = false;
        }
    }
    clean
}

fn loc(m: &Marker) -> Loc {
    // yaml-rust2 lines are 1-based, columns 0-based.
    Loc { line: m.line(), column: m.col() + 1 }
}

enum Frame {
    Seq(Loc, Vec<Node>),
    Map(Loc, Vec<(Node, Node)>, Option<Node>),
}

/// Parses one YAML document. Returns `None` for an empty stream; errors go to `diag`.
pub(crate) fn parse(text: &str, diag: &mut Diag) -> Option<Node> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(ev) => ev,
            Err(e) => {
                diag.at(loc(e.marker()), "document", format!("YAML syntax error: {}", e.info()));
                return None;
            }
        };
        let at = loc(&mark);
        let node = match event {
            Event::StreamEnd => return root,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => continue,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    diag.at(at, "document", "only one YAML document per file is supported");
                    return None;
                }
                continue;
            }
            Event::Alias(_) => {
                diag.at(at, "document", "anchors and aliases are not supported");
                Node { value: Value::Null, loc: at }
            }
            Event::Scalar(text, style, anchor, tag) => {
                check_extras(anchor, tag.is_some(), at, diag);
                let value = match style {
                    TScalarStyle::Plain if is_null(&text) => Value::Null,
                    TScalarStyle::Plain => Value::Scalar(text, Style::Plain),
                    _ => Value::Scalar(text, Style::Quoted),
                };
                Node { value, loc: at }
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                check_extras(anchor, tag.is_some(), at, diag);
                if stack.len() >= MAX_DEPTH {
                    diag.at(at, "document", format!("nesting deeper than {MAX_DEPTH} levels"));
                    return None;
                }
                stack.push(match event {
                    Event::SequenceStart(..) => Frame::Seq(at, Vec::new()),
                    _ => Frame::Map(at, Vec::new(), None),
                });
                continue;
            }
            // Block collections are marked where the scanner noticed them (a
            // mapping at its first `:`); point at the first item instead.
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(at, items)) => {
                    let loc = items.first().map_or(at, |n| n.loc.min(at));
                    Node { value: Value::Seq(items), loc }
                }
                Some(Frame::Map(at, pairs, _)) => {
                    let loc = pairs.first().map_or(at, |(k, _)| k.loc.min(at));
                    Node { value: Value::Map(pairs), loc }
                }
                None => continue,
            },
        };
        match stack.last_mut() {
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, pairs, key)) => match key.take() {
                Some(k) => pairs.push((k, node)),
                None => *key = Some(node),
            },
            None => root = Some(node),
        }
    }
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn check_extras(anchor: usize, tagged: bool, at: Loc, diag: &mut Diag) {
    if anchor != 0 {
        diag.at(at, "document", "anchors and aliases are not supported");
    }
    if tagged {
        diag.at(at, "document", "YAML tags are not supported");
    }
}

#[cfg(test)]
impl Node {
    /// JSON view of the tree (plain scalars typed as YAML 1.2 core), for schema tests.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Scalar(s, Style::Quoted) => J::String(s.clone()),
            Value::Scalar(s, Style::Plain) => match resolve_plain(s) {
                Plain::Bool(b) => J::Bool(b),
                Plain::Int(i) => J::from(i),
                Plain::BigInt => s.parse().ok().and_then(serde_json::Number::from_f64).map_or(J::Null, J::Number),
                Plain::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
                Plain::Str => J::String(s.clone()),
            },
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(pairs) => J::Object(
                pairs
                    .iter()
                    .map(|(k, v)| {
                        let key = match &k.value {
                            Value::Scalar(s, _) => s.clone(),
                            _ => String::new(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> (Option<Node>, Vec<String>) {
        let mut diag = Diag::new("t.yaml");
        let node = parse(text, &mut diag);
        (node, diag.finish().0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn positions_are_one_based() {
        let (node, errs) = tree("a: 1\nb:\n  - x\n  - 'y'\n");
        assert!(errs.is_empty(), "{errs:?}");
        let Value::Map(pairs) = node.unwrap().value else { panic!("not a map") };
        assert_eq!(pairs[0].0.loc, Loc { line: 1, column: 1 });
        assert_eq!(pairs[0].1.loc, Loc { line: 1, column: 4 });
        let Value::Seq(items) = &pairs[1].1.value else { panic!("not a seq") };
        assert_eq!(items[1].loc, Loc { line: 4, column: 5 });
        assert_eq!(items[1].value, Value::Scalar("y".into(), Style::Quoted));
        assert_eq!(items[0].value, Value::Scalar("x".into(), Style::Plain));
    }

    #[test]
    fn nulls_and_scalar_resolution() {
        let (node, _) = tree("a:\nb: ~\nc: '~'\n");
        let Value::Map(pairs) = node.unwrap().value else { panic!("not a map") };
        assert_eq!(pairs[0].1.value, Value::Null);
        assert_eq!(pairs[1].1.value, Value::Null);
        assert_eq!(pairs[2].1.value, Value::Scalar("~".into(), Style::Quoted));
        assert_eq!(resolve_plain("443"), Plain::Int(443));
        assert_eq!(resolve_plain("0x10"), Plain::Int(16));
        assert_eq!(resolve_plain("1.5"), Plain::Float(1.5));
        assert_eq!(resolve_plain("true"), Plain::Bool(true));
        assert_eq!(resolve_plain("9000-9100"), Plain::Str);
        assert_eq!(resolve_plain("10.0.0.0/8"), Plain::Str);
        assert_eq!(resolve_plain("1.2.3.4"), Plain::Str);
        assert_eq!(resolve_plain("99999999999999999999999"), Plain::BigInt);
        assert_eq!(resolve_plain("-99999999999999999999999"), Plain::BigInt);
        assert_eq!(resolve_plain("0xfffffffffffffffffff"), Plain::BigInt);
        assert_eq!(resolve_plain("1e999"), Plain::Float(f64::INFINITY));
    }

    #[test]
    fn depth_is_limited() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let (node, errs) = tree(&deep);
        assert!(node.is_none());
        assert_eq!(errs, vec![format!("t.yaml:1:{}: document: nesting deeper than 64 levels", MAX_DEPTH + 1)]);
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(tree(&ok).1.is_empty());
    }

    #[test]
    fn rejects_anchors_tags_and_multiple_documents() {
        let (_, errs) = tree("a: &x 1\nb: *x\n");
        assert_eq!(
            errs,
            vec![
                "t.yaml:1:7: document: anchors and aliases are not supported",
                "t.yaml:2:4: document: anchors and aliases are not supported",
            ]
        );
        let (_, errs) = tree("a: !!str 1\n");
        assert_eq!(errs, vec!["t.yaml:1:10: document: YAML tags are not supported"]);
        let (_, errs) = tree("a: 1\n---\nb: 2\n");
        assert_eq!(errs, vec!["t.yaml:2:1: document: only one YAML document per file is supported"]);
    }

    #[test]
    fn syntax_error_has_position() {
        let (node, errs) = tree("a: [1, 2\nb: 3\n");
        assert!(node.is_none());
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("t.yaml:"), "{errs:?}");
        assert!(errs[0].contains("YAML syntax error"), "{errs:?}");
    }

    #[test]
    fn empty_stream_is_none() {
        let (node, errs) = tree("");
        assert!(node.is_none() && errs.is_empty());
        let (node, errs) = tree("# only a comment\n");
        assert!(node.is_none() && errs.is_empty());
    }
}
