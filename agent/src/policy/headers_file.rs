//! `agent.events.otlp.headersFile`: gRPC headers (tokens) kept in a file of
//! their own, so a Kubernetes Secret can hold them instead of the ConfigMap.
//! Read with the policy (start, every reload, `policy check`), so a bad file
//! is refused like a bad policy and the last good one stays in force.
//! Messages name the file, line and header, never a value: values are
//! credentials.
use std::{io::Read, os::unix::fs::OpenOptionsExt, path::Path};

use super::error::{Diag, Loc};
use super::reader::Reader;
use super::yaml::{self, Value};

/// Far more than any set of headers; keeps a wrong path (a log, a device)
/// from being read whole.
pub const MAX_BYTES: u64 = 64 << 10;

/// One header from the file, with where it is written.
pub(super) struct Header {
    pub name: String,
    pub value: String,
    pub loc: Loc,
}

/// Reads `path`: a YAML (or JSON) mapping of header names to string values.
/// `Err`: each problem as `file[:line:column]: reason`.
pub(super) fn read(path: &Path) -> Result<Vec<Header>, Vec<String>> {
    let label = path.display().to_string();
    let fail = |reason: String| vec![format!("{label}: {reason}")];
    // Non-blocking: a FIFO or a terminal named by mistake must not hang a
    // reload; only a regular file is read.
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| fail(format!("cannot open: {e}")))?;
    let meta = file.metadata().map_err(|e| fail(format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(fail(format!("larger than {MAX_BYTES} bytes")));
    }
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Err(fail("not valid UTF-8".into()));
    };
    let mut diag = Diag::new(&label);
    let headers = parse(text, &mut diag);
    let errors = diag.finish().0;
    if errors.is_empty() { Ok(headers) } else { Err(errors.iter().map(ToString::to_string).collect()) }
}

fn parse(text: &str, diag: &mut Diag) -> Vec<Header> {
    if !yaml::check_chars(text, diag) {
        return Vec::new();
    }
    let root = yaml::parse(text.strip_prefix('\u{feff}').unwrap_or(text), diag);
    let root = match root {
        Some(node) if matches!(node.value, Value::Map(_)) => node,
        _ if !diag.is_empty() => return Vec::new(),
        other => {
            let loc = other.map_or(Loc { line: 1, column: 1 }, |n| n.loc);
            diag.at(loc, "document", "expected a mapping of header names to values (`authorization: Bearer …`)");
            return Vec::new();
        }
    };
    let mut r = Reader { diag };
    let mut out: Vec<Header> = Vec::new();
    for (name, value, loc) in r.string_map_at(Some(&root), "headers", true) {
        if let Some(first) = out.iter().find(|h| h.name == name) {
            let reason = format!("given twice (first at line {}:{})", first.loc.line, first.loc.column);
            r.diag.at(loc, &format!("headers.{name}"), reason);
            continue;
        }
        out.push(Header { name, value, loc });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("warden-headers-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("headers.yaml");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn errors(name: &str, bytes: &[u8]) -> Vec<String> {
        let p = temp(name, bytes);
        let e = read(&p).err().unwrap_or_default();
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
        e.into_iter().map(|e| e.replace(&p.display().to_string(), "F")).collect()
    }

    #[test]
    fn yaml_and_json_maps_are_read() {
        for (name, text) in [
            ("yaml", "authorization: Bearer s3cr3t\nx-tenant: gpu-a\n"),
            ("json", "{\"authorization\": \"Bearer s3cr3t\", \"x-tenant\": \"gpu-a\"}"),
        ] {
            let p = temp(name, text.as_bytes());
            let h = read(&p).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let got: Vec<_> = h.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
            assert_eq!(got, [("authorization", "Bearer s3cr3t"), ("x-tenant", "gpu-a")], "{name}");
            assert_eq!((h[0].loc.line, h[1].loc.line), (1, if name == "yaml" { 2 } else { 1 }), "{name}");
            std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
        }
    }

    #[test]
    fn bad_files_name_the_file_and_reason_never_a_value() {
        assert_eq!(
            errors("empty", b""),
            ["F:1:1: document: expected a mapping of header names to values (`authorization: Bearer …`)"]
        );
        assert_eq!(
            errors("list", b"- a\n"),
            ["F:1:1: document: expected a mapping of header names to values (`authorization: Bearer …`)"]
        );
        assert_eq!(errors("syntax", b"a: [\n")[0].split(": YAML syntax error").next(), Some("F:2:1: document"));
        assert_eq!(
            errors("names", b"Authorization: Bearer s3cr3t\ngrpc-timeout: x\n"),
            [
                "F:1:1: headers.Authorization: header names are lower-case letters, digits, `-`, `_`, `.` (not grpc-*)",
                "F:2:1: headers.grpc-timeout: header names are lower-case letters, digits, `-`, `_`, `.` (not grpc-*)",
            ]
        );
        let e = errors("value", "authorization: \"Bearer s3cr3t\\u00e9\"\nx-n: 42\n".as_bytes());
        assert_eq!(
            e,
            [
                "F:1:16: headers.authorization: header values must be printable ASCII",
                "F:2:6: headers.x-n: expected a string, found an integer (quote it to use it as a string)",
            ]
        );
        assert!(e.iter().all(|e| !e.contains("s3cr3t")), "{e:?}");
        assert_eq!(errors("twice", b"a: x\na: y\n"), ["F:2:1: headers.a: given twice (first at line 1:1)"]);
        assert_eq!(errors("utf8", b"a: \xff\n"), ["F: not valid UTF-8"]);
        assert_eq!(errors("nul", b"a: x\0\n")[0].split(" a policy").next(), Some("F:1:5: file: contains a NUL byte;"));
        let big = vec![b'#'; MAX_BYTES as usize + 1];
        assert_eq!(errors("big", &big), [format!("F: larger than {MAX_BYTES} bytes")]);
    }

    #[test]
    fn missing_files_and_non_files_are_refused_without_blocking() {
        let e = read(Path::new("/nonexistent/warden/headers.yaml")).err().unwrap();
        assert!(e[0].starts_with("/nonexistent/warden/headers.yaml: cannot open: "), "{e:?}");
        let e = read(Path::new("/tmp")).err().unwrap();
        assert_eq!(e, ["/tmp: not a regular file"]);
        // A FIFO with no writer: opening it blocking would hang.
        let dir = std::env::temp_dir().join(format!("warden-headers-{}-fifo", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("h");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).unwrap();
        let e = read(&fifo).err().unwrap();
        assert!(e[0].ends_with(": not a regular file"), "{e:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
