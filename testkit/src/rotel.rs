//! A real OpenTelemetry collector for tests: rotel (PyPI `rotel`), receiving
//! OTLP/gRPC on a loopback port and printing every log record it gets
//! (`--debug-log logs --debug-log-verbosity detailed`) to a file, which
//! `debug_log` parses.
//!
//! Found through `WARDEN_ROTEL` or `target/tools/rotel/bin/rotel-agent`
//! under the workspace root (scripts/setup.sh installs it there). Missing
//! rotel fails the test: it is never silently skipped.

use std::{
    fs::File,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::debug_log::{self, Record};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The rotel-agent binary; panics with how to get it when missing.
pub fn binary() -> PathBuf {
    let path = match std::env::var_os("WARDEN_ROTEL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/rotel/bin/rotel-agent"),
    };
    assert!(
        path.is_file(),
        "rotel (a real OTLP collector) not found at {}: run scripts/setup.sh, or \
         `python3 -m venv target/tools/rotel && target/tools/rotel/bin/pip install rotel` and link \
         target/tools/rotel/bin/rotel-agent to its site-packages/rotel/rotel-agent, or set WARDEN_ROTEL",
        path.display()
    );
    path
}

/// A loopback port nothing listens on (right now).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("bind a free port").port()
}

pub struct Rotel {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Rotel {
    /// Starts rotel on a free loopback port and waits until it listens.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts rotel on `port` (e.g. one a sink already points at).
    pub fn start_on(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "warden-rotel-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let mut r = Self { port, dir, child: None };
        r.spawn();
        r
    }

    fn output_path(&self) -> PathBuf {
        self.dir.join("stdout.log")
    }

    fn spawn(&mut self) {
        // Appends: records of earlier runs (before a restart) stay readable.
        let out = File::options().create(true).append(true).open(self.output_path()).expect("rotel output file");
        let err = out.try_clone().expect("dup rotel output");
        let child = Command::new(binary())
            .args(["start", "--otlp-grpc-endpoint", &format!("127.0.0.1:{}", self.port)])
            // Unused, but its default port would clash between instances.
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{}", free_port())])
            .args(["--exporter", "blackhole", "--debug-log", "logs", "--debug-log-verbosity", "detailed"])
            // Defaults are shared paths in /tmp.
            .arg("--pid-file")
            .arg(self.dir.join("rotel.pid"))
            .arg("--log-file")
            .arg(self.dir.join("rotel.log"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary().display()));
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("rotel exited ({status}) before listening on {addr}:\n{}", self.output());
            }
            assert!(Instant::now() < deadline, "rotel not listening on {addr} after 15 s:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, as `agent.events.otlp.endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything rotel printed so far (all runs).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.output_path()).unwrap_or_default()
    }

    /// Every log record rotel received so far, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        debug_log::parse(&self.output())
    }

    /// Waits until at least `n` records arrived; panics with rotel's output
    /// after `timeout`.
    pub fn wait_records(&self, n: usize, timeout: Duration) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        loop {
            let recs = self.records();
            if recs.len() >= n {
                return recs;
            }
            assert!(
                Instant::now() < deadline,
                "rotel received {} of {n} records in {timeout:?}; its output:\n{}",
                recs.len(),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops rotel (SIGTERM, then SIGKILL after 5 s); the port is free after.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    /// Stops and starts again on the same port (records so far are kept).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
