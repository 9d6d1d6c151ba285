//! Identity from Slurm's job records: a real slurmctld + slurmd pair (Debian's
//! slurm-wlm, munge authentication) runs on loopback, real jobs are submitted
//! with sbatch, and the agent selects by their owner, account and partition as
//! `scontrol show job` reports them.
//!
//! slurmd runs with proctrack/linuxproc here (its cgroup plugin wants a
//! cgroup v2-only host; these machines are hybrid), so the test makes each
//! job's cgroup itself, in slurmstepd's layout, with the real job id, and
//! runs real processes in it on real hooks.
mod harness;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use harness::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// munged, shared by every user of the host; started if not answering.
fn ensure_munge() {
    let ok = || {
        Command::new("munge").arg("-n").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    if ok() {
        return;
    }
    std::fs::create_dir_all("/run/munge").unwrap();
    let st = Command::new("chown").args(["munge:munge", "/run/munge"]).status().unwrap();
    assert!(st.success(), "chown /run/munge");
    let st = Command::new("runuser").args(["-u", "munge", "--", "/usr/sbin/munged", "--force"]).status().unwrap();
    assert!(st.success(), "start munged");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "munged does not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A one-node Slurm cluster on loopback, stopped on drop.
struct Cluster {
    dir: TempDir,
    conf: String,
    daemons: Vec<Child>,
}

impl Cluster {
    fn start() -> Self {
        ensure_munge();
        let dir = TempDir::new("slurm");
        for sub in ["state", "spool"] {
            std::fs::create_dir_all(dir.0.join(sub)).unwrap();
        }
        let d = dir.0.display();
        let conf = format!(
            "ClusterName=warden\nSlurmctldHost=localhost\nSlurmctldPort={}\nSlurmdPort={}\nSlurmUser=root\n\
             SlurmdUser=root\nAuthType=auth/munge\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/ctld.pid\nSlurmdPidFile={d}/d.pid\nProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             JobCompType=jobcomp/none\nSchedulerType=sched/builtin\nSelectType=select/linear\nMpiDefault=none\n\
             ReturnToService=2\nNodeName=localhost CPUs=2 State=UNKNOWN\n\
             PartitionName=gpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port()
        );
        let conf_path = dir.0.join("slurm.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let conf = conf_path.display().to_string();
        let spawn = |bin: &str, log: &str| {
            Command::new(bin)
                .args(["-D", "-L"])
                .arg(dir.0.join(log))
                .env("SLURM_CONF", &conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{bin}: {e} (is slurm-wlm installed? scripts/setup.sh installs it)"))
        };
        let daemons = vec![spawn("slurmctld", "ctld.log"), spawn("slurmd", "d.log")];
        let c = Cluster { daemons, dir, conf };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = c.cmd("sinfo", &["-h", "-o", "%t"]);
            if out.trim() == "idle" {
                return c;
            }
            assert!(Instant::now() < deadline, "the Slurm node did not come up (sinfo: {out:?}):\n{}", c.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn cmd(&self, bin: &str, args: &[&str]) -> String {
        let out = Command::new(bin).args(args).env("SLURM_CONF", &self.conf).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logs(&self) -> String {
        ["ctld.log", "d.log"].iter().map(|l| std::fs::read_to_string(self.dir.0.join(l)).unwrap_or_default()).collect()
    }

    /// Submits a job that sleeps (long enough for the test, short enough that
    /// nothing lingers if a run is cut off); returns its id.
    fn submit(&self, account: &str) -> u64 {
        let out =
            self.cmd("sbatch", &["--parsable", "-p", "gpu", "-A", account, "-o", "/dev/null", "--wrap", "sleep 120"]);
        out.trim().parse().unwrap_or_else(|_| panic!("sbatch said {out:?}:\n{}", self.logs()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // scancel is asynchronous: wait (bounded) until the jobs are gone,
        // so no slurmstepd or job outlives the daemons that would reap it.
        let _ = self.cmd("scancel", &["-u", "root"]);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline && !self.cmd("squeue", &["-h"]).trim().is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// slurmstepd's layout for a job's batch step.
fn job_cgroup(tree: &TestTree, job: u64) -> std::path::PathBuf {
    tree.mkdir(&format!("system.slice/slurmstepd.scope/job_{job}/step_batch/user/task_0"))
}

#[test]
fn jobs_are_selected_by_account_partition_and_user_from_slurmctld() {
    require_root();
    let cluster = Cluster::start();
    let ml = cluster.submit("ml-research");
    let other = cluster.submit("other");
    let tree = TestTree::new("slurm");
    let ml_cg = job_cgroup(&tree, ml);
    let other_cg = job_cgroup(&tree, other);
    let port = tcp_listener("127.0.0.2");
    let scontrol = ["/usr/bin/scontrol", "/bin/scontrol"].into_iter().find(|p| Path::new(p).exists()).unwrap();
    let yaml = format!(
        r#"
version: 1
agent:
  events: {{ allowed: each }}
  slurm:
    scontrol: {scontrol}
{segments}workloads:
  - name: research
    selector:
      slurm: {{account: "ml-*", partition: gpu, user: root}}
  - name: others
    selector:
      slurm: {{account: other}}
allow:
  - workload: research
    segment: store
"#,
        segments = store_segment(port)
    );
    let agent = Agent::start_with_env(&tree, &yaml, &[("SLURM_CONF", &cluster.conf)]);
    let allowed = |cg: &Path| netprobe(cg, "tcp", "127.0.0.2", port).ok();
    // Until scontrol has answered, a job is unidentified (fail closed).
    agent.eventually("both job records are in", || agent.status()["identity"]["slurm"]["objects"] == 2);
    assert!(allowed(&ml_cg), "the ml-research job is granted the store");
    let p = netprobe(&other_cg, "tcp", "127.0.0.2", port);
    assert!(p.eperm(), "a job under another account has no grant: {p:?}");

    let s = agent.status();
    assert_eq!(s["identity"]["slurm"]["state"], "ok", "{s}");
    assert_eq!(s["identity"]["slurm"]["objects"], 2, "{s}");
    let research = s["workloads"].as_array().unwrap().iter().find(|w| w["name"] == "research").unwrap();
    assert_eq!(research["members"][0]["slurm.job.id"], ml, "{s}");
    let events = agent.wait_events(2, |e| e["segment"] == "store" && e["slurm.account"].is_string());
    let e = events.iter().find(|e| e["slurm.job.id"] == ml).unwrap();
    assert_eq!(
        (str_of(e, "slurm.user"), str_of(e, "slurm.account"), str_of(e, "slurm.partition")),
        ("root", "ml-research", "gpu")
    );
    assert_eq!(str_of(e, "workload"), "research");
    let e = events.iter().find(|e| e["slurm.job.id"] == other).unwrap();
    assert_eq!((str_of(e, "workload"), str_of(e, "slurm.account")), ("others", "other"), "{e}");

    // The job ends and its cgroup goes: the record is forgotten.
    cluster.cmd("scancel", &[&ml.to_string()]);
    let job_dir = tree.abs.join(format!("system.slice/slurmstepd.scope/job_{ml}"));
    for d in ["step_batch/user/task_0", "step_batch/user", "step_batch", ""] {
        std::fs::remove_dir(job_dir.join(d)).unwrap();
    }
    agent.eventually("the ended job's record is dropped", || agent.status()["identity"]["slurm"]["objects"] == 1);
}
