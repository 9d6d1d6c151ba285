//! `agent.events.otlp.headersFile`: headers from a file of their own (a
//! Secret), merged with the inline ones; every problem names the field, the
//! file and the reason, and no message or `Debug` shows a value.
use super::{config, errs};

struct Dir(std::path::PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("warden-policy-headers-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }

    fn file(&self, text: &str) -> String {
        let p = self.0.join("headers.yaml");
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn policy(inline: &str, file: &str) -> String {
    format!(
        "version: 1\nagent:\n  events:\n    otlp:\n      endpoint: http://127.0.0.1:4317\n      headers: {{{inline}}}\n      headersFile: {file}\n"
    )
}

#[test]
fn file_headers_follow_the_inline_ones() {
    let d = Dir::new("merge");
    let f = d.file("authorization: Bearer s3cr3t\nx-scope: gpu\n");
    let c = config(&policy("x-tenant: a", &f));
    let o = c.agent.events.otlp.unwrap();
    let got: Vec<_> = o.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, [("x-tenant", "a"), ("authorization", "Bearer s3cr3t"), ("x-scope", "gpu")]);
    assert_eq!(o.headers_file.as_deref(), Some(std::path::Path::new(&f)));
    assert_eq!(o.header_names(), ["x-tenant", "authorization", "x-scope"]);
    let debug = format!("{o:?}");
    assert!(!debug.contains("s3cr3t") && debug.contains("authorization"), "{debug}");
    // JSON is YAML: the same Secret may hold either.
    let f = d.file("{\"authorization\": \"Bearer s3cr3t\"}");
    assert_eq!(config(&policy("", &f)).agent.events.otlp.unwrap().headers.len(), 1);
}

#[test]
fn only_header_values_may_change_without_a_restart() {
    let d = Dir::new("same");
    let a = config(&policy("", &d.file("authorization: Bearer one\n"))).agent.events;
    let b = config(&policy("", &d.file("authorization: Bearer two\n"))).agent.events;
    assert_ne!(a, b);
    assert!(a.same_but_otlp_headers(&b));
    let mut c = b.clone();
    c.otlp.as_mut().unwrap().endpoint = "http://127.0.0.1:4318".into();
    assert!(!a.same_but_otlp_headers(&c), "a new endpoint needs a restart");
    let mut off = b;
    off.otlp = None;
    assert!(!a.same_but_otlp_headers(&off));
}

#[test]
fn a_name_in_both_places_is_an_error_naming_both() {
    let d = Dir::new("both");
    let f = d.file("x-tenant: b\nauthorization: Bearer s3cr3t\n");
    let e = errs(&policy("authorization: \"Bearer inline\"", &f));
    assert_eq!(
        e,
        [format!(
            "p.yaml:7:20: agent.events.otlp.headersFile: header `authorization` is given both in {f} (line 2:1) \
             and in agent.events.otlp.headers (line 6:17); keep one"
        )]
    );
}

#[test]
fn bad_or_missing_files_are_refused_with_file_and_reason() {
    let d = Dir::new("bad");
    let missing = d.0.join("absent.yaml").display().to_string();
    let e = errs(&policy("", &missing));
    assert_eq!(e.len(), 1);
    let head = format!("p.yaml:7:20: agent.events.otlp.headersFile: {missing}: cannot open: ");
    assert!(e[0].starts_with(&head), "{e:?}");

    let f = d.file("authorization: \"Bearer s3cr3t\\n\"\nX-Upper: v\n");
    let field = "p.yaml:7:20: agent.events.otlp.headersFile";
    assert_eq!(
        errs(&policy("", &f)),
        [
            format!("{field}: {f}:1:16: headers.authorization: contains control character U+000A"),
            format!(
                "{field}: {f}:2:1: headers.X-Upper: header names are lower-case letters, digits, `-`, `_`, `.` (not grpc-*)"
            ),
        ]
    );
    assert_eq!(
        errs(&policy("", "headers.yaml")),
        [format!("{field}: `headers.yaml` must be an absolute path (e.g. a Secret mounted at /etc/warden/otlp)")]
    );
    let dir = d.0.display().to_string();
    assert_eq!(errs(&policy("", &dir)), [format!("{field}: {dir}: not a regular file")]);
}

#[test]
fn the_schema_takes_headers_file() {
    let d = Dir::new("schema");
    let text = policy("x-tenant: a", &d.file("authorization: Bearer x\n"));
    config(&text);
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../../config/policy.schema.json")).unwrap();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    let mut diag = super::super::error::Diag::new("p.yaml");
    let instance = super::super::yaml::parse(&text, &mut diag).unwrap().to_json();
    let problems: Vec<String> = v.iter_errors(&instance).map(|e| e.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}");
}
