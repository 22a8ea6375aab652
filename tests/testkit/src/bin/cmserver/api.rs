//! The CM API: authentication gates, then routing, then faults, then the endpoint handlers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde_json::{json, Map, Value};

use crate::cli::AuthGate;
use crate::faults::{internal_error, negotiate_challenge, no_resource, Faults};
use crate::http::{ConnMeta, Rejected, Request, Response, Service};
use crate::keys::KeyStore;
use crate::log::RequestLog;
use crate::routes::{match_path, parse_bool, Endpoint, PathMatch, Query, Route};
use crate::state::{ApiError, State};
use crate::util::{is_guid, normalize_id};

const IIS_404: &str = "<!DOCTYPE html><html><head><title>404 - File or directory not found.\
</title></head><body><h2>404 - File or directory not found.</h2><h3>The resource you are \
looking for might have been removed, had its name changed, or is temporarily unavailable.\
</h3></body></html>";

pub struct App {
    pub state: Mutex<State>,
    pub keys: KeyStore,
    pub faults: Faults,
    pub auth: AuthGate,
    /// `--negotiate-keytab`: the Negotiate gate (per connection, before everything else).
    pub negotiate: Option<crate::negotiate::Gate>,
    /// Unknown cards, smart cards and requests are accepted instead of 404.
    pub lenient: bool,
    pub log: RequestLog,
    /// "http" or "https", for Location headers and error messages.
    pub scheme: &'static str,
}

type Info = Map<String, Value>;

impl Service for App {
    fn handle(&self, req: &Request, conn: &ConnMeta, conn_seq: u64) -> Response {
        let mut info = Info::new();
        let mut final_token = None;
        if let Some(gate) = &self.negotiate {
            match gate.check(req, conn, &mut info) {
                crate::negotiate::Verdict::Pass(token) => final_token = token,
                crate::negotiate::Verdict::Deny(response) => {
                    let endpoint = match match_path(&req.path) {
                        PathMatch::Route(r) => r.endpoint(&req.method).ok(),
                        _ => None,
                    };
                    let (status, route) = (response.status, endpoint.map(Endpoint::name));
                    self.log
                        .request(req, conn, conn_seq, status, route, Value::Object(info));
                    return response;
                }
            }
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| self.dispatch(req, &mut info)));
        let (response, endpoint) = match outcome {
            Ok(r) => r,
            Err(_) => {
                // Never expected; a bug here must not take the connection thread down.
                let mut i = json!({"panic": true});
                let r = internal_error(&mut i);
                if let Value::Object(m) = i {
                    info.extend(m);
                }
                (r, None)
            }
        };
        let mut response = response;
        if let Some(token) = final_token {
            response = response.header("WWW-Authenticate", &token);
        }
        self.log.request(
            req,
            conn,
            conn_seq,
            response.status,
            endpoint.map(Endpoint::name),
            Value::Object(info),
        );
        response
    }

    fn rejected(&self, r: &Rejected, conn: &ConnMeta, conn_seq: u64, response: &Response) {
        self.log.rejected(r, conn, conn_seq, response.status);
    }
}

fn api_error(e: ApiError, info: &mut Info) -> Response {
    info.insert("error".into(), json!(e.message));
    Response::json(e.status, &json!({"Message": e.message}))
}

/// Web API's message for a route parameter that does not bind to a non-nullable type.
fn binding_error(param: &str, ty: &str) -> ApiError {
    ApiError::new(
        400,
        format!(
            "The request is invalid. The parameters dictionary contains a null entry for \
             parameter '{param}' of non-nullable type '{ty}'."
        ),
    )
}

fn guid_param(name: &str, value: &str) -> Result<(), ApiError> {
    if is_guid(value) {
        Ok(())
    } else {
        Err(binding_error(name, "System.Guid"))
    }
}

/// The JSON body of a POST/PUT: Web API answers 415 without a JSON media type.
fn json_body(req: &Request) -> Result<Value, ApiError> {
    let ct = req.header("content-type").unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !(media == "application/json" || media == "text/json" || media.ends_with("+json")) {
        let shown = if media.is_empty() {
            "application/octet-stream".to_string()
        } else {
            media
        };
        return Err(ApiError::new(
            415,
            format!(
                "The request entity's media type '{shown}' is not supported for this resource."
            ),
        ));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::new(400, format!("The request is invalid: {e}")))
}

impl App {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request_uri(&self, req: &Request) -> String {
        let host = req.header("host").unwrap_or("localhost");
        format!("{}://{}{}", self.scheme, host, req.target)
    }

    /// 401 unless the gates let the request through.
    fn check_auth(&self, req: &Request, info: &mut Info) -> Option<Response> {
        if self.auth.always_401 {
            info.insert("auth".into(), json!("always-401"));
            return Some(negotiate_challenge());
        }
        if let Some(token) = &self.auth.bearer {
            let given = req
                .header("authorization")
                .and_then(|h| h.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim());
            if given != Some(token.as_str()) {
                let why = if given.is_some() {
                    "bearer-wrong"
                } else {
                    "bearer-missing"
                };
                info.insert("auth".into(), json!(why));
                return Some(
                    Response::json(
                        401,
                        &json!({"Message": "Authorization has been denied for this request."}),
                    )
                    .header("WWW-Authenticate", "Bearer"),
                );
            }
        }
        None
    }

    fn dispatch(&self, req: &Request, info: &mut Info) -> (Response, Option<Endpoint>) {
        let matched = match_path(&req.path);
        let endpoint = match &matched {
            PathMatch::Route(r) => r.endpoint(&req.method).ok(),
            _ => None,
        };
        if let Some(denied) = self.check_auth(req, info) {
            return (denied, endpoint);
        }
        let route = match matched {
            PathMatch::OutsideApi => return (Response::html(404, IIS_404), None),
            PathMatch::NoRoute => return (no_resource(&self.request_uri(req)), None),
            PathMatch::Route(r) => r,
        };
        let ep = match route.endpoint(&req.method) {
            Ok(ep) => ep,
            Err(allow) => {
                let msg = format!(
                    "The requested resource does not support http method '{}'.",
                    req.method
                );
                return (
                    Response::json(405, &json!({ "Message": msg })).header("Allow", allow),
                    None,
                );
            }
        };
        if let Some(d) = self.faults.delay_for(ep) {
            info.insert("delay_ms".into(), json!(d.as_millis() as u64));
            std::thread::sleep(d);
        }
        if let Some(code) = self.faults.echo_headers {
            info.insert("echo_headers".into(), json!(code));
            return (crate::faults::echo_headers(code, &req.headers), Some(ep));
        }
        if let Some(n) = self.faults.huge_body {
            info.insert("huge_body".into(), json!(n));
            return (crate::faults::huge_body(n), Some(ep));
        }
        if let Some(injected) = self.faults.injected(ep, &self.request_uri(req)) {
            if let Value::Object(m) = injected.info {
                info.extend(m);
            }
            return (injected.response, Some(ep));
        }
        let query = Query::parse(req.query.as_deref());
        let result = match (ep, route) {
            (Endpoint::AuthResponse, Route::AuthResponse { reqid, scid }) => {
                self.auth_response(&reqid, &scid, &query, info)
            }
            (Endpoint::DiversifiedKey, Route::DiversifiedKey { reqid, scid }) => {
                self.diversified_key(&reqid, &scid, &query, info)
            }
            (Endpoint::Smartcards, _) => Ok(self.smartcards(&query, info)),
            (Endpoint::Smartcard, Route::Smartcard { scid }) => self.smartcard(&scid),
            (Endpoint::Operations, Route::Operations { scid }) => self.operations(&scid),
            (Endpoint::ListRequests, _) => Ok(self.list_requests()),
            (Endpoint::CreateRequest, _) => self.create_request(req, info),
            (Endpoint::GetRequest, Route::Request { id }) => self.get_request(&id, info),
            (Endpoint::PutRequest, Route::Request { id }) => self.put_request(&id, req, info),
            // Route::endpoint never pairs these otherwise.
            _ => Err(ApiError::new(500, "routing mismatch")),
        };
        let response = result.unwrap_or_else(|e| api_error(e, info));
        (response, Some(ep))
    }

    /// The checks CM makes before answering for a card: the request exists, is for this smart
    /// card, is approved, and the card id is the smart card's. Skipped with `--lenient`.
    fn check_card_request(&self, reqid: &str, scid: &str, card_id: &str) -> Result<(), ApiError> {
        if self.lenient {
            return Ok(());
        }
        let st = self.state();
        let r = st
            .request(reqid)
            .ok_or_else(|| ApiError::new(404, format!("The request {reqid} was not found.")))?;
        let card = st
            .smartcard(scid)
            .ok_or_else(|| ApiError::new(404, format!("The smart card {scid} was not found.")))?;
        if r.smartcard != scid {
            return Err(ApiError::new(
                400,
                format!("The request {reqid} is not for smart card {scid}."),
            ));
        }
        if card.card_id != normalize_id(card_id) {
            return Err(ApiError::new(
                400,
                format!("The card id {card_id} does not belong to smart card {scid}."),
            ));
        }
        if !r.status.allows_response() {
            return Err(ApiError::new(
                400,
                format!(
                    "The request {reqid} is {}: a response is only given for an approved request.",
                    r.status.name()
                ),
            ));
        }
        Ok(())
    }

    fn auth_response(
        &self,
        reqid: &str,
        scid: &str,
        q: &Query,
        info: &mut Info,
    ) -> Result<Response, ApiError> {
        guid_param("reqid", reqid)?;
        guid_param("scid", scid)?;
        let diversified = q
            .get("diversified")
            .and_then(parse_bool)
            .ok_or_else(|| binding_error("diversified", "System.Boolean"))?;
        let card_id = q
            .get("cardid")
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| ApiError::new(400, "The card id (cardid) is required."))?;
        let text = q
            .get("challenge")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ApiError::new(400, "The challenge is required."))?;
        info.insert("cardid".into(), json!(card_id));
        info.insert("diversified".into(), json!(diversified));
        if let Some(atr) = q.get("atr") {
            info.insert("atr".into(), json!(atr));
        }
        let challenge = B64.decode(text).map_err(|_| {
            ApiError::new(
                400,
                format!("The challenge '{text}' is not a valid base64 string."),
            )
        })?;
        let challenge: [u8; 8] = challenge.try_into().map_err(|v: Vec<u8>| {
            ApiError::new(
                400,
                format!("The challenge must be 8 bytes long, not {}.", v.len()),
            )
        })?;
        info.insert("challenge".into(), json!(hex::encode(challenge)));
        self.check_card_request(reqid, scid, card_id)?;
        let (mut key, source) = self.keys.lookup(card_id, diversified);
        info.insert("key_source".into(), json!(source.name()));
        if self.faults.wrong_response {
            key = key.perturbed(b"wrong-response");
            info.insert("wrong_response".into(), json!(true));
        }
        let response = key.encrypt(challenge);
        info.insert("response".into(), json!(hex::encode(response)));
        if let Some(m) = self.faults.malformed {
            info.insert("malformed".into(), json!(format!("{m:?}").to_lowercase()));
        }
        Ok(self.faults.auth_response_body(response))
    }

    fn diversified_key(
        &self,
        reqid: &str,
        scid: &str,
        q: &Query,
        info: &mut Info,
    ) -> Result<Response, ApiError> {
        guid_param("reqid", reqid)?;
        guid_param("scid", scid)?;
        let card_id = q
            .get("cardid")
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| ApiError::new(400, "The card id (cardid) is required."))?;
        info.insert("cardid".into(), json!(card_id));
        self.check_card_request(reqid, scid, card_id)?;
        let (key, source) = self.keys.diversified_key(card_id);
        info.insert("key_source".into(), json!(source.name()));
        Ok(Response::json(200, &json!(B64.encode(key.to_24()))))
    }

    fn smartcards(&self, q: &Query, info: &mut Info) -> Response {
        let mut st = self.state();
        let card_id = q.get("cardid").filter(|c| !c.trim().is_empty());
        if let Some(id) = card_id {
            info.insert("cardid".into(), json!(id));
            if self.lenient && st.smartcards_by_card_id(Some(id)).is_empty() {
                let uuid = st.auto_register(id).uuid.clone();
                info.insert("auto_registered".into(), json!(uuid));
            }
        }
        let list: Vec<Value> = st
            .smartcards_by_card_id(card_id)
            .into_iter()
            .map(|c| st.smartcard_json(c))
            .collect();
        info.insert("count".into(), json!(list.len()));
        Response::json(200, &Value::Array(list))
    }

    fn smartcard(&self, scid: &str) -> Result<Response, ApiError> {
        guid_param("id", scid)?;
        let st = self.state();
        let card = st
            .smartcard(scid)
            .ok_or_else(|| ApiError::new(404, format!("The smart card {scid} was not found.")))?;
        Ok(Response::json(200, &st.smartcard_json(card)))
    }

    fn operations(&self, scid: &str) -> Result<Response, ApiError> {
        guid_param("id", scid)?;
        let st = self.state();
        if st.smartcard(scid).is_none() && !self.lenient {
            return Err(ApiError::new(
                404,
                format!("The smart card {scid} was not found."),
            ));
        }
        Ok(Response::json(200, &json!(st.operations_or_default(scid))))
    }

    fn list_requests(&self) -> Response {
        let st = self.state();
        let list: Vec<Value> = st.requests().iter().map(|r| st.request_json(r)).collect();
        Response::json(200, &Value::Array(list))
    }

    fn create_request(&self, req: &Request, info: &mut Info) -> Result<Response, ApiError> {
        let body = json_body(req)?;
        let mut st = self.state();
        let uuid = st.create_request(&body, self.lenient)?;
        let r = st.request(&uuid).expect("just created");
        info.insert("created".into(), json!(uuid));
        info.insert("type".into(), json!(r.request_type));
        info.insert("status".into(), json!(r.status.name()));
        let host = req.header("host").unwrap_or("localhost");
        let location = format!(
            "{}://{}/CertificateManagement/api/v1.0/requests/{uuid}",
            self.scheme, host
        );
        Ok(
            Response::json(201, &json!(format!("api/v1.0/requests/{uuid}")))
                .header("Location", &location),
        )
    }

    fn get_request(&self, id: &str, info: &mut Info) -> Result<Response, ApiError> {
        guid_param("id", id)?;
        let mut st = self.state();
        let r = st
            .poll_request(id)
            .ok_or_else(|| ApiError::new(404, format!("The request {id} was not found.")))?
            .clone();
        info.insert("status".into(), json!(r.status.name()));
        info.insert("polls".into(), json!(r.polls));
        Ok(Response::json(200, &st.request_json(&r)))
    }

    fn put_request(&self, id: &str, req: &Request, info: &mut Info) -> Result<Response, ApiError> {
        guid_param("id", id)?;
        let body = json_body(req)?;
        let mut st = self.state();
        let r = st.put_status(id, &body)?.clone();
        info.insert("final_status".into(), json!(r.status.name()));
        Ok(Response::json(200, &st.request_json(&r)))
    }
}
