//! Child processes of the local stack: each runs in its own process group with its output in
//! `.local/logs/<name>.log`, and is stopped as a group.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// How long children get to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

struct Managed {
    name: String,
    child: Child,
    pgid: i32,
}

#[derive(Default)]
pub struct Supervisor {
    children: Vec<Managed>,
}

/// A program on PATH.
pub fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow!("{program} is not on PATH (`make run` puts .venv/bin on PATH)"))
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub async fn port_answers(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    matches!(
        tokio::time::timeout(Duration::from_millis(500), connect).await,
        Ok(Ok(_))
    )
}

/// Waits until `port` accepts connections, failing after `limit`.
pub async fn wait_for_port(port: u16, limit: Duration, what: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while !port_answers(port).await {
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow!(
                "{what} did not listen on port {port} within {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Runs a program to completion with its output in `log`; an error when it fails.
pub async fn run_logged(program: &Path, args: &[String], cwd: &Path, log: &Path) -> Result<()> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let status = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("running {}", program.display()))?;
    if !status.success() {
        return Err(anyhow!(
            "{} {} failed ({status}); see {}",
            program.display(),
            args.join(" "),
            log.display()
        ));
    }
    Ok(())
}

impl Supervisor {
    pub fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        cwd: &Path,
        log: &Path,
    ) -> Result<()> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        let pgid = i32::try_from(pid)?;
        info!(name, pid, log = %log.display(), "started");
        self.children.push(Managed {
            name: name.to_string(),
            child,
            pgid,
        });
        Ok(())
    }

    /// Resolves when any child exits; never when there are none.
    pub async fn any_exited(&mut self) -> String {
        loop {
            for managed in &mut self.children {
                if let Ok(Some(status)) = managed.child.try_wait() {
                    return format!("{} exited ({status})", managed.name);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// SIGTERM to every child's process group, SIGKILL to what is left after the grace period.
    pub async fn shutdown(&mut self) {
        for managed in &self.children {
            signal_group(managed.pgid, libc::SIGTERM);
        }
        for managed in &mut self.children {
            match tokio::time::timeout(GRACE, managed.child.wait()).await {
                Ok(_) => info!(name = %managed.name, "stopped"),
                Err(_) => {
                    warn!(name = %managed.name, "did not stop; killing");
                    signal_group(managed.pgid, libc::SIGKILL);
                    if let Err(e) = managed.child.wait().await {
                        warn!(name = %managed.name, error = %e, "could not reap");
                    }
                }
            }
            // The leader may be gone while its group lives on (cargo lambda's children).
            signal_group(managed.pgid, libc::SIGKILL);
        }
        self.children.clear();
    }
}

fn signal_group(pgid: i32, signal: libc::c_int) {
    // SAFETY: killpg only sends a signal; pgid is the group of a child this supervisor started
    // (process_group(0) makes the child's pid its group id).
    let rc = unsafe { libc::killpg(pgid, signal) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            warn!(pgid, error = %err, "signalling process group failed");
        }
    }
}
