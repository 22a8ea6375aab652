//! Command-line arguments, and the structural rules between them (`requires`,
//! `conflicts_with`, groups, ranges): clap refuses what they forbid, exit 2.
//! No option takes a secret itself: keys, PINs and tokens come from files,
//! environment variables, stdin or a prompt.
//!
//! This file needs only clap and the library: scunblock-gen (packaging/gen)
//! and tests/secrets.rs include it by path to walk the same definition.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use scunblock::key_source::{KeySource, SecretFrom};

// Every number and duration option has a range, enforced by the parser (exit 2, JSON
// with --json): a duration added to "now" must never overflow (a panic), and CM must never
// be busy-polled. docs/cli.md ("Ranges and caps") lists them.

/// `--wait-card`, `--approval-timeout`: at most a day.
pub const MAX_WAIT_SECS: u64 = 86_400;
/// `--timeout`, `--new-pin-timeout`, `--card-id-timeout`, `--shutdown-timeout`: an hour.
pub const MAX_TIMEOUT_SECS: u64 = 3_600;
/// `--approval-poll`: 0.2 to 3600 seconds.
pub const APPROVAL_POLL_SECS: (f64, f64) = (0.2, 3_600.0);

/// `--approval-poll SECS`: a finite number of seconds within [`APPROVAL_POLL_SECS`].
fn approval_poll(s: &str) -> Result<f64, String> {
    let (min, max) = APPROVAL_POLL_SECS;
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be from {min} to {max} seconds"))
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "scunblock",
    version,
    about = "Unblock MIM CM managed smart cards (Base CSP) over PC/SC",
    long_about = "Unblock MIM CM managed smart cards (Base CSP) over PC/SC.\n\n\
        The card's family (GIDS, PIV/YubiKey, HID Crescendo or ISO) is detected per card. \
        The admin response to the card's challenge comes from a local admin key (3DES or \
        AES), from a PKCS#11 token holding it (--pkcs11-key), from MIM CM (--cm), or is \
        typed in by a person (--manual); a PIV card resets its PIN with the PUK. Every \
        input is checked before any cryptogram, and the admin response is never \
        retried.\n\n\
        Exit codes: 0 ok, 1 unexpected, 2 bad input, usage or the wrong card (no \
        cryptogram sent), 3 PC/SC, reader or card unavailable, 4 card rejected the admin \
        response or PUK, 5 admin key or PUK blocked, last try refused, or unknown admin \
        tries refused, 6 responder failure (nothing sent), 7 card rejected the new PIN."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Reader: index N, @EXACT-NAME, or part of the name (case-insensitive).
    /// Default: the only reader holding a card.
    #[arg(long, global = true, env = "SCUNBLOCK_READER", value_name = "SEL")]
    pub reader: Option<String>,

    /// Write one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// Say what happens, on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Print the APDU trace on stderr (PIN data redacted).
    #[arg(long, global = true)]
    pub trace: bool,

    /// Card profile: a built-in name (iso, gids, piv, crescendo) or a TOML
    /// file (a path with / or ending in .toml). Skips family detection.
    #[arg(long, global = true, value_name = "NAME|FILE")]
    pub profile: Option<String>,

    /// Directory of site profile files (*.toml) whose ATR patterns detection
    /// uses before the built-in ones [default: /etc/scunblock/profiles.d, if
    /// it exists].
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "SCUNBLOCK_PROFILES_DIR"
    )]
    pub profiles_dir: Option<PathBuf>,

    /// Wait up to SECS for a card to be inserted, or for another process to
    /// release it.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=MAX_WAIT_SECS))]
    pub wait_card: u64,
}

// `defer`: a subcommand's arguments are built only when it is the one run (clap's
// `Command::defer`), not all of them at every start: a third of an unblock's
// instructions (docs/performance.md, "Start-up"). A doc comment on an `Args` struct would
// then replace the subcommand's own text in its help, so those structs carry `//` comments.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// List the readers, whether each holds a card, and the ATR.
    Readers,
    /// Decode the ATR and show the PIN and admin tries left. Authenticates nothing.
    Info,
    /// Authenticate as admin and set a new user PIN (unblocks a blocked PIN).
    Unblock(UnblockArgs),
    /// Authenticate as admin only (checks the key; spends a try if it is wrong).
    Auth(AuthArgs),
    /// Kiosk mode: watch every reader, report each change, and with --unblock
    /// unblock each inserted card whose PIN is blocked. Runs until SIGTERM/SIGINT.
    Watch(WatchArgs),
    /// Helpdesk side: compute the response to a challenge read out by the
    /// user (Windows' unblock screen, or `--manual`). Touches no card.
    Respond(RespondArgs),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Readers => "readers",
            Command::Info => "info",
            Command::Unblock(_) => "unblock",
            Command::Auth(_) => "auth",
            Command::Watch(_) => "watch",
            Command::Respond(_) => "respond",
        }
    }
}

#[derive(Debug, Args)]
pub struct UnblockArgs {
    #[command(flatten)]
    pub common: AuthArgs,

    #[command(flatten)]
    pub pin: PinArgs,

    #[command(flatten)]
    pub puk: PukArgs,
}

// The PUK: PIV cards reset their PIN with it instead of the admin key.
#[derive(Debug, Args)]
#[group(skip)]
#[command(
    next_help_heading = "PUK (PIV cards: instead of an admin response)",
    group(clap::ArgGroup::new("puk_source").multiple(false).conflicts_with("key_source"))
)]
pub struct PukArgs {
    /// Environment variable holding the PUK.
    #[arg(long, value_name = "VAR", group = "puk_source")]
    pub puk_env: Option<String>,

    /// File holding the PUK (one trailing newline is ignored).
    #[arg(long, value_name = "PATH", group = "puk_source")]
    pub puk_file: Option<PathBuf>,

    /// Read the PUK from the first line of stdin.
    #[arg(long, group = "puk_source", conflicts_with = "new_pin_stdin")]
    pub puk_stdin: bool,

    /// Ask for the PUK on the terminal, without echo.
    #[arg(long, group = "puk_source")]
    pub puk_prompt: bool,
}

impl PukArgs {
    pub fn given(&self) -> bool {
        self.puk_env.is_some() || self.puk_file.is_some() || self.puk_stdin || self.puk_prompt
    }
}

#[derive(Debug, Args)]
pub struct AuthArgs {
    #[command(flatten)]
    pub key: KeyArgs,

    /// The card's id (GUID, braces optional), reported and passed to responders.
    #[arg(long, value_name = "GUID", help_heading = "Card")]
    pub card_id: Option<String>,

    /// Read the ATR and the tries, check them, and send no authentication.
    #[arg(long, help_heading = "Card")]
    pub dry_run: bool,

    /// Spend the LAST admin (or PUK) try. Without it, a card with one try left is refused.
    #[arg(long, help_heading = "Card")]
    pub force_last_try: bool,

    /// Send an admin response to a card that does not report its admin tries
    /// (any try may be its last). Without it such a card gets no cryptogram.
    #[arg(
        long,
        help_heading = "Card",
        env = "SCUNBLOCK_ALLOW_UNKNOWN_TRIES",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub allow_unknown_tries: bool,

    #[command(flatten)]
    pub cm: CmArgs,
}

// How to reach MIM CM (with --cm).
#[derive(Debug, Args)]
#[command(
    next_help_heading = "MIM CM (with --cm)",
    group(clap::ArgGroup::new("cm_token").multiple(false))
)]
pub struct CmArgs {
    /// CM request id (GUID). Without it, an Unblock request is created and
    /// its approval awaited.
    #[arg(long, value_name = "GUID", requires = "cm")]
    pub request_id: Option<String>,

    /// CM smartcard id (GUID). Without it, it is looked up by --card-id.
    #[arg(long, value_name = "GUID", requires = "cm")]
    pub smartcard_id: Option<String>,

    /// The card's admin key is diversified (sends diversified=True).
    #[arg(long, requires = "cm")]
    pub diversified: bool,

    /// How to sign in to CM.
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        requires = "cm",
        requires_if("bearer", "cm_token")
    )]
    pub cm_auth: Option<CmAuthMode>,

    /// Environment variable holding the bearer token (--cm-auth bearer).
    #[arg(long, value_name = "VAR", group = "cm_token", requires = "cm")]
    pub cm_token_env: Option<String>,

    /// File holding the bearer token (--cm-auth bearer).
    #[arg(long, value_name = "PATH", group = "cm_token", requires = "cm")]
    pub cm_token_file: Option<PathBuf>,

    /// PEM file of a CA to trust for CM's TLS certificate (added to the system's).
    #[arg(long, value_name = "PEM", requires = "cm")]
    pub cm_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, value_name = "PEM", requires = "cm")]
    pub cm_client_cert: Option<PathBuf>,

    /// Client private key (PEM) for mutual TLS.
    #[arg(long, value_name = "PEM", requires = "cm")]
    pub cm_client_key: Option<PathBuf>,

    /// Allow a plain http:// CM URL (test servers only).
    #[arg(long, requires = "cm")]
    pub allow_http: bool,

    /// Seconds to wait for each CM answer.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,

    /// Seconds to wait for the unblock request's approval.
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(0..=MAX_WAIT_SECS))]
    pub approval_timeout: u64,

    /// Seconds between approval polls.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = approval_poll)]
    pub approval_poll: f64,

    /// Kerberos service principal for Negotiate (default HTTP/<host of --cm>).
    #[arg(long, value_name = "SPN", requires = "cm")]
    pub cm_spn: Option<String>,

    /// Keytab to sign in from (Negotiate; default: the ticket cache, or KRB5_CLIENT_KTNAME).
    #[arg(long, value_name = "PATH", requires = "cm")]
    pub keytab: Option<PathBuf>,

    /// Send TLS channel bindings (IIS Extended Protection).
    #[arg(long, requires = "cm")]
    pub cm_channel_binding: bool,
}

impl CmArgs {
    /// Whether any option that only makes sense with --cm was given (see
    /// `cm_options_need_cm` in cli/mod.rs for why clap's `requires` is not enough).
    pub fn any_given(&self) -> bool {
        self.request_id.is_some()
            || self.smartcard_id.is_some()
            || self.diversified
            || self.cm_auth.is_some()
            || self.cm_token_env.is_some()
            || self.cm_token_file.is_some()
            || self.cm_ca_file.is_some()
            || self.cm_client_cert.is_some()
            || self.cm_client_key.is_some()
            || self.allow_http
            || self.cm_spn.is_some()
            || self.keytab.is_some()
            || self.cm_channel_binding
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CmAuthMode {
    None,
    Bearer,
    Negotiate,
}

#[derive(Debug, Args)]
#[group(skip)]
#[command(
    next_help_heading = "Admin response (exactly one source)",
    group(clap::ArgGroup::new("key_source").multiple(false))
)]
pub struct KeyArgs {
    /// File holding the 3DES admin key: 48 or 32 hex digits, or 24 or 16 raw bytes.
    #[arg(long, value_name = "PATH", group = "key_source")]
    pub admin_key_file: Option<PathBuf>,

    /// Environment variable holding the admin key as hex.
    #[arg(long, value_name = "VAR", group = "key_source")]
    pub admin_key_env: Option<String>,

    /// Show the challenge and read the response (hex or base64) from stdin.
    #[arg(long, group = "key_source")]
    pub manual: bool,

    /// Get the response from MIM CM at this URL (https://cm.example.com).
    #[arg(long, value_name = "URL", group = "key_source")]
    pub cm: Option<String>,

    /// Compute the response in a PKCS#11 token: the RFC 7512 URI of the
    /// secret key object (pkcs11:token=scunblock;object=admin-key). `{card_id}`
    /// in the object label is replaced by the card id. See docs/keys.md.
    #[arg(long, value_name = "URI", group = "key_source")]
    pub pkcs11_key: Option<String>,

    /// The PKCS#11 module (default: the URI's module-path, then
    /// $SCUNBLOCK_PKCS11_MODULE, then p11-kit's proxy). Loading it runs its
    /// code: it must be as trusted as scunblock itself.
    #[arg(long, value_name = "PATH", requires = "pkcs11_key")]
    pub pkcs11_module: Option<PathBuf>,

    /// Environment variable holding the token's user PIN.
    #[arg(
        long,
        value_name = "VAR",
        requires = "pkcs11_key",
        conflicts_with = "pkcs11_pin_file"
    )]
    pub pkcs11_pin_env: Option<String>,

    /// File (mode 600) holding the token's user PIN. Without either, a token
    /// that needs a login asks on the terminal (never in watch).
    #[arg(long, value_name = "PATH", requires = "pkcs11_key")]
    pub pkcs11_pin_file: Option<PathBuf>,

    /// Accept a key file that group or others can read.
    #[arg(long)]
    pub allow_insecure_key_file: bool,
}

impl KeyArgs {
    /// The one key source given, if any (clap allows at most one).
    pub fn source(&self) -> Option<KeySource> {
        if let Some(from) =
            SecretFrom::new(self.admin_key_env.as_ref(), self.admin_key_file.as_ref())
        {
            return Some(KeySource::Key {
                from,
                allow_insecure_file: self.allow_insecure_key_file,
            });
        }
        if let Some(url) = &self.cm {
            return Some(KeySource::Cm(url.clone()));
        }
        if let Some(uri) = &self.pkcs11_key {
            return Some(KeySource::Pkcs11 {
                uri: uri.clone(),
                module: self.pkcs11_module.clone(),
                pin: SecretFrom::new(self.pkcs11_pin_env.as_ref(), self.pkcs11_pin_file.as_ref()),
            });
        }
        self.manual.then_some(KeySource::Manual)
    }

    /// Whether an admin response source was given.
    pub fn given(&self) -> bool {
        self.source().is_some()
    }
}

#[derive(Debug, Args)]
#[group(skip)]
#[command(
    next_help_heading = "New PIN (at most one source; else a prompt)",
    group(clap::ArgGroup::new("pin_source").multiple(false))
)]
pub struct PinArgs {
    /// Environment variable holding the new PIN.
    #[arg(long, value_name = "VAR", group = "pin_source")]
    pub new_pin_env: Option<String>,

    /// File holding the new PIN (one trailing newline is ignored).
    #[arg(long, value_name = "PATH", group = "pin_source")]
    pub new_pin_file: Option<PathBuf>,

    /// Read the new PIN from the first line of stdin.
    #[arg(long, group = "pin_source")]
    pub new_pin_stdin: bool,

    /// Accept a PIN file that group or others can read.
    #[arg(long)]
    pub allow_insecure_pin_file: bool,
}

// `scunblock watch`: see docs/kiosk.md. A key source goes with --unblock,
// and only with it.
#[derive(Debug, Args)]
#[command(
    next_help_heading = "Kiosk",
    mut_group("key_source", |g| g.requires("unblock"))
)]
pub struct WatchArgs {
    /// Unblock each inserted card whose PIN is blocked (needs a key source and
    /// --new-pin-command). Without it, only report.
    #[arg(long, requires = "key_source")]
    pub unblock: bool,

    /// With --unblock: unblock every inserted card, blocked PIN or not.
    #[arg(long, requires = "unblock")]
    pub always: bool,

    /// Command that prints the new PIN on stdout, run once per card (`sh -c`;
    /// Windows `cmd /C`) with SCUNBLOCK_READER, SCUNBLOCK_ATR and, when known,
    /// SCUNBLOCK_CARD_ID set. A non-zero exit or a timeout skips the card.
    #[arg(
        long,
        value_name = "CMD",
        requires = "unblock",
        required_if_eq("unblock", "true")
    )]
    pub new_pin_command: Option<String>,

    /// Seconds --new-pin-command may take.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub new_pin_timeout: u64,

    /// Command that prints the card id (GUID) of the inserted card, where the
    /// card profile cannot read it (needed with --cm). Same environment as
    /// --new-pin-command, without SCUNBLOCK_CARD_ID.
    #[arg(long, value_name = "CMD")]
    pub card_id_command: Option<String>,

    /// Seconds --card-id-command may take.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub card_id_timeout: u64,

    /// Command that prints the PUK of an inserted PIV card (whose PIN is reset
    /// with the PUK, not the admin key); run like --new-pin-command. Without
    /// it PIV cards are skipped.
    #[arg(long, value_name = "CMD", requires = "unblock")]
    pub puk_command: Option<String>,

    /// Send an admin response to cards that do not report their admin tries.
    #[arg(
        long,
        env = "SCUNBLOCK_ALLOW_UNKNOWN_TRIES",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub allow_unknown_tries: bool,

    /// Try a card again on its next insertion even after the card refused an
    /// admin response. Without it a refused card is never tried again while
    /// the watcher runs: every wrong response spends an admin try.
    #[arg(long, requires = "unblock")]
    pub retry_after_failure: bool,

    /// On SIGTERM/SIGINT, wait up to SECS for flows in progress.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_SECS))]
    pub shutdown_timeout: u64,

    #[command(flatten, next_help_heading = "Admin response (with --unblock)")]
    pub key: KeyArgs,

    #[command(flatten)]
    pub cm: CmArgs,
}

// `scunblock respond CHALLENGE KEY-SOURCE`: see docs/keys.md.
#[derive(Debug, Args)]
pub struct RespondArgs {
    /// The card's challenge, hex or base64: 8 bytes (3DES), 16 with --key-alg aes*.
    #[arg(value_name = "CHALLENGE")]
    pub challenge: String,

    /// The card's admin key algorithm.
    #[arg(long, value_enum, value_name = "ALG", default_value = "3des")]
    pub key_alg: KeyAlgArg,

    /// The card's id (GUID): for CM, and for a per-card key ({card_id}).
    #[arg(long, value_name = "GUID")]
    pub card_id: Option<String>,

    #[command(flatten)]
    pub key: KeyArgs,

    #[command(flatten)]
    pub cm: CmArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgArg {
    #[value(name = "3des")]
    Tdes,
    Aes128,
    Aes192,
    Aes256,
}
