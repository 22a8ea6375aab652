//! `--cm URL` and its options: read the CM token and check every option once,
//! before the card; then one CM responder per card (`watch` makes many).

use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::args::{CmArgs, CmAuthMode};
use super::output;
use scunblock::cm_client::{CmAuth, CmClient, CmConfig};
use scunblock::cm_responder::{Approval, CmResponder, Progress};
use scunblock::error::Error;
use scunblock::ids::Guid;
use scunblock::key_source::{ResponderFactory, SecretFrom, SecretKind, Use};
use scunblock::negotiate::NegotiateConfig;
use scunblock::responder::{CardContext, Responder};
use scunblock::secret::{self, Token};

/// The CM arm of [`scunblock::key_source::KeySource::factory`], with every CM
/// option checked before the card is touched.
pub(super) fn factory(
    url: &str,
    c: &CmArgs,
    purpose: Use,
    json: bool,
) -> Result<Arc<dyn ResponderFactory>, Error> {
    let request_id = c
        .request_id
        .as_deref()
        .map(|r| Guid::parse(r, "--request-id"))
        .transpose()?;
    let smartcard_id = c
        .smartcard_id
        .as_deref()
        .map(|s| Guid::parse(s, "--smartcard-id"))
        .transpose()?;
    if purpose == Use::Watch && (request_id.is_some() || smartcard_id.is_some()) {
        return Err(Error::usage(
            "watch: --request-id and --smartcard-id belong to one card; watch finds or \
             creates the CM request of each card itself",
        ));
    }
    if request_id.is_some() && smartcard_id.is_none() {
        scunblock::log::verbose(
            "--request-id without --smartcard-id: looking the smartcard up by the card id",
        );
    }
    let setup = setup(url, c)?;
    // Checks the URL, TLS files and client options now, before the card.
    drop(setup.client()?);
    Ok(Arc::new(CmFactory {
        setup,
        json,
        request_id,
        smartcard_id,
    }))
}

/// Everything to reach CM, read and checked once: each card's responder
/// (`watch` makes one per card) is built from it.
struct CmSetup {
    url: String,
    auth: CmAuth,
    ca_file: Option<std::path::PathBuf>,
    client_cert: Option<std::path::PathBuf>,
    client_key: Option<std::path::PathBuf>,
    timeout: Duration,
    allow_http: bool,
    diversified: bool,
    approval: Approval,
}

/// Read the CM token and check the CM options, once. The ranges of
/// `--timeout` and `--approval-poll` are clap's (args.rs).
fn setup(url: &str, c: &CmArgs) -> Result<CmSetup, Error> {
    let token = SecretFrom::new(c.cm_token_env.as_ref(), c.cm_token_file.as_ref());
    let mode = c.cm_auth.unwrap_or(if token.is_some() {
        CmAuthMode::Bearer
    } else {
        CmAuthMode::Negotiate
    });
    let auth = match (mode, token) {
        (CmAuthMode::Bearer, Some(from)) => {
            let raw = SecretKind::CmToken.read(&from, false)?;
            scunblock::scrub::register_raw(&raw);
            let text = std::str::from_utf8(secret::strip_line_end(&raw))
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| Error::usage("the bearer token is empty or not printable ASCII"))?;
            CmAuth::Bearer(Token::new(Zeroizing::new(text.to_string())))
        }
        // A token with --cm-auth none or negotiate: clap cannot make a conflict depend on
        // a value. (Bearer without a token is clap's `requires_if`; this arm covers it too.)
        (CmAuthMode::Bearer, None) | (_, Some(_)) => {
            return Err(Error::usage(
                "--cm-token-env/--cm-token-file go with --cm-auth bearer, which needs one of them",
            ))
        }
        (CmAuthMode::None, None) => CmAuth::None,
        (CmAuthMode::Negotiate, None) => CmAuth::Negotiate(NegotiateConfig {
            spn: c.cm_spn.clone(),
            keytab: c.keytab.clone(),
            channel_binding: c.cm_channel_binding,
        }),
    };
    Ok(CmSetup {
        url: url.to_string(),
        auth,
        ca_file: c.cm_ca_file.clone(),
        client_cert: c.cm_client_cert.clone(),
        client_key: c.cm_client_key.clone(),
        timeout: Duration::from_secs(c.timeout),
        allow_http: c.allow_http,
        diversified: c.diversified,
        approval: Approval {
            timeout: Duration::from_secs(c.approval_timeout),
            poll: Duration::from_secs_f64(c.approval_poll),
        },
    })
}

impl CmSetup {
    fn client(&self) -> Result<CmClient, Error> {
        CmClient::new(CmConfig {
            url: self.url.clone(),
            auth: match &self.auth {
                CmAuth::None => CmAuth::None,
                CmAuth::Bearer(t) => CmAuth::Bearer(t.clone()),
                CmAuth::Negotiate(n) => CmAuth::Negotiate(n.clone()),
            },
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            timeout: self.timeout,
            allow_http: self.allow_http,
        })
    }

    fn responder(
        &self,
        request_id: Option<Guid>,
        smartcard_id: Option<Guid>,
        progress: Box<dyn FnMut(&Progress)>,
    ) -> Result<Box<dyn Responder>, Error> {
        Ok(Box::new(CmResponder::new(
            self.client()?,
            request_id,
            smartcard_id,
            self.diversified,
            self.approval,
            progress,
        )))
    }
}

/// One CM responder per card (each holds its card's request); for one
/// card, the request and smartcard the user named.
struct CmFactory {
    setup: CmSetup,
    json: bool,
    request_id: Option<Guid>,
    smartcard_id: Option<Guid>,
}

impl ResponderFactory for CmFactory {
    fn name(&self) -> &'static str {
        "cm"
    }

    fn needs_card_id(&self) -> bool {
        true
    }

    fn make(&self, _card: &CardContext) -> Result<Box<dyn Responder>, Error> {
        let json = self.json;
        self.setup.responder(
            self.request_id.clone(),
            self.smartcard_id.clone(),
            Box::new(move |p| output::progress(json, p)),
        )
    }
}
