//! Processes: one measured run (wall time, CPU and peak RSS from `wait4`), helpers run
//! to completion, and long-running children stopped with their CPU counted.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::helper_ended;

/// One measured process run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub wall_ms: f64,
    pub cpu_ms: f64,
    pub rss_kib: f64,
    /// The floor only: the 6 APDUs alone.
    pub apdu_ms: f64,
}

#[derive(Clone, Debug)]
pub struct Proc {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

impl Proc {
    pub fn new(program: impl Into<PathBuf>, args: &[&dyn AsRef<OsStr>]) -> Proc {
        Proc {
            program: program.into(),
            args: args.iter().map(|a| a.as_ref().to_os_string()).collect(),
            env: Vec::new(),
        }
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Proc {
        self.env.push((k.into(), v.as_ref().to_os_string()));
        self
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).env_remove("SCUNBLOCK_READER");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Spawn, wait with `wait4`: wall time, the child's user+sys CPU and peak RSS. Its
    /// stdout goes to `out` (or /dev/null), stderr to `err`.
    pub fn measure(&self, out: Option<&Path>, err: &Path) -> Result<(Sample, ExitStatus), String> {
        let stdout = match out {
            Some(p) => Stdio::from(File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
            None => Stdio::null(),
        };
        let stderr = File::create(err).map_err(|e| format!("{}: {e}", err.display()))?;
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        let (status, ru) = wait4(&child)?;
        let wall = started.elapsed();
        let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
        Ok((
            Sample {
                wall_ms: wall.as_secs_f64() * 1000.0,
                cpu_ms: tv(ru.ru_utime) + tv(ru.ru_stime),
                rss_kib: ru.ru_maxrss as f64,
                apdu_ms: 0.0,
            },
            status,
        ))
    }

    /// `measure`, and fail with the command's stderr unless it exited 0.
    pub fn measure_ok(&self, out: Option<&Path>, err: &Path) -> Result<Sample, String> {
        let (s, status) = self.measure(out, err)?;
        if !status.success() {
            return Err(format!(
                "{} failed ({status}); stderr:\n{}",
                self.display(),
                fs::read_to_string(err).unwrap_or_default()
            ));
        }
        Ok(s)
    }
}

pub fn wait4(child: &Child) -> Result<(ExitStatus, libc::rusage), String> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data; zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own unwaited child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            return Ok((ExitStatus::from_raw(status), ru));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {e}"));
        }
    }
}

pub fn self_cpu_ms() -> f64 {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// SIGTERM, wait (SIGKILL after 5 s); the child's user+sys CPU in ms, its reaped children
/// included (wait4), when it ended by itself.
pub fn stop_child(child: &mut Child) -> Option<f64> {
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut cpu = None;
    while Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: rusage is plain old data; zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals; pid is our own child.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
            cpu = Some(tv(ru.ru_utime) + tv(ru.ru_stime));
            break;
        }
        if r < 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if cpu.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    helper_ended(child);
    cpu
}
