//! Slurm job records from `scontrol show job -o <id>`: the job's owner,
//! account and partition, as slurmctld knows them. The job's environment
//! (`SLURM_JOB_ACCOUNT`...) is not used: the job's own user can rewrite it.
use std::{path::Path, process::Command, time::Duration};

use super::meta::SlurmJob;

/// Parses one `scontrol -o` line (`Key=Value` pairs separated by spaces).
/// `UserId=alice(1001)` gives the user name.
pub fn parse_job(text: &str, id: u64) -> Option<SlurmJob> {
    let mut job = SlurmJob { id, ..Default::default() };
    let mut seen_id = false;
    for pair in text.split_whitespace() {
        let Some((k, v)) = pair.split_once('=') else { continue };
        let value = || (!v.is_empty() && v != "(null)").then(|| v.to_string());
        match k {
            "JobId" => seen_id = v.parse() == Ok(id),
            "UserId" => job.user = value().map(|u| u.split('(').next().unwrap_or_default().to_string()),
            "Account" => job.account = value(),
            "Partition" => job.partition = value(),
            _ => {}
        }
    }
    seen_id.then_some(job)
}

/// Runs `scontrol` (directly, never through a shell) for one job.
pub fn query(scontrol: &Path, id: u64, timeout: Duration) -> Result<SlurmJob, String> {
    let mut child = Command::new(scontrol)
        .args(["show", "job", "-o", &id.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", scontrol.display()))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} show job {id}: no answer in {timeout:?}", scontrol.display()));
            }
            Err(e) => return Err(format!("{}: {e}", scontrol.display())),
        }
    }
    let out = child.wait_with_output().map_err(|e| format!("{}: {e}", scontrol.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{} show job {id}: {}", scontrol.display(), err.trim()));
    }
    parse_job(&text, id).ok_or_else(|| format!("{} show job {id}: no record for the job", scontrol.display()))
}

/// `scontrol` on PATH, if installed.
pub fn find_scontrol() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("scontrol")).find(|p| p.is_file())
}

/// Fuzzing entry point: never panics.
pub fn fuzz(text: &str) {
    let _ = parse_job(text, 7);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scontrol_one_liner() {
        let line = "JobId=4242 JobName=train UserId=alice(1001) GroupId=alice(1001) MCS_label=N/A Priority=1 \
                    Nice=0 Account=ml-research QOS=normal JobState=RUNNING Partition=gpu NodeList=node-a\n";
        let job = parse_job(line, 4242).unwrap();
        assert_eq!(job.user.as_deref(), Some("alice"));
        assert_eq!(job.account.as_deref(), Some("ml-research"));
        assert_eq!(job.partition.as_deref(), Some("gpu"));
        assert!(parse_job(line, 4243).is_none(), "a record for another job is not this job's");
        let bare = parse_job("JobId=9 Account=(null) Partition=", 9).unwrap();
        assert_eq!((bare.account, bare.partition, bare.user), (None, None, None));
        assert!(parse_job("slurm_load_jobs error: Invalid job id specified", 9).is_none());
    }
}
