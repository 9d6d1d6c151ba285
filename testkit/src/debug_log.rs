//! Parser for the log records a collector prints with a detailed debug
//! exporter (rotel's `--debug-log logs --debug-log-verbosity detailed`, the
//! same layout as the OpenTelemetry Collector's `debug` exporter):
//!
//! ```text
//! ResourceLog #0
//! Resource attributes:
//!      -> host.name: Str(gpu-1)
//! ScopeLogs #0
//! InstrumentationScope warden 0.1.0
//! LogRecord #0
//! ObservedTimestamp: 1795327200000000001
//! Timestamp: 1795327200000000000
//! SeverityText: WARN
//! SeverityNumber: SEVERITY_NUMBER_WARN(13)
//! Body: Str(denied connect tcp 10.0.0.1:443 by trainer (segment object-store))
//! Attributes:
//!      -> warden.seq: Int(7)
//! ```
//!
//! End-to-end tests read what a real collector received through it; it
//! takes any text (other log lines are skipped) and never panics.
use std::collections::BTreeMap;

/// An attribute value as printed: `Str(..)`, `Int(..)`, `Bool(..)`,
/// `Double(..)`; anything else (slices, maps, bytes) verbatim.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
    Other(String),
}

impl Value {
    fn parse(text: &str) -> Value {
        let Some((kind, inner)) = text.split_once('(').and_then(|(k, rest)| Some((k, rest.strip_suffix(')')?))) else {
            return Value::Other(text.to_owned());
        };
        match kind {
            "Str" => Value::Str(inner.to_owned()),
            "Int" => inner.parse().map(Value::Int).unwrap_or_else(|_| Value::Other(text.to_owned())),
            "Bool" => inner.parse().map(Value::Bool).unwrap_or_else(|_| Value::Other(text.to_owned())),
            "Double" => inner.parse().map(Value::Double).unwrap_or_else(|_| Value::Other(text.to_owned())),
            _ => Value::Other(text.to_owned()),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// One received log record with the resource it came under.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub body: Option<Value>,
    pub severity_text: String,
    pub severity_number: Option<i32>,
    pub time_unix_nano: Option<u64>,
    pub observed_time_unix_nano: Option<u64>,
    /// `InstrumentationScope <name> [<version>]`: the name.
    pub scope: String,
    pub attributes: BTreeMap<String, Value>,
    pub resource: BTreeMap<String, Value>,
}

impl Record {
    /// The body when it is a string.
    pub fn body_str(&self) -> Option<&str> {
        self.body.as_ref().and_then(Value::as_str)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.attributes.get(key).and_then(Value::as_int)
    }

    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource.get(key).and_then(Value::as_str)
    }
}

/// Which attribute list the `-> key: value` lines belong to.
#[derive(Clone, Copy, PartialEq)]
enum Section {
    None,
    Resource,
    Scope,
    Record,
}

/// `SEVERITY_NUMBER_WARN(13)` → 13.
fn severity_number(text: &str) -> Option<i32> {
    text.rsplit_once('(')?.1.strip_suffix(')')?.parse().ok()
}

/// Every log record in `text`, in the order printed.
pub fn parse(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut resource = BTreeMap::new();
    let mut scope = String::new();
    let mut current: Option<Record> = None;
    let mut section = Section::None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(kv) = trimmed.strip_prefix("-> ") {
            let Some((key, value)) = kv.split_once(": ") else { continue };
            let value = Value::parse(value);
            match (section, current.as_mut()) {
                (Section::Resource, _) => {
                    resource.insert(key.to_owned(), value);
                }
                (Section::Record, Some(r)) => {
                    r.attributes.insert(key.to_owned(), value);
                }
                _ => {}
            }
            continue;
        }
        let starts_block = trimmed.starts_with("ResourceLog #") || trimmed.starts_with("LogRecord #");
        if starts_block {
            out.extend(current.take());
        }
        if trimmed.starts_with("ResourceLog #") {
            resource.clear();
            scope.clear();
            section = Section::None;
        } else if trimmed == "Resource attributes:" {
            section = Section::Resource;
        } else if trimmed.starts_with("ScopeLogs #") {
            out.extend(current.take());
            section = Section::None;
        } else if trimmed == "InstrumentationScope attributes:" {
            section = Section::Scope;
        } else if let Some(rest) = trimmed.strip_prefix("InstrumentationScope ") {
            scope = rest.split_whitespace().next().unwrap_or_default().to_owned();
        } else if trimmed.starts_with("LogRecord #") {
            current = Some(Record { scope: scope.clone(), resource: resource.clone(), ..Default::default() });
            section = Section::None;
        } else if trimmed == "Attributes:" {
            section = Section::Record;
        } else if let Some(r) = current.as_mut() {
            if let Some(v) = trimmed.strip_prefix("Body: ") {
                r.body = Some(Value::parse(v));
            } else if let Some(v) = trimmed.strip_prefix("SeverityText: ") {
                r.severity_text = v.to_owned();
            } else if let Some(v) = trimmed.strip_prefix("SeverityNumber: ") {
                r.severity_number = severity_number(v);
            } else if let Some(v) = trimmed.strip_prefix("ObservedTimestamp: ") {
                r.observed_time_unix_nano = v.parse().ok();
            } else if let Some(v) = trimmed.strip_prefix("Timestamp: ") {
                r.time_unix_nano = v.parse().ok();
            }
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verbatim rotel 0.0.1a15 output for the upstream OTLP `logs.json` example
    /// (posted over OTLP/HTTP), with one of rotel's own log lines in front.
    const SAMPLE: &str = "\u{1b}[2m2026-11-22T06:23:53.461065Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m Starting Rotel.
ResourceLog #0
Resource SchemaURL: 
Resource attributes:
     -> service.name: Str(my.service)
ScopeLogs #0
ScopeLogs SchemaURL: 
InstrumentationScope my.library 1.0.0
InstrumentationScope attributes:
     -> my.scope.attribute: Str(some scope attribute)
LogRecord #0
ObservedTimestamp: 1544712660300000000
Timestamp: 1544712660300000000
SeverityText: Information
SeverityNumber: SEVERITY_NUMBER_INFO2(10)
Body: Str(Example log record (with parentheses))
Attributes:
     -> string.attribute: Str(some string)
     -> boolean.attribute: Bool(true)
     -> int.attribute: Int(10)
     -> double.attribute: Double(637.704)
     -> array.attribute: Slice(Str(many), Str(values))
     -> map.attribute: Map(some.map.key:Str(some value))
    Trace ID       : 5b8efff798038103d269b633813fc60c
    Span ID        : eee19b7ec3c1b174
Flags: 0
LogRecord #1
SeverityNumber: SEVERITY_NUMBER_WARN(13)
Body: Str(second)
ResourceLog #0
Resource attributes:
     -> service.name: Str(other)
ScopeLogs #0
InstrumentationScope warden
LogRecord #0
Body: Str(third)
";

    #[test]
    fn parses_records_with_their_resource() {
        let recs = parse(SAMPLE);
        assert_eq!(recs.len(), 3);
        let r = &recs[0];
        assert_eq!(r.body_str(), Some("Example log record (with parentheses)"));
        assert_eq!((r.severity_text.as_str(), r.severity_number), ("Information", Some(10)));
        assert_eq!(
            (r.time_unix_nano, r.observed_time_unix_nano),
            (Some(1544712660300000000), Some(1544712660300000000))
        );
        assert_eq!(r.scope, "my.library");
        assert_eq!(r.str("string.attribute"), Some("some string"));
        assert_eq!(r.int("int.attribute"), Some(10));
        assert_eq!(r.attributes["boolean.attribute"], Value::Bool(true));
        assert_eq!(r.attributes["double.attribute"], Value::Double(637.704));
        assert_eq!(r.attributes["array.attribute"], Value::Other("Slice(Str(many), Str(values))".into()));
        assert!(!r.attributes.contains_key("my.scope.attribute"), "scope attributes are not record attributes");
        assert_eq!(r.resource_str("service.name"), Some("my.service"));
        assert_eq!((recs[1].body_str(), recs[1].severity_number), (Some("second"), Some(13)));
        assert!(recs[1].attributes.is_empty());
        assert_eq!(recs[1].resource_str("service.name"), Some("my.service"));
        assert_eq!((recs[2].resource_str("service.name"), recs[2].scope.as_str()), (Some("other"), "warden"));
    }

    #[test]
    fn tolerates_noise_and_truncation() {
        assert!(parse("").is_empty());
        assert!(parse("     -> orphan: Str(x)\nAttributes:\nBody: Str(y)\n").is_empty());
        let cut = &SAMPLE[..SAMPLE.find("Flags").unwrap() - 40];
        assert_eq!(parse(cut).len(), 1);
        for end in 0..SAMPLE.len() {
            if SAMPLE.is_char_boundary(end) {
                parse(&SAMPLE[..end]);
            }
        }
    }
}
