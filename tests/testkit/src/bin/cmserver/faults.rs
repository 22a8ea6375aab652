//! Fault injection: answers that a real CM (or what stands in front of it) may give, so each
//! error path of the client can be driven from a test.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde_json::{json, Value};

use crate::http::Response;
use crate::routes::Endpoint;

/// What `--malformed` does to a 200 authenticationresponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The body is not JSON at all (an HTML page).
    Json,
    /// A JSON string that is not base64.
    Base64,
    /// Base64 of 7 bytes (the response cut short).
    Length7,
    /// Base64 of 9 bytes (the response plus one byte).
    Length9,
}

impl Malformed {
    pub fn parse(s: &str) -> Result<Malformed, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Malformed::Json),
            "base64" => Ok(Malformed::Base64),
            "length" | "length7" => Ok(Malformed::Length7),
            "length9" => Ok(Malformed::Length9),
            _ => Err(format!(
                "--malformed {s:?}: expected json, base64, length (= length7) or length9"
            )),
        }
    }
}

/// Which endpoints a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    All,
    One(Endpoint),
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        if s == "*" || s.eq_ignore_ascii_case("all") {
            return Ok(Target::All);
        }
        Endpoint::from_name(s).map(Target::One).ok_or_else(|| {
            let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
            format!(
                "unknown endpoint {s:?}: expected all or one of {}",
                names.join(", ")
            )
        })
    }

    fn matches(self, e: Endpoint) -> bool {
        match self {
            Target::All => true,
            Target::One(x) => x == e,
        }
    }
}

/// The fault options, as given on the command line.
#[derive(Debug, Default)]
pub struct Faults {
    /// `--fail ENDPOINT=CODE` / `--fail-authresponse CODE`
    pub fail: Vec<(Target, u16)>,
    /// `--fail-times N`: only the first N matching requests fail (all of them without it).
    pub fail_times: Option<u32>,
    /// `--delay ENDPOINT=MS` / `--delay-ms MS` (authenticationresponse)
    pub delay: Vec<(Target, u64)>,
    /// `--malformed KIND` (authenticationresponse, on success)
    pub malformed: Option<Malformed>,
    /// `--wrong-response`: answer with a response computed under a different key.
    pub wrong_response: bool,
    /// `--echo-headers CODE` (400 or 500): every API request is answered CODE with its
    /// request headers in the body, as an ASP.NET detailed error page, a WAF or a
    /// debugging proxy does (bearer token included).
    pub echo_headers: Option<u16>,
    /// `--huge-body BYTES`: every API request is answered 200 with a JSON string body of
    /// this many bytes.
    pub huge_body: Option<usize>,
    failures_served: AtomicU32,
}

/// An injected failure, with what the log should say about it.
pub struct Injected {
    pub response: Response,
    pub info: Value,
}

impl Faults {
    /// Validate a status code for `--fail`.
    pub fn parse_code(s: &str) -> Result<u16, String> {
        match s.trim().parse::<u16>() {
            Ok(c) if c == 204 || (300..=599).contains(&c) => Ok(c),
            _ => Err(format!(
                "status {s:?}: expected 204 or a code from 300 to 599"
            )),
        }
    }

    /// How long to wait before answering.
    pub fn delay_for(&self, e: Endpoint) -> Option<Duration> {
        let ms: u64 = self
            .delay
            .iter()
            .filter(|(t, _)| t.matches(e))
            .map(|(_, ms)| *ms)
            .max()?;
        Some(Duration::from_millis(ms))
    }

    /// The injected failure for this request, if any (counts against `--fail-times`).
    pub fn injected(&self, e: Endpoint, request_uri: &str) -> Option<Injected> {
        // The most specific rule wins: an endpoint's own rule over `all`.
        let code = self
            .fail
            .iter()
            .rev()
            .find(|(t, _)| *t == Target::One(e))
            .or_else(|| self.fail.iter().rev().find(|(t, _)| *t == Target::All))
            .map(|(_, c)| *c)?;
        if let Some(limit) = self.fail_times {
            let served = self.failures_served.fetch_add(1, Ordering::SeqCst);
            if served >= limit {
                return None;
            }
        }
        let mut info = json!({"injected": code});
        let response = failure_response(code, request_uri, &mut info);
        Some(Injected { response, info })
    }

    /// The authenticationresponse body for `response`, shaped by `--malformed`.
    pub fn auth_response_body(&self, response: [u8; 8]) -> Response {
        match self.malformed {
            None => Response::json(200, &json!(B64.encode(response))),
            Some(Malformed::Json) => Response::raw_json(
                200,
                b"<html><head><title>Sign in</title></head><body>Please sign in.</body></html>"
                    .to_vec(),
            ),
            Some(Malformed::Base64) => {
                // The right answer with one character made invalid.
                let mut s = B64.encode(response).into_bytes();
                s[4] = b'!';
                Response::json(200, &json!(String::from_utf8_lossy(&s)))
            }
            Some(Malformed::Length7) => Response::json(200, &json!(B64.encode(&response[..7]))),
            Some(Malformed::Length9) => {
                let mut v = response.to_vec();
                v.push(0x00);
                Response::json(200, &json!(B64.encode(v)))
            }
        }
    }
}

/// `--echo-headers`: the request's headers in a 500 (Web API JSON with a detailed
/// `Message`) or 400 (an HTML page) body.
pub fn echo_headers(code: u16, headers: &[(String, String)]) -> Response {
    let lines: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    if code == 500 {
        Response::json(
            500,
            &json!({"Message": format!(
                "An error has occurred. Request headers: {}",
                lines.join("; ")
            )}),
        )
    } else {
        Response::html(
            code,
            &format!(
                "<html><body><h2>Bad Request</h2><pre>{}</pre></body></html>",
                lines.join("\r\n")
            ),
        )
    }
}

/// `--huge-body`: a 200 JSON string of `n` bytes.
pub fn huge_body(n: usize) -> Response {
    let mut body = vec![b'A'; n.max(2)];
    body[0] = b'"';
    let last = body.len() - 1;
    body[last] = b'"';
    Response::raw_json(200, body)
}

/// Web API's body for an unhandled error: a correlation id and nothing else.
pub fn internal_error(info: &mut Value) -> Response {
    let id = crate::util::new_guid();
    info["correlation_id"] = json!(id);
    Response::json(
        500,
        &json!({"Message": format!("An error has occurred. Correlation ID: {id}")}),
    )
}

/// The 401 IIS sends when Windows authentication is required.
pub fn negotiate_challenge() -> Response {
    Response::html(
        401,
        "<html><head><title>401 - Unauthorized: Access is denied due to invalid credentials.\
         </title></head><body><h2>401 - Unauthorized: Access is denied due to invalid \
         credentials.</h2></body></html>",
    )
    .header("WWW-Authenticate", "Negotiate")
}

/// Web API's 404 for a path under the API prefix that matches nothing.
pub fn no_resource(request_uri: &str) -> Response {
    Response::json(
        404,
        &json!({"Message": format!(
            "No HTTP resource was found that matches the request URI '{request_uri}'."
        )}),
    )
}

fn failure_response(code: u16, request_uri: &str, info: &mut Value) -> Response {
    match code {
        204 => Response::new(204),
        401 => Response::json(
            401,
            &json!({"Message": "Authorization has been denied for this request."}),
        )
        .header("WWW-Authenticate", "Negotiate"),
        403 => Response::json(
            403,
            &json!({"Message": "Access denied: the caller is not permitted to call this API."}),
        ),
        404 => no_resource(request_uri),
        500 => internal_error(info),
        503 => Response::html(
            503,
            "<html><body><h1>Service Unavailable</h1></body></html>",
        ),
        c => Response::json(
            c,
            &json!({"Message": format!("Injected failure (HTTP {c}).")}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_rules_and_times() {
        let f = Faults {
            fail: vec![
                (Target::All, 503),
                (Target::One(Endpoint::AuthResponse), 500),
            ],
            fail_times: Some(2),
            ..Faults::default()
        };
        let a = f.injected(Endpoint::AuthResponse, "u").unwrap();
        assert_eq!(a.response.status, 500);
        let body: Value = serde_json::from_slice(&a.response.body).unwrap();
        let id = a.info["correlation_id"].as_str().unwrap();
        assert!(body["Message"].as_str().unwrap().ends_with(id));
        assert_eq!(
            f.injected(Endpoint::Smartcards, "u")
                .unwrap()
                .response
                .status,
            503
        );
        assert!(f.injected(Endpoint::AuthResponse, "u").is_none());
    }

    #[test]
    fn malformed_bodies() {
        let r = [0x17, 0x46, 0x6e, 0x76, 0x6e, 0x30, 0x3c, 0xb6];
        let body = |m| {
            let f = Faults {
                malformed: m,
                ..Faults::default()
            };
            f.auth_response_body(r).body
        };
        assert_eq!(body(None), b"\"F0Zudm4wPLY=\"");
        assert!(serde_json::from_slice::<Value>(&body(Some(Malformed::Json))).is_err());
        let s: String = serde_json::from_slice(&body(Some(Malformed::Base64))).unwrap();
        assert!(B64.decode(s).is_err());
        for (m, n) in [(Malformed::Length7, 7), (Malformed::Length9, 9)] {
            let s: String = serde_json::from_slice(&body(Some(m))).unwrap();
            assert_eq!(B64.decode(s).unwrap().len(), n);
        }
    }

    #[test]
    fn codes_and_targets() {
        assert!(Faults::parse_code("204").is_ok());
        assert!(Faults::parse_code("200").is_err());
        assert!(Faults::parse_code("600").is_err());
        assert_eq!(Target::parse("*"), Ok(Target::All));
        assert_eq!(
            Target::parse("AuthResponse"),
            Ok(Target::One(Endpoint::AuthResponse))
        );
        assert!(Target::parse("nope").is_err());
    }
}
