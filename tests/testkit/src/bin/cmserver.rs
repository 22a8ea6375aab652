//! scunblock-cmserver: a MIM CM REST API test server on loopback.
//!
//! It serves the part of /CertificateManagement/api/v1.0 that an unblock needs (smart card
//! lookup, operations, Unblock requests and their status, the Base CSP authentication
//! response) with the answers of a real CM as far as the public docs describe them, plus fault
//! injection, a JSON-lines request log, TLS (optionally mutual), and bearer / Negotiate gates.
//! `--help` lists the options. Layout: `cli` (options), `http` (HTTP/1.1 + keep-alive),
//! `tls`, `routes` (paths and queries), `api` (handlers), `state` (cards and requests),
//! `keys` (key store and 3DES), `faults`, `log`, `util`.

#[path = "cmserver/api.rs"]
mod api;
#[path = "cmserver/cli.rs"]
mod cli;
#[path = "cmserver/faults.rs"]
mod faults;
#[path = "cmserver/http.rs"]
mod http;
#[path = "cmserver/keys.rs"]
mod keys;
#[path = "cmserver/log.rs"]
mod log;
#[path = "cmserver/negotiate.rs"]
mod negotiate;
#[path = "cmserver/routes.rs"]
mod routes;
#[path = "cmserver/state.rs"]
mod state;
#[path = "cmserver/tls.rs"]
mod tls;
#[path = "cmserver/util.rs"]
mod util;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

/// Connections served at once; more are closed at accept (a test server, not a product).
const MAX_CONNECTIONS: usize = 512;

/// Write a diagnostic to stderr, never panicking if stderr is gone.
fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "scunblock-cmserver: {msg}");
}

/// Block SIGTERM/SIGINT/SIGHUP in every thread (threads inherit the mask) and wait for them
/// in one thread, which then exits the process with status 0. No async-signal-safety
/// concerns: the signal is taken synchronously with sigwait.
fn exit_on_signals() {
    // SAFETY: plain libc calls on a local, zero-initialized sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            loop {
                if libc::sigwait(&set, &mut sig) == 0 {
                    std::process::exit(0);
                }
            }
        });
    }
}

fn main() -> ExitCode {
    // Usage errors and --help: clap prints and exits (2 on errors).
    let config = cli::from_args();
    // Before any other thread exists, so that all of them inherit the blocked mask.
    exit_on_signals();
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note(&format!("{e:#}"));
            ExitCode::from(2)
        }
    }
}

/// Sets up (a failure here is the error, with what was being set up as its context), then
/// accepts connections until the process is told to exit.
fn serve(config: cli::Config) -> anyhow::Result<()> {
    let tls = match &config.tls {
        None => None,
        Some(t) => Some(
            tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())
                .map_err(anyhow::Error::msg)
                .context("TLS")?,
        ),
    };
    let negotiate = match &config.auth.negotiate {
        None => None,
        Some(o) => Some(
            negotiate::Gate::new(o, config.tls.as_ref().map(|t| t.cert.as_path()))
                .map_err(anyhow::Error::msg)
                .context("Negotiate")?,
        ),
    };
    let log = log::RequestLog::open(config.log.as_deref()).context("--log")?;
    let listener = TcpListener::bind(&config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("local address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(p) = &config.port_file {
        // Written to a temporary name and renamed: a reader never sees half a number.
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", addr.port()))
            .and_then(|_| std::fs::rename(&tmp, p))
            .with_context(|| format!("--port-file {}", p.display()))?;
    }

    let app = Arc::new(api::App {
        state: Mutex::new(config.state),
        keys: config.keys,
        faults: config.faults,
        auth: config.auth,
        negotiate,
        lenient: config.lenient,
        log,
        scheme,
    });

    {
        let mut out = std::io::stdout().lock();
        // SocketAddr's Display brackets IPv6 addresses, as a URL needs.
        let _ = writeln!(out, "listening on {scheme}://{addr}");
        let _ = out.flush();
    }

    if config.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            std::process::exit(0);
        });
    }

    let next_id = AtomicU64::new(1);
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let tcp = match stream {
            Ok(s) => s,
            Err(e) => {
                note(&format!("accept: {e}"));
                // EMFILE and the like: do not spin.
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            note("too many connections; closing a new one");
            continue;
        }
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        let app = Arc::clone(&app);
        let tls = tls.clone();
        let active_here = Arc::clone(&active);
        active.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{id}"))
            .spawn(move || {
                if let Err(e) = http::serve_connection(tcp, id, tls, app.as_ref()) {
                    // Handshake failures and resets end up here: worth a line when debugging
                    // TLS, harmless otherwise.
                    if e.kind() != std::io::ErrorKind::UnexpectedEof {
                        note(&format!("connection {id}: {e}"));
                    }
                }
                active_here.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            note(&format!("cannot start a connection thread: {e}"));
        }
    }
    Ok(())
}
