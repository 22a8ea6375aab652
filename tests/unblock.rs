//! The real binary against a real pcscd + vpcd + our virtual Base CSP card.
//! Needs root (private namespaces) and the packages `scripts/vstack install` brings.

mod common;

use common::rig::BLOCKED;
use common::run::{
    admin_key_file, apdus, cryptograms, scunblock, secret_file, unblock_args, Run, GOLDEN_RESPONSE,
    ZERO_KEY,
};
use common::stack::VStack;

const PIN: &str = "Ab3$x9Qz";

struct Bench {
    stack: VStack,
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            stack: VStack::start(2),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn key(&self, hex: &str) -> String {
        admin_key_file(self.dir.path(), hex)
    }

    /// `unblock --admin-key-file KEY --new-pin-env NEW_PIN EXTRA...`
    fn unblock(&self, key_path: &str, extra: &[&str]) -> Run {
        let mut args = unblock_args(key_path);
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[("NEW_PIN", PIN)], None)
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        scunblock(Some(&self.stack.csock()), args, env, stdin)
    }
}

fn blocked_card() -> Vec<&'static str> {
    BLOCKED.to_vec()
}

#[test]
fn golden_vector_unblocks_a_blocked_card() {
    let b = Bench::new();
    let card = b.stack.insert(0, &blocked_card());
    let key = b.key(ZERO_KEY);
    let r = b.unblock(&key, &["--json"]);
    r.expect(0);
    let doc = r.json();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["pin_reset"], true);
    assert_eq!(doc["pin_tries_before"], 0);
    assert_eq!(doc["pin_tries_after"], 3);
    assert_eq!(doc["admin_tries"], 5, "as read before the authentication");
    let state = card.state();
    let log = apdus(&state);
    assert!(
        log.contains(&format!("0082000008{GOLDEN_RESPONSE}")),
        "{log:?}"
    );
    assert_eq!(cryptograms(&state), 1);
    assert_eq!(state["pin"], PIN);
    assert_eq!(state["pin_tries"], 3);
    assert_eq!(state["admin_tries"], 5);
    // ATR, tries, challenge, response, new PIN, tries: in this order.
    let ins: Vec<&str> = log.iter().map(|a| &a[2..4]).collect();
    assert_eq!(ins, ["82", "20", "84", "82", "2c", "20"]);
}

#[test]
fn wrong_key_spends_exactly_one_try() {
    let b = Bench::new();
    let card = b.stack.insert(0, &blocked_card());
    // Not "01" * 24: DES ignores parity bits, so that is the zero key again.
    let key = b.key(&"0123456789abcdef".repeat(3));
    let r = b.unblock(&key, &[]);
    r.expect(4);
    r.stderr_has("4 admin tries left");
    let state = card.state();
    assert_eq!(state["admin_tries"], 4);
    assert_eq!(cryptograms(&state), 1);
    assert_eq!(state["rrc"], 0);
    assert_eq!(state["pin_tries"], 0, "PIN untouched");
}

#[test]
fn blocked_admin_key_exits_5_without_a_cryptogram() {
    let b = Bench::new();
    let card = b
        .stack
        .insert(0, &["--admin-tries", "0", "--pin-tries", "0"]);
    let r = b.unblock(&b.key(ZERO_KEY), &[]);
    r.expect(5);
    r.stderr_has("blocked");
    let state = card.state();
    assert_eq!(cryptograms(&state), 0);
    assert!(
        !apdus(&state).iter().any(|a| a.starts_with("0084")),
        "no challenge asked"
    );
}

#[test]
fn last_admin_try_needs_the_flag() {
    let b = Bench::new();
    let card = b
        .stack
        .insert(0, &["--admin-tries", "1", "--pin-tries", "0"]);
    let key = b.key(ZERO_KEY);
    let r = b.unblock(&key, &[]);
    r.expect(5);
    r.stderr_has("--force-last-try");
    assert_eq!(cryptograms(&card.state()), 0);
    let r = b.unblock(&key, &["--force-last-try"]);
    r.expect(0);
    r.stderr_has("LAST admin try");
    assert_eq!(card.state()["admin_tries"], 5);
}

#[test]
fn t0_card_with_get_response_chaining() {
    let b = Bench::new();
    let card = b
        .stack
        .insert(0, &["--t0", "--t0-chunk", "3", "--pin-tries", "0"]);
    let r = b.unblock(&b.key(ZERO_KEY), &["--trace"]);
    r.expect(0);
    let log = apdus(&card.state());
    assert!(
        log.iter().filter(|a| a.starts_with("00c00000")).count() >= 3,
        "{log:?}"
    );
    assert_eq!(card.state()["pin"], PIN);
}

#[test]
fn wrong_le_is_resent_once() {
    let b = Bench::new();
    let card = b.stack.insert(0, &["--sw6c", "--pin-tries", "0"]);
    b.unblock(&b.key(ZERO_KEY), &[]).expect(0);
    let log = apdus(&card.state());
    assert_eq!(
        log.iter().filter(|a| a.starts_with("0084")).count(),
        2,
        "{log:?}"
    );
}

#[test]
fn card_removed_after_get_challenge_exits_3() {
    let b = Bench::new();
    // APDUs: admin tries, PIN tries, GET CHALLENGE, then the 4th (EXTERNAL
    // AUTHENTICATE) finds the card gone.
    let card = b
        .stack
        .insert(0, &["--vanish-after", "4", "--pin-tries", "0"]);
    let r = b.unblock(&b.key(ZERO_KEY), &[]);
    r.expect(3);
    r.stderr_has("removed");
    let state = card.state();
    assert_eq!(
        state["admin_tries"], 5,
        "the vanished EXTERNAL AUTHENTICATE was never processed"
    );
    assert_eq!(state["rrc"], 0);
}

#[test]
fn bad_input_exits_2_and_the_card_receives_nothing() {
    let b = Bench::new();
    let card = b.stack.insert(0, &["--pin-tries", "0"]);
    let key = b.key(ZERO_KEY);
    let short_key = secret_file(b.dir.path(), "short.key", b"0000000000000000000000\n");
    let loose = secret_file(b.dir.path(), "loose.key", ZERO_KEY.as_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let short = short_key.display().to_string();
    let loose = loose.display().to_string();
    type Case<'a> = (Vec<&'a str>, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (unblock_args(&short), "hex digits", vec![("NEW_PIN", PIN)]),
        (
            unblock_args("/nonexistent/key"),
            "cannot read",
            vec![("NEW_PIN", PIN)],
        ),
        (unblock_args(&loose), "chmod 600", vec![("NEW_PIN", PIN)]),
        (
            vec![
                "unblock",
                "--admin-key-env",
                "NO_SUCH_VAR",
                "--new-pin-env",
                "NEW_PIN",
            ],
            "not set",
            vec![("NEW_PIN", PIN)],
        ),
        (unblock_args(&key), "4 to 8", vec![("NEW_PIN", "123")]),
        (unblock_args(&key), "printable", vec![("NEW_PIN", "12\t45")]),
        (
            vec!["unblock", "--admin-key-file", &key],
            "--new-pin-env",
            vec![],
        ),
        (
            vec!["unblock", "--new-pin-env", "NEW_PIN"],
            "--admin-key-file",
            vec![("NEW_PIN", PIN)],
        ),
        (
            [unblock_args(&key), vec!["--reader", "no such reader"]].concat(),
            "no reader matches",
            vec![("NEW_PIN", PIN)],
        ),
        (
            [unblock_args(&key), vec!["--card-id", "../x"]].concat(),
            "not a GUID",
            vec![("NEW_PIN", PIN)],
        ),
        (
            vec![
                "unblock",
                "--admin-key-file",
                &key,
                "--admin-key-env",
                "K",
                "--new-pin-env",
                "NEW_PIN",
            ],
            "cannot be used with",
            vec![("NEW_PIN", PIN)],
        ),
        (
            [unblock_args(&key), vec!["--profile", "/nonexistent.toml"]].concat(),
            "profile",
            vec![("NEW_PIN", PIN)],
        ),
    ];
    for (args, needle, env) in cases {
        let r = b.run_with(&args, &env, None);
        assert_eq!(r.code, 2, "{args:?}\n{}", r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{args:?}: want {needle:?} in\n{}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"));
    }
    // CM options without --cm are refused, not silently ignored.
    let r = b.unblock(&key, &["--request-id", "x"]);
    r.expect(2);
    r.stderr_has("need --cm");
    assert!(
        apdus(&card.state()).is_empty(),
        "{:?}",
        card.state()["apdus"]
    );
    // The override flag goes together with the key file.
    let r = b.run(&[
        "unblock",
        "--admin-key-file",
        &loose,
        "--allow-insecure-key-file",
        "--new-pin-env",
        "NEW_PIN",
    ]);
    r.expect(0);
}

#[test]
fn no_pcscd_exits_3_naming_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(dir.path(), "k", ZERO_KEY.as_bytes());
    let sock = dir.path().join("no-pcscd.comm");
    let r = scunblock(
        Some(&sock),
        &[
            "unblock",
            "--admin-key-file",
            key.to_str().unwrap(),
            "--new-pin-env",
            "P",
        ],
        &[("P", PIN)],
        None,
    );
    r.expect(3);
    r.stderr_has("pcscd");
    let r = scunblock(Some(&sock), &["readers", "--json"], &[], None);
    r.expect(3);
    assert_eq!(r.json()["exit_code"], 3);
}

#[test]
fn trace_and_every_output_keep_secrets_out() {
    let b = Bench::new();
    let key_hex = "0123456789abcdeffedcba987654321000112233445566ff";
    let card = b
        .stack
        .insert(0, &["--admin-key", key_hex, "--pin-tries", "0"]);
    let key = b.key(key_hex);
    let r = b.unblock(&key, &["--trace", "-v", "--json"]);
    r.expect(0);
    r.stderr_has("REDACTED");
    r.stderr_has("apdu > 00 84 00 00 08");
    assert_eq!(card.state()["pin"], PIN);
    let out = r.all();
    for secret in common::secrets::forms(&hex::decode(key_hex).unwrap())
        .into_iter()
        .chain(common::secrets::forms(PIN.as_bytes()))
    {
        assert!(!out.contains(&secret), "leaked {secret:?} in\n{out}");
    }
}

#[test]
fn readers_and_info_on_the_virtual_reader() {
    let b = Bench::new();
    let card = b.stack.insert(0, &["--pin-tries", "2"]);
    let r = b.run(&["readers", "--json"]);
    r.expect(0);
    let doc = r.json();
    let readers = doc["readers"].as_array().unwrap();
    assert_eq!(readers.len(), 2, "{doc}");
    assert_eq!(readers[0]["name"], b.stack.reader_name(0));
    assert_eq!(readers[0]["card_present"], true);
    assert_eq!(readers[1]["card_present"], false);
    let atr = readers[0]["atr"].as_str().unwrap().to_string();
    assert!(atr.starts_with("3B"), "{atr}");

    let r = b.run(&["info", "--json"]);
    r.expect(0);
    let doc = r.json();
    assert_eq!(doc["atr"], atr);
    assert_eq!(doc["pin_tries_before"], 2);
    assert_eq!(doc["admin_tries"], 5);
    let r = b.run(&["info"]);
    r.expect(0);
    r.stdout_has("PIN tries:    2");
    r.stdout_has("TCK");
    assert_eq!(cryptograms(&card.state()), 0, "info authenticates nothing");
}

#[test]
fn reader_selection() {
    let b = Bench::new();
    b.stack.insert(0, &[]);
    b.stack.insert(1, &["--pin-tries", "1"]);
    let r = b.run(&["info"]);
    r.expect(2);
    r.stderr_has(&b.stack.reader_name(0))
        .stderr_has(&b.stack.reader_name(1));
    let by_index = b.run(&["info", "--json", "--reader", "1"]);
    assert_eq!(by_index.expect(0).json()["pin_tries_before"], 1);
    let exact = format!("@{}", b.stack.reader_name(1));
    assert_eq!(
        b.run(&["--reader", &exact, "info", "--json"])
            .expect(0)
            .json()["pin_tries_before"],
        1
    );
    let r = b.run_with(
        &["info", "--json"],
        &[("SCUNBLOCK_READER", "pcd 00 01")],
        None,
    );
    assert_eq!(r.expect(0).json()["reader"], b.stack.reader_name(1));
}

#[test]
fn manual_response_from_stdin() {
    let b = Bench::new();
    let card = b.stack.insert(0, &blocked_card());
    let r = b.run_with(
        &["unblock", "--manual", "--new-pin-env", "NEW_PIN"],
        &[("NEW_PIN", PIN)],
        Some("F0Zudm4wPLY=\n"),
    );
    r.expect(0);
    r.stderr_has("1hFD+cz/0so=");
    assert_eq!(card.state()["pin"], PIN);
    // A malformed answer sends nothing.
    let r = b.run_with(&["auth", "--manual"], &[], Some("F0Zudm4w\n"));
    r.expect(6);
    assert_eq!(cryptograms(&card.state()), 1);
}

#[test]
fn dry_run_and_auth() {
    let b = Bench::new();
    let card = b.stack.insert(0, &["--pin-tries", "0"]);
    let key = b.key(ZERO_KEY);
    let r = b.run(&["unblock", "--dry-run", "--json"]);
    r.expect(0);
    assert_eq!(r.json()["dry_run"], true);
    assert_eq!(cryptograms(&card.state()), 0);
    b.run(&["auth", "--admin-key-file", &key]).expect(0);
    assert_eq!(cryptograms(&card.state()), 1);
    assert_eq!(card.state()["rrc"], 0);
}

#[test]
fn rejected_new_pin_exits_7_with_pin_tries() {
    let b = Bench::new();
    let card = b
        .stack
        .insert(0, &["--pin-max-len", "6", "--pin-tries", "0"]);
    let r = b.run_with(
        &[
            "unblock",
            "--admin-key-file",
            &b.key(ZERO_KEY),
            "--new-pin-env",
            "NEW_PIN",
            "--json",
        ],
        &[("NEW_PIN", "1234567")],
        None,
    );
    r.expect(7);
    let doc = r.json();
    assert_eq!(doc["error"]["sw"], "6A80");
    assert_eq!(doc["pin_tries_after"], 0);
    assert_eq!(doc["admin_authenticated"], true);
    assert_eq!(cryptograms(&card.state()), 1);
}

#[test]
fn profile_file_changes_the_key_reference() {
    let b = Bench::new();
    let card = b.stack.insert(0, &["--key-ref", "01", "--pin-tries", "0"]);
    let profile = b.dir.path().join("card.toml");
    std::fs::write(&profile, "name = \"keyref1\"\next_auth_p2 = 0x01\n").unwrap();
    let r = b.run(&[
        "unblock",
        "--profile",
        profile.to_str().unwrap(),
        "--admin-key-file",
        &b.key(ZERO_KEY),
        "--new-pin-env",
        "NEW_PIN",
    ]);
    r.expect(0);
    assert!(apdus(&card.state())
        .iter()
        .any(|a| a.starts_with("0082000108")));
}
