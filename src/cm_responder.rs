//! MIM CM as the responder, and the CM unblock workflow around it.
//!
//! Before the card transaction (only when the request or smartcard id is
//! missing): find the smartcard by card id, check it offers "unblock", create
//! an Unblock request and wait for its approval. Inside the transaction: one
//! authenticationresponse call for the card's challenge. After it: mark the
//! request Completed, or Abandoned when the card rejected the response, or
//! leave it open (and say so) when the flow was interrupted.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::admin_key::{Challenge, Cryptogram};
use crate::cm_client::{CmClient, RequestStatus};
use crate::error::Error;
use crate::ids::Guid;
use crate::responder::{CardContext, Ending, Responder};

/// How long and how often to poll for approval.
#[derive(Clone, Copy, Debug)]
pub struct Approval {
    pub timeout: Duration,
    pub poll: Duration,
}

/// Progress of the CM workflow, for the user.
#[derive(Clone, Debug)]
pub enum Progress {
    SmartcardFound {
        smartcard_id: String,
    },
    RequestCreated {
        request_id: String,
    },
    Waiting {
        request_id: String,
        status: String,
        polls: u32,
        waited_secs: u64,
    },
    Approved {
        request_id: String,
    },
    RequestClosed {
        request_id: String,
        status: &'static str,
    },
    RequestLeftOpen {
        request_id: String,
    },
}

pub struct CmResponder {
    client: CmClient,
    request_id: Option<Guid>,
    smartcard_id: Option<Guid>,
    diversified: bool,
    approval: Approval,
    comment: String,
    progress: Box<dyn FnMut(&Progress)>,
}

impl CmResponder {
    pub fn new(
        client: CmClient,
        request_id: Option<Guid>,
        smartcard_id: Option<Guid>,
        diversified: bool,
        approval: Approval,
        progress: Box<dyn FnMut(&Progress)>,
    ) -> CmResponder {
        CmResponder {
            client,
            request_id,
            smartcard_id,
            diversified,
            approval,
            comment: format!("scunblock {}", env!("CARGO_PKG_VERSION")),
            progress,
        }
    }

    fn wait_for_approval(&mut self, reqid: &Guid) -> Result<(), Error> {
        let started = Instant::now();
        let mut polls = 0;
        loop {
            polls += 1;
            let status = self.client.request_status(reqid)?;
            match status {
                RequestStatus::Approved => {
                    (self.progress)(&Progress::Approved {
                        request_id: reqid.to_string(),
                    });
                    return Ok(());
                }
                RequestStatus::Denied | RequestStatus::Canceled | RequestStatus::Failed => {
                    return Err(Error::responder(format!(
                        "CM request {reqid} was {}: the unblock is not allowed. Nothing was sent to the card",
                        format!("{status:?}").to_lowercase()
                    )))
                }
                RequestStatus::Completed => {
                    return Err(Error::responder(format!(
                        "CM request {reqid} is already completed: create a new unblock request"
                    )))
                }
                other => {
                    let waited = started.elapsed();
                    (self.progress)(&Progress::Waiting {
                        request_id: reqid.to_string(),
                        status: match other {
                            RequestStatus::Other(s) => s,
                            s => format!("{s:?}"),
                        },
                        polls,
                        waited_secs: waited.as_secs(),
                    });
                    if waited + self.approval.poll > self.approval.timeout {
                        return Err(Error::responder(format!(
                            "CM request {reqid} was not approved within {} s (--approval-timeout). \
                             It is left open: approve it in the CM portal and re-run with --request-id {reqid}",
                            self.approval.timeout.as_secs()
                        )));
                    }
                    std::thread::sleep(self.approval.poll);
                }
            }
        }
    }

    /// What the run did with CM, for the report.
    pub fn report(&self) -> serde_json::Value {
        json!({
            "request_id": self.request_id.as_ref().map(Guid::to_string),
            "smartcard_id": self.smartcard_id.as_ref().map(Guid::to_string),
            "http_calls": self.client.calls(),
            "negotiate_handshakes": self.client.handshakes(),
        })
    }
}

impl CmResponder {
    /// The card id for CM: the one given (`--card-id`, in the form given),
    /// else the card's own (the flow checked that they are one card).
    fn card_id(&self, card: &CardContext) -> Result<Guid, Error> {
        match card.info.card_id.as_deref() {
            Some(id) => Guid::parse(id, "the card id"),
            None => Err(Error::usage(
                "--card-id is required with --cm: the card has no card id to read",
            )),
        }
    }
}

impl Responder for CmResponder {
    fn name(&self) -> &'static str {
        "cm"
    }

    fn needs_preparation(&self) -> bool {
        self.request_id.is_none() || self.smartcard_id.is_none()
    }

    fn needs_card_id(&self) -> bool {
        true
    }

    fn check_alg(&self, alg: crate::admin_key::KeyAlg) -> Result<(), Error> {
        if alg == crate::admin_key::KeyAlg::Tdes {
            return Ok(());
        }
        Err(Error::responder(format!(
            "the card's admin key is {alg}, and CM's authentication response is 3DES of an \
             8-byte challenge: CM cannot answer for this card. Nothing was sent to the card"
        )))
    }

    fn prepare(&mut self, card: &CardContext) -> Result<(), Error> {
        let card_id = self.card_id(card)?;
        let scid = match &self.smartcard_id {
            Some(s) => s.clone(),
            None => {
                let sc = self.client.find_smartcard(&card_id)?;
                (self.progress)(&Progress::SmartcardFound {
                    smartcard_id: sc.uuid.to_string(),
                });
                self.smartcard_id = Some(sc.uuid.clone());
                sc.uuid
            }
        };
        if self.request_id.is_none() {
            let ops = self.client.operations(&scid)?;
            if !ops.iter().any(|o| o.eq_ignore_ascii_case("unblock")) {
                return Err(Error::responder(format!(
                    "CM does not offer unblock for smartcard {scid} (it offers: {}); check its status and profile template in the CM portal",
                    ops.join(", ")
                )));
            }
            let reqid = self.client.create_unblock_request(&scid, &self.comment)?;
            (self.progress)(&Progress::RequestCreated {
                request_id: reqid.to_string(),
            });
            self.request_id = Some(reqid.clone());
            self.wait_for_approval(&reqid)?;
        }
        Ok(())
    }

    fn respond(&mut self, challenge: &Challenge, card: &CardContext) -> Result<Cryptogram, Error> {
        let (Some(reqid), Some(scid)) = (&self.request_id, &self.smartcard_id) else {
            return Err(Error::Unexpected(
                "CM responder used before its request was ready".into(),
            ));
        };
        let card_id = self.card_id(card)?;
        let bytes = self.client.authentication_response(
            reqid,
            scid,
            &card_id,
            challenge.as_bytes(),
            self.diversified,
            &card.info.atr,
        )?;
        Ok(Cryptogram::new(bytes))
    }

    fn finish(&mut self, ending: Ending) -> Result<(), Error> {
        let Some(reqid) = self.request_id.clone() else {
            return Ok(());
        };
        let status = match ending {
            Ending::Succeeded => "Completed",
            Ending::Rejected => "Abandoned",
            Ending::Interrupted => {
                (self.progress)(&Progress::RequestLeftOpen {
                    request_id: reqid.to_string(),
                });
                return Ok(());
            }
        };
        match self.client.set_request_status(&reqid, status) {
            Ok(()) => {
                (self.progress)(&Progress::RequestClosed {
                    request_id: reqid.to_string(),
                    status,
                });
                Ok(())
            }
            // The card is already done; failing to close the request must not
            // hide that. Warn, and say how to finish it by hand.
            Err(e) => {
                crate::log::warn(format!(
                    "could not mark CM request {reqid} {status}: {e}. Close it in the CM portal"
                ));
                Ok(())
            }
        }
    }

    fn report(&self) -> Option<serde_json::Value> {
        Some(CmResponder::report(self))
    }
}
