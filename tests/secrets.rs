//! Secret hygiene (docs/security.md): every command, with `-v --trace --json`, on success
//! and failure paths, never prints the admin key, the new PIN or the bearer token in any
//! form (hex, spaced hex, ASCII, base64: tests/common/secrets.rs); core dumps are off while
//! secrets are held; readable secret files are refused; no option takes a secret value.
//! The real binary against the virtual stack and the CM test server (needs root and
//! `cargo build --workspace`).

/// The binary's clap definition, included as the binary compiles it (the CLI is
/// not in the library); only the definition is walked here.
#[path = "../src/cli/args.rs"]
#[allow(dead_code)]
mod cli_args;
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cm::CmServer;
use common::run::{cryptograms, drain, scunblock, secret_file, Run, WRONG_KEY};
use common::stack::VStack;

/// The card's admin key: distinctive bytes, so any leak of it (or of an 8-byte half)
/// is found.
const KEY: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978";
const PIN: &str = "Zq7#Wm2!";
const TOKEN: &str = "eyJhbGciOiJub25lIn0.scunblock-secret-bearer-7f3a9c";
const CARDID: &str = "bc88f13f-83ba-4037-8262-46eba1291c6e";
const SCID: &str = "17cf063d-e337-4aa9-a822-346554ddd3c9";
const REQ: &str = "a9b4b42c-cc50-4c9b-89d1-bbc0bcd5a099";
const LOUD: [&str; 4] = ["-v", "--trace", "--json", "--wait-card=0"];

/// Every shape the secrets could take in output.
fn needles() -> Vec<String> {
    let key = hex::decode(KEY).unwrap();
    let mut v = common::secrets::forms(&key);
    // Each 8-byte part of the 3DES key on its own (K1, K2, K3).
    for part in key.chunks(8) {
        v.extend(common::secrets::forms(part));
    }
    v.extend(common::secrets::forms(PIN.as_bytes()));
    v.extend(common::secrets::forms(TOKEN.as_bytes()));
    v.push(TOKEN.to_string());
    v.push("scunblock-secret-bearer".to_string());
    v
}

fn assert_clean(what: &str, output: &str) {
    for n in needles() {
        assert!(!output.contains(&n), "{what}: leaked {n:?} in\n{output}");
    }
}

/// A stack with a blocked card whose key is KEY, and the secrets in 0600 files.
struct Setup {
    stack: VStack,
    dir: tempfile::TempDir,
    key_file: String,
    wrong_key_file: String,
    pin_file: String,
    token_file: String,
}

fn setup(card_args: &[&str]) -> (Setup, common::stack::Card) {
    let stack = VStack::start(2);
    let mut args = vec!["--admin-key", KEY, "--pin-tries", "0", "--pin-max-len", "8"];
    args.extend_from_slice(card_args);
    let card = stack.insert(0, &args);
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, content: &str| {
        secret_file(dir.path(), name, content.as_bytes())
            .display()
            .to_string()
    };
    let s = Setup {
        key_file: file("admin.key", &format!("{KEY}\n")),
        wrong_key_file: file("wrong.key", &format!("{WRONG_KEY}\n")),
        pin_file: file("pin.txt", &format!("{PIN}\n")),
        token_file: file("token.txt", &format!("{TOKEN}\n")),
        stack,
        dir,
    };
    (s, card)
}

impl Setup {
    /// Runs scunblock with LOUD + `args`, the secrets in the environment, and checks every
    /// output stream; returns the run for the caller's exit-code checks.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&LOUD);
        let r = scunblock(
            Some(&self.stack.csock()),
            &all,
            &[
                ("SC_KEY", KEY),
                ("SC_WRONG_KEY", WRONG_KEY),
                ("SC_PIN", PIN),
                ("SC_TOKEN", TOKEN),
            ],
            stdin,
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert_clean(&format!("scunblock {}", all.join(" ")), &r.all());
        r
    }
}

#[test]
fn local_key_commands_never_print_a_secret() {
    let (s, card) = setup(&[]);
    let k = s.key_file.as_str();
    let p = s.pin_file.as_str();
    // readers, info: nothing secret is loaded, but they print the card's data.
    s.run(&["readers"], None).expect(0);
    s.run(&["info"], None).expect(0);
    s.run(&["info", "--reader", "1"], None).expect(3);
    // Dry runs: the key is given (and loaded), nothing is authenticated.
    s.run(&["unblock", "--dry-run", "--admin-key-file", k], None)
        .expect(0);
    s.run(&["auth", "--dry-run", "--admin-key-env", "SC_KEY"], None)
        .expect(0);
    // Failures before the card: a PIN the profile refuses, a readable key file.
    let short = s.dir.path().join("short.toml");
    std::fs::write(&short, "pin_max_len = 6\n").unwrap();
    let r = s.run(
        &[
            "unblock",
            "--admin-key-file",
            k,
            "--new-pin-env",
            "SC_PIN",
            "--profile",
            short.to_str().unwrap(),
        ],
        None,
    );
    r.expect(2);
    let loose = secret_file(s.dir.path(), "loose.key", KEY.as_bytes());
    chmod(&loose, 0o644);
    s.run(&["auth", "--admin-key-file", loose.to_str().unwrap()], None)
        .expect(2);
    // A wrong key (exit 4), with the key from a variable.
    s.run(
        &[
            "unblock",
            "--admin-key-env",
            "SC_WRONG_KEY",
            "--new-pin-env",
            "SC_PIN",
        ],
        None,
    )
    .expect(4);
    s.run(&["auth", "--admin-key-file", &s.wrong_key_file], None)
        .expect(4);
    // auth, then unblock: success, key from a file and from a variable, PIN from a file
    // and from stdin.
    s.run(&["auth", "--admin-key-env", "SC_KEY"], None)
        .expect(0);
    s.run(
        &["unblock", "--admin-key-file", k, "--new-pin-file", p],
        None,
    )
    .expect(0);
    s.run(
        &["unblock", "--admin-key-env", "SC_KEY", "--new-pin-stdin"],
        Some(&format!("{PIN}\n")),
    )
    .expect(0);
    assert_eq!(card.state()["pin"], PIN);
    assert_eq!(card.state()["admin_tries"], 5);
}

#[test]
fn rejected_pin_and_removed_card_never_print_a_secret() {
    // RESET RETRY COUNTER refused (the card takes at most 6 bytes): exit 7.
    let (s, card) = setup(&["--pin-max-len", "6"]);
    s.run(
        &[
            "unblock",
            "--admin-key-file",
            &s.key_file,
            "--new-pin-env",
            "SC_PIN",
        ],
        None,
    )
    .expect(7);
    assert_eq!(card.state()["rrc"], 1);
    // The card vanishes after processing RESET RETRY COUNTER: exit 3.
    let (s, card) = setup(&["--vanish-after-ins", "2C"]);
    s.run(
        &[
            "unblock",
            "--admin-key-file",
            &s.key_file,
            "--new-pin-env",
            "SC_PIN",
        ],
        None,
    )
    .expect(3);
    assert_eq!(card.state()["pin"], PIN);
}

#[test]
fn manual_responses_never_print_a_secret() {
    let (s, card) = setup(&["--challenge", "d61143f9ccffd2ca"]);
    // The response to the fixed challenge under KEY, as a person would type it.
    let response = {
        use scunblock::admin_key::{AdminKey, Challenge, KeyAlg};
        let key = AdminKey::from_bytes(&hex::decode(KEY).unwrap()).unwrap();
        let c = Challenge::new(hex::decode("d61143f9ccffd2ca").unwrap());
        hex::encode(key.respond(KeyAlg::Tdes, &c).unwrap().as_bytes())
    };
    s.run(
        &["unblock", "--manual", "--new-pin-env", "SC_PIN"],
        Some("not a response\n"),
    )
    .expect(6);
    assert_eq!(cryptograms(&card.state()), 0);
    s.run(
        &["unblock", "--manual", "--new-pin-env", "SC_PIN"],
        Some(&format!("{response}\n")),
    )
    .expect(0);
    assert_eq!(card.state()["pin"], PIN);
}

#[test]
fn cm_with_a_bearer_token_never_prints_a_secret() {
    let (s, card) = setup(&["--challenge", "d61143f9ccffd2ca", "--pin-max-len", "16"]);
    let cm = CmServer::start(&["--require-bearer", TOKEN, "--default-key", KEY]);
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "unblock",
            "--cm",
            &cm.url,
            "--allow-http",
            "--card-id",
            CARDID,
            "--new-pin-env",
            "SC_PIN",
            "--cm-auth",
            "bearer",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let args = base(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        s.run(&refs, None)
    };
    // The server wants another token: 401, exit 6.
    let other = secret_file(s.dir.path(), "other.txt", b"not-the-token\n");
    run(&["--cm-token-file", other.to_str().unwrap()]).expect(6);
    // A readable token file is refused.
    let loose = secret_file(s.dir.path(), "loose-token.txt", TOKEN.as_bytes());
    chmod(&loose, 0o644);
    run(&["--cm-token-file", loose.to_str().unwrap()]).expect(2);
    // Success: the full workflow (smartcard lookup, request, approval), token from a
    // variable; then the docs' request by id, token from a file.
    run(&["--cm-token-env", "SC_TOKEN"]).expect(0);
    run(&[
        "--cm-token-file",
        &s.token_file,
        "--request-id",
        REQ,
        "--smartcard-id",
        SCID,
    ])
    .expect(0);
    assert_eq!(
        cryptograms(&card.state()),
        2,
        "one per successful run, none otherwise"
    );
    // A CM failure after the token was sent (500).
    let failing = CmServer::start(&["--require-bearer", TOKEN, "--fail-authresponse", "500"]);
    let r = s.run(
        &[
            "auth",
            "--cm",
            &failing.url,
            "--allow-http",
            "--card-id",
            CARDID,
            "--cm-token-env",
            "SC_TOKEN",
            "--request-id",
            REQ,
            "--smartcard-id",
            SCID,
        ],
        None,
    );
    r.expect(6);
    // The token did reach the server (it is the secret that must not show anywhere else).
    let sent = cm.requests();
    assert!(sent
        .iter()
        .any(|q| q["headers"].to_string().contains(TOKEN)));
}

#[test]
fn watch_never_prints_a_secret() {
    let (s, card) = setup(&[]);
    // The PIN comes from the kiosk front end; it also records what it inherited.
    let env_dump = s.dir.path().join("env.txt");
    let cmd = format!("env > {}; cat {}", env_dump.display(), s.pin_file);
    let mut child = spawn_loud(
        &s.stack,
        &[
            "watch",
            "--unblock",
            "--admin-key-env",
            "SC_KEY",
            "--new-pin-command",
            &cmd,
        ],
    );
    card.wait_state(Duration::from_secs(20), |st| st["pin"] == PIN);
    // A second card with another key: the failure path.
    let other = s.stack.insert(
        1,
        &[
            "--admin-key",
            WRONG_KEY,
            "--pin-tries",
            "0",
            "--pin-max-len",
            "8",
        ],
    );
    other.wait_state(Duration::from_secs(20), |st| st["ext_auth_with_data"] == 1);
    std::thread::sleep(Duration::from_millis(500));
    let out = stop(&mut child);
    out.stdout_has("unblock_succeeded");
    out.stdout_has("unblock_failed");
    assert_clean("scunblock watch", &out.all());
    let inherited = std::fs::read_to_string(&env_dump).unwrap();
    assert!(!inherited.contains("SC_KEY"), "{inherited}");
    assert_clean("the --new-pin-command environment", &inherited);
}

/// `scunblock ARGS -v --trace --json` in the background, secrets in the environment.
fn spawn_loud(stack: &VStack, args: &[&str]) -> Child {
    common::stack::scunblock()
        .args(args)
        .args(LOUD)
        .env_remove("SCUNBLOCK_READER")
        .env("PCSCLITE_CSOCK_NAME", stack.csock())
        .env("SC_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scunblock")
}

/// SIGTERM, then everything it printed.
fn stop(child: &mut Child) -> Run {
    // SAFETY: signals our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "watch did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    Run {
        code: child.wait().unwrap().code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn readable_secret_files_are_refused() {
    // No card needed: every file is checked before the card is touched.
    let dir = tempfile::tempdir().unwrap();
    let no_pcscd = dir.path().join("no-pcscd.comm");
    let key = secret_file(dir.path(), "k", KEY.as_bytes());
    let pin = secret_file(dir.path(), "p", PIN.as_bytes());
    let token = secret_file(dir.path(), "t", TOKEN.as_bytes());
    let (k, p, t) = (
        key.to_str().unwrap(),
        pin.to_str().unwrap(),
        token.to_str().unwrap(),
    );
    let run = |args: &[&str]| scunblock(Some(&no_pcscd), args, &[], None);
    for mode in [0o640, 0o604, 0o644, 0o660] {
        chmod(&key, mode);
        let r = run(&["auth", "--admin-key-file", k]);
        r.expect(2);
        r.stderr_has(&format!("has mode {mode:03o}"))
            .stderr_has("chmod 600")
            .stderr_has("--allow-insecure-key-file");
        // The override is explicit; it gets as far as the (absent) PC/SC service.
        run(&["auth", "--admin-key-file", k, "--allow-insecure-key-file"]).expect(3);

        chmod(&pin, mode);
        let r = run(&["unblock", "--admin-key-env", "K", "--new-pin-file", p]);
        r.expect(2);
        r.stderr_has("chmod 600")
            .stderr_has("--allow-insecure-pin-file");

        chmod(&token, mode);
        let r = run(&[
            "auth",
            "--cm",
            "https://cm.example",
            "--card-id",
            CARDID,
            "--cm-token-file",
            t,
        ]);
        r.expect(2);
        r.stderr_has("chmod 600");
        assert!(!r.stderr.contains("--allow-insecure"), "{}", r.stderr);
    }
    chmod(&key, 0o600);
    run(&["auth", "--admin-key-file", k]).expect(3);
    chmod(&key, 0o400);
    run(&["auth", "--admin-key-file", k]).expect(3);
}

#[test]
fn no_option_takes_a_secret_value() {
    use clap::CommandFactory;
    // Options whose name says key, PIN, PUK, token, password or secret may only name
    // where the secret is (a file, a variable, a command), never hold it.
    let secret_words = [
        "key", "pin", "puk", "token", "password", "secret", "response",
    ];
    // URI: --pkcs11-key names the key object in its token; a URI carrying the token PIN
    // (pin-value, pin-source) is refused with exit 2 (tests/pkcs11.rs). ALG: --key-alg.
    let where_names = ["PATH", "VAR", "PEM", "CMD", "SECS", "URI", "ALG"];
    let mut cli = cli_args::Cli::command();
    // The subcommands' arguments are deferred (args.rs): build them all.
    cli.build();
    let mut commands = vec![cli.clone()];
    commands.extend(cli.get_subcommands().cloned());
    let mut checked = 0;
    for cmd in &commands {
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let takes_value = arg.get_action().takes_values();
            let secretish = secret_words.iter().any(|w| long.contains(w));
            if takes_value && secretish {
                let names: Vec<String> = arg
                    .get_value_names()
                    .unwrap_or_default()
                    .iter()
                    .map(|n| n.to_string())
                    .collect();
                assert!(
                    names.iter().all(|n| where_names.contains(&n.as_str())),
                    "{} --{long} <{}> could carry a secret on the command line",
                    cmd.get_name(),
                    names.join(" ")
                );
                checked += 1;
            }
            // No option whose whole name is a secret.
            assert!(
                ![
                    "admin-key",
                    "key",
                    "pin",
                    "new-pin",
                    "puk",
                    "token",
                    "cm-token",
                    "password",
                    "response"
                ]
                .contains(&long),
                "{} --{long}",
                cmd.get_name()
            );
        }
    }
    assert!(checked >= 6, "only {checked} secret-source options found");
    // The same, as a person sees it: every command's --help.
    for name in ["readers", "info", "unblock", "auth", "watch"] {
        let out = Command::new(env!("CARGO_BIN_EXE_scunblock"))
            .args([name, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for line in help.lines() {
            let line = line.trim_start();
            if let Some(opt) = line.strip_prefix("--") {
                let (flag, rest) = opt.split_once(' ').unwrap_or((opt, ""));
                let value = rest.trim_start();
                if value.starts_with('<') && secret_words.iter().any(|w| flag.contains(w)) {
                    let v = value.trim_start_matches('<');
                    let v = &v[..v.find('>').unwrap_or(v.len())];
                    assert!(where_names.contains(&v), "{name} --help: {line}");
                }
            }
        }
    }
}

/// Core dumps are off while a secret is held: the process is not dumpable, which Linux
/// shows by making its /proc/PID files root's, so another process of the SAME user cannot
/// read its memory or its environment (where --admin-key-env's value still sits in the
/// initial environment block). Run as `nobody` to see the difference.
#[test]
fn core_dumps_are_off_while_a_secret_is_held() {
    const NOBODY: u32 = 65534;
    let bin = env!("CARGO_BIN_EXE_scunblock");
    let can = if runs_as(NOBODY, bin) {
        Ok(())
    } else {
        Err(format!("uid {NOBODY} cannot run {bin}"))
    };
    if common::require("core dumps test", can).is_none() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    // Waits on stdin for the new PIN, the admin key in its environment.
    let mut child = Command::new(bin)
        .args(["unblock", "--admin-key-env", "SC_KEY", "--new-pin-stdin"])
        .env("SC_KEY", KEY)
        .env_remove("PCSCLITE_CSOCK_NAME")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let control = Command::new("sleep")
        .arg("30")
        .env("SC_KEY", KEY)
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn();
    let pid = child.id();
    let status = format!("/proc/{pid}/status");
    // It runs as nobody, and its /proc entries turn root's once it dropped dumpability.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let uid_line = std::fs::read_to_string(&status)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .map(str::to_string)
            .unwrap();
        assert!(uid_line.contains(&NOBODY.to_string()), "{uid_line}");
        if std::fs::metadata(&status).unwrap().uid() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still dumpable: {status} is nobody's"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Another process of the same user cannot read its environment.
    let environ = format!("/proc/{pid}/environ");
    assert!(
        !reads_as(NOBODY, &environ),
        "uid {NOBODY} read {environ} of a process holding a secret"
    );
    // A dumpable process of that user, for contrast: its environ is readable.
    if let Ok(mut control) = control {
        let theirs = format!("/proc/{}/environ", control.id());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            std::fs::metadata(format!("/proc/{}/status", control.id()))
                .unwrap()
                .uid(),
            NOBODY
        );
        assert!(reads_as(NOBODY, &theirs), "the control process");
        let _ = control.kill();
        let _ = control.wait();
    }
    // Finish the run (the PIN is given; there is no pcscd: exit 3).
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PIN}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_clean("unblock as nobody", &String::from_utf8_lossy(&out.stderr));
}

/// `cat FILE` as `uid` succeeds.
fn reads_as(uid: u32, file: &str) -> bool {
    use std::os::unix::process::CommandExt;
    Command::new("cat")
        .arg(file)
        .uid(uid)
        .gid(uid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `bin --version` runs as `uid` (the target directory may not be reachable for it).
fn runs_as(uid: u32, bin: &str) -> bool {
    use std::os::unix::process::CommandExt;
    Command::new(bin)
        .arg("--version")
        .uid(uid)
        .gid(uid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// --- no unzeroized copies of a secret on the heap --------------------------------------------

/// A global allocator for this test binary that, on the threads that ask for it, looks
/// into every block freed for a secret's bytes: a secret type is only as good as the
/// copies made while building it (a `Vec` that grows frees its old buffer unzeroized).
mod residue {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Scanning;

    thread_local! {
        static PATTERN: Cell<([u8; 32], usize)> = const { Cell::new(([0; 32], 0)) };
        static FOUND: Cell<usize> = const { Cell::new(0) };
    }

    // SAFETY: System does the allocating; every block is zeroed when handed out, so the
    // scan on free reads initialized bytes of a block we still own.
    unsafe impl GlobalAlloc for Scanning {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            System.alloc_zeroed(layout)
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            System.alloc_zeroed(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let (pattern, n) = PATTERN.try_with(Cell::get).unwrap_or(([0; 32], 0));
            if n > 0 && layout.size() >= n {
                let block = std::slice::from_raw_parts(ptr, layout.size());
                if block.windows(n).any(|w| w == &pattern[..n]) {
                    let _ = FOUND.try_with(|f| f.set(f.get() + 1));
                }
            }
            System.dealloc(ptr, layout)
        }
    }

    /// Runs `f` (on this thread) and counts the freed blocks that held `secret`.
    pub fn freed_copies<R>(secret: &[u8], f: impl FnOnce() -> R) -> (R, usize) {
        let mut pattern = [0u8; 32];
        pattern[..secret.len()].copy_from_slice(secret);
        FOUND.with(|c| c.set(0));
        PATTERN.with(|p| p.set((pattern, secret.len())));
        let r = f();
        PATTERN.with(|p| p.set(([0; 32], 0)));
        (r, FOUND.with(Cell::get))
    }
}

#[global_allocator]
static SCANNING: residue::Scanning = residue::Scanning;

#[test]
fn no_unzeroized_copies_of_keys_or_pins_are_freed() {
    use scunblock::admin_key::{AdminKey, Challenge, KeyAlg};
    use scunblock::profile::CardProfile;
    use scunblock::secret::Pin;
    use zeroize::Zeroizing;

    // The scanner sees an ordinary Vec's copy.
    let (_, found) = residue::freed_copies(b"8f1e2d3c4b5a6978", || {
        drop(b"--8f1e2d3c4b5a6978--".to_vec());
    });
    assert_eq!(found, 1, "the scanner works");

    // The admin key as a file or variable holds it: hex text, spaced or not.
    for text in [
        format!("{KEY}\n"),
        format!("0x{}\r\n", KEY.to_uppercase()),
        KEY.as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" "),
    ] {
        let text = Zeroizing::new(text);
        for needle in [&KEY.as_bytes()[..16], &KEY.as_bytes()[32..]] {
            let (_, found) = residue::freed_copies(needle, || {
                let key = AdminKey::parse(text.as_bytes()).unwrap();
                // The scrubber's copies of the key's forms are zeroizing too.
                key.register_for_scrubbing();
                key.respond(KeyAlg::Tdes, &Challenge::new(vec![0; 8]))
                    .unwrap();
                key.check_value(KeyAlg::Tdes);
            });
            assert_eq!(
                found, 0,
                "freed copies of the key's digits parsing {text:?}"
            );
        }
        let raw = hex::decode(KEY).unwrap();
        let (_, found) = residue::freed_copies(&raw[..12], || {
            AdminKey::parse(text.as_bytes()).unwrap();
        });
        assert_eq!(found, 0, "freed copies of the key's bytes");
    }

    // The new PIN, as RESET RETRY COUNTER carries it (FF-padded to 8 or not).
    let ff8 = CardProfile::from_toml("pin_padding = \"ff8\"\npin_charset = \"digits\"").unwrap();
    for profile in [CardProfile::iso(), ff8] {
        let (_, found) = residue::freed_copies(b"730519", || {
            let pin = Pin::new(Zeroizing::new(b"730519".to_vec()));
            pin.register_for_scrubbing();
            profile.check_pin(&pin).unwrap();
            let block = profile.pin_block(&pin);
            let cmd = scunblock::apdu::Command::new(0, 0x2C, 2, 0x80).sensitive(block);
            drop(cmd.to_bytes());
        });
        assert_eq!(found, 0, "freed copies of the PIN ({})", profile.name);
    }
}
