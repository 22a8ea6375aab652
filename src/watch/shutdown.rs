//! Stopping the watcher: SIGTERM/SIGINT (Unix) or a console control event
//! (Windows) set one flag, wake the PC/SC wait with `SCardCancel` and any
//! backoff sleep.
//!
//! Unix: [`block_signals`] blocks SIGTERM and SIGINT in the calling thread
//! before any other thread exists, so every later thread inherits the mask
//! and the signals wait for one dedicated thread in `sigwait` (no work in a
//! signal handler). Child processes get a clean mask (std resets it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use pcsc::Context;

/// The stop flag, and how to wake whoever waits.
#[derive(Default)]
pub struct Shutdown {
    flag: AtomicBool,
    /// The shutdown timeout passed: stop helper commands too.
    aborted: AtomicBool,
    /// The watcher's PC/SC context, to cancel its status-change wait.
    context: Mutex<Option<Context>>,
    /// Wakes backoff sleeps.
    sleepers: Condvar,
    sleep_lock: Mutex<()>,
}

impl Shutdown {
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// Ask everything to stop; wakes the PC/SC wait and backoff sleeps.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.wake();
        let _g = self.sleep_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.sleepers.notify_all();
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The wait for flows in progress is over: end what can still be ended
    /// (helper commands).
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Cancel the watcher's current status-change wait (if any).
    pub fn wake(&self) {
        let ctx = self.context.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = ctx.as_ref() {
            let _ = c.cancel();
        }
    }

    /// The context [`Shutdown::wake`] cancels.
    pub fn set_context(&self, ctx: Option<Context>) {
        *self.context.lock().unwrap_or_else(|p| p.into_inner()) = ctx;
    }

    /// Sleep up to `d`; returns early (true) when asked to stop.
    pub fn sleep(&self, d: Duration) -> bool {
        let guard = self.sleep_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_set() {
            return true;
        }
        let _ = self
            .sleepers
            .wait_timeout_while(guard, d, |_| !self.is_set())
            .unwrap_or_else(|p| p.into_inner());
        self.is_set()
    }
}

/// Block SIGTERM and SIGINT in this thread (and so in every thread it starts
/// from now on). Call first, before anything can start a thread.
#[cfg(unix)]
pub fn block_signals() {
    // SAFETY: sigset operations on a local set; pthread_sigmask changes only
    // this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(not(unix))]
pub fn block_signals() {}

/// Start listening for SIGTERM/SIGINT (Unix; [`block_signals`] must have run
/// first) or console control events (Windows); each triggers `shutdown`.
#[cfg(unix)]
pub fn listen(shutdown: Arc<Shutdown>) {
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: a local set; sigwait writes the signal number into `sig`.
            let rc = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::sigaddset(&mut set, libc::SIGINT);
                libc::sigwait(&set, &mut sig)
            };
            if rc != 0 {
                continue;
            }
            let name = if sig == libc::SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
            };
            crate::log::warn(format!(
                "{name}: taking no new cards; waiting for the flows in progress"
            ));
            shutdown.trigger();
        });
    if let Err(e) = spawned {
        crate::log::warn(format!("cannot listen for signals: {e}"));
    }
}

#[cfg(windows)]
pub fn listen(shutdown: Arc<Shutdown>) {
    use std::sync::OnceLock;
    static TARGET: OnceLock<Arc<Shutdown>> = OnceLock::new();

    type Handler = unsafe extern "system" fn(u32) -> i32;
    #[link(name = "kernel32")]
    extern "system" {
        fn SetConsoleCtrlHandler(handler: Option<Handler>, add: i32) -> i32;
    }
    // Runs on a thread of its own (Windows starts one per event).
    unsafe extern "system" fn on_ctrl(_event: u32) -> i32 {
        if let Some(s) = TARGET.get() {
            crate::log::warn("stop requested: waiting for the flows in progress");
            s.trigger();
        }
        1
    }
    let _ = TARGET.set(shutdown);
    // SAFETY: registers a handler with the signature Windows expects.
    if unsafe { SetConsoleCtrlHandler(Some(on_ctrl), 1) } == 0 {
        crate::log::warn("cannot install the console control handler");
    }
}

#[cfg(not(any(unix, windows)))]
pub fn listen(_shutdown: Arc<Shutdown>) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn trigger_wakes_a_sleeper() {
        let s = Shutdown::new();
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        s.trigger();
        assert!(t.join().unwrap());
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(s.sleep(Duration::from_secs(30)), "set stays set");
    }

    #[test]
    fn sleep_times_out_without_a_trigger() {
        let s = Shutdown::new();
        assert!(!s.sleep(Duration::from_millis(10)));
    }
}
