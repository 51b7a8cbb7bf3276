//! The lab's processes: `strata serve <role>` children of the current executable, on loopback
//! ports, with their environment set here (no `STRATA_*` variable of the caller leaks in),
//! their output appended to a log file each, killed when dropped; and what `/proc` tells of
//! them (CPU time, resident memory).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::LabError;

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times (`USER_HZ`): 100 on every Linux
/// architecture strata builds for (the kernel's ABI fixes it, whatever `CONFIG_HZ` is).
const USER_HZ: f64 = 100.0;

/// A port free a moment ago on loopback: bound on port 0, then released for a child to take.
///
/// # Errors
/// [`LabError::Process`] when no port can be bound.
pub(crate) fn free_addr() -> Result<SocketAddr, LabError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| LabError::Process {
        action: "find a free port for",
        name: "a child".into(),
        source,
    })?;
    listener.local_addr().map_err(|source| LabError::Process {
        action: "find a free port for",
        name: "a child".into(),
        source,
    })
}

/// How to start one `strata serve` process: its name, role arguments and environment.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
}

/// A running child; SIGKILLed when dropped.
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    pub(crate) spawned: Instant,
}

impl Proc {
    /// Starts `exe` with `launch`, output appended to `<logs>/<name>.log`.
    ///
    /// # Errors
    /// [`LabError::Process`] when the log file cannot be opened or the process not started.
    pub(crate) fn spawn(exe: &Path, logs: &Path, launch: &Launch) -> Result<Proc, LabError> {
        let error = |action, source| LabError::Process {
            action,
            name: launch.name.clone(),
            source,
        };
        std::fs::create_dir_all(logs).map_err(|e| error("create the log directory of", e))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("{}.log", launch.name)))
            .map_err(|e| error("open the log of", e))?;
        let err = log.try_clone().map_err(|e| error("open the log of", e))?;
        let mut command = Command::new(exe);
        command.args(&launch.args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STRATA_") {
                command.env_remove(key);
            }
        }
        command
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true);
        let spawned = Instant::now();
        let child = command.spawn().map_err(|e| error("start", e))?;
        Ok(Proc {
            name: launch.name.clone(),
            child,
            spawned,
        })
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: gone at once, nothing flushed.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.start_kill();
    }

    /// SIGTERM, as an orchestrator stops a process (it drains and, in local cart mode, hands
    /// its carts over before it exits).
    ///
    /// # Errors
    /// [`LabError::Process`] when `kill` cannot be run.
    pub(crate) fn terminate(&self) -> Result<(), LabError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map(|_| ())
            .map_err(|source| LabError::Process {
                action: "signal",
                name: self.name.clone(),
                source,
            })
    }

    /// Waits for the exit at most `within`; SIGKILL after that. True when it exited in time.
    pub(crate) async fn wait_exit(&mut self, within: Duration) -> bool {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(_) => true,
            Err(_) => {
                self.kill();
                let _ = self.child.wait().await;
                false
            }
        }
    }

    /// SIGTERM, then the exit within `within` (SIGKILL after it).
    ///
    /// # Errors
    /// As [`Proc::terminate`].
    pub(crate) async fn stop(&mut self, within: Duration) -> Result<bool, LabError> {
        self.terminate()?;
        Ok(self.wait_exit(within).await)
    }

    /// CPU time (user + system) and resident memory now, when the process runs.
    pub(crate) fn usage(&self) -> Option<Usage> {
        usage(self.pid()?)
    }
}

/// What `/proc` says of a process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    /// User plus system CPU seconds since the process started.
    pub(crate) cpu_secs: f64,
    /// Resident set size in bytes.
    pub(crate) rss_bytes: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;

    fn add(self, other: Usage) -> Usage {
        Usage {
            cpu_secs: self.cpu_secs + other.cpu_secs,
            rss_bytes: self.rss_bytes + other.rss_bytes,
        }
    }
}

/// Reads `/proc/<pid>/stat` (CPU) and `/proc/<pid>/status` (`VmRSS`).
fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Usage {
        cpu_secs: cpu_secs(&stat)?,
        rss_bytes: rss_bytes(&status)?,
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The fields are
/// counted after the command name's closing parenthesis, since the name may hold spaces.
#[allow(clippy::cast_precision_loss)] // clock ticks fit f64's 52 bits
fn cpu_secs(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The sum of the usage of `procs` (those running).
pub(crate) fn total_usage<'a>(procs: impl IntoIterator<Item = &'a Proc>) -> Usage {
    procs
        .into_iter()
        .filter_map(Proc::usage)
        .fold(Usage::default(), |a, b| a + b)
}

/// A fresh directory for one part of the run, under the run's output directory.
///
/// # Errors
/// [`LabError::Write`] when it cannot be made.
pub(crate) fn fresh_dir(root: &Path, name: &str) -> Result<PathBuf, LabError> {
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|source| LabError::Write {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_give_cpu_and_memory() {
        let stat = "4242 (strata serve) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 \
                    9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(cpu_secs(stat), Some(2.0));
        let status = "Name:\tstrata\nVmPeak:\t  100 kB\nVmRSS:\t   2048 kB\nThreads:\t9\n";
        assert_eq!(rss_bytes(status), Some(2 * 1024 * 1024));
        let own = usage(std::process::id()).unwrap();
        assert!(own.rss_bytes > 0);
    }
}
