//! What the fake CM knows: smart cards, requests, and how a request's status moves.

use std::time::SystemTime;

use serde_json::{json, Value};

use crate::util::{iso8601, new_guid, normalize_id};

/// The docs' example ids (always registered).
pub const DOCS_REQUEST: &str = "a9b4b42c-cc50-4c9b-89d1-bbc0bcd5a099";
pub const DOCS_SMARTCARD: &str = "17cf063d-e337-4aa9-a822-346554ddd3c9";
pub const DOCS_CARD_ID: &str = "bc88f13f-83ba-4037-8262-46eba1291c6e";

pub const DEFAULT_OPERATIONS: [&str; 3] = ["renew", "unblock", "retire"];
/// A fixed profile template id for every card.
const PROFILE_TEMPLATE: &str = "5a0f1c5e-2b1d-4c1e-9d6a-3e7f00c0ffee";
/// A fixed "assigned user" id.
const USER: &str = "0c8c3b58-7e42-4f0e-8f7a-5b1f1d2e3a4b";
/// An ATR of a Base CSP card (only reported, never checked).
const DEFAULT_ATR: &str = "3b8d01805a0a0103200311d4d6fa0a0005";

/// Request status. The names are CM's (RequestStatus); the numbers are this server's
/// choice, made to agree with the two values inferred from the docs (3 = Approved,
/// 8 = Completed). "Abandoned" is what a PUT may set; it gets its own number here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    None = 0,
    Pending = 1,
    Denied = 2,
    Approved = 3,
    Executing = 4,
    Failed = 5,
    Canceled = 6,
    Abandoned = 7,
    Completed = 8,
}

impl RequestStatus {
    const ALL: [RequestStatus; 9] = [
        RequestStatus::None,
        RequestStatus::Pending,
        RequestStatus::Denied,
        RequestStatus::Approved,
        RequestStatus::Executing,
        RequestStatus::Failed,
        RequestStatus::Canceled,
        RequestStatus::Abandoned,
        RequestStatus::Completed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RequestStatus::None => "None",
            RequestStatus::Pending => "Pending",
            RequestStatus::Denied => "Denied",
            RequestStatus::Approved => "Approved",
            RequestStatus::Executing => "Executing",
            RequestStatus::Failed => "Failed",
            RequestStatus::Canceled => "Canceled",
            RequestStatus::Abandoned => "Abandoned",
            RequestStatus::Completed => "Completed",
        }
    }

    /// From a name (any case) or a number, as a JSON body may hold either.
    pub fn from_json(v: &Value) -> Option<RequestStatus> {
        match v {
            Value::String(s) => {
                let s = s.trim();
                if let Ok(n) = s.parse::<u64>() {
                    return Self::ALL.into_iter().find(|x| *x as u64 == n);
                }
                Self::ALL
                    .into_iter()
                    .find(|x| x.name().eq_ignore_ascii_case(s))
            }
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| Self::ALL.into_iter().find(|x| *x as u64 == n)),
            _ => None,
        }
    }

    /// Whether a challenge may be answered for a request in this status.
    pub fn allows_response(self) -> bool {
        matches!(self, RequestStatus::Approved | RequestStatus::Executing)
    }
}

/// How requests get decided.
#[derive(Debug, Clone, Default)]
pub struct Flow {
    /// The first N `GET /requests/{id}` answer Pending; the one after that Approved.
    /// 0: requests are approved at creation (approval by policy).
    pub approve_after: u32,
    /// Deny instead of approve.
    pub deny: bool,
    /// Render Status as a name ("Approved") instead of a number (3).
    pub status_names: bool,
}

#[derive(Debug, Clone)]
pub struct Smartcard {
    pub uuid: String,
    /// Normalized card id (no braces, lowercase).
    pub card_id: String,
    pub atr: String,
    pub operations: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CmRequest {
    pub uuid: String,
    pub request_type: String,
    /// Normalized smart card uuid (may be empty for a request without one).
    pub smartcard: String,
    pub comment: String,
    pub data_collection: Value,
    pub status: RequestStatus,
    pub polls: u32,
    pub submitted: SystemTime,
    pub completed: Option<SystemTime>,
}

/// An API-level error: a status and a message for `{"Message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

/// The request types CM knows (RequestType); unknown names are refused with 400.
const REQUEST_TYPES: [&str; 14] = [
    "Enroll",
    "Duplicate",
    "OfflineUnblock",
    "OnlineUpdate",
    "Recover",
    "RecoverOnBehalf",
    "Reinstate",
    "Renew",
    "Retire",
    "Revoke",
    "Suspend",
    "TemporaryCards",
    "Unblock",
    "Disable",
];

#[derive(Debug, Default)]
pub struct State {
    pub flow: Flow,
    smartcards: Vec<Smartcard>,
    requests: Vec<CmRequest>,
    default_operations: Vec<String>,
}

impl State {
    /// A state holding the docs' example card and an approved Unblock request for it.
    pub fn new(flow: Flow, default_operations: Option<Vec<String>>) -> State {
        let mut s = State {
            flow,
            smartcards: Vec::new(),
            requests: Vec::new(),
            default_operations: default_operations
                .unwrap_or_else(|| DEFAULT_OPERATIONS.iter().map(|s| s.to_string()).collect()),
        };
        s.add_smartcard(DOCS_SMARTCARD, DOCS_CARD_ID);
        s.add_request(DOCS_REQUEST, DOCS_SMARTCARD, RequestStatus::Approved);
        s
    }

    /// Register (or re-register) a smart card.
    pub fn add_smartcard(&mut self, scid: &str, card_id: &str) {
        let uuid = normalize_id(scid);
        self.smartcards.retain(|c| c.uuid != uuid);
        self.smartcards.push(Smartcard {
            uuid,
            card_id: normalize_id(card_id),
            atr: DEFAULT_ATR.to_string(),
            operations: self.default_operations.clone(),
        });
    }

    pub fn set_operations(&mut self, scid: &str, ops: Vec<String>) -> Result<(), String> {
        let id = normalize_id(scid);
        match self.smartcards.iter_mut().find(|c| c.uuid == id) {
            Some(c) => {
                c.operations = ops;
                Ok(())
            }
            None => Err(format!(
                "--operations {scid}: no such smart card (register it with --smartcard)"
            )),
        }
    }

    pub fn set_atr(&mut self, scid: &str, atr: &str) -> Result<(), String> {
        let id = normalize_id(scid);
        match self.smartcards.iter_mut().find(|c| c.uuid == id) {
            Some(c) => {
                c.atr = atr.to_string();
                Ok(())
            }
            None => Err(format!("--atr {scid}: no such smart card")),
        }
    }

    /// Register an Unblock request for a card in a given status.
    pub fn add_request(&mut self, reqid: &str, scid: &str, status: RequestStatus) {
        let uuid = normalize_id(reqid);
        self.requests.retain(|r| r.uuid != uuid);
        self.requests.push(CmRequest {
            uuid,
            request_type: "Unblock".into(),
            smartcard: normalize_id(scid),
            comment: String::new(),
            data_collection: json!([]),
            status,
            polls: 0,
            submitted: SystemTime::now(),
            completed: None,
        });
    }

    pub fn smartcard(&self, scid: &str) -> Option<&Smartcard> {
        self.smartcards.iter().find(|c| c.uuid == scid)
    }

    pub fn smartcards_by_card_id(&self, card_id: Option<&str>) -> Vec<&Smartcard> {
        let wanted = card_id.map(normalize_id);
        self.smartcards
            .iter()
            .filter(|c| wanted.as_deref().is_none_or(|w| c.card_id == w))
            .collect()
    }

    /// `--lenient`: make up a smart card for an unknown card id.
    pub fn auto_register(&mut self, card_id: &str) -> &Smartcard {
        let scid = new_guid();
        self.add_smartcard(&scid, card_id);
        self.smartcards.last().expect("just pushed")
    }

    pub fn request(&self, id: &str) -> Option<&CmRequest> {
        self.requests.iter().find(|r| r.uuid == id)
    }

    pub fn requests(&self) -> &[CmRequest] {
        &self.requests
    }

    /// The operations for a card; the defaults for an unknown one.
    pub fn operations_or_default(&self, scid: &str) -> Vec<String> {
        self.smartcard(scid)
            .map(|c| c.operations.clone())
            .unwrap_or_else(|| self.default_operations.clone())
    }

    /// POST /requests. `lenient` accepts unknown smart cards.
    pub fn create_request(&mut self, body: &Value, lenient: bool) -> Result<String, ApiError> {
        let Value::Object(_) = body else {
            return Err(ApiError::new(400, "The request is invalid."));
        };
        let rtype = match get_ci(body, "type") {
            Some(Value::String(s)) => REQUEST_TYPES
                .iter()
                .find(|t| t.eq_ignore_ascii_case(s.trim()))
                .ok_or_else(|| ApiError::new(400, format!("Unknown request type '{s}'.")))?,
            Some(_) => return Err(ApiError::new(400, "The request type is invalid.")),
            None => return Err(ApiError::new(400, "The request type is required.")),
        };
        let scid = match get_ci(body, "smartcard") {
            Some(Value::String(s)) if crate::util::is_guid(s) => normalize_id(s),
            Some(Value::String(s)) => {
                return Err(ApiError::new(
                    400,
                    format!("'{s}' is not a valid smart card id."),
                ))
            }
            Some(Value::Null) | None => {
                return Err(ApiError::new(400, "The smart card is required."))
            }
            Some(_) => return Err(ApiError::new(400, "The smart card is invalid.")),
        };
        let data_collection = match get_ci(body, "datacollection") {
            None | Some(Value::Null) => json!([]),
            Some(v @ Value::Array(_)) => v.clone(),
            Some(_) => return Err(ApiError::new(400, "DataCollection must be an array.")),
        };
        let comment = match get_ci(body, "comment") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ApiError::new(400, "Comment must be a string.")),
        };
        match self.smartcard(&scid) {
            Some(card) => {
                let op = rtype.to_ascii_lowercase();
                if !card.operations.iter().any(|o| o.eq_ignore_ascii_case(&op)) {
                    return Err(ApiError::new(
                        403,
                        format!("The operation '{rtype}' is not permitted for smart card {scid}."),
                    ));
                }
            }
            None if lenient => {}
            None => {
                return Err(ApiError::new(
                    404,
                    format!("The smart card {scid} was not found."),
                ))
            }
        }
        let status = if self.flow.approve_after == 0 {
            self.decided()
        } else {
            RequestStatus::Pending
        };
        let uuid = new_guid();
        self.requests.push(CmRequest {
            uuid: uuid.clone(),
            request_type: rtype.to_string(),
            smartcard: scid,
            comment,
            data_collection,
            status,
            polls: 0,
            submitted: SystemTime::now(),
            completed: None,
        });
        Ok(uuid)
    }

    fn decided(&self) -> RequestStatus {
        if self.flow.deny {
            RequestStatus::Denied
        } else {
            RequestStatus::Approved
        }
    }

    /// GET /requests/{id}: counts the poll and decides a pending request when its time has
    /// come.
    pub fn poll_request(&mut self, id: &str) -> Option<&CmRequest> {
        let decided = self.decided();
        let after = self.flow.approve_after;
        let r = self.requests.iter_mut().find(|r| r.uuid == id)?;
        r.polls = r.polls.saturating_add(1);
        if r.status == RequestStatus::Pending && r.polls > after {
            r.status = decided;
        }
        Some(r)
    }

    /// PUT /requests/{id} {"status": ...}: Completed from Approved/Executing; Canceled or
    /// Abandoned from Pending/Approved/Executing.
    pub fn put_status(&mut self, id: &str, body: &Value) -> Result<&CmRequest, ApiError> {
        let Value::Object(_) = body else {
            return Err(ApiError::new(400, "The request is invalid."));
        };
        let wanted = match get_ci(body, "status") {
            Some(v) => RequestStatus::from_json(v)
                .ok_or_else(|| ApiError::new(400, format!("Unknown status {v}.")))?,
            None => return Err(ApiError::new(400, "The status is required.")),
        };
        let r = self
            .requests
            .iter_mut()
            .find(|r| r.uuid == id)
            .ok_or_else(|| ApiError::new(404, format!("The request {id} was not found.")))?;
        use RequestStatus as S;
        let ok = match wanted {
            S::Completed => matches!(r.status, S::Approved | S::Executing),
            S::Canceled | S::Abandoned => {
                matches!(r.status, S::Pending | S::Approved | S::Executing)
            }
            _ => {
                return Err(ApiError::new(
                    400,
                    format!(
                        "The status can only be set to Completed, Abandoned or Canceled, not {}.",
                        wanted.name()
                    ),
                ))
            }
        };
        if !ok {
            return Err(ApiError::new(
                400,
                format!(
                    "The request is {} and cannot be set to {}.",
                    r.status.name(),
                    wanted.name()
                ),
            ));
        }
        r.status = wanted;
        r.completed = Some(SystemTime::now());
        Ok(r)
    }

    pub fn status_json(&self, s: RequestStatus) -> Value {
        if self.flow.status_names {
            json!(s.name())
        } else {
            json!(s as u8)
        }
    }

    /// The Smartcard object.
    pub fn smartcard_json(&self, c: &Smartcard) -> Value {
        json!({
            "Uuid": c.uuid,
            // SmartcardStatus "Active"; the number is this server's choice.
            "Status": if self.flow.status_names { json!("Active") } else { json!(3) },
            "SerialNumber": format!("{{{}}}", c.card_id),
            "Atr": c.atr,
            "ProfileTemplateUuid": PROFILE_TEMPLATE,
            "Middleware": "MSBaseCSP",
            "AssignedUserUuid": USER,
            "Comment": "",
            "Flags": 0,
            "HsmEnabled": false,
        })
    }

    /// The Request object.
    pub fn request_json(&self, r: &CmRequest) -> Value {
        let sc = if r.smartcard.is_empty() {
            Value::Null
        } else {
            json!(r.smartcard)
        };
        json!({
            "Uuid": r.uuid,
            "RequestType": r.request_type,
            "Status": self.status_json(r.status),
            "Comment": r.comment,
            "DataCollection": r.data_collection,
            "DataCollectionFlags": 0,
            "Flags": 0,
            "IsDataCollectionComplete": true,
            "IsEnrollmentAgent": false,
            "IsSmartcard": true,
            "NewProfileUuid": null,
            "NewSmartcardUuid": null,
            "OldProfileUuid": null,
            "OldSmartcardUuid": sc,
            "OriginatorUserUuid": USER,
            "Priority": 0,
            "ProfileTemplateUuid": PROFILE_TEMPLATE,
            "SecurityDescriptor": null,
            "Submitted": iso8601(r.submitted),
            "Completed": r.completed.map(iso8601),
            "TargetUserUuid": USER,
        })
    }
}

/// An object member by name, case-insensitively (Json.NET binds that way).
pub fn get_ci<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unblock(scid: &str) -> Value {
        json!({"type": "Unblock", "smartcard": scid, "datacollection": [], "comment": "t"})
    }

    #[test]
    fn docs_example_is_registered() {
        let s = State::new(Flow::default(), None);
        assert_eq!(
            s.smartcards_by_card_id(Some("{BC88F13F-83BA-4037-8262-46EBA1291C6E}"))
                .len(),
            1
        );
        let r = s.request(DOCS_REQUEST).unwrap();
        assert_eq!(r.status, RequestStatus::Approved);
        assert_eq!(r.smartcard, DOCS_SMARTCARD);
    }

    #[test]
    fn approve_after_polls() {
        let flow = Flow {
            approve_after: 2,
            ..Flow::default()
        };
        let mut s = State::new(flow, None);
        let id = s.create_request(&unblock(DOCS_SMARTCARD), false).unwrap();
        assert_eq!(s.request(&id).unwrap().status, RequestStatus::Pending);
        assert_eq!(s.poll_request(&id).unwrap().status, RequestStatus::Pending);
        assert_eq!(s.poll_request(&id).unwrap().status, RequestStatus::Pending);
        assert_eq!(s.poll_request(&id).unwrap().status, RequestStatus::Approved);
        let done = s.put_status(&id, &json!({"Status": "completed"})).unwrap();
        assert_eq!(done.status, RequestStatus::Completed);
        assert!(s.put_status(&id, &json!({"status": "Canceled"})).is_err());
    }

    #[test]
    fn deny_and_immediate() {
        let flow = Flow {
            deny: true,
            ..Flow::default()
        };
        let mut s = State::new(flow, None);
        let id = s.create_request(&unblock(DOCS_SMARTCARD), false).unwrap();
        assert_eq!(s.poll_request(&id).unwrap().status, RequestStatus::Denied);
        let e = s
            .put_status(&id, &json!({"status": "Completed"}))
            .unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn create_request_validation() {
        let mut s = State::new(Flow::default(), None);
        let bad = |s: &mut State, v: Value| s.create_request(&v, false).unwrap_err().status;
        assert_eq!(bad(&mut s, json!("x")), 400);
        assert_eq!(bad(&mut s, json!({"smartcard": DOCS_SMARTCARD})), 400);
        assert_eq!(
            bad(
                &mut s,
                json!({"type": "Frobnicate", "smartcard": DOCS_SMARTCARD})
            ),
            400
        );
        assert_eq!(
            bad(&mut s, json!({"type": "Unblock", "smartcard": "nope"})),
            400
        );
        assert_eq!(
            bad(&mut s, unblock("00000000-0000-0000-0000-000000000001")),
            404
        );
        assert!(s
            .create_request(&unblock("00000000-0000-0000-0000-000000000001"), true)
            .is_ok());
        s.set_operations(DOCS_SMARTCARD, vec!["renew".into()])
            .unwrap();
        assert_eq!(bad(&mut s, unblock(DOCS_SMARTCARD)), 403);
    }

    #[test]
    fn status_rendering() {
        let mut s = State::new(Flow::default(), None);
        let r = s.request(DOCS_REQUEST).unwrap().clone();
        assert_eq!(s.request_json(&r)["Status"], json!(3));
        s.flow.status_names = true;
        assert_eq!(s.request_json(&r)["Status"], json!("Approved"));
        assert_eq!(
            RequestStatus::from_json(&json!(8)),
            Some(RequestStatus::Completed)
        );
        assert_eq!(
            RequestStatus::from_json(&json!("3")),
            Some(RequestStatus::Approved)
        );
        assert_eq!(RequestStatus::from_json(&json!(true)), None);
    }
}
