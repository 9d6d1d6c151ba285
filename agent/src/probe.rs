//! Shared by the `warden-netprobe` and `warden-fileprobe` tools: join a
//! cgroup, do one real operation, report it with a stable exit code.
use std::{fmt::Display, str::FromStr, time::Duration};

/// Exit status for a command line the tool cannot run (sysexits' EX_USAGE):
/// apart from every outcome `finish` reports, so a test's typo is never
/// read as "denied".
pub const EXIT_USAGE: i32 = 64;

/// The options every probe takes, for its `--help`.
pub const OPTIONS: &str = "\
Options:
  --cgroup DIR     join cgroup DIR (a cgroup2 directory) before the operation
  --linger-ms N    wait N ms before exiting, so the agent can still read /proc/<pid>
  -h, --help       print this help

Exit codes: 0 success, 2 denied (EPERM/EACCES), 3 any other error, 4 no such device
(ENXIO/ENODEV: every hook allowed the open), 5 no reply or timed out, 6 not supported
by this kernel, 64 bad command line.
";

/// A command line the tool cannot run: printed on one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// An operation's result for `finish`, or why its command line cannot run.
pub type Outcome = Result<std::io::Result<()>, UsageError>;

/// The whole of a probe's `main`: `--help` prints `usage` and `OPTIONS`,
/// flags are taken (joining the cgroup), then `run` gets the operation's
/// arguments. Never panics on a bad command line: one line on stderr, exit
/// `EXIT_USAGE`.
pub fn main(usage: &str, run: impl FnOnce(&[String]) -> Outcome) -> ! {
    let mut argv = std::env::args();
    let tool = argv.next().and_then(|a| a.rsplit('/').next().map(str::to_string)).unwrap_or_default();
    let fail = |e: UsageError| -> ! {
        eprintln!("{tool}: {e}; see {tool} --help");
        std::process::exit(EXIT_USAGE)
    };
    let flags = match Flags::parse(argv.collect()) {
        Ok(Some(flags)) => flags,
        Ok(None) => {
            print!("{usage}\n{OPTIONS}");
            std::process::exit(0)
        }
        Err(e) => fail(e),
    };
    if let Some(dir) = &flags.cgroup {
        // Writing "0" to cgroup.procs moves the writing process.
        if let Err(e) = std::fs::write(format!("{dir}/cgroup.procs"), "0") {
            eprintln!("{tool}: cannot join cgroup {dir}: {e}");
            std::process::exit(3)
        }
    }
    match run(&flags.args) {
        Ok(result) => finish(result, flags.linger),
        Err(e) => fail(e),
    }
}

/// The leading flags and the operation's arguments.
#[derive(Debug, PartialEq)]
struct Flags {
    cgroup: Option<String>,
    linger: Duration,
    args: Vec<String>,
}

impl Flags {
    /// `None` when help is asked for: `-h` or `--help` before the operation.
    fn parse(mut args: Vec<String>) -> Result<Option<Self>, UsageError> {
        let mut flags = Self { cgroup: None, linger: Duration::ZERO, args: Vec::new() };
        while args.first().is_some_and(|a| a.starts_with('-')) {
            let flag = args.remove(0);
            if flag == "-h" || flag == "--help" {
                return Ok(None);
            }
            if flag != "--cgroup" && flag != "--linger-ms" {
                return Err(UsageError(format!("unknown option `{flag}`")));
            }
            if args.is_empty() {
                return Err(UsageError(format!("{flag} needs a value")));
            }
            let value = args.remove(0);
            if flag == "--cgroup" {
                flags.cgroup = Some(value);
            } else {
                let ms = value.parse().map_err(|e| UsageError(format!("bad --linger-ms `{value}`: {e}")))?;
                flags.linger = Duration::from_millis(ms);
            }
        }
        flags.args = args;
        Ok(Some(flags))
    }
}

/// The arguments of one operation, checked against the names its usage
/// gives them; values parse with errors that name them.
pub struct Args<'a> {
    op: &'a str,
    names: &'a [&'a str],
    values: &'a [String],
}

impl<'a> Args<'a> {
    /// Exactly one value per name.
    pub fn new(op: &'a str, names: &'a [&'a str], values: &'a [String]) -> Result<Self, UsageError> {
        if values.len() != names.len() {
            let wants = if names.is_empty() { "no arguments".to_string() } else { names.join(" ") };
            let n = values.len();
            return Err(UsageError(format!(
                "`{op}` takes {wants} (got {n} argument{})",
                if n == 1 { "" } else { "s" }
            )));
        }
        Ok(Self { op, names, values })
    }

    pub fn str(&self, i: usize) -> &'a str {
        &self.values[i]
    }

    pub fn get<T: FromStr>(&self, i: usize) -> Result<T, UsageError>
    where
        T::Err: Display,
    {
        let v = &self.values[i];
        v.parse().map_err(|e| UsageError(format!("`{}`: bad {} `{v}`: {e}", self.op, self.names[i])))
    }
}

/// Prints an operation's own report (JSON) and exits 0.
pub fn print_json(report: &impl serde::Serialize) -> ! {
    match serde_json::to_string(report) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            println!("error: {e}");
            std::process::exit(3)
        }
    }
    std::process::exit(0)
}

/// Lingers (so the agent can still read /proc/<pid>/exe), prints the
/// outcome and exits: 0 success, 2 denied (EPERM/EACCES), 4 no such device
/// (ENXIO/ENODEV: every hook allowed the open and found no driver behind
/// the node), 5 timed out or no reply, 6 not supported by this kernel,
/// 3 any other error.
pub fn finish(result: std::io::Result<()>, linger: Duration) -> ! {
    std::thread::sleep(linger);
    match result {
        Ok(()) => {
            println!("ok");
            std::process::exit(0)
        }
        Err(e) => {
            println!("error: {e}");
            let code = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => 2,
                Some(libc::ENXIO) | Some(libc::ENODEV) => 4,
                Some(libc::ETIMEDOUT) => 5,
                Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT) | Some(libc::ESOCKTNOSUPPORT) => 6,
                None if e.kind() == std::io::ErrorKind::TimedOut => 5,
                _ => 3,
            };
            std::process::exit(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Flags>, String> {
        Flags::parse(args.iter().map(|s| s.to_string()).collect()).map_err(|e| e.0)
    }

    #[test]
    fn flags_help_and_errors() {
        assert_eq!(parse(&["--help"]), Ok(None));
        assert_eq!(parse(&["--cgroup", "/x", "-h", "tcp"]), Ok(None));
        let f = parse(&["--cgroup", "/x", "--linger-ms", "50", "tcp", "a", "1"]).unwrap().unwrap();
        assert_eq!((f.cgroup.as_deref(), f.linger, f.args.len()), (Some("/x"), Duration::from_millis(50), 3));
        assert_eq!(parse(&[]).unwrap().unwrap().args, Vec::<String>::new());
        assert_eq!(parse(&["--cgroup"]).unwrap_err(), "--cgroup needs a value");
        assert_eq!(parse(&["--bogus", "1", "tcp"]).unwrap_err(), "unknown option `--bogus`");
        assert_eq!(
            parse(&["--linger-ms", "soon", "tcp"]).unwrap_err(),
            "bad --linger-ms `soon`: invalid digit found in string"
        );
    }

    #[test]
    fn args_are_counted_and_named() {
        let v: Vec<String> = vec!["10.0.0.1".into(), "http".into()];
        let a = Args::new("tcp", &["ADDR", "PORT"], &v).unwrap();
        assert_eq!(a.get::<std::net::IpAddr>(0).unwrap().to_string(), "10.0.0.1");
        assert_eq!(a.get::<u16>(1).unwrap_err().0, "`tcp`: bad PORT `http`: invalid digit found in string");
        assert_eq!(
            Args::new("tcp", &["ADDR", "PORT"], &v[..1]).err().unwrap().0,
            "`tcp` takes ADDR PORT (got 1 argument)"
        );
        assert_eq!(
            Args::new("xdp-socket", &[], &v).err().unwrap().0,
            "`xdp-socket` takes no arguments (got 2 arguments)"
        );
    }
}
