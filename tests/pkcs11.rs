//! The admin key in a PKCS#11 token (issue 14): SoftHSM2 tokens in temporary directories,
//! keys imported with pkcs11-tool as sensitive, non-extractable secret keys, and the real
//! binary against the real pcscd + vpcd + virtual card holding the same key. Responses are
//! checked independently with openssl, and by the virtual card's own 3DES. Needs root and
//! the packages of scripts/vstack and scripts/deps (softhsm2, opensc, openssl).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::hsm::{openssl_des3, openssl_ecb, SoftHsm, SOFTHSM, SPY, USER_PIN};
use common::run::{
    apdus, cryptograms, drain, scunblock, secret_file, Run, GOLDEN_CHALLENGE, GOLDEN_RESPONSE,
    ZERO_KEY,
};
use common::secrets::forms;
use common::stack::VStack;
use serde_json::Value;

const TOKEN: &str = "scunblock";
const NEW_PIN: &str = "Ab3$x9Qz";
/// A second, non-weak 3-key 3DES key: a fallback to the zero key cannot pass with it.
const KEY2: &str = "0123456789abcdeffedcba987654321089abcdef01234567";
const CHALLENGE2: &str = "0011223344556677";
const CARD_A: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const CARD_B: &str = "11111111-2222-3333-4444-555555555555";

/// A token holding the golden zero key ("admin-key", id 01) and KEY2 ("admin-2", id 02),
/// plus the stack.
struct Bench {
    stack: VStack,
    hsm: SoftHsm,
}

impl Bench {
    fn new(readers: usize) -> Bench {
        let hsm = SoftHsm::new(TOKEN);
        hsm.import(TOKEN, "admin-key", "01", "DES3:24", &[0u8; 24]);
        hsm.import(
            TOKEN,
            "admin-2",
            "02",
            "DES3:24",
            &hex::decode(KEY2).unwrap(),
        );
        Bench {
            stack: VStack::start(readers),
            hsm,
        }
    }

    /// scunblock with the token's conf and the user PIN in $TOKEN_PIN, $NEW_PIN set.
    fn run(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
        let (k, v) = self.hsm.env();
        let mut env = vec![
            (k, v.as_str()),
            ("TOKEN_PIN", USER_PIN),
            ("NEW_PIN", NEW_PIN),
        ];
        env.extend_from_slice(extra_env);
        scunblock(Some(&self.stack.csock()), args, &env, None)
    }

    /// `command --pkcs11-key KEY --pkcs11-pin-env TOKEN_PIN` then `extra`: the key in the
    /// token, its PIN from the environment.
    fn token_run(&self, command: &[&str], key: &str, extra: &[&str]) -> Run {
        let mut args = command.to_vec();
        args.extend_from_slice(&["--pkcs11-key", key, "--pkcs11-pin-env", "TOKEN_PIN"]);
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }

    /// One key per card, labelled by the card id: KEY2 for CARD_A (id 0a), the zero key for
    /// CARD_B (id 0b).
    fn import_card_keys(&self) {
        let keys: [(&str, &str, Vec<u8>); 2] = [
            (CARD_A, "0a", hex::decode(KEY2).unwrap()),
            (CARD_B, "0b", vec![0u8; 24]),
        ];
        for (card, id, key) in keys {
            self.hsm
                .import(TOKEN, &format!("admin-{card}"), id, "DES3:24", &key);
        }
    }
}

fn uri(object: &str) -> String {
    format!("pkcs11:token={TOKEN};object={object}?module-path={SOFTHSM}")
}

fn blocked_golden_card() -> Vec<&'static str> {
    vec![
        "--admin-key",
        ZERO_KEY,
        "--challenge",
        GOLDEN_CHALLENGE,
        "--pin-tries",
        "0",
    ]
}

fn key2_card() -> Vec<&'static str> {
    vec!["--admin-key", KEY2, "--challenge", CHALLENGE2]
}

/// The spy's log: every PKCS#11 call scunblock made.
fn spy_env(dir: &std::path::Path) -> (std::path::PathBuf, [(&'static str, String); 2]) {
    let log = dir.join("spy.log");
    (
        log.clone(),
        [
            ("PKCS11SPY", SOFTHSM.to_string()),
            ("PKCS11SPY_OUTPUT", log.display().to_string()),
        ],
    )
}

fn calls(log: &std::path::Path, name: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(name))
        .count()
}

#[test]
fn the_golden_key_in_a_token_unblocks_the_card() {
    let b = Bench::new(2);
    let card = b.stack.insert(0, &blocked_golden_card());
    let u = uri("admin-key");
    let r = b.token_run(
        &["unblock"],
        &u,
        &["--new-pin-env", "NEW_PIN", "--json", "-v"],
    );
    r.expect(0);
    assert_eq!(r.json()["pin_reset"], true);
    // -v: the token, the label and the check value the token computed.
    r.stderr_has("token \"scunblock\"")
        .stderr_has("label \"admin-key\"")
        .stderr_has("check value 8CA64D");
    let state = card.state();
    assert_eq!(cryptograms(&state), 1);
    assert_eq!(state["ext_auth_with_data"], 1);
    assert_eq!(state["rrc"], 1);
    assert!(
        apdus(&state).contains(&format!("0082000008{GOLDEN_RESPONSE}")),
        "{:?}",
        apdus(&state)
    );
    assert_eq!(state["pin"], NEW_PIN);
}

#[test]
fn the_module_comes_from_the_flag_the_uri_or_the_environment() {
    let b = Bench::new(2);
    let card = b.stack.insert(0, &key2_card());
    let want = openssl_des3(KEY2, CHALLENGE2);
    let bare = format!("pkcs11:token={TOKEN};object=admin-2");
    let wrong_in_uri = format!("{bare}?module-path=/nonexistent/libnone.so");
    let from_uri = uri("admin-2");
    type How<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let runs: [How; 3] = [
        // The flag wins over the URI's module-path.
        ("flag", vec!["--pkcs11-module", SOFTHSM], vec![]),
        ("uri", vec![], vec![]),
        ("env", vec![], vec![("SCUNBLOCK_PKCS11_MODULE", SOFTHSM)]),
    ];
    for (n, (how, extra, env)) in runs.into_iter().enumerate() {
        let key = match how {
            "flag" => wrong_in_uri.as_str(),
            "uri" => from_uri.as_str(),
            _ => bare.as_str(),
        };
        let mut args = vec!["auth", "--pkcs11-key", key, "--pkcs11-pin-env", "TOKEN_PIN"];
        args.extend_from_slice(&extra);
        b.run(&args, &env).expect(0);
        let state = card.state();
        assert_eq!(cryptograms(&state), n + 1, "{how}");
        assert!(
            apdus(&state).contains(&format!("0082000008{want}")),
            "{how}: {:?}",
            apdus(&state)
        );
    }
    // No module anywhere (and no p11-kit proxy here) is exit 2, card untouched.
    let r = b.token_run(&["auth"], &bare, &[]);
    if !std::path::Path::new("/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so").exists() {
        r.expect(2);
        r.stderr_has("no PKCS#11 module");
    }
    assert_eq!(cryptograms(&card.state()), 3);
}

#[test]
fn a_per_card_key_is_chosen_through_card_id() {
    let b = Bench::new(2);
    b.import_card_keys();
    let card = b.stack.insert(0, &key2_card());
    let u = format!("pkcs11:token={TOKEN};object=admin-{{card_id}}?module-path={SOFTHSM}");
    // Braces and upper case: the id is used in its JSON form.
    let upper = format!("{{{}}}", CARD_A.to_uppercase());
    b.token_run(&["auth"], &u, &["--card-id", &upper, "-v"])
        .expect(0);
    let state = card.state();
    assert_eq!(cryptograms(&state), 1);
    assert_eq!(state["admin_tries"], 5, "the card took the response");
    // Without a card id: exit 2, no cryptogram.
    let r = b.token_run(&["auth"], &u, &[]);
    r.expect(2);
    r.stderr_has("{card_id}");
    // A card id with no key: the object is not found, exit 6.
    let r = b.token_run(
        &["auth"],
        &u,
        &["--card-id", "99999999-9999-9999-9999-999999999999"],
    );
    r.expect(6);
    r.stderr_has("is not on the token");
    assert_eq!(cryptograms(&card.state()), 1);
}

#[test]
fn a_wrong_token_pin_is_tried_once_and_sends_nothing() {
    let b = Bench::new(2);
    let card = b.stack.insert(0, &blocked_golden_card());
    let (log, spy) = spy_env(b.hsm.dir.path());
    let r = b.run(
        &[
            "unblock",
            "--pkcs11-key",
            &format!("pkcs11:token={TOKEN};object=admin-key"),
            "--pkcs11-module",
            SPY,
            "--pkcs11-pin-env",
            "BAD_PIN",
            "--new-pin-env",
            "NEW_PIN",
        ],
        &[
            ("BAD_PIN", "000000"),
            (spy[0].0, spy[0].1.as_str()),
            (spy[1].0, spy[1].1.as_str()),
        ],
    );
    r.expect(6);
    r.stderr_has("token PIN is wrong");
    r.stderr_has("CKF_USER_PIN_COUNT_LOW");
    assert_eq!(
        calls(&log, "C_Login"),
        1,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(calls(&log, "C_CloseSession") >= 1, "the session is closed");
    assert_eq!(calls(&log, "C_EncryptInit"), 0);
    let state = card.state();
    assert_eq!(cryptograms(&state), 0);
    assert_eq!(state["ext_auth_with_data"], 0);
    assert_eq!(state["admin_tries"], 5);
}

#[test]
fn token_failures_each_say_what_is_wrong() {
    let b = Bench::new(2);
    b.hsm.import(TOKEN, "aes-key", "03", "AES:16", &[7u8; 16]);
    let card = b.stack.insert(0, &blocked_golden_card());
    let cases: [(String, &str); 5] = [
        (uri("no-such-key"), "is not on the token"),
        (
            format!("pkcs11:token=elsewhere;object=admin-key?module-path={SOFTHSM}"),
            "the tokens seen: \"scunblock\"",
        ),
        (
            uri("aes-key"),
            "is a CKK_AES key, but the card's admin key is 3DES",
        ),
        (
            format!("pkcs11:token={TOKEN};object=admin-key?module-path=/nonexistent/lib.so"),
            "cannot load the PKCS#11 module",
        ),
        (
            format!("pkcs11:token={TOKEN};object=admin-key;serial=0000?module-path={SOFTHSM}"),
            "no token matches",
        ),
    ];
    for (u, says) in &cases {
        let r = b.token_run(&["unblock"], u, &["--new-pin-env", "NEW_PIN", "--json"]);
        r.expect(6);
        let doc = r.json();
        assert_eq!(doc["error"]["class"], "responder", "{u}");
        let msg = doc["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{u}: {msg}");
    }
    // A URI that asks for the PIN in it is refused before anything: exit 2.
    let r = b.run(
        &[
            "auth",
            "--pkcs11-key",
            &format!("{}&pin-value={USER_PIN}", uri("admin-key")),
        ],
        &[],
    );
    r.expect(2);
    let state = card.state();
    assert_eq!(cryptograms(&state), 0);
    assert_eq!(state["admin_tries"], 5);
    assert_eq!(state["pin_tries"], 0);
}

#[test]
fn the_keys_stay_sensitive_and_non_extractable_after_the_runs() {
    let b = Bench::new(2);
    let card = b.stack.insert(0, &key2_card());
    for _ in 0..2 {
        b.token_run(&["auth"], &uri("admin-2"), &["-v"]).expect(0);
    }
    assert_eq!(cryptograms(&card.state()), 2);
    for label in ["admin-key", "admin-2"] {
        let (extracted, out) = b.hsm.try_extract(TOKEN, label);
        assert!(!extracted, "{label} could be read out:\n{out}");
    }
    let list = b.hsm.list(TOKEN);
    let access: Vec<&str> = list
        .lines()
        .filter(|l| l.trim_start().starts_with("Access:"))
        .collect();
    assert_eq!(access.len(), 2, "{list}");
    for a in access {
        let flags: Vec<&str> = a
            .trim_start()
            .trim_start_matches("Access:")
            .split(',')
            .map(str::trim)
            .collect();
        assert!(flags.contains(&"sensitive"), "{a}");
        assert!(!flags.contains(&"extractable"), "{a}");
    }
}

#[test]
fn respond_computes_what_manual_accepts() {
    let b = Bench::new(2);
    b.hsm.import(TOKEN, "aes-key", "03", "AES:16", &[7u8; 16]);
    let r = b.token_run(&["respond", "1hFD+cz/0so="], &uri("admin-key"), &[]);
    r.expect(0);
    assert_eq!(r.stdout, format!("{GOLDEN_RESPONSE}\n"));
    let r = b.token_run(&["respond", CHALLENGE2], &uri("admin-2"), &["--json"]);
    r.expect(0);
    let doc: Value = r.json();
    assert_eq!(doc["command"], "respond");
    assert_eq!(doc["response_hex"], openssl_des3(KEY2, CHALLENGE2));
    let b64 = doc["response_base64"].as_str().unwrap();
    use base64::Engine;
    assert_eq!(
        hex::encode(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
        ),
        openssl_des3(KEY2, CHALLENGE2)
    );
    // An AES card: a 16-byte challenge, CKM_AES_ECB.
    let aes_challenge = "00112233445566778899aabbccddeeff";
    let r = b.token_run(
        &["respond", aes_challenge, "--key-alg", "aes128"],
        &uri("aes-key"),
        &[],
    );
    r.expect(0);
    assert_eq!(
        r.stdout.trim(),
        openssl_ecb("-aes-128-ecb", &hex::encode([7u8; 16]), aes_challenge)
    );
    // The DES3 key for an AES card, and the AES key for a 3DES card: exit 6.
    let r = b.token_run(
        &["respond", aes_challenge, "--key-alg", "aes128"],
        &uri("admin-2"),
        &[],
    );
    r.expect(6);
    assert!(r.stdout.is_empty());
    let r = b.token_run(&["respond", CHALLENGE2], &uri("aes-key"), &[]);
    r.expect(6);
    // A file key gives the same line.
    let dir = tempfile::tempdir().unwrap();
    let f = secret_file(dir.path(), "k", format!("{KEY2}\n").as_bytes());
    let r = b.run(
        &[
            "respond",
            CHALLENGE2,
            "--admin-key-file",
            f.to_str().unwrap(),
        ],
        &[],
    );
    r.expect(0);
    assert_eq!(r.stdout.trim(), openssl_des3(KEY2, CHALLENGE2));
    // Challenges that are not one block, and --manual: exit 2.
    for bad in [
        vec![
            "respond",
            "d61143f9ccffd2",
            "--admin-key-file",
            f.to_str().unwrap(),
        ],
        vec![
            "respond",
            "d61143f9ccffd2caaa",
            "--admin-key-file",
            f.to_str().unwrap(),
        ],
        vec![
            "respond",
            aes_challenge,
            "--admin-key-file",
            f.to_str().unwrap(),
        ],
        vec![
            "respond",
            CHALLENGE2,
            "--key-alg",
            "aes128",
            "--admin-key-file",
            f.to_str().unwrap(),
        ],
        vec!["respond", CHALLENGE2, "--manual"],
        vec!["respond", CHALLENGE2],
    ] {
        let r = b.run(&bad, &[]);
        r.expect(2);
        assert!(r.stdout.is_empty(), "{bad:?}");
    }
}

#[test]
fn manual_on_the_card_side_and_respond_on_the_helpdesk_side_interoperate() {
    let b = Bench::new(2);
    let card = b.stack.insert(0, &blocked_golden_card());
    let (k, v) = b.hsm.env();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scunblock"))
        .args(["unblock", "--manual", "--new-pin-env", "NEW_PIN"])
        .env_remove("SCUNBLOCK_READER")
        .env("PCSCLITE_CSOCK_NAME", b.stack.csock())
        .env("NEW_PIN", NEW_PIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    // The coprocess: read the challenge off --manual's stderr, run respond, answer.
    let mut seen = String::new();
    let mut challenge = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if let Some(c) = line.trim().strip_prefix("challenge (base64):") {
            challenge = Some(c.trim().to_string());
            break;
        }
    }
    let challenge = challenge.unwrap_or_else(|| panic!("no challenge shown:\n{seen}"));
    assert_eq!(challenge, "1hFD+cz/0so=");
    let out = Command::new(env!("CARGO_BIN_EXE_scunblock"))
        .args([
            "respond",
            &challenge,
            "--pkcs11-key",
            &uri("admin-key"),
            "--pkcs11-pin-env",
            "TOKEN_PIN",
        ])
        .env(k, &v)
        .env("TOKEN_PIN", USER_PIN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    stdin.write_all(&out.stdout).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let state = card.state();
    assert_eq!(cryptograms(&state), 1);
    assert!(apdus(&state).contains(&format!("0082000008{GOLDEN_RESPONSE}")));
    assert_eq!(state["pin"], NEW_PIN);
}

#[test]
fn no_secret_in_any_output_with_trace_and_verbose() {
    let b = Bench::new(2);
    let card = b.stack.insert(
        0,
        &[
            "--admin-key",
            KEY2,
            "--challenge",
            CHALLENGE2,
            "--pin-tries",
            "0",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let pin_file = secret_file(dir.path(), "token.pin", format!("{USER_PIN}\n").as_bytes());
    let mut all = String::new();
    for json in [false, true] {
        let mut args = vec![
            "unblock",
            "--pkcs11-key",
            &uri("admin-2") as &str,
            "--pkcs11-pin-file",
            pin_file.to_str().unwrap(),
            "--new-pin-env",
            "NEW_PIN",
            "--trace",
            "-v",
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        if json {
            args.push("--json".into());
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = b.run(&a, &[]);
        r.expect(0);
        all.push_str(&r.all());
    }
    // A wrong PIN and a missing key, with the same switches.
    let r = b.run(
        &[
            "auth",
            "--pkcs11-key",
            &uri("admin-2"),
            "--pkcs11-pin-env",
            "BAD",
            "--trace",
            "-v",
        ],
        &[("BAD", "777777")],
    );
    r.expect(6);
    all.push_str(&r.all());
    assert!(all.contains("check value"), "-v was on:\n{all}");
    assert_eq!(cryptograms(&card.state()), 2);
    let key = hex::decode(KEY2).unwrap();
    let mut secrets = forms(&key);
    for part in key.chunks(8) {
        secrets.extend(forms(part));
    }
    secrets.push(USER_PIN.to_string());
    secrets.push("777777".into());
    for s in secrets {
        assert!(!all.contains(&s), "secret form {s:?} in the output:\n{all}");
    }
}

/// `watch --unblock --pkcs11-key`: two cards with their own keys ({card_id} from
/// --card-id-command), logged in once for both, through the spy.
#[test]
fn watch_unblocks_two_cards_through_the_token() {
    let b = Bench::new(2);
    b.import_card_keys();
    let dir = tempfile::tempdir().unwrap();
    let ra = b.stack.reader_name(0);
    let id_cmd = dir.path().join("card-id");
    std::fs::write(
        &id_cmd,
        format!(
            "#!/bin/sh\ncase \"$SCUNBLOCK_READER\" in\n  \"{ra}\") echo {CARD_A} ;;\n  *) echo {CARD_B} ;;\nesac\n"
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&id_cmd, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let u = format!("pkcs11:token={TOKEN};object=admin-{{card_id}}");
    let (w, log) = WatchRun::through_spy(
        &b,
        &u,
        dir.path(),
        &["--card-id-command", id_cmd.to_str().unwrap()],
    );
    let a = b
        .stack
        .insert(0, &["--admin-key", KEY2, "--pin-tries", "0", "--quiet"]);
    let c = b
        .stack
        .insert(1, &["--admin-key", ZERO_KEY, "--pin-tries", "0", "--quiet"]);
    w.wait("unblock_succeeded", 2);
    let failed = w.named("unblock_failed");
    let (code, err) = w.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(failed.is_empty(), "{failed:?}");
    for card in [&a, &c] {
        let s = card.state();
        assert_eq!(cryptograms(&s), 1);
        assert_eq!(s["pin"], "24681357");
    }
    // Logged in once for the two cards; each card had its own session.
    let spy_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(calls(&log, "C_Login"), 1, "{spy_log}");
    assert!(calls(&log, "C_OpenSession") >= 3, "{spy_log}");
    assert_eq!(calls(&log, "C_EncryptInit"), 2, "{spy_log}");
    assert!(!err.contains(USER_PIN));
}

#[test]
fn watch_does_not_start_with_a_bad_module_or_pin() {
    let b = Bench::new(2);
    let dir = tempfile::tempdir().unwrap();
    let bad_pin = secret_file(dir.path(), "bad.pin", b"000000\n");
    let good_pin = secret_file(dir.path(), "good.pin", format!("{USER_PIN}\n").as_bytes());
    let (log, spy) = spy_env(dir.path());
    for (key, module, pin, says) in [
        (uri("admin-key"), SOFTHSM, &bad_pin, "token PIN is wrong"),
        (
            uri("admin-key"),
            "/nonexistent/lib.so",
            &good_pin,
            "cannot load",
        ),
        (
            "pkcs11:token=elsewhere;object=admin-key".to_string(),
            SOFTHSM,
            &good_pin,
            "no token matches",
        ),
        (
            format!("pkcs11:token={TOKEN};object=admin-key"),
            SPY,
            &bad_pin,
            "token PIN is wrong",
        ),
    ] {
        let r = b.run(
            &[
                "watch",
                "--json",
                "--unblock",
                "--pkcs11-key",
                &key,
                "--pkcs11-module",
                module,
                "--pkcs11-pin-file",
                pin.to_str().unwrap(),
                "--new-pin-command",
                "echo 1234",
            ],
            &[(spy[0].0, spy[0].1.as_str()), (spy[1].0, spy[1].1.as_str())],
        );
        r.expect(2);
        assert!(r.stdout.is_empty(), "no reader watched: {}", r.stdout);
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
    }
    assert_eq!(calls(&log, "C_Login"), 1);
}

/// The URI that GnuTLS's `p11tool --list-all` prints for the key is taken as it is.
#[test]
fn the_uri_p11tool_prints_works_as_it_is() {
    let hsm = SoftHsm::new(TOKEN);
    hsm.import(TOKEN, "admin-key", "01", "DES3:24", &[0u8; 24]);
    let out = Command::new("p11tool")
        .args([
            "--provider",
            SOFTHSM,
            "--login",
            "--list-all",
            "pkcs11:token=scunblock",
        ])
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("GNUTLS_PIN", USER_PIN)
        .output()
        .expect("p11tool (scripts/deps installs gnutls-bin)");
    let text = String::from_utf8_lossy(&out.stdout);
    let uri = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("URL: "))
        .find(|u| u.contains("object=admin-key"))
        .unwrap_or_else(|| panic!("no URI listed:\n{text}"));
    assert!(
        uri.contains("serial=") && uri.contains("type=secret-key"),
        "{uri}"
    );
    let (k, v) = hsm.env();
    let r = scunblock(
        None,
        &[
            "respond",
            "1hFD+cz/0so=",
            "--pkcs11-key",
            uri,
            "--pkcs11-module",
            SOFTHSM,
            "--pkcs11-pin-env",
            "TOKEN_PIN",
        ],
        &[(k, &v), ("TOKEN_PIN", USER_PIN)],
        None,
    );
    r.expect(0);
    assert_eq!(r.stdout.trim(), GOLDEN_RESPONSE);
}

/// A running `scunblock watch --json`, its events collected on a thread.
struct WatchRun {
    child: std::process::Child,
    events: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl WatchRun {
    fn start(b: &Bench, args: &[&str], env: &[(&str, &str)]) -> WatchRun {
        let (k, v) = b.hsm.env();
        let mut child = Command::new(env!("CARGO_BIN_EXE_scunblock"))
            .args(["watch", "--json"])
            .args(args)
            .env_remove("SCUNBLOCK_READER")
            .env("PCSCLITE_CSOCK_NAME", b.stack.csock())
            .env(k, &v)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
        let sink = events.clone();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let w = WatchRun {
            child,
            events,
            reader: Some(reader),
        };
        w.wait("service_up", 1);
        w
    }

    /// `watch --unblock --pkcs11-key KEY` through the spy (its log in `dir`, returned too),
    /// the token PIN from a file in `dir`, the new PIN from `echo 24681357`, plus `extra`.
    fn through_spy(
        b: &Bench,
        key: &str,
        dir: &std::path::Path,
        extra: &[&str],
    ) -> (WatchRun, std::path::PathBuf) {
        let pin_file = secret_file(dir, "token.pin", format!("{USER_PIN}\n").as_bytes());
        let (log, spy) = spy_env(dir);
        let mut args = vec![
            "--unblock",
            "--pkcs11-key",
            key,
            "--pkcs11-module",
            SPY,
            "--pkcs11-pin-file",
            pin_file.to_str().unwrap(),
            "--new-pin-command",
            "echo 24681357",
        ];
        args.extend_from_slice(extra);
        let env = [(spy[0].0, spy[0].1.as_str()), (spy[1].0, spy[1].1.as_str())];
        (WatchRun::start(b, &args, &env), log)
    }

    fn named(&self, name: &str) -> Vec<Value> {
        let e = self.events.lock().unwrap();
        e.iter().filter(|e| e["event"] == name).cloned().collect()
    }

    /// Wait (bounded) for the nth event called `name`; return it.
    fn wait(&self, name: &str, n: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self.named(name);
            if found.len() >= n {
                return found[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {n} {name}: {:?}",
                self.events.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM; the exit code and stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        // SAFETY: signals our own child process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let err = drain(self.child.stderr.take());
        assert!(!err.contains("panicked"), "{err}");
        (status.code(), err)
    }
}

impl Drop for WatchRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The token goes away while watch runs (its SoftHSM token is deleted): the next cards are
/// `unblock_failed` with class `responder` and no cryptogram, and no login is tried while
/// the token is missing. (SoftHSM cannot show a token coming back to a running process, so
/// the second login after a return is not tested here.)
#[test]
fn a_token_that_goes_away_fails_the_next_cards_as_responder_failures() {
    let b = Bench::new(2);
    let dir = tempfile::tempdir().unwrap();
    let u = format!("pkcs11:token={TOKEN};object=admin-key");
    let (w, log) = WatchRun::through_spy(&b, &u, dir.path(), &["-v"]);
    let blocked = ["--admin-key", ZERO_KEY, "--pin-tries", "0", "--quiet"];
    let first = b.stack.insert(0, &blocked);
    w.wait("unblock_succeeded", 1);
    assert_eq!(cryptograms(&first.state()), 1);
    b.hsm.delete_token(TOKEN);
    let second = b.stack.insert(1, &blocked);
    let f = w.wait("unblock_failed", 1);
    assert_eq!(f["class"], "responder", "{f}");
    assert_eq!(f["exit_code"], 6, "{f}");
    first.remove();
    let third = b.stack.insert(0, &blocked);
    let f = w.wait("unblock_failed", 2);
    assert_eq!(f["class"], "responder", "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("no token matches"), "{msg}");
    for card in [&second, &third] {
        let s = card.state();
        assert_eq!(cryptograms(&s), 0);
        assert_eq!(s["pin_tries"], 0);
    }
    let (code, err) = w.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("the token is gone"), "{err}");
    assert_eq!(calls(&log, "C_Login"), 1);
    // The first card only: its check value (-v) and its response.
    assert_eq!(calls(&log, "C_EncryptInit"), 2);
}
