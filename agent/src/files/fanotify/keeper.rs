//! The fanotify keeper: a small process that holds the permission group,
//! so that an agent's crash, SIGKILL or stall never lets a held open
//! through.
//!
//! The kernel answers pending permission events with *allow* only when the
//! group's last descriptor closes (fs/notify/fanotify/fanotify_user.c,
//! `fanotify_release`), and matches an answer to its event by the fd number
//! the event was read with (`process_access_response`), whoever writes it.
//! So the keeper, holding a descriptor of the group:
//! - keeps every pending event pending when the agent dies, and then denies
//!   them all by number (every number below the agent's descriptor limit:
//!   a dead process answers nothing, so no answer can cross);
//! - decides opens itself while no agent is attached, fail closed: a file
//!   outside every segment is allowed (the same kernel walk, `file_locate`,
//!   from the pinned maps), a protected one is denied to governed openers;
//! - kills an agent that stays stopped (SIGSTOP, a debugger) for a second,
//!   which makes it the case above: nothing waits on a stopped agent longer;
//! - hands the group to the next agent (`TAKE`, SCM_RIGHTS) after answering
//!   what it read, so the two never read at once.
//!
//! The agent spawns it (`spawn`), or, in Kubernetes, it runs as a sidecar
//! container of the agent's pod (`run_standby`): a restart of the agent's
//! container kills every process in it, a spawned keeper too, while a
//! sidecar lives on. A standby keeper waits for an agent to give it the
//! group (`GIVE`); an agent that finds one gives it the group instead of
//! spawning, and gives it again to a restarted sidecar.
//!
//! One keeper per instance, at `KEEPERS/<instance>.sock` (root only).
//! `warden uninstall` stops it (`EXIT`).
use std::{
    io::{self, Read, Write},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::sys;
use crate::files::{
    locate::{Locate, Place},
    procfs::Proc,
};

pub const KEEPERS: &str = "/run/warden/keepers";
/// How long an agent may stay stopped before the keeper kills it.
pub const STALL: Duration = Duration::from_secs(1);
/// The descriptor limit the agent keeps (so the keeper's sweep of stale
/// event numbers stays short: 65,536 answers take about 50 ms).
pub const AGENT_NOFILE: u64 = 65536;
/// `sidecar`: the agent gives its group to a keeper sidecar container
/// instead of spawning one (the chart sets it), waiting `SIDECAR_WAIT` for it.
pub const SIDECAR_ENV: &str = "WARDEN_FAN_KEEPER";
pub const SIDECAR_WAIT: Duration = Duration::from_secs(15);
/// Descriptors a spawned keeper finds its group and program at.
const GROUP_FD: RawFd = 3;
const PROGRAM_FD: RawFd = 4;

pub fn socket_path(instance: &str) -> PathBuf {
    Path::new(KEEPERS).join(format!("{instance}.sock"))
}

fn send_fds(stream: &UnixStream, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [io::IoSlice::new(b"G")];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&raw)], MsgFlags::empty(), None)
        .map(|_| ())
        .map_err(io::Error::from)
}

/// The byte a message carried and the descriptors with it (close-on-exec).
fn recv_fds(stream: &UnixStream) -> io::Result<(u8, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    if msg.bytes == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the keeper closed the connection"));
    }
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: the kernel installed these descriptors for us just now.
            fds.extend(got.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok((byte[0], fds))
}

/// What a keeper socket of an instance offers an agent.
pub enum Found {
    /// A keeper held the group (an agent before us): it is ours now.
    Held(OwnedFd, UnixStream),
    /// A sidecar keeper waits for a group (`give`).
    Standby,
    /// No keeper.
    Absent,
}

/// Agent side: takes the group from a running keeper of `instance`. The
/// stream must stay open while the agent lives: its end tells the keeper
/// the agent is gone.
pub fn take_over(instance: &str) -> io::Result<Found> {
    let Ok(mut stream) = UnixStream::connect(socket_path(instance)) else { return Ok(Found::Absent) };
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"TAKE")?;
    let (byte, mut fds) = recv_fds(&stream)?;
    stream.set_read_timeout(None)?;
    match (byte, fds.pop()) {
        (b'N', None) => Ok(Found::Standby),
        (_, Some(group)) => Ok(Found::Held(group, stream)),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "the keeper sent no descriptor")),
    }
}

/// Agent side: gives a standby (sidecar) keeper of `instance` the group and
/// the `file_locate` program; returns the attached stream (see `take_over`)
/// once the keeper holds them.
pub fn give(instance: &str, group: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket_path(instance))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GIVE")?;
    send_fds(&stream, &[group, program])?;
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack)?;
    if &ack != b"K" {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the keeper did not take the group"));
    }
    stream.set_read_timeout(None)?;
    Ok(stream)
}

/// Agent side: starts a keeper for `instance` holding `group`, deciding
/// with `program` (file_locate) while no agent is attached; returns the
/// attached stream (see `take_over`).
pub fn spawn(
    instance: &str,
    cgroup_root: &Path,
    group: BorrowedFd<'_>,
    program: BorrowedFd<'_>,
) -> io::Result<UnixStream> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(KEEPERS)?;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let (g, p) = (group.as_raw_fd(), program.as_raw_fd());
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["fan-keeper", "--instance", instance, "--cgroup-root"])
        .arg(cgroup_root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec; dup2 also
    // clears close-on-exec on the new numbers.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(g, GROUP_FD) < 0 || libc::dup2(p, PROGRAM_FD) < 0 || libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut s) = UnixStream::connect(socket_path(instance)) {
            s.write_all(b"ATCH")?;
            // Reaped by a thread: the keeper outlives us only as an orphan.
            std::thread::spawn(move || child.wait());
            return Ok(s);
        }
        if let Some(st) = child.try_wait()? {
            return Err(io::Error::other(format!("the fanotify keeper exited at start: {st}")));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the fanotify keeper did not come up"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asks the keeper of `instance` to exit (uninstall). True if one did.
pub fn stop(instance: &str) -> bool {
    let Ok(mut s) = UnixStream::connect(socket_path(instance)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"EXIT").is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let _ = s.read(&mut b);
    let _ = std::fs::remove_file(socket_path(instance));
    true
}

/// Lowers this process's soft descriptor limit to `AGENT_NOFILE` (the
/// keeper sweeps every number below it when the agent dies).
pub fn cap_nofile() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid rlimit buffer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 && r.rlim_cur > AGENT_NOFILE {
        r.rlim_cur = AGENT_NOFILE;
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    }
}

struct Keeper {
    group: sys::Group,
    locate: Locate,
    proc: Proc,
    /// The governed subtree (relative cgroup v2 path, leading `/`).
    root: String,
    listener: UnixListener,
}

/// `warden fan-keeper`: runs until `EXIT`. The group and the program are
/// inherited at descriptors 3 and 4.
pub fn run(instance: &str, cgroup_root: &str) -> anyhow::Result<()> {
    // SAFETY: the spawning agent put them there (see `spawn`).
    let (group, program) = unsafe { (OwnedFd::from_raw_fd(GROUP_FD), OwnedFd::from_raw_fd(PROGRAM_FD)) };
    for fd in [&group, &program] {
        // SAFETY: plain fcntl on our own descriptors.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let listener = listen(instance)?;
    // The spawning agent attaches at once; until it does, nothing is read
    // (it may already be reading).
    let k = Keeper::new(group, program, cgroup_root, listener)?;
    let agent = k.wait_attach(Duration::from_secs(10));
    k.serve(agent)
}

/// A sidecar keeper: waits for an agent to `GIVE` it the group, then keeps
/// as a spawned keeper does. `cgroup_root` is the agent's `--cgroup-root`
/// (relative to the cgroup2 mount): each container names cgroups in its
/// own cgroup namespace, so the keeper finds the root in its own view.
pub fn run_standby(instance: &str, cgroup_root: &str) -> anyhow::Result<()> {
    let mounts = crate::system::mountinfo::current()?;
    let cg2 = crate::system::mountinfo::cgroup2(&mounts).ok_or(crate::system::SystemError::NoCgroup2)?;
    let root = crate::identity::CgroupTracker::new(cg2, cgroup_root)?.root_in_hierarchy();
    let listener = listen(instance)?;
    tracing::info!(instance, cgroup_root = %root, "fanotify keeper waiting for an agent to give it the group");
    loop {
        let Ok((mut conn, _)) = listener.accept() else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut cmd = [0u8; 4];
        if conn.read_exact(&mut cmd).is_err() {
            continue;
        }
        match &cmd {
            b"EXIT" => {
                let _ = conn.write_all(b"K");
                return Ok(());
            }
            // Nothing to hand over yet: the agent gives us one.
            b"TAKE" => {
                let _ = conn.write_all(b"N");
            }
            b"GIVE" => {
                let Ok((_, fds)) = recv_fds(&conn) else { continue };
                let Ok([group, program]) = <[OwnedFd; 2]>::try_from(fds) else { continue };
                if conn.write_all(b"K").is_err() {
                    continue;
                }
                let _ = conn.set_read_timeout(None);
                tracing::info!("fanotify keeper holds the group");
                let k = Keeper::new(group, program, &root, listener)?;
                return k.serve(Some(conn));
            }
            _ => {}
        }
    }
}

/// The keeper's socket, root only.
fn listen(instance: &str) -> anyhow::Result<UnixListener> {
    std::fs::create_dir_all(KEEPERS)?;
    let path = socket_path(instance);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(listener)
}

impl Keeper {
    /// `cgroup_root`: the governed root as /proc/<pid>/cgroup names it here.
    fn new(group: OwnedFd, program: OwnedFd, cgroup_root: &str, listener: UnixListener) -> anyhow::Result<Self> {
        Ok(Keeper {
            group: sys::Group::from_fd(group),
            locate: Locate::without_output(program),
            proc: Proc::open()?,
            root: format!("/{}", cgroup_root.trim_matches('/')),
            listener,
        })
    }

    fn serve(&self, mut agent: Option<UnixStream>) -> anyhow::Result<()> {
        loop {
            match agent.take() {
                Some(conn) => {
                    self.watch(conn);
                    // Gone: what it read and did not answer is denied.
                    self.deny_stale();
                }
                None => agent = self.decide_until_taken(),
            }
        }
    }

    fn wait_attach(&self, within: Duration) -> Option<UnixStream> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(conn) = self.accept(Duration::from_millis(100)) {
                return Some(conn);
            }
        }
        self.deny_stale();
        None
    }

    /// Handles one connection on the listener: `EXIT` exits, `TAKE` gets
    /// the group, `ATCH` attaches. Returns the new agent's stream.
    fn accept(&self, wait: Duration) -> Option<UnixStream> {
        if !readable(self.listener.as_fd(), wait) {
            return None;
        }
        let (mut conn, _) = self.listener.accept().ok()?;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut cmd = [0u8; 4];
        conn.read_exact(&mut cmd).ok()?;
        let _ = conn.set_read_timeout(None);
        match &cmd {
            b"EXIT" => {
                let _ = conn.write_all(b"K");
                std::process::exit(0)
            }
            b"TAKE" => send_fds(&conn, &[self.group.as_fd()]).ok().map(|_| conn),
            b"ATCH" => Some(conn),
            _ => None,
        }
    }

    /// While an agent is attached: waits for it to end, kills it if it
    /// stays stopped, refuses a second agent.
    fn watch(&self, conn: UnixStream) {
        let pid = peer_pid(&conn);
        let mut stopped_since: Option<Instant> = None;
        let mut last_ran = 0u64;
        loop {
            if readable(conn.as_fd(), Duration::from_millis(100)) {
                let mut b = [0u8; 16];
                match (&conn).read(&mut b) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
            // Another connection while attached: only EXIT is honoured.
            if readable(self.listener.as_fd(), Duration::ZERO)
                && let Ok((mut c, _)) = self.listener.accept()
            {
                let mut cmd = [0u8; 4];
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                if c.read_exact(&mut cmd).is_ok() && &cmd == b"EXIT" {
                    let _ = c.write_all(b"K");
                    std::process::exit(0);
                }
            }
            match pid.map(process_stopped) {
                Some(true) => {
                    // Stopped now, but it ran since the last look (stopped
                    // and continued between two looks): a new stop.
                    let ran = pid.map_or(0, run_time_ns);
                    if ran != last_ran {
                        (last_ran, stopped_since) = (ran, None);
                    }
                    let since = *stopped_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= STALL {
                        // A stopped agent answers nothing: end it, and
                        // take over below when its stream closes.
                        // SAFETY: plain kill(2).
                        unsafe { libc::kill(pid.unwrap_or(0), libc::SIGKILL) };
                    }
                }
                _ => stopped_since = None,
            }
        }
    }

    /// Denies every event the dead agent read and did not answer.
    fn deny_stale(&self) {
        for fd in 0..AGENT_NOFILE as RawFd {
            let _ = self.group.respond_raw(fd, false);
        }
    }

    /// Decides opens until an agent takes the group; returns its stream.
    fn decide_until_taken(&self) -> Option<UnixStream> {
        let mut buf = vec![0u8; 4096];
        loop {
            if let Some(conn) = self.accept(Duration::ZERO) {
                return Some(conn);
            }
            if !readable(self.group.as_fd(), Duration::from_millis(50)) {
                continue;
            }
            let Ok(events) = self.group.read(&mut buf) else { continue };
            for ev in events {
                let allow = self.fallback(ev.fd.as_fd(), ev.tid);
                let _ = self.group.respond(ev.fd.as_fd(), allow);
            }
        }
    }

    /// No agent: outside every segment is allowed; a protected file (or one
    /// whose place is unknown) is denied to governed openers.
    fn fallback(&self, fd: BorrowedFd<'_>, tid: i32) -> bool {
        match self.locate.locate_with(fd, 0, false) {
            Ok(Place::Outside) => true,
            _ => {
                let mut buf = [0u8; 4096];
                let governed = match self.proc.cgroup(tid, &mut buf) {
                    // A path climbing out of a cgroup namespace may be
                    // under the root: governed (fail closed).
                    Some(cg) => {
                        cg == self.root
                            || cg.starts_with(&format!("{}/", self.root))
                            || self.root == "/"
                            || cg.split('/').any(|c| c == "..")
                    }
                    None => true,
                };
                !governed
            }
        }
    }
}

fn readable(fd: BorrowedFd<'_>, wait: Duration) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, wait.as_millis() as i32) > 0 }
}

fn peer_pid(conn: &UnixStream) -> Option<i32> {
    nix::sys::socket::getsockopt(conn, nix::sys::socket::sockopt::PeerCredentials).ok().map(|c| c.pid())
}

/// CPU time every thread of a process has had (schedstat), 0 if unknown.
/// It moves whenever any thread ran, however briefly.
fn run_time_ns(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

/// Whether a process is stopped (`T`, or `t` traced) right now.
fn process_stopped(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name's closing parenthesis.
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).is_some_and(|c| c == 'T' || c == 't')
}
