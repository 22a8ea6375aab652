//! The MIM CM REST API client: one HTTP client per run (keep-alive), TLS
//! always verified, every failure an exit-6 responder error that names what
//! went wrong. See docs/cm.md.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::error::Error;
use crate::ids::Guid;
use crate::secret::Token;

const API_ROOT: &str = "CertificateManagement/api/v1.0";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How the client signs in to CM.
pub enum CmAuth {
    /// No Authorization header (a proxy in front does it, or tests).
    None,
    /// `Authorization: Bearer <token>` (ADFS / OAuth).
    Bearer(Token),
    /// Windows Integrated Authentication (Kerberos via SPNEGO).
    Negotiate(crate::negotiate::NegotiateConfig),
}

impl std::fmt::Debug for CmAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmAuth::None => f.write_str("None"),
            CmAuth::Bearer(_) => f.write_str("Bearer(REDACTED)"),
            CmAuth::Negotiate(c) => write!(f, "Negotiate({c:?})"),
        }
    }
}

/// Everything needed to reach CM, validated before the card is touched.
#[derive(Debug)]
pub struct CmConfig {
    pub url: String,
    pub auth: CmAuth,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub timeout: Duration,
    pub allow_http: bool,
}

/// A smartcard as CM lists it.
#[derive(Clone, Debug)]
pub struct Smartcard {
    pub uuid: Guid,
    pub status: String,
    pub serial: String,
}

/// A CM request's status, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    Approved,
    Completed,
    Executing,
    Pending,
    Denied,
    Canceled,
    Failed,
    Other(String),
}

impl RequestStatus {
    /// From CM's `Status` field: a name, or a number. The CM docs' examples
    /// show 3 = Approved and 8 = Completed; the other numbers follow the SDK's
    /// RequestStatus order (None 0, Pending 1, Denied 2, Approved 3,
    /// Executing 4, Failed 5, Canceled 6, Abandoned 7, Completed 8).
    pub fn from_json(v: &Value) -> RequestStatus {
        let name = match v {
            Value::Number(n) => match n.as_u64() {
                Some(1) => "pending".to_string(),
                Some(2) => "denied".to_string(),
                Some(3) => "approved".to_string(),
                Some(4) => "executing".to_string(),
                Some(5) => "failed".to_string(),
                Some(6) => "canceled".to_string(),
                Some(7) => "abandoned".to_string(),
                Some(8) => "completed".to_string(),
                _ => return RequestStatus::Other(n.to_string()),
            },
            Value::String(s) => s.to_ascii_lowercase(),
            other => return RequestStatus::Other(other.to_string()),
        };
        match name.as_str() {
            "approved" => RequestStatus::Approved,
            "completed" => RequestStatus::Completed,
            "executing" => RequestStatus::Executing,
            "pending" => RequestStatus::Pending,
            "denied" => RequestStatus::Denied,
            "canceled" | "cancelled" | "abandoned" => RequestStatus::Canceled,
            "failed" => RequestStatus::Failed,
            _ => RequestStatus::Other(name),
        }
    }
}

/// The CM REST client.
pub struct CmClient {
    http: Client,
    base: reqwest::Url,
    auth: RefCell<AuthState>,
    calls: Cell<u32>,
    timeout: Duration,
}

enum AuthState {
    None,
    Bearer(Token),
    Negotiate(crate::negotiate::Negotiator),
}

impl CmClient {
    /// Validate the configuration and build the one HTTP client of this run.
    pub fn new(cfg: CmConfig) -> Result<CmClient, Error> {
        let base = parse_base_url(&cfg.url, cfg.allow_http)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(1)
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!cfg.allow_http)
            .tls_info(true)
            .user_agent(concat!("scunblock/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca_file {
            let pem =
                crate::secret::read_public_file(ca, "--cm-ca-file", crate::secret::CERT_FILE_CAP)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::usage(format!(
                    "--cm-ca-file {} holds no PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(Error::usage(format!(
                    "--cm-ca-file {} holds no PEM certificate",
                    ca.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = crate::secret::read_public_file(
                    cert,
                    "--cm-client-cert",
                    crate::secret::CERT_FILE_CAP,
                )?;
                let key_pem =
                    crate::secret::read(&crate::secret::Source::File(key), "client key", false)?;
                pem.push(b'\n');
                pem.extend_from_slice(&key_pem);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    Error::usage(format!(
                        "--cm-client-cert/--cm-client-key are not a PEM certificate and key: {e}"
                    ))
                });
                builder = builder.identity(id?);
            }
            (None, None) => {}
            _ => {
                return Err(Error::usage(
                    "--cm-client-cert and --cm-client-key go together (mutual TLS)",
                ))
            }
        }
        if base.scheme() == "http" {
            // A plain-http CM (--allow-http, test servers) never uses TLS: do not
            // load the system's root store for it (~18 M instructions, most of a
            // CM run's CPU; scripts/bench). No roots: any https would fail closed.
            builder = builder.tls_certs_only(std::iter::empty());
        }
        let http = builder
            .build()
            .map_err(|e| Error::usage(format!("cannot set up the HTTP client: {}", chain(&e))))?;
        let auth = match cfg.auth {
            CmAuth::None => AuthState::None,
            CmAuth::Bearer(t) => AuthState::Bearer(t),
            CmAuth::Negotiate(c) => {
                AuthState::Negotiate(crate::negotiate::Negotiator::new(c, &base)?)
            }
        };
        Ok(CmClient {
            http,
            base,
            auth: RefCell::new(auth),
            calls: Cell::new(0),
            timeout: cfg.timeout,
        })
    }

    /// How many HTTP requests this client made.
    pub fn calls(&self) -> u32 {
        self.calls.get()
    }

    /// How many Negotiate handshakes this client made.
    pub fn handshakes(&self) -> u32 {
        match &*self.auth.borrow() {
            AuthState::Negotiate(n) => n.handshakes(),
            _ => 0,
        }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Url {
        api_url(&self.base, path, query)
    }

    /// Send one request, signing in as configured. A 401 with
    /// `WWW-Authenticate: Negotiate` runs the handshake on the same connection.
    fn send(
        &self,
        method: Method,
        url: reqwest::Url,
        body: Option<&Value>,
    ) -> Result<Response, Error> {
        let what = format!("{method} {}", url.path());
        let build = |auth: Option<String>| -> RequestBuilder {
            let mut rb = self.http.request(method.clone(), url.clone());
            rb = rb.header(reqwest::header::ACCEPT, "application/json");
            if let Some(b) = body {
                rb = rb.json(b);
            }
            if let Some(a) = auth {
                rb = rb.header(reqwest::header::AUTHORIZATION, a);
            }
            rb
        };
        let mut auth = self.auth.borrow_mut();
        match &mut *auth {
            AuthState::None => self.execute(build(None), &what),
            AuthState::Bearer(t) => {
                self.execute(build(Some(format!("Bearer {}", t.expose()))), &what)
            }
            AuthState::Negotiate(n) => n.send(&mut |header| self.execute(build(header), &what)),
        }
    }

    fn execute(&self, rb: RequestBuilder, what: &str) -> Result<Response, Error> {
        self.calls.set(self.calls.get() + 1);
        crate::log::verbose(format!("CM: {what}"));
        rb.send().map_err(|e| self.transport_error(&e, what))
    }

    fn transport_error(&self, e: &reqwest::Error, what: &str) -> Error {
        let host = self.base.host_str().unwrap_or("?").to_string();
        let detail = chain(e);
        let msg = if e.is_timeout() {
            format!(
                "CM did not answer {what} within {} s (--timeout): {detail}",
                self.timeout.as_secs()
            )
        } else if e.is_connect() {
            if detail.contains("certificate")
                || detail.contains("UnknownIssuer")
                || detail.contains("tls")
            {
                format!(
                    "TLS: the certificate of CM at {host} is not trusted: {detail}. \
                     Give the issuing CA with --cm-ca-file"
                )
            } else {
                format!("cannot connect to CM at {host}: {detail}")
            }
        } else {
            format!("HTTP error talking to CM ({what}): {detail}")
        };
        Error::responder(msg)
    }

    /// GET .../smartcards?cardid=: the smartcard CM holds for this card id.
    pub fn find_smartcard(&self, card_id: &Guid) -> Result<Smartcard, Error> {
        let v = self.get_json(
            "smartcards",
            &[("cardid", card_id.as_str())],
            "look up the smartcard",
        )?;
        let cards = v
            .as_array()
            .ok_or_else(|| malformed("the smartcard list", "not a JSON array"))?;
        let mut found = Vec::new();
        for c in cards {
            let uuid = field(c, "Uuid")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("the smartcard list", "a smartcard without Uuid"))?;
            found.push(Smartcard {
                uuid: Guid::parse(uuid, "CM smartcard Uuid")
                    .map_err(|_| malformed("the smartcard list", "a Uuid that is not a GUID"))?,
                status: field(c, "Status").map(value_text).unwrap_or_default(),
                serial: field(c, "SerialNumber").map(value_text).unwrap_or_default(),
            });
        }
        match found.len() {
            0 => Err(Error::responder(format!(
                "CM knows no smartcard with card id {card_id}: check --card-id, or that the card is managed by this CM"
            ))),
            1 => Ok(found.remove(0)),
            n => {
                // Several records (a re-issued card): use the active one if exactly one is.
                let active: Vec<&Smartcard> = found
                    .iter()
                    .filter(|s| s.status.eq_ignore_ascii_case("active"))
                    .collect();
                match active.as_slice() {
                    [one] => Ok((*one).clone()),
                    _ => Err(Error::responder(format!(
                        "CM lists {n} smartcards with card id {card_id}; give the one to use with --smartcard-id"
                    ))),
                }
            }
        }
    }

    /// GET .../smartcards/{scid}/operations.
    pub fn operations(&self, scid: &Guid) -> Result<Vec<String>, Error> {
        let v = self.get_json(
            &format!("smartcards/{scid}/operations"),
            &[],
            "list the smartcard's operations",
        )?;
        let ops = v
            .as_array()
            .ok_or_else(|| malformed("the operations list", "not a JSON array"))?;
        Ok(ops.iter().map(value_text).collect())
    }

    /// POST .../requests: a new Unblock request; returns its id.
    pub fn create_unblock_request(&self, scid: &Guid, comment: &str) -> Result<Guid, Error> {
        let body = serde_json::json!({
            "type": "Unblock",
            "smartcard": scid.as_str(),
            "datacollection": [],
            "comment": comment,
        });
        let resp = self.send(Method::POST, self.url("requests", &[]), Some(&body))?;
        let v = self.expect_json(
            resp,
            "create the unblock request",
            &[StatusCode::CREATED, StatusCode::OK],
        )?;
        let location = v
            .as_str()
            .ok_or_else(|| malformed("the new request", "not a JSON string"))?;
        let id = location.rsplit('/').next().unwrap_or_default();
        Guid::parse(id, "CM request id").map_err(|_| {
            malformed(
                "the new request",
                &format!("{:?} does not end in a request GUID", sanitize(location)),
            )
        })
    }

    /// GET .../requests/{id}: the request's status.
    pub fn request_status(&self, reqid: &Guid) -> Result<RequestStatus, Error> {
        let v = self.get_json(&format!("requests/{reqid}"), &[], "read the request")?;
        let status =
            field(&v, "Status").ok_or_else(|| malformed("the request", "no Status field"))?;
        Ok(RequestStatus::from_json(status))
    }

    /// PUT .../requests/{id} {"status": ...}.
    pub fn set_request_status(&self, reqid: &Guid, status: &str) -> Result<(), Error> {
        let body = serde_json::json!({ "status": status });
        let resp = self.send(
            Method::PUT,
            self.url(&format!("requests/{reqid}"), &[]),
            Some(&body),
        )?;
        self.expect_json(
            resp,
            "update the request",
            &[StatusCode::OK, StatusCode::NO_CONTENT],
        )
        .map(|_| ())
    }

    /// GET .../authenticationresponse: CM's response to the card's challenge,
    /// exactly `challenge.len()` bytes or an error.
    pub fn authentication_response(
        &self,
        reqid: &Guid,
        scid: &Guid,
        card_id: &Guid,
        challenge: &[u8],
        diversified: bool,
        atr: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let challenge_b64 = B64.encode(challenge);
        let atr_hex = hex::encode_upper(atr);
        let mut query = vec![
            ("cardid", card_id.as_str()),
            ("challenge", challenge_b64.as_str()),
            ("diversified", if diversified { "True" } else { "False" }),
        ];
        if !atr.is_empty() {
            query.push(("atr", atr_hex.as_str()));
        }
        let url = self.url(
            &format!("requests/{reqid}/smartcards/{scid}/authenticationresponse"),
            &query,
        );
        let resp = self.send(Method::GET, url, None)?;
        let v = self.expect_json(resp, "get the authentication response", &[StatusCode::OK])?;
        decode_response(&v, challenge.len())
    }

    fn get_json(&self, path: &str, query: &[(&str, &str)], what: &str) -> Result<Value, Error> {
        let resp = self.send(Method::GET, self.url(path, query), None)?;
        self.expect_json(resp, what, &[StatusCode::OK])
    }

    fn expect_json(&self, resp: Response, what: &str, ok: &[StatusCode]) -> Result<Value, Error> {
        let status = resp.status();
        let text = read_body(resp, what)?;
        if !ok.contains(&status) {
            return Err(status_error(status, &text, what));
        }
        if text.trim().is_empty() && status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| malformed(what, &format!("not JSON ({e}): {:?}", sanitize(&text))))
    }
}

/// The most a CM answer body may hold. CM's answers are a few hundred bytes (a smartcard
/// list a few KiB); a bigger body is a hostile or broken server: exit 6 with bounded memory.
pub const CM_BODY_CAP: u64 = 1024 * 1024;

/// A CM answer's body as text, at most [`CM_BODY_CAP`] bytes read whatever the server
/// sends or announces.
fn read_body(resp: Response, what: &str) -> Result<String, Error> {
    use std::io::Read;
    let too_big = || {
        Error::responder(format!(
            "CM's answer to {what} is larger than {CM_BODY_CAP} bytes (the most this tool \
             reads); nothing was sent to the card"
        ))
    };
    if resp.content_length().is_some_and(|n| n > CM_BODY_CAP) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    resp.take(CM_BODY_CAP + 1)
        .read_to_end(&mut body)
        .map_err(|e| {
            Error::responder(format!(
                "CM: cannot read the answer to {what}: {}",
                chain(&e)
            ))
        })?;
    if body.len() as u64 > CM_BODY_CAP {
        return Err(too_big());
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `base` + /CertificateManagement/api/v1.0/ + `path`, with the query values
/// percent-encoded ('+', '/' and '=' of base64 included).
pub fn api_url(base: &reqwest::Url, path: &str, query: &[(&str, &str)]) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty();
        for s in API_ROOT.split('/').chain(path.split('/')) {
            if !s.is_empty() {
                segs.push(s);
            }
        }
    }
    if !query.is_empty() {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                let enc: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
                format!("{k}={enc}")
            })
            .collect();
        url.set_query(Some(&q.join("&")));
    }
    url
}

/// The 200 body of authenticationresponse: a JSON string of base64 that
/// decodes to exactly `want` bytes.
pub fn decode_response(v: &Value, want: usize) -> Result<Vec<u8>, Error> {
    let text = v
        .as_str()
        .ok_or_else(|| malformed("the authentication response", "not a JSON string"))?;
    let bytes = B64.decode(text.trim().as_bytes()).map_err(|_| {
        malformed(
            "the authentication response",
            &format!("{:?} is not base64", sanitize(text)),
        )
    })?;
    if bytes.len() != want {
        return Err(Error::responder(format!(
            "CM's authentication response has {} bytes, the challenge {want}; nothing was sent to the card",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn malformed(what: &str, detail: &str) -> Error {
    Error::responder(format!("CM sent a malformed answer to {what}: {detail}"))
}

/// The message for a non-success HTTP status.
fn status_error(status: StatusCode, body: &str, what: &str) -> Error {
    let msg = match status.as_u16() {
        204 => "CM returned no response for this card/request".to_string(),
        401 => "CM refused authentication".to_string(),
        403 => "CM denied access: the caller needs the unblock permission / Sensitive API group"
            .to_string(),
        404 => "CM REST API not found: is Clm.WebApi.Enabled true, is the URL right?".to_string(),
        500 => {
            let message = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| {
                    field(&v, "Message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| body.to_string());
            match correlation_id(&message) {
                Some(id) => format!(
                    "CM had an internal error (correlation ID {id}); look it up in the CM event log"
                ),
                None => format!("CM had an internal error: {:?}", sanitize(&message)),
            }
        }
        code => format!("CM answered HTTP {code}: {:?}", sanitize(body)),
    };
    Error::responder(format!("{msg} (while trying to {what})"))
}

/// The GUID after "correlation" in a CM error message.
pub fn correlation_id(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find("correlation")?;
    message[at..]
        .split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .find(|w| Guid::parse(w, "").is_ok())
        .map(str::to_string)
}

/// Case-insensitive JSON field (CM mixes "Status" and "status").
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Server text for a message: printable, at most 200 characters. Scrubbed of secrets
/// first: cut short first, an echoed token could survive in part, unrecognised.
fn sanitize(s: &str) -> String {
    crate::scrub::text(s)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// Check `--cm URL`: http(s) with a host, no credentials, query or fragment;
/// plain http only with `--allow-http`. A URL that already ends in
/// /CertificateManagement/api/v1.0 is taken as the server root.
pub fn parse_base_url(text: &str, allow_http: bool) -> Result<reqwest::Url, Error> {
    let mut url = reqwest::Url::parse(text.trim())
        .map_err(|e| Error::usage(format!("--cm {:?} is not a URL: {e}", sanitize(text))))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(Error::usage(
                "--cm uses plain http: the challenge, response and credentials would cross the \
                 network unprotected. Use https, or pass --allow-http for a test server",
            ))
        }
        s => return Err(Error::usage(format!("--cm must be an https URL, not {s}:"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::usage("--cm has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::usage(
            "--cm must not carry credentials (user:password@): they would show in the process list",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::usage(
            "--cm must not have a query (?...) or fragment (#...)",
        ));
    }
    let path = url.path().trim_end_matches('/').to_string();
    if path
        .to_ascii_lowercase()
        .ends_with(&API_ROOT.to_ascii_lowercase())
    {
        let root = &path[..path.len() - API_ROOT.len()];
        url.set_path(root);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_docs_example_query() {
        let base = parse_base_url("https://cm.contoso.com", false).unwrap();
        let url = api_url(
            &base,
            "requests/a9b4b42c-cc50-4c9b-89d1-bbc0bcd5a099/smartcards/17cf063d-e337-4aa9-a822-346554ddd3c9/authenticationresponse",
            &[
                ("cardid", "bc88f13f-83ba-4037-8262-46eba1291c6e"),
                ("challenge", "1hFD+cz/0so="),
                ("diversified", "False"),
            ],
        );
        assert_eq!(
            url.as_str(),
            "https://cm.contoso.com/CertificateManagement/api/v1.0/requests/a9b4b42c-cc50-4c9b-89d1-bbc0bcd5a099/smartcards/17cf063d-e337-4aa9-a822-346554ddd3c9/authenticationresponse?cardid=bc88f13f-83ba-4037-8262-46eba1291c6e&challenge=1hFD%2Bcz%2F0so%3D&diversified=False"
        );
    }

    #[test]
    fn validates_the_cm_url() {
        assert!(parse_base_url("https://cm.contoso.com/", false).is_ok());
        let u = parse_base_url(
            "https://cm.contoso.com/certificatemanagement/api/v1.0/",
            false,
        )
        .unwrap();
        assert_eq!(u.as_str(), "https://cm.contoso.com/");
        let u = parse_base_url("https://cm.contoso.com/prefix", false).unwrap();
        assert_eq!(u.path(), "/prefix");
        for bad in [
            "http://cm.contoso.com",
            "ftp://cm.contoso.com",
            "https://user:pw@cm.contoso.com",
            "https://cm.contoso.com/?x=1",
            "https://cm.contoso.com/#f",
            "cm.contoso.com",
            "",
        ] {
            assert_eq!(
                parse_base_url(bad, false).unwrap_err().exit_code(),
                2,
                "{bad}"
            );
        }
        assert!(parse_base_url("http://127.0.0.1:8080", true).is_ok());
    }

    #[test]
    fn decodes_cm_responses() {
        let ok = decode_response(&Value::String("F0Zudm4wPLY=".into()), 8).unwrap();
        assert_eq!(hex::encode(ok), "17466e766e303cb6");
        for bad in [
            serde_json::json!(42),
            serde_json::json!({"x": 1}),
            serde_json::json!("not base64!"),
            serde_json::json!("F0Zudm4wPA=="),
            serde_json::json!("F0Zudm4wPLYA"),
        ] {
            assert_eq!(
                decode_response(&bad, 8).unwrap_err().exit_code(),
                6,
                "{bad}"
            );
        }
    }

    #[test]
    fn finds_the_correlation_id() {
        let m = "An error has occurred. Correlation ID: 0f8fad5b-d9cb-469f-a165-70867728950e.";
        assert_eq!(
            correlation_id(m).as_deref(),
            Some("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
        assert_eq!(correlation_id("no id here"), None);
        let e = status_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({"Message": m}).to_string(),
            "x",
        );
        assert!(
            e.to_string()
                .contains("0f8fad5b-d9cb-469f-a165-70867728950e"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 6);
    }

    #[test]
    fn status_names_and_numbers() {
        assert_eq!(
            RequestStatus::from_json(&serde_json::json!(3)),
            RequestStatus::Approved
        );
        assert_eq!(
            RequestStatus::from_json(&serde_json::json!("Approved")),
            RequestStatus::Approved
        );
        assert_eq!(
            RequestStatus::from_json(&serde_json::json!("denied")),
            RequestStatus::Denied
        );
        let num = |n: u64| RequestStatus::from_json(&serde_json::json!(n));
        assert_eq!(num(1), RequestStatus::Pending);
        assert_eq!(num(2), RequestStatus::Denied);
        assert_eq!(num(0), RequestStatus::Other("0".into()));
        assert_eq!(num(99), RequestStatus::Other("99".into()));
    }

    #[test]
    fn maps_http_statuses_to_messages() {
        for (code, text) in [
            (204, "no response for this card/request"),
            (401, "refused authentication"),
            (403, "Sensitive API group"),
            (404, "Clm.WebApi.Enabled"),
        ] {
            let e = status_error(StatusCode::from_u16(code).unwrap(), "", "x");
            assert!(e.to_string().contains(text), "{code}: {e}");
            assert_eq!(e.exit_code(), 6);
        }
    }
}
