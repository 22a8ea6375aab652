//! Helper commands of the kiosk front end (`--new-pin-command`,
//! `--card-id-command`): run through the shell with the card's details in
//! the environment; their stdout is the answer.
//!
//! The output is read into a zeroizing buffer of bounded size. The command
//! runs in its own process group (Unix) so a timeout or a removed card ends
//! it and anything it started. It never sees the admin key or the CM token:
//! `secret::read` removes the variables it read from our environment, and
//! [`Spec::hidden_env`] removes them again from the child's, by name.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zeroize::{Zeroize, Zeroizing};

/// The most a command may print (a PIN or a GUID is far shorter).
const MAX_OUTPUT: usize = 4096;
/// How often the child is polled: from 1 ms doubling to 20 ms while it runs
/// (its stdout closing wakes the wait at once), from 50 µs once its stdout
/// has closed (the exit follows within microseconds).
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_AFTER_EOF: Duration = Duration::from_micros(50);
const POLL_MAX: Duration = Duration::from_millis(20);

/// Why a command gave no answer.
#[derive(Debug)]
pub enum Failure {
    /// It could not be started.
    Spawn(String),
    /// It exited unsuccessfully (or printed too much).
    Failed(String),
    /// It ran longer than allowed and was killed.
    TimedOut(Duration),
    /// It was stopped because `stop` asked for it; the reason given.
    Stopped(&'static str),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Spawn(e) => write!(f, "cannot start it: {e}"),
            Failure::Failed(s) => f.write_str(s),
            Failure::TimedOut(d) => write!(f, "no answer within {} s; it was killed", d.as_secs()),
            Failure::Stopped(why) => write!(f, "stopped: {why}"),
        }
    }
}

/// What to run and how.
pub struct Spec<'a> {
    pub command: &'a str,
    pub env: Vec<(&'static str, Option<String>)>,
    /// Variables the child must not inherit (secrets' names).
    pub hidden_env: &'a [String],
    pub timeout: Duration,
}

/// Run the command; its stdout on success (exit 0). `stop` is polled while
/// it runs: `Some(reason)` kills it.
pub fn run(
    spec: &Spec<'_>,
    stop: &dyn Fn() -> Option<&'static str>,
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut cmd = shell(spec.command);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for name in spec.hidden_env {
        cmd.env_remove(name);
    }
    for (name, value) in &spec.env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().map_err(|e| Failure::Spawn(e.to_string()))?;
    let stdout = child.stdout.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = match stdout {
            Some(mut out) => read_bounded(&mut out),
            None => Err(()),
        };
        let _ = tx.send(result);
    });

    // Wait for the exit, waking as soon as the command closes its stdout (it
    // has exited, or is about to): a quick command costs no polling delay.
    let deadline = Instant::now() + spec.timeout;
    let mut poll = POLL_FIRST;
    let mut output = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill(&mut child);
                return Err(Failure::Failed(format!("cannot wait for it: {e}")));
            }
        }
        if let Some(why) = stop() {
            kill(&mut child);
            return Err(Failure::Stopped(why));
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            return Err(Failure::TimedOut(spec.timeout));
        }
        if output.is_some() {
            std::thread::sleep(poll);
        } else {
            match rx.recv_timeout(poll) {
                Ok(r) => {
                    output = Some(r);
                    poll = POLL_AFTER_EOF;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => output = Some(Err(())),
            }
        }
        poll = (poll * 2).min(POLL_MAX);
    };
    // Something it started may still hold stdout open: end its group.
    let output = match output {
        Some(r) => r,
        None => match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(r) => r,
            Err(_) => {
                kill_group(&child);
                rx.recv_timeout(Duration::from_secs(1)).unwrap_or(Err(()))
            }
        },
    };
    if !status.success() {
        return Err(Failure::Failed(describe(status)));
    }
    output.map_err(|()| {
        Failure::Failed(format!(
            "its output could not be read, or is longer than {MAX_OUTPUT} bytes"
        ))
    })
}

/// `/bin/sh -c CMD`; but a plain path with plain arguments (no quoting,
/// variables, globbing, redirection or other shell syntax) is executed
/// directly, as the shell would, with one process fewer (as `make` does).
#[cfg(unix)]
fn shell(command: &str) -> Command {
    if let Some(words) = plain_words(command) {
        let mut c = Command::new(words[0]);
        c.args(&words[1..]);
        return c;
    }
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(command);
    c
}

/// The words of a command the shell would run unchanged: the first one a
/// path (it has a `/`, so no builtin, keyword, function or PATH search, and
/// no `=`, so no variable assignment), and every character free of meaning
/// to the shell.
#[cfg(unix)]
fn plain_words(command: &str) -> Option<Vec<&str>> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !command.chars().all(|c| plain(c) || c == ' ' || c == '\t') {
        return None;
    }
    let words: Vec<&str> = command
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect();
    let first = words.first()?;
    (first.contains('/') && !first.contains('=')).then_some(words)
}

#[cfg(windows)]
fn shell(command: &str) -> Command {
    use std::os::windows::process::CommandExt;
    let mut c = Command::new("cmd");
    // The command line is passed as is, quoting and all, as cmd /C expects it.
    c.arg("/C").raw_arg(command);
    c
}

#[cfg(not(any(unix, windows)))]
fn shell(command: &str) -> Command {
    Command::new(command)
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("it was killed by signal {sig}");
        }
    }
    match status.code() {
        Some(c) => format!("it exited with status {c}"),
        None => "it failed".to_string(),
    }
}

fn read_bounded(out: &mut impl Read) -> Result<Zeroizing<Vec<u8>>, ()> {
    let mut buf = [0u8; 512];
    // Capacity for everything allowed plus one chunk: no reallocation leaves
    // a copy of the secret behind.
    let mut data = Zeroizing::new(Vec::with_capacity(MAX_OUTPUT + buf.len()));
    let mut too_long = false;
    let result = loop {
        match out.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) if data.len() + n <= MAX_OUTPUT => data.extend_from_slice(&buf[..n]),
            // Keep draining so the command does not block on a full pipe.
            Ok(_) => too_long = true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break Err(()),
        }
    };
    buf.zeroize();
    if too_long {
        return Err(());
    }
    result.map(|()| data)
}

fn kill(child: &mut Child) {
    kill_group(child);
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(unix)]
fn kill_group(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: signals the process group we created for this child.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

#[cfg(not(unix))]
fn kill_group(_child: &Child) {}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn spec(command: &str, timeout_ms: u64) -> Spec<'_> {
        Spec {
            command,
            env: vec![
                ("SCUNBLOCK_READER", Some("Reader 0".into())),
                ("SCUNBLOCK_CARD_ID", None),
            ],
            hidden_env: &[],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn never() -> Option<&'static str> {
        None
    }

    #[test]
    fn stdout_is_the_answer_and_the_env_is_set() {
        let out = run(
            &spec(
                "printf '%s:%s' \"$SCUNBLOCK_READER\" \"${SCUNBLOCK_CARD_ID-unset}\"",
                20_000,
            ),
            &never,
        )
        .unwrap();
        assert_eq!(&out[..], b"Reader 0:unset");
    }

    #[test]
    fn only_a_plain_path_skips_the_shell() {
        assert_eq!(plain_words("./pin.sh"), Some(vec!["./pin.sh"]));
        assert_eq!(
            plain_words(" /usr/lib/kiosk-pin  --card\tA-1 x=y "),
            Some(vec!["/usr/lib/kiosk-pin", "--card", "A-1", "x=y"])
        );
        for shell_syntax in [
            "pin.sh",
            "echo 1234",
            "exec ./pin.sh",
            "A=/x ./pin.sh",
            "./pin.sh > /tmp/x",
            "./pin.sh; rm x",
            "./pin.sh $HOME",
            "./pin.sh '1 2'",
            "./pin.sh \\x",
            "./pin.sh *",
            "./pin.sh ~/x",
            "./pin.sh # note",
            "./pin.sh\n./other",
            "./pin.sh | cat",
            "./pin.sh &",
            "",
        ] {
            assert_eq!(plain_words(shell_syntax), None, "{shell_syntax:?}");
        }
    }

    #[test]
    fn a_plain_path_runs_directly_with_its_arguments() {
        let dir = std::env::temp_dir().join(format!("scunblock-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("pin.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf '%s|%s' \"$1\" \"$SCUNBLOCK_READER\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let cmd = format!("{} a=b", script.display());
        let out = run(&spec(&cmd, 20_000), &never).unwrap();
        assert_eq!(&out[..], b"a=b|Reader 0");
        // Not executable, or missing: the same failure class as through the shell.
        let missing = format!("{}/nothing-here", dir.display());
        let e = run(&spec(&missing, 20_000), &never).unwrap_err();
        assert!(matches!(e, Failure::Spawn(_)), "{e:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_command_that_closes_stdout_early_still_gets_its_exit_status() {
        let e = run(
            &spec("echo 1234; exec >&-; sleep 0.2; exit 4", 20_000),
            &never,
        )
        .unwrap_err();
        assert!(
            matches!(&e, Failure::Failed(s) if s.contains("status 4")),
            "{e:?}"
        );
    }

    #[test]
    fn a_failing_command_is_a_failure() {
        let e = run(&spec("echo 1234; exit 3", 20_000), &never).unwrap_err();
        assert!(
            matches!(&e, Failure::Failed(s) if s.contains("status 3")),
            "{e:?}"
        );
    }

    #[test]
    fn a_slow_command_times_out_with_its_children() {
        let started = Instant::now();
        let e = run(&spec("sleep 30 & sleep 30; echo 1234", 200), &never).unwrap_err();
        assert!(matches!(e, Failure::TimedOut(_)), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn stop_kills_it() {
        let e = run(&spec("sleep 30", 60_000), &|| Some("the card was removed")).unwrap_err();
        assert!(matches!(e, Failure::Stopped(_)), "{e:?}");
    }

    #[test]
    fn too_much_output_is_refused() {
        let e = run(&spec("head -c 10000 /dev/zero", 20_000), &never).unwrap_err();
        assert!(matches!(e, Failure::Failed(_)), "{e:?}");
    }

    #[test]
    fn hidden_variables_are_not_inherited() {
        std::env::set_var("SCUNBLOCK_TEST_HIDDEN_SECRET", "s3cr3t");
        let hidden = vec!["SCUNBLOCK_TEST_HIDDEN_SECRET".to_string()];
        let mut s = spec(
            "printf '%s' \"${SCUNBLOCK_TEST_HIDDEN_SECRET-none}\"",
            20_000,
        );
        s.hidden_env = &hidden;
        assert_eq!(&run(&s, &never).unwrap()[..], b"none");
    }
}
