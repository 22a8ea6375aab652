//! The `gids` personality: a GIDS card as OpenSC's card-gids.c and gids-tool, GidsApplet and
//! docs/cards.md ("GIDS") describe it. Admin authentication in both GIDS
//! forms (external: one 8-byte challenge, what CM's response fits; mutual: what gids-tool and
//! Windows use), RESET RETRY COUNTER after it, the PIN status object, the minidriver data
//! objects OpenSC reads, and enough of the file-system commands for `gids-tool --initialize`
//! to initialise a card started with `--gids-uninitialised`.

use std::collections::BTreeMap;

use super::apdu::{auth_template, parse_tlvs, sw, tlv, Command, Response, Tlv};
use super::card::{
    random_bytes, AdminKey, Card, Mutual, Persistent, INS_CHANGE_REFERENCE_DATA,
    INS_GENERAL_AUTHENTICATE, INS_GET_DATA, INS_PUT_DATA, INS_RESET_RETRY_COUNTER, INS_SELECT,
    INS_VERIFY, PIN_REF,
};

/// The GIDS application AID (v2: the 9-byte RID+PIX that OpenSC selects, then version 02 01).
pub const AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x97, 0x42, 0x54, 0x46, 0x59, 0x02, 0x01,
];
/// The shortest AID prefix the card answers (what OpenSC and the agent send).
const AID_MIN: usize = 9;

const INS_MSE: u8 = 0x22;
const INS_ACTIVATE_FILE: u8 = 0x44;
const INS_CREATE_FILE: u8 = 0xE0;

/// The admin key's reference (MSE `83 01 80`).
const ADMIN_KEY_REF: u8 = 0x80;
/// VERIFY P2 that logs everything out.
const P2_DEAUTHENTICATE: u8 = 0x82;
/// The GIDS application's own file id (PIN status objects, admin key PUT DATA).
const APPLET_FID: u16 = 0x3FFF;

/// File id and DO tag of the minidriver objects (card-gids.h).
const MASTERFILE: (u16, u16) = (0xA000, 0xDF1F);
const CARDID: (u16, u16) = (0xA012, 0xDF20);
const CARDAPPS: (u16, u16) = (0xA010, 0xDF21);
const CARDCF: (u16, u16) = (0xA010, 0xDF22);
const CMAPFILE: (u16, u16) = (0xA010, 0xDF23);
const PIN_STATUS_DO: u16 = 0x7F71;
const PUK_STATUS_DO: u16 = 0x7F73;
/// PUT DATA of the admin key to the applet file (tag 70, as gids-tool --initialize does).
const PUT_KEY_DO: u16 = 0x70;

fn key(file: u16, tag: u16) -> Vec<u8> {
    [file.to_be_bytes(), tag.to_be_bytes()].concat()
}

/// One master file record: directory and file name (NUL-padded to 9 bytes each), 2 bytes of
/// padding, the DO tag and the file id as little-endian 32-bit numbers (28 bytes).
fn masterfile_record(dir: &str, file: &str, (fid, tag): (u16, u16)) -> Vec<u8> {
    let mut r = vec![0u8; 28];
    r[..dir.len()].copy_from_slice(dir.as_bytes());
    r[9..9 + file.len()].copy_from_slice(file.as_bytes());
    r[20..24].copy_from_slice(&u32::from(tag).to_le_bytes());
    r[24..28].copy_from_slice(&u32::from(fid).to_le_bytes());
    r
}

/// The data objects of an initialised card: the master file (listing `cardid` only when the
/// card has one), cardid, cardapps (`mscp`), cardcf (all zero) and an empty cmapfile.
pub fn initial_objects(p: &Persistent) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut objects = BTreeMap::new();
    if !p.gids_initialised {
        return objects;
    }
    let mut mf = vec![0x01];
    mf.extend(masterfile_record("mscp", "", (0xA000, 0)));
    if let Some(id) = p.card_id {
        mf.extend(masterfile_record("", "cardid", CARDID));
        objects.insert(key(CARDID.0, CARDID.1), id.to_vec());
    }
    mf.extend(masterfile_record("", "cardapps", CARDAPPS));
    mf.extend(masterfile_record("", "cardcf", CARDCF));
    mf.extend(masterfile_record("mscp", "cmapfile", CMAPFILE));
    objects.insert(key(MASTERFILE.0, MASTERFILE.1), mf);
    objects.insert(key(CARDAPPS.0, CARDAPPS.1), b"mscp\0\0\0\0".to_vec());
    objects.insert(key(CARDCF.0, CARDCF.1), vec![0; 6]);
    objects.insert(key(CMAPFILE.0, CMAPFILE.1), Vec::new());
    objects
}

impl Card {
    pub(super) fn gids(
        &mut self,
        cmd: &Command,
        challenge: Option<Vec<u8>>,
        mutual: Option<Mutual>,
    ) -> Response {
        match cmd.ins {
            INS_SELECT => self.gids_select(cmd),
            INS_MSE => self.gids_mse(cmd),
            INS_GENERAL_AUTHENTICATE => self.gids_general_authenticate(cmd, challenge, mutual),
            INS_RESET_RETRY_COUNTER => self.gids_reset_retry_counter(cmd),
            INS_VERIFY => self.gids_verify(cmd),
            INS_CHANGE_REFERENCE_DATA => self.gids_change_reference_data(cmd),
            INS_GET_DATA => self.gids_get_data(cmd),
            INS_PUT_DATA => self.gids_put_data(cmd),
            INS_CREATE_FILE => self.gids_create_file(),
            INS_ACTIVATE_FILE => self.gids_activate(),
            _ => Response::sw(sw::INS_NOT_SUPPORTED),
        }
    }

    /// SELECT by name: the GIDS AID (9 bytes or more of it) gives the FCI OpenSC parses
    /// (`61 { 4F AID, 73 ... }`), P2 0C none; any other AID 6A82 (OpenSC probes many). SELECT
    /// by file id: only the applet file 3FFF (gids-tool --initialize selects it to activate).
    fn gids_select(&mut self, cmd: &Command) -> Response {
        match cmd.p1 {
            0x04 if cmd.data.len() >= AID_MIN && AID.starts_with(&cmd.data) => {
                self.session.selected_fid = None;
                if cmd.p2 & 0x0C == 0x0C {
                    Response::sw(sw::OK)
                } else {
                    let inner = [tlv(&[0x4F], &AID), tlv(&[0x73], &[0x40, 0x01, 0xC0])].concat();
                    Response::ok(tlv(&[0x61], &inner))
                }
            }
            0x00 if cmd.data == APPLET_FID.to_be_bytes() => {
                self.session.selected_fid = Some(APPLET_FID);
                Response::sw(sw::OK)
            }
            _ => Response::sw(sw::NOT_FOUND),
        }
    }

    /// MANAGE SECURITY ENVIRONMENT SET for authentication (P2 A4) with the admin key:
    /// P1 81 (external) or C1 (mutual).
    fn gids_mse(&mut self, cmd: &Command) -> Response {
        if !matches!(cmd.p1, 0x81 | 0xC1) || cmd.p2 != 0xA4 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        match parse_tlvs(&cmd.data).as_deref() {
            Some([Tlv { tag: 0x83, value }]) if *value == [ADMIN_KEY_REF] => {
                self.session.mse = Some(cmd.p1);
                Response::sw(sw::OK)
            }
            Some([Tlv { tag: 0x83, .. }]) => Response::sw(sw::REF_DATA_NOT_FOUND),
            _ => Response::sw(sw::INCORRECT_DATA),
        }
    }

    /// GENERAL AUTHENTICATE with the admin key (after MSE):
    /// - external: `7C 02 81 00` -> `7C 0A 81 08 <C>`; `7C 0A 82 08 <3DES-ECB(K, C)>` -> 9000
    ///   or 6982;
    /// - mutual: `7C 12 81 10 <R1>` -> `7C 12 81 10 <R2>`; `7C 2A 82 28 <3DES-CBC(K, R2 || R1
    ///   || Z1 (7) || 80)>` -> `7C 2A 82 28 <3DES-CBC(K, R1 || R2 || Z2 (7) || 80)>` or 6982.
    ///
    /// 6985: no MSE, or no challenge pending; 6984: a template of another shape; 6983: the
    /// admin key is blocked (its counter is internal: no command reports it).
    fn gids_general_authenticate(
        &mut self,
        cmd: &Command,
        challenge: Option<Vec<u8>>,
        mutual: Option<Mutual>,
    ) -> Response {
        if cmd.p1 != 0 || cmd.p2 != 0 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        if !self.persistent.gids_initialised {
            return Response::sw(sw::COMMAND_NOT_ALLOWED);
        }
        if self.session.mse.is_none() {
            return Response::sw(sw::CONDITIONS_NOT_SATISFIED);
        }
        let Some(items) = auth_template(&cmd.data) else {
            return Response::sw(sw::DATA_INVALID);
        };
        match items.as_slice() {
            [Tlv {
                tag: 0x81,
                value: [],
            }] => self.template_challenge(8),
            [Tlv { tag: 0x81, value }] if value.len() == 16 => {
                let r2 = random_bytes(16);
                self.session.mutual = Some(Mutual::Gids {
                    r1: value.to_vec(),
                    r2: r2.clone(),
                });
                Response::ok(tlv(&[0x7C], &tlv(&[0x81], &r2)))
            }
            [Tlv { tag: 0x82, value }] if value.len() == 8 => {
                self.admin_response(challenge, value, sw::SECURITY_NOT_SATISFIED)
            }
            [Tlv { tag: 0x82, value }] if value.len() == 40 => {
                self.gids_mutual_response(value, mutual)
            }
            _ => Response::sw(sw::DATA_INVALID),
        }
    }

    fn gids_mutual_response(&mut self, block: &[u8], mutual: Option<Mutual>) -> Response {
        if self.persistent.admin_tries == 0 {
            return Response::sw(sw::AUTH_BLOCKED);
        }
        let Some(Mutual::Gids { r1, r2 }) = mutual else {
            return Response::sw(sw::CONDITIONS_NOT_SATISFIED);
        };
        let key: &AdminKey = &self.persistent.admin_key;
        let right = key.cbc(block, false).is_some_and(|plain| {
            plain[..16] == r2[..] && plain[16..32] == r1[..] && plain[39] == 0x80
        });
        let answer = right
            .then(|| {
                let mut plain = [r1.as_slice(), r2.as_slice(), &random_bytes(7)].concat();
                plain.push(0x80);
                key.cbc(&plain, true)
            })
            .flatten();
        self.admin_outcome(answer.is_some());
        match answer {
            Some(c) => Response::ok(tlv(&[0x7C], &tlv(&[0x82], &c))),
            None => Response::sw(sw::SECURITY_NOT_SATISFIED),
        }
    }

    /// `00 2C 02 80 Lc <new PIN>` after admin authentication (GidsApplet: PIN length outside
    /// min..max 6700); the PIN's tries go back to max, all authentication is dropped.
    fn gids_reset_retry_counter(&mut self, cmd: &Command) -> Response {
        let refused = (!self.session.admin_authenticated).then_some(sw::SECURITY_NOT_SATISFIED);
        self.set_bare_pin(cmd, 0x02, refused, sw::WRONG_LENGTH)
    }

    /// VERIFY `00 20 00 80 [PIN]` (as the iso card) and `00 20 00 82`: log out everything.
    fn gids_verify(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0x00 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        match cmd.p2 {
            P2_DEAUTHENTICATE => {
                self.session.admin_authenticated = false;
                self.session.pin_verified = false;
                Response::sw(sw::OK)
            }
            PIN_REF => {
                let pin = (!cmd.data.is_empty()).then_some(cmd.data.as_slice());
                self.verify_pin(pin)
            }
            _ => Response::sw(sw::REF_DATA_NOT_FOUND),
        }
    }

    /// CHANGE REFERENCE DATA `00 24 01 80 Lc <PIN>`: sets the first PIN of a new card
    /// (gids-tool --initialize); an initialised card refuses it (6985).
    fn gids_change_reference_data(&mut self, cmd: &Command) -> Response {
        let refused = self
            .persistent
            .gids_initialised
            .then_some(sw::CONDITIONS_NOT_SATISFIED);
        self.set_bare_pin(cmd, 0x01, refused, sw::WRONG_LENGTH)
    }

    /// GET DATA `00 CB <file> 04 5C 02 <DO> 00` -> `<DO> <len> <value>`: the PIN status object
    /// (`7F 71 06 97 01 <left> 93 01 <limit>`), no PUK (7F73: 6A88), the stored objects;
    /// anything else 6A82.
    fn gids_get_data(&mut self, cmd: &Command) -> Response {
        let tag = match parse_tlvs(&cmd.data).as_deref() {
            Some([Tlv { tag: 0x5C, value }]) if value.len() == 2 => [value[0], value[1]],
            _ => return Response::sw(sw::INCORRECT_DATA),
        };
        let file = u16::from_be_bytes([cmd.p1, cmd.p2]);
        let do_tag = u16::from_be_bytes(tag);
        if file == APPLET_FID && do_tag == PIN_STATUS_DO {
            let p = &self.persistent;
            let status = [
                0x97,
                0x01,
                p.pin_tries.min(255) as u8,
                0x93,
                0x01,
                p.pin_max.min(255) as u8,
            ];
            return Response::ok(tlv(&tag, &status));
        }
        if file == APPLET_FID && do_tag == PUK_STATUS_DO {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        match self.objects.get(&key(file, do_tag)) {
            Some(value) => Response::ok(tlv(&tag, value)),
            None => Response::sw(sw::NOT_FOUND),
        }
    }

    /// PUT DATA `00 DB <file> Lc <DO> <len> <value>`: stores a data object (a new card: freely;
    /// an initialised one: after PIN or admin authentication). The admin key comes as
    /// `3FFF` / `70 { 84 01 80, A5 { 87 18 <key> 88 .. } }`; the cardid object is the card id.
    fn gids_put_data(&mut self, cmd: &Command) -> Response {
        let s = &self.session;
        if self.persistent.gids_initialised && !(s.admin_authenticated || s.pin_verified) {
            return Response::sw(sw::SECURITY_NOT_SATISFIED);
        }
        let (do_tag, value) = match parse_tlvs(&cmd.data).as_deref() {
            Some([Tlv { tag, value }]) => (*tag, value.to_vec()),
            _ => return Response::sw(sw::INCORRECT_DATA),
        };
        let file = u16::from_be_bytes([cmd.p1, cmd.p2]);
        if file == APPLET_FID && do_tag == PUT_KEY_DO {
            return self.gids_put_admin_key(&value);
        }
        if (file, do_tag) == CARDID {
            match <[u8; 16]>::try_from(value.as_slice()) {
                Ok(id) => self.persistent.card_id = Some(id),
                Err(_) => return Response::sw(sw::INCORRECT_DATA),
            }
        }
        self.objects.insert(key(file, do_tag), value);
        Response::sw(sw::OK)
    }

    fn gids_put_admin_key(&mut self, template: &[u8]) -> Response {
        let items = parse_tlvs(template).unwrap_or_default();
        let key_ref = items.iter().find(|t| t.tag == 0x84).map(|t| t.value);
        let key = items
            .iter()
            .find(|t| t.tag == 0xA5)
            .and_then(|t| parse_tlvs(t.value))
            .and_then(|inner| {
                inner
                    .iter()
                    .find(|t| t.tag == 0x87)
                    .map(|t| t.value.to_vec())
            });
        match (key_ref, key) {
            (Some([ADMIN_KEY_REF]), Some(key)) => match AdminKey::new(key) {
                Ok(key) => {
                    self.persistent.admin_key = key;
                    self.persistent.admin_tries = self.persistent.admin_max;
                    Response::sw(sw::OK)
                }
                Err(_) => Response::sw(sw::INCORRECT_DATA),
            },
            (Some(_), Some(_)) => Response::sw(sw::REF_DATA_NOT_FOUND),
            _ => Response::sw(sw::INCORRECT_DATA),
        }
    }

    /// CREATE FILE: accepted on a new card (the file system gids-tool creates is implied by
    /// the objects); an initialised card wants admin authentication.
    fn gids_create_file(&mut self) -> Response {
        if self.persistent.gids_initialised && !self.session.admin_authenticated {
            return Response::sw(sw::SECURITY_NOT_SATISFIED);
        }
        Response::sw(sw::OK)
    }

    /// ACTIVATE FILE: with the applet file selected, the end of initialisation (the card
    /// leaves its creation state: admin authentication works from now on).
    fn gids_activate(&mut self) -> Response {
        if self.session.selected_fid == Some(APPLET_FID) {
            self.persistent.gids_initialised = true;
        }
        Response::sw(sw::OK)
    }
}

#[cfg(test)]
mod tests {
    use super::super::card::transcript::{h, transcript, tx, CHALLENGE, RESPONSE};
    use super::super::card::{Config, Family, Persistent};
    use super::*;

    fn card_with(p: Persistent) -> Card {
        Card::new(
            Config {
                family: Family::Gids,
                fixed_challenge: Some(h(CHALLENGE)),
                ..Config::default()
            },
            p,
        )
    }

    fn card() -> Card {
        card_with(Persistent::default())
    }

    fn external_auth(c: &mut Card) {
        transcript(
            c,
            &[
                ("00 22 81 A4 03 83 01 80", "9000"),
                (
                    "00 87 00 00 04 7C 02 81 00 00",
                    &format!("7c0a8108{CHALLENGE}9000"),
                ),
                (&format!("00 87 00 00 0C 7C 0A 82 08 {RESPONSE}"), "9000"),
            ],
        );
    }

    #[test]
    fn select_answers_the_gids_aid_only() {
        let mut c = card();
        let fci = "61124f0ba000000397425446590201730340 01c0".replace(' ', "");
        transcript(
            &mut c,
            &[
                (
                    "00 A4 04 00 09 A0 00 00 03 97 42 54 46 59 00",
                    &format!("{fci}9000"),
                ),
                ("00 A4 04 0C 09 A0 00 00 03 97 42 54 46 59", "9000"),
                (
                    "00 A4 04 00 0B A0 00 00 03 97 42 54 46 59 02 01 00",
                    &format!("{fci}9000"),
                ),
            ],
        );
        for other in [
            "00 A4 04 00 05 A0 00 00 03 08 00",
            "00 A4 04 00 08 A0 00 00 03 97 42 54 46",
            "00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00",
        ] {
            assert_eq!(tx(&mut c, other), "6a82", "{other}");
        }
    }

    #[test]
    fn external_authentication_and_unblock() {
        let mut c = card();
        c.persistent.pin_tries = 0;
        external_auth(&mut c);
        assert!(c.session.admin_authenticated);
        assert_eq!(tx(&mut c, "00 2C 02 80 04 31 32 33 34"), "9000");
        assert_eq!(c.persistent.pin, b"1234");
        assert_eq!(c.persistent.pin_tries, 3);
        assert!(!c.session.admin_authenticated);
        assert_eq!(tx(&mut c, "00 2C 02 80 04 31 32 33 34"), "6982");
        assert_eq!(c.log.admin_responses, 1);
        assert_eq!(c.log.rrc, 2);
        assert_eq!(c.log.ext_auth_with_data, 0);
    }

    #[test]
    fn wrong_response_counts_down_silently() {
        let mut c = card();
        c.persistent.admin_tries = 2;
        for _ in 0..2 {
            assert_eq!(tx(&mut c, "00 22 81 A4 03 83 01 80"), "9000");
            tx(&mut c, "00 87 00 00 04 7C 02 81 00 00");
            assert_eq!(
                tx(&mut c, "00 87 00 00 0C 7C 0A 82 08 0102030405060708"),
                "6982"
            );
        }
        assert_eq!(c.persistent.admin_tries, 0);
        // Blocked: even the right response gets 6983.
        tx(&mut c, "00 87 00 00 04 7C 02 81 00 00");
        assert_eq!(
            tx(&mut c, &format!("00 87 00 00 0C 7C 0A 82 08 {RESPONSE}")),
            "6983"
        );
        assert!(!c.session.admin_authenticated);
        assert_eq!(c.log.admin_responses, 3);
    }

    #[test]
    fn challenge_is_single_use() {
        let mut c = card();
        assert_eq!(
            tx(&mut c, &format!("00 87 00 00 0C 7C 0A 82 08 {RESPONSE}")),
            "6985",
            "no MSE yet"
        );
        assert_eq!(tx(&mut c, "00 22 81 A4 03 83 01 80"), "9000");
        assert_eq!(
            tx(&mut c, &format!("00 87 00 00 0C 7C 0A 82 08 {RESPONSE}")),
            "6985",
            "no challenge"
        );
        tx(&mut c, "00 87 00 00 04 7C 02 81 00 00");
        tx(&mut c, "00 A4 04 00 09 A0 00 00 03 97 42 54 46 59 00");
        assert_eq!(
            tx(&mut c, &format!("00 87 00 00 0C 7C 0A 82 08 {RESPONSE}")),
            "6985",
            "a SELECT in between"
        );
        tx(&mut c, "00 87 00 00 04 7C 02 81 00 00");
        c.reset();
        c.session.mse = Some(0x81);
        assert_eq!(
            tx(&mut c, &format!("00 87 00 00 0C 7C 0A 82 08 {RESPONSE}")),
            "6985",
            "reset"
        );
        assert_eq!(c.persistent.admin_tries, 5);
        transcript(
            &mut c,
            &[
                ("00 87 00 00 05 7C 03 82 01 00", "6984"),
                ("00 87 00 00 02 7C 05", "6984"),
                ("00 87 01 00 04 7C 02 81 00", "6a86"),
            ],
        );
    }

    #[test]
    fn mutual_authentication_as_gids_tool_does_it() {
        let key_bytes = h("0102030405060708").repeat(3);
        let key = AdminKey::new(key_bytes.clone()).unwrap();
        let mut c = card_with(Persistent {
            admin_key: key.clone(),
            ..Persistent::default()
        });
        let r1 = [0x11u8; 16];
        assert_eq!(tx(&mut c, "00 22 C1 A4 03 83 01 80"), "9000");
        let answer = c.transmit(&[&h("00 87 00 00 14 7C 12 81 10")[..], &r1, &[0]].concat());
        assert_eq!((answer.len(), &answer[..4]), (22, &h("7c128110")[..]));
        let r2 = answer[4..20].to_vec();
        let mut plain = [&r2[..], &r1[..], &[9u8; 7][..]].concat();
        plain.push(0x80);
        let block = key.cbc(&plain, true).unwrap();
        let answer = c.transmit(&[&h("00 87 00 00 2C 7C 2A 82 28")[..], &block, &[0]].concat());
        // Exactly 44 bytes + SW, or OpenSC reports an internal error.
        assert_eq!(answer.len(), 46);
        assert_eq!(&answer[44..], &[0x90, 0x00]);
        let card_plain = key.cbc(&answer[4..44], false).unwrap();
        assert_eq!((&card_plain[..16], &card_plain[16..32]), (&r1[..], &r2[..]));
        assert_eq!(card_plain[39], 0x80);
        assert!(c.session.admin_authenticated);
        // A wrong block (R1 and R2 swapped) is refused and costs a try.
        tx(&mut c, "00 22 C1 A4 03 83 01 80");
        let answer = c.transmit(&[&h("00 87 00 00 14 7C 12 81 10")[..], &r1, &[0]].concat());
        let r2 = answer[4..20].to_vec();
        let mut plain = [&r1[..], &r2[..], &[9u8; 7][..]].concat();
        plain.push(0x80);
        let block = key.cbc(&plain, true).unwrap();
        let answer = c.transmit(&[&h("00 87 00 00 2C 7C 2A 82 28")[..], &block, &[0]].concat());
        assert_eq!(answer, h("6982"));
        assert_eq!(c.persistent.admin_tries, 4);
        assert_eq!(c.log.admin_responses, 2);
    }

    #[test]
    fn pin_status_and_logout() {
        let mut c = card();
        c.persistent.pin_tries = 2;
        transcript(
            &mut c,
            &[
                ("00 CB 3F FF 04 5C 02 7F 71 00", "7f71069701029301039000"),
                ("00 CB 3F FF 04 5C 02 7F 73 00", "6a88"),
                ("00 20 00 80 04 31 31 31 31", "63c1"),
                ("00 20 00 80 08 3132333435363738", "9000"),
                ("00 20 00 82", "9000"),
            ],
        );
        assert!(!c.session.pin_verified);
        assert_eq!(tx(&mut c, "00 20 00 80"), "63c3");
    }

    #[test]
    fn card_id_objects() {
        let mut c = card();
        let mf = tx(&mut c, "00 CB A0 00 04 5C 02 DF 1F 00");
        // 01 + 5 records of 28 bytes = 141 bytes: DF 1F 81 8D.
        assert!(mf.starts_with("df1f818d01"), "{mf}");
        assert!(mf.contains(&hex::encode(b"cardid")));
        transcript(
            &mut c,
            &[
                (
                    "00 CB A0 12 04 5C 02 DF 20 00",
                    "df201000112233445566778899aabbccddeeff9000",
                ),
                ("00 CB A0 10 04 5C 02 DF 23 00", "df23009000"),
                ("00 CB A0 10 04 5C 02 DF 30 00", "6a82"),
            ],
        );

        let mut c = card_with(Persistent {
            card_id: None,
            ..Persistent::default()
        });
        let mf = tx(&mut c, "00 CB A0 00 04 5C 02 DF 1F 00");
        assert!(mf.starts_with("df1f7101"), "{mf}");
        assert!(!mf.contains(&hex::encode(b"cardid")));
        assert_eq!(tx(&mut c, "00 CB A0 12 04 5C 02 DF 20 00"), "6a82");
    }

    #[test]
    fn initialisation_as_gids_tool_does_it() {
        let mut c = card_with(Persistent {
            gids_initialised: false,
            card_id: None,
            ..Persistent::default()
        });
        // A new card: no master file, no admin authentication.
        assert_eq!(tx(&mut c, "00 CB A0 00 04 5C 02 DF 1F 00"), "6a82");
        tx(&mut c, "00 22 81 A4 03 83 01 80");
        assert_eq!(tx(&mut c, "00 87 00 00 04 7C 02 81 00 00"), "6986");
        assert_eq!(tx(&mut c, "00 24 01 80 04 39 38 37 36"), "9000");
        assert_eq!(c.persistent.pin, b"9876");
        assert_eq!(
            tx(
                &mut c,
                "00 E0 00 00 0E 62 0C 82 01 39 83 02 A0 00 8C 03 03 30 00"
            ),
            "9000"
        );
        assert_eq!(tx(&mut c, "00 44 00 00"), "9000");
        assert!(!c.persistent.gids_initialised);
        let key = "0102030405060708".repeat(3);
        assert_eq!(
            tx(
                &mut c,
                &format!("00 DB 3F FF 26 70 24 84 01 80 A5 1F 87 18 {key} 88 03 B0 73 DC")
            ),
            "9000"
        );
        assert_eq!(hex::encode(c.persistent.admin_key.bytes()), key);
        assert_eq!(
            tx(
                &mut c,
                "00 DB A0 12 13 DF 20 10 FFEEDDCCBBAA99887766554433221100"
            ),
            "9000"
        );
        assert_eq!(
            c.persistent.card_id,
            Some(h("FFEEDDCCBBAA99887766554433221100").try_into().unwrap())
        );
        transcript(
            &mut c,
            &[
                ("00 DB A0 10 03 DF 23 00", "9000"),
                ("00 A4 00 0C 02 3F FF", "9000"),
                ("00 44 00 00", "9000"),
            ],
        );
        assert!(c.persistent.gids_initialised);
        // Initialised: PUT DATA needs authentication; admin authentication works.
        transcript(
            &mut c,
            &[
                ("00 DB A0 10 03 DF 23 00", "6982"),
                ("00 24 01 80 04 39 38 37 36", "6985"),
                ("00 22 81 A4 03 83 01 80", "9000"),
            ],
        );
        assert_eq!(tx(&mut c, "00 87 00 00 04 7C 02 81 00 00").len(), 28);
    }

    #[test]
    fn mse_checks() {
        let mut c = card();
        transcript(
            &mut c,
            &[
                ("00 22 41 A4 03 83 01 80", "6a86"),
                ("00 22 81 A4 03 83 01 81", "6a88"),
                ("00 22 81 A4 02 83 01", "6a80"),
            ],
        );
        assert_eq!(c.session.mse, None);
    }
}
