//! Policy errors: every problem carries its file position and field path so
//! operators can fix a config without guessing.
use std::fmt;

/// A position in the policy file (1-based; 0 means "no position", e.g. I/O).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

/// Where a model item came from: position plus field path (`allow[2].segments[0]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub loc: Loc,
    pub field: String,
}

impl Origin {
    pub fn new(loc: Loc, field: impl Into<String>) -> Self {
        Self { loc, field: field.into() }
    }

    /// `field (line L:C)`, for messages that point at a second location.
    pub fn describe(&self) -> String {
        format!("{} (line {}:{})", self.field, self.loc.line, self.loc.column)
    }
}

/// One problem found in a policy file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub reason: String,
}

impl PolicyError {
    fn render(&self) -> String {
        if self.line == 0 {
            format!("{}: {}: {}", self.file, self.field, self.reason)
        } else {
            format!("{}:{}:{}: {}: {}", self.file, self.line, self.column, self.field, self.reason)
        }
    }
}

/// All problems found in a policy file, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// Most errors kept per file: beyond that a generated or corrupted file
/// would only flood the terminal.
pub const MAX_ERRORS: usize = 1000;

/// Longest value a message echoes whole: one 100 kB value must not bury
/// the other errors (or the position) under a screenful of its text.
const MAX_ECHO_CHARS: usize = 60;
/// Field paths hold the user's keys; reasons hold values a site forgot to
/// clip. Both are cut at these lengths as a last resort.
const MAX_FIELD_CHARS: usize = 120;
const MAX_REASON_CHARS: usize = 1000;

/// A value as messages echo it: control characters escaped (a terminal
/// must not act on them), and cut after `MAX_ECHO_CHARS` with its length.
pub(crate) fn shown(value: &str) -> String {
    clip(value, MAX_ECHO_CHARS)
}

/// `shown`, in backticks: `` `value` `` or `` `valu…` (100000 chars) ``.
pub(crate) fn quoted(value: &str) -> String {
    match cut(value, MAX_ECHO_CHARS) {
        (head, None) => format!("`{head}`"),
        (head, Some(n)) => format!("`{head}…` ({n} chars)"),
    }
}

fn clip(text: &str, max: usize) -> String {
    match cut(text, max) {
        (head, None) => head,
        (head, Some(n)) => format!("{head}… ({n} chars)"),
    }
}

/// The first `max` characters of `text`, escaped, and its length when cut.
fn cut(text: &str, max: usize) -> (String, Option<usize>) {
    let mut head = String::with_capacity(text.len().min(4 * max));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            return (head, Some(text.chars().count()));
        }
        if c.is_control() {
            head.extend(c.escape_debug());
        } else {
            head.push(c);
        }
    }
    (head, None)
}

/// Collects errors for one file while parsing and validating.
pub(crate) struct Diag {
    file: String,
    errors: Vec<PolicyError>,
    dropped: usize,
    /// Accepted, but worth a look (`warden policy check` and the agent's
    /// log show them).
    warnings: Vec<PolicyError>,
}

impl Diag {
    pub fn new(file: &str) -> Self {
        Self { file: file.to_string(), errors: Vec::new(), dropped: 0, warnings: Vec::new() }
    }

    pub fn at(&mut self, loc: Loc, field: &str, reason: impl Into<String>) {
        if self.errors.len() >= MAX_ERRORS {
            self.dropped += 1;
            return;
        }
        self.errors.push(PolicyError {
            file: self.file.clone(),
            line: loc.line,
            column: loc.column,
            field: clip(field, MAX_FIELD_CHARS),
            reason: clip(&reason.into(), MAX_REASON_CHARS),
        });
    }

    pub fn at_origin(&mut self, origin: &Origin, reason: impl Into<String>) {
        self.at(origin.loc, &origin.field, reason);
    }

    pub fn warn(&mut self, origin: &Origin, reason: impl Into<String>) {
        self.warnings.push(PolicyError {
            file: self.file.clone(),
            line: origin.loc.line,
            column: origin.loc.column,
            field: clip(&origin.field, MAX_FIELD_CHARS),
            reason: clip(&reason.into(), MAX_REASON_CHARS),
        });
    }

    /// The warnings, in file order.
    pub fn take_warnings(&mut self) -> Vec<PolicyError> {
        let mut w = std::mem::take(&mut self.warnings);
        w.sort_by_key(|e| (e.line, e.column));
        w
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Errors sorted by position (stable, so same-node errors keep their order).
    pub fn finish(mut self) -> PolicyErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        if self.dropped > 0 {
            self.errors.push(PolicyError {
                file: self.file.clone(),
                line: 0,
                column: 0,
                field: "document".into(),
                reason: format!("{} more errors not shown", self.dropped),
            });
        }
        PolicyErrors(self.errors)
    }
}
