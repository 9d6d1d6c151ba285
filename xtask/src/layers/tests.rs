use std::{fs, path::PathBuf};

use super::{circles, scan};

/// A source tree under the system temp dir, removed when dropped.
struct Fixture(PathBuf);

impl Fixture {
    fn new(name: &str, files: &[(&str, &str)]) -> Self {
        let root = std::env::temp_dir().join(format!("xtask-layers-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (path, text) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        Self(root)
    }

    /// Each circle as its files' paths.
    fn circles(&self) -> Vec<Vec<String>> {
        let graph = scan(&self.0).unwrap();
        circles(&graph).iter().map(|c| c.iter().map(|&f| graph.file(f).display().to_string()).collect()).collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Layered: `report` at the bottom, `policy` (with a child that names its
/// parent and a test module that imports from above) in the middle, `sinks` on top.
const LAYERED: &[(&str, &str)] = &[
    ("lib.rs", "pub mod policy;\npub mod report;\npub mod sinks;\n"),
    ("report.rs", "pub struct Status;\n"),
    (
        "policy/mod.rs",
        "mod compile;\npub use compile::Compiled;\npub fn load() -> crate::report::Status { crate::report::Status }\n\
         #[cfg(test)]\nmod tests {\n    use crate::sinks::Sink;\n}\n",
    ),
    ("policy/compile.rs", "use super::load;\npub struct Compiled;\nfn f() { let _ = super::load(); }\n"),
    ("sinks/mod.rs", "use crate::{policy::{self, Compiled}, report::*};\npub struct Sink;\n"),
];

#[test]
fn layered_tree_has_no_circle() {
    let f = Fixture::new("layered", LAYERED);
    assert_eq!(f.circles(), Vec::<Vec<String>>::new());
    // The edges are there (so "no circle" is not "nothing read").
    let graph = scan(&f.0).unwrap();
    let edges: Vec<(String, String)> =
        graph.edges().iter().map(|(a, b, _)| (a.display().to_string(), b.display().to_string())).collect();
    assert_eq!(
        edges,
        [
            ("policy/mod.rs", "policy/compile.rs"),
            ("policy/mod.rs", "report.rs"),
            ("sinks/mod.rs", "policy/mod.rs"),
            ("sinks/mod.rs", "report.rs"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
}

#[test]
fn upward_import_makes_a_circle() {
    // report names a sink inside a macro: sinks → policy → report → sinks.
    let mut files = LAYERED.to_vec();
    files[1] = (
        "report.rs",
        "pub struct Status;\nfn f() { println!(\"{}\", std::any::type_name::<crate::sinks::Sink>()); }\n",
    );
    let f = Fixture::new("upward", &files);
    assert_eq!(f.circles(), [["policy/mod.rs", "report.rs", "sinks/mod.rs"]]);
}

#[test]
fn reexport_through_mod_rs_is_followed() {
    // policy/compile → sinks (through a `use` alias) → policy/mod.rs, which
    // re-exports policy/compile: a circle of three files.
    let mut files = LAYERED.to_vec();
    files[3] = ("policy/compile.rs", "use crate::sinks as s;\npub struct Compiled;\nfn f(_: s::Sink) {}\n");
    let f = Fixture::new("reexport", &files);
    assert_eq!(f.circles(), [["policy/compile.rs", "policy/mod.rs", "sinks/mod.rs"]]);
}

#[test]
fn test_only_code_and_inline_test_modules_are_skipped() {
    let mut files = LAYERED.to_vec();
    files[1] = (
        "report.rs",
        "pub struct Status;\n#[cfg(test)]\nuse crate::sinks::Sink;\n#[cfg(all(test, feature = \"x\"))]\n\
         fn f() { crate::sinks::Sink; }\n",
    );
    let f = Fixture::new("tests", &files);
    assert_eq!(f.circles(), Vec::<Vec<String>>::new());
    // The same import outside cfg(test) is one.
    files[1] = ("report.rs", "pub struct Status;\n#[cfg(not(test))]\nuse crate::sinks::Sink;\n");
    let f = Fixture::new("not-test", &files);
    assert_eq!(f.circles(), [["policy/mod.rs", "report.rs", "sinks/mod.rs"]]);
}
