//! The `warden` binary's behaviour on bad input and wrong privileges,
//! run as users run it.
mod harness;

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

use harness::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(WARDEN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const BAD: &str = "version: 1
segments:
  - name: store
    network:
      - cidr: 10.0.0.300/8
workloads: []
allow:
  - workload: trainer
    segments: [store]
";

#[test]
fn policy_check_reports_file_line_field_reason() {
    let dir = TempDir::new("check");
    let file = dir.0.join("bad.yaml");
    std::fs::write(&file, BAD).unwrap();
    let (code, _, err) = run(&["policy", "check", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    let f = file.display().to_string();
    assert!(err.contains(&format!("{f}:5:")) && err.contains("segments[0].network[0].cidr"), "{err}");
    assert!(err.contains(&format!("{f}:8:")) && err.contains("allow[0].workload"), "{err}");
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/example.yaml");
    let (code, out, err) = run(&["policy", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok ("), "{out}");
    assert!(err.is_empty(), "no warnings for the example: {err}");
    // Valid, with a warning naming the rule: packet sockets for a
    // workload denied a network segment.
    let risky = dir.0.join("risky.yaml");
    let grant = "version: 1\nsegments: [{name: s, network: [{cidr: 10.0.0.0/8}]}]\n\
                 workloads: [{name: w, selector: {cgroup: w}}]\nallow:\n  - workload: w\n    sockets: [packet]\n";
    std::fs::write(&risky, grant).unwrap();
    let (code, out, err) = run(&["policy", "check", risky.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let r = risky.display().to_string();
    assert!(err.contains(&format!("warning: {r}:6:14: allow[0].sockets: grants packet sockets to `w`")), "{err}");
}

#[test]
fn agent_refuses_invalid_policy_and_touches_nothing() {
    let tree = TestTree::new("badcfg");
    let dir = TempDir::new("badcfg");
    let file = dir.0.join("bad.yaml");
    std::fs::write(&file, BAD).unwrap();
    let sock = dir.0.join("s.sock");
    let (code, _, err) = run(&[
        "agent",
        "--config",
        file.to_str().unwrap(),
        "--cgroup-root",
        &tree.rel,
        "--socket",
        sock.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid policy, not starting") && err.contains(":5:"), "{err}");
    assert!(!sock.exists(), "no control socket for a refused start");
}

#[test]
fn agent_names_a_missing_cgroup_root() {
    let dir = TempDir::new("noroot");
    let file = dir.0.join("ok.yaml");
    std::fs::write(&file, "version: 1\n").unwrap();
    let (code, _, err) = run(&[
        "agent",
        "--config",
        file.to_str().unwrap(),
        "--cgroup-root",
        "warden-no-such-cgroup-xyz",
        "--socket",
        dir.0.join("s").to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cgroup root") && err.contains("warden-no-such-cgroup-xyz") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn status_without_daemon_says_so() {
    let dir = TempDir::new("nodaemon");
    let (code, _, err) = run(&["status", "--socket", dir.0.join("none.sock").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("no warden daemon is running"), "{err}");
}

/// Runs a copy of the binary as `nobody` from a world-readable directory
/// (the checkout itself may sit below a directory `nobody` cannot enter).
fn run_as_nobody(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("warden-nobody");
    if !bin.exists() {
        std::fs::copy(WARDEN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new(&bin).args(args).uid(65534).gid(65534).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn non_root_agent_is_refused_and_socket_is_root_only() {
    require_root();
    // /tmp may be 0700 (it is on the CI machines): use a world-traversable place.
    let dir = TempDir(std::path::PathBuf::from(format!("/var/tmp/warden-it-nonroot-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    // World-readable config so only the uid check can refuse.
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let file = dir.0.join("ok.yaml");
    std::fs::write(&file, "version: 1\n").unwrap();
    let (code, err) = run_as_nobody(&dir.0, &["agent", "--config", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("must run as root"), "{err}");

    let tree = TestTree::new("sockperm");
    let agent = Agent::start(&tree, "version: 1\n");
    let mode = std::fs::metadata(&agent.socket).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    let (code, err) = run_as_nobody(&dir.0, &["status", "--socket", agent.socket.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("permission denied") || err.contains("root-only"), "{err}");
}

#[test]
fn second_agent_on_the_same_socket_is_refused() {
    let tree = TestTree::new("dupe");
    let agent = Agent::start(&tree, "version: 1\n");
    let (code, _, err) = run(&[
        "agent",
        "--config",
        agent.config.to_str().unwrap(),
        "--cgroup-root",
        &tree.rel,
        "--socket",
        agent.socket.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("already listening"), "{err}");
    // The first agent is unaffected.
    assert_eq!(agent.status()["mode"], "enforce");
}

/// Every `[[bin]]` that agent/Cargo.toml declares, as cargo built it (next
/// to `warden`): a binary added later is covered without touching this file.
fn declared_binaries() -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let dir = Path::new(WARDEN).parent().unwrap();
    let mut in_bin = false;
    let mut out = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            out.push(dir.join(value.trim().trim_matches('"')));
        }
    }
    out
}

fn output(bin: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin).args(args).output().unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn every_binary_answers_help_and_refuses_bad_arguments_without_panicking() {
    let bins = declared_binaries();
    let names: Vec<&str> = bins.iter().filter_map(|b| b.file_name()?.to_str()).collect();
    assert!(names.contains(&"warden") && names.contains(&"warden-netprobe"), "{names:?}");
    for bin in &bins {
        let name = bin.file_name().unwrap().to_str().unwrap();
        for flag in ["--help", "-h"] {
            let (code, out, err) = output(bin, &[flag]);
            assert_eq!(code, 0, "{name} {flag}: {err}");
            assert!(out.contains("Usage:") && out.contains(name), "{name} {flag} prints no usage: {out}");
            assert!(!err.contains("panicked"), "{name} {flag}: {err}");
        }
        for bad in ["--no-such-option", "no-such-operation"] {
            let (code, _, err) = output(bin, &[bad]);
            assert!(code != 0 && code != 101, "{name} {bad}: exit {code}, {err}");
            assert!(!err.contains("panicked"), "{name} {bad}: {err}");
            let first = err.lines().next().unwrap_or_default();
            assert!(first.contains(bad), "{name} {bad}: the first line names the problem: {err}");
        }
    }
}

#[test]
fn probes_refuse_bad_arguments_in_one_line() {
    let net = Path::new(WARDEN).with_file_name("warden-netprobe");
    let file = Path::new(WARDEN).with_file_name("warden-fileprobe");
    let cases: &[(&Path, &[&str], &str)] = &[
        (&net, &[], "warden-netprobe: missing MODE; see warden-netprobe --help"),
        (&net, &["tcp", "127.0.0.1"], "warden-netprobe: `tcp` takes ADDR PORT (got 1 argument); see"),
        (&net, &["tcp", "localhost", "80"], "warden-netprobe: `tcp`: bad ADDR `localhost`: invalid IP address syntax"),
        (&net, &["udp-sendto", "127.0.0.1", "70000"], "`udp-sendto`: bad PORT `70000`: number too large"),
        (&net, &["raw-udp", "::1"], "`raw-udp` takes ADDR PORT (got 1 argument)"),
        (&net, &["flood", "127.0.0.1", "1", "soon", "0"], "`flood`: bad SECONDS `soon`"),
        (&net, &["--cgroup"], "warden-netprobe: --cgroup needs a value"),
        (&net, &["--linger-ms", "x", "tcp"], "bad --linger-ms `x`"),
        (&file, &["read"], "warden-fileprobe: `read` takes PATH (got 0 arguments)"),
        (&file, &["rename", "/a"], "`rename` takes PATH PATH2 (got 1 argument)"),
        (&file, &["mknod", "/a", "195"], "`mknod`: bad MAJOR:MINOR `195`"),
        (&file, &["flood", "/a", "/b", "fast"], "`flood`: bad RATE `fast`"),
        (&file, &["chown", "/a"], "warden-fileprobe: unknown operation `chown`"),
    ];
    for (bin, args, want) in cases {
        let (code, out, err) = output(bin, args);
        assert_eq!(code, 64, "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: nothing on stdout: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// `warden probe --json | head`: the reader goes away first; the command
/// ends quietly (SIGPIPE), as other tools do, instead of panicking.
#[test]
fn a_command_printing_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(WARDEN)
        .args(["probe", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?} {stderr}", out.status);
}
