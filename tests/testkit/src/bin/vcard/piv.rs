//! The `piv` personality: a PIV card (SP 800-73) with YubiKey's extensions, as
//! yubico-piv-tool (lib/ykpiv.c), OpenSC's card-piv.c / piv-tool and
//! docs/cards.md ("PIV / YubiKey") describe it. The 9B management key in both forms
//! (external: one challenge; witness: what yubico-piv-tool sends), 3DES or AES; the PIN and
//! the PUK (PIV resets the PIN with the PUK, never with the admin key); the CHUID with its
//! GUID (the card id); YubiKey's GET METADATA, GET VERSION and GET SERIAL unless
//! `--no-metadata`.

use std::collections::BTreeMap;

use super::apdu::{auth_template, parse_tlvs, sw, tlv, Command, Response, Tlv};
use super::card::{
    constant_time_eq, random_bytes, tries_sw, unpad_ff, Card, Mutual, Persistent,
    INS_GENERAL_AUTHENTICATE, INS_GET_DATA, INS_PUT_DATA, INS_RESET_RETRY_COUNTER, INS_SELECT,
    INS_VERIFY, PIN_REF,
};
use super::crypto::MgmtAlg;

/// The PIV application AID (NIST RID, PIX 00 00 10 00 01 00). Any prefix of at least 5 bytes
/// selects it (yubico-piv-tool sends 5, SP 800-73's right-truncated form is 9).
pub const AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];
const AID_MIN: usize = 5;

const INS_GET_METADATA: u8 = 0xF7;
const INS_GET_SERIAL: u8 = 0xF8;
const INS_GET_VERSION: u8 = 0xFD;

/// The card management key.
const MGMT_KEY_REF: u8 = 0x9B;
const PUK_REF: u8 = 0x81;
/// The CHUID object tag.
const CHUID_TAG: [u8; 3] = [0x5F, 0xC1, 0x02];

/// YubiKey 5.7.1: AES management keys are the default from 5.7.
const VERSION: [u8; 3] = [5, 7, 1];
const SERIAL: u32 = 12_345_678;
/// Factory defaults, for GET METADATA's "default value" flag.
const DEFAULT_PIN: &[u8] = b"123456";
const DEFAULT_PUK: &[u8] = b"12345678";
const DEFAULT_MGMT_KEY: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// A CHUID as yubico-piv-tool writes it (lib/util.c CHUID_TMPL): FASC-N (30), GUID (34),
/// expiry 2030-01-01 (35), empty signature (3E) and error detection code (FE).
pub fn chuid(guid: &[u8; 16]) -> Vec<u8> {
    let fascn =
        hex::decode("d4e739da739ced39ce739d836858210842108421c84210c3eb").expect("FASC-N hex");
    [
        tlv(&[0x30], &fascn),
        tlv(&[0x34], guid),
        tlv(&[0x35], b"20300101"),
        tlv(&[0x3E], &[]),
        tlv(&[0xFE], &[]),
    ]
    .concat()
}

/// The GUID (tag 34) of a CHUID.
fn chuid_guid(chuid: &[u8]) -> Option<[u8; 16]> {
    parse_tlvs(chuid)?
        .iter()
        .find(|t| t.tag == 0x34)
        .and_then(|t| t.value.try_into().ok())
}

/// The data objects at start: the CHUID when the card has an id.
pub fn initial_objects(p: &Persistent) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut objects = BTreeMap::new();
    if let Some(id) = p.card_id {
        objects.insert(CHUID_TAG.to_vec(), chuid(&id));
    }
    objects
}

impl Card {
    pub(super) fn piv(
        &mut self,
        cmd: &Command,
        challenge: Option<Vec<u8>>,
        mutual: Option<Mutual>,
    ) -> Response {
        let yubikey = self.config.metadata;
        match cmd.ins {
            INS_SELECT => piv_select(cmd),
            INS_GENERAL_AUTHENTICATE => self.piv_general_authenticate(cmd, challenge, mutual),
            INS_VERIFY => self.piv_verify(cmd),
            INS_RESET_RETRY_COUNTER => self.piv_reset_retry_counter(cmd),
            INS_GET_DATA => self.piv_get_data(cmd),
            INS_PUT_DATA => self.piv_put_data(cmd),
            INS_GET_METADATA if yubikey => self.piv_metadata(cmd),
            INS_GET_VERSION if yubikey => Response::ok(VERSION.to_vec()),
            INS_GET_SERIAL if yubikey => Response::ok(SERIAL.to_be_bytes().to_vec()),
            _ => Response::sw(sw::INS_NOT_SUPPORTED),
        }
    }

    /// GENERAL AUTHENTICATE `00 87 <alg> 9B` with the management key:
    /// - external: `7C 02 81 00` -> `7C 0A 81 08 <C>` (AES: `7C 12 81 10 <C>`); then
    ///   `7C 0A 82 08 <E(K, C)>` -> 9000, or --wrong-response-sw;
    /// - witness (yubico-piv-tool): `7C 02 80 00` -> `7C 0A 80 08 <E(K, W)>`; then
    ///   `7C 14 80 08 <W> 81 08 <C>` -> `7C 0A 82 08 <E(K, C)>`, or --wrong-response-sw.
    ///
    /// P1 other than the key's algorithm 6A86, P2 other than 9B 6A88, no challenge 6985,
    /// blocked key 6983 (its counter is internal: no command reports it).
    fn piv_general_authenticate(
        &mut self,
        cmd: &Command,
        challenge: Option<Vec<u8>>,
        mutual: Option<Mutual>,
    ) -> Response {
        let alg = self.persistent.admin_key.alg();
        if cmd.p2 != MGMT_KEY_REF {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        if cmd.p1 != alg.piv_id() {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        let Some(items) = auth_template(&cmd.data) else {
            return Response::sw(sw::INCORRECT_DATA);
        };
        let block = alg.block_len();
        let wrong = self.config.wrong_response_sw;
        match items.as_slice() {
            [Tlv {
                tag: 0x81,
                value: [],
            }] => self.template_challenge(block),
            [Tlv { tag: 0x82, value }] if value.len() == block => {
                self.admin_response(challenge, value, wrong)
            }
            [Tlv {
                tag: 0x80,
                value: [],
            }] => {
                let witness = random_bytes(block);
                let Some(encrypted) = self.persistent.admin_key.encrypt(&witness) else {
                    return Response::sw(sw::INCORRECT_DATA);
                };
                self.session.mutual = Some(Mutual::PivWitness(witness));
                Response::ok(tlv(&[0x7C], &tlv(&[0x80], &encrypted)))
            }
            [Tlv {
                tag: 0x80,
                value: w,
            }, Tlv {
                tag: 0x81,
                value: c,
            }] if w.len() == block && c.len() == block => {
                if self.persistent.admin_tries == 0 {
                    return Response::sw(sw::AUTH_BLOCKED);
                }
                let Some(Mutual::PivWitness(witness)) = mutual else {
                    return Response::sw(sw::CONDITIONS_NOT_SATISFIED);
                };
                let right = constant_time_eq(&witness, w);
                self.admin_outcome(right);
                match (right, self.persistent.admin_key.encrypt(c)) {
                    (true, Some(e)) => Response::ok(tlv(&[0x7C], &tlv(&[0x82], &e))),
                    _ => Response::sw(wrong),
                }
            }
            _ => Response::sw(sw::INCORRECT_DATA),
        }
    }

    /// VERIFY `00 20 00 80 [08 <PIN FF-padded>]`: empty 63Cx (9000 once verified); the PUK
    /// (81) cannot be verified on its own: 6A88, as many PIV cards answer.
    fn piv_verify(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0x00 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        match cmd.p2 {
            PIN_REF if cmd.data.is_empty() => self.verify_pin(None),
            PIN_REF => match unpad_ff(&cmd.data) {
                Some(pin) => {
                    let pin = pin.to_vec();
                    self.verify_pin(Some(&pin))
                }
                None => Response::sw(sw::INCORRECT_DATA),
            },
            _ => Response::sw(sw::REF_DATA_NOT_FOUND),
        }
    }

    /// RESET RETRY COUNTER `00 2C 00 80 10 <PUK FF-padded to 8> <new PIN FF-padded to 8>`:
    /// right PUK: PIN set, its tries back to max, 9000; wrong PUK: one PUK try less, 63Cx;
    /// blocked PUK 6983.
    fn piv_reset_retry_counter(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0x00 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        if cmd.p2 != PIN_REF {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        if cmd.data.len() != 16 {
            return Response::sw(sw::WRONG_LENGTH);
        }
        let p = &mut self.persistent;
        if p.puk_tries == 0 {
            return Response::sw(sw::AUTH_BLOCKED);
        }
        let (Some(puk), Some(pin)) = (unpad_ff(&cmd.data[..8]), unpad_ff(&cmd.data[8..])) else {
            return Response::sw(sw::INCORRECT_DATA);
        };
        if !constant_time_eq(&p.puk, puk) {
            p.puk_tries -= 1;
            return Response::sw(tries_sw(p.puk_tries));
        }
        if !(self.config.pin_min..=self.config.pin_max_len).contains(&pin.len()) {
            return Response::sw(sw::INCORRECT_DATA);
        }
        p.puk_tries = p.puk_max;
        let pin = pin.to_vec();
        self.set_pin(pin);
        Response::sw(sw::OK)
    }

    /// GET DATA `00 CB 3F FF Lc 5C <tag> 00` -> `53 <len> <object>`; unknown objects 6A82.
    fn piv_get_data(&mut self, cmd: &Command) -> Response {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        let tag = match parse_tlvs(&cmd.data).as_deref() {
            Some([Tlv { tag: 0x5C, value }]) => value.to_vec(),
            _ => return Response::sw(sw::INCORRECT_DATA),
        };
        match self.objects.get(&tag) {
            Some(object) => Response::ok(tlv(&[0x53], object)),
            None => Response::sw(sw::NOT_FOUND),
        }
    }

    /// PUT DATA `00 DB 3F FF Lc 5C <tag> 53 <len> <object>` after management key
    /// authentication; a CHUID's GUID becomes the card id.
    fn piv_put_data(&mut self, cmd: &Command) -> Response {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        if !self.session.admin_authenticated {
            return Response::sw(sw::SECURITY_NOT_SATISFIED);
        }
        let (tag, object) = match parse_tlvs(&cmd.data).as_deref() {
            Some(
                [Tlv {
                    tag: 0x5C,
                    value: tag,
                }, Tlv { tag: 0x53, value }],
            ) => (tag.to_vec(), value.to_vec()),
            _ => return Response::sw(sw::INCORRECT_DATA),
        };
        if tag == CHUID_TAG {
            self.persistent.card_id = chuid_guid(&object);
        }
        self.objects.insert(tag, object);
        Response::sw(sw::OK)
    }

    /// YubiKey GET METADATA `00 F7 00 <key>`: 9B -> algorithm (01), policy (02), default
    /// (05); PIN 80 / PUK 81 -> algorithm FF, default (05), tries total and left (06).
    fn piv_metadata(&mut self, cmd: &Command) -> Response {
        let p = &self.persistent;
        let counter = |value: &[u8], default: &[u8], max: u32, left: u32| {
            [
                tlv(&[0x01], &[0xFF]),
                tlv(&[0x05], &[u8::from(value == default)]),
                tlv(&[0x06], &[max.min(255) as u8, left.min(255) as u8]),
            ]
            .concat()
        };
        match cmd.p2 {
            MGMT_KEY_REF => {
                let key = p.admin_key.bytes();
                let default = p.admin_key.alg() != MgmtAlg::Aes128
                    && p.admin_key.alg() != MgmtAlg::Aes256
                    && key.chunks(8).all(|k| k == DEFAULT_MGMT_KEY);
                Response::ok(
                    [
                        tlv(&[0x01], &[p.admin_key.alg().piv_id()]),
                        tlv(&[0x02], &[0x00, 0x01]),
                        tlv(&[0x05], &[u8::from(default)]),
                    ]
                    .concat(),
                )
            }
            PIN_REF => Response::ok(counter(&p.pin, DEFAULT_PIN, p.pin_max, p.pin_tries)),
            PUK_REF => Response::ok(counter(&p.puk, DEFAULT_PUK, p.puk_max, p.puk_tries)),
            _ => Response::sw(sw::REF_DATA_NOT_FOUND),
        }
    }
}

/// SELECT by a prefix (5 bytes or more) of the PIV AID -> the application property template
/// as a YubiKey sends it; anything else 6A82.
fn piv_select(cmd: &Command) -> Response {
    if cmd.p1 == 0x04 && cmd.data.len() >= AID_MIN && AID.starts_with(&cmd.data) {
        let inner = [
            tlv(&[0x4F], &AID[5..]),
            tlv(&[0x79], &tlv(&[0x4F], &AID[..5])),
        ]
        .concat();
        Response::ok(tlv(&[0x61], &inner))
    } else {
        Response::sw(sw::NOT_FOUND)
    }
}

#[cfg(test)]
mod tests {
    use super::super::card::transcript::{h, transcript, tx, CHALLENGE, RESPONSE};
    use super::super::card::{AdminKey, Config, Family, Persistent};
    use super::*;

    fn card_with(config: Config, p: Persistent) -> Card {
        Card::new(
            Config {
                family: Family::Piv,
                ..config
            },
            p,
        )
    }

    fn card() -> Card {
        card_with(
            Config {
                fixed_challenge: Some(h(CHALLENGE)),
                ..Config::default()
            },
            Persistent::default(),
        )
    }

    #[test]
    fn select_by_prefixes_of_the_aid() {
        let mut c = card();
        let apt = "6111 4f06000010000100 7907 4f05a000000308 9000".replace(' ', "");
        for aid in [
            "A000000308",
            "A00000030800001000",
            "A0000003080000100001 00",
        ] {
            let aid = aid.replace(' ', "");
            let apdu = format!("00A40400{:02x}{aid}", aid.len() / 2);
            assert_eq!(tx(&mut c, &apdu), apt, "{aid}");
        }
        transcript(
            &mut c,
            &[
                ("00 A4 04 00 04 A0000003", "6a82"),
                ("00 A4 04 00 09 A00000039742544659", "6a82"),
                ("00 A4 04 00 07 A0000000791000", "6a82"),
            ],
        );
    }

    #[test]
    fn external_authentication_3des() {
        let mut c = card();
        assert_eq!(
            tx(&mut c, "00 87 03 9B 04 7C 02 81 00"),
            format!("7c0a8108{CHALLENGE}9000")
        );
        assert_eq!(
            tx(&mut c, &format!("00 87 03 9B 0C 7C 0A 82 08 {RESPONSE}")),
            "9000"
        );
        assert!(c.session.admin_authenticated);
        assert_eq!(c.log.admin_responses, 1);
        // Replay: the challenge is gone.
        assert_eq!(
            tx(&mut c, &format!("00 87 03 9B 0C 7C 0A 82 08 {RESPONSE}")),
            "6985"
        );
        // Wrong algorithm or key reference.
        assert_eq!(tx(&mut c, "00 87 0A 9B 04 7C 02 81 00"), "6a86");
        assert_eq!(tx(&mut c, "00 87 03 9A 04 7C 02 81 00"), "6a88");
        assert_eq!(c.persistent.admin_tries, 5);
    }

    #[test]
    fn wrong_response_sw_is_configurable_and_counts() {
        for (wrong, expect) in [(0x6982u16, "6982"), (0x6A80, "6a80")] {
            let mut c = card_with(
                Config {
                    fixed_challenge: Some(h(CHALLENGE)),
                    wrong_response_sw: wrong,
                    ..Config::default()
                },
                Persistent {
                    admin_tries: 1,
                    ..Persistent::default()
                },
            );
            tx(&mut c, "00 87 03 9B 04 7C 02 81 00");
            assert_eq!(
                tx(&mut c, "00 87 03 9B 0C 7C 0A 82 08 0000000000000000"),
                expect
            );
            assert_eq!(c.persistent.admin_tries, 0);
            tx(&mut c, "00 87 03 9B 04 7C 02 81 00");
            assert_eq!(
                tx(&mut c, &format!("00 87 03 9B 0C 7C 0A 82 08 {RESPONSE}")),
                "6983"
            );
        }
    }

    #[test]
    fn external_authentication_aes() {
        for (alg, n) in [
            (MgmtAlg::Aes128, 16),
            (MgmtAlg::Aes192, 24),
            (MgmtAlg::Aes256, 32),
        ] {
            let key = AdminKey::with_alg(alg, vec![0x42; n]).unwrap();
            let mut c = card_with(
                Config::default(),
                Persistent {
                    admin_key: key.clone(),
                    ..Persistent::default()
                },
            );
            let p1 = alg.piv_id();
            let answer = c.transmit(&[0x00, 0x87, p1, 0x9B, 0x04, 0x7C, 0x02, 0x81, 0x00]);
            assert_eq!(&answer[..4], &h("7c128110")[..], "{alg:?}");
            let r = key.encrypt(&answer[4..20]).unwrap();
            let apdu = [
                &[0x00, 0x87, p1, 0x9B, 0x14, 0x7C, 0x12, 0x82, 0x10][..],
                &r,
            ]
            .concat();
            assert_eq!(c.transmit(&apdu), h("9000"), "{alg:?}");
            // A 3DES P1 on an AES key.
            assert_eq!(tx(&mut c, "00 87 03 9B 04 7C 02 81 00"), "6a86");
            assert_eq!(
                tx(&mut c, "00 F7 00 9B"),
                format!("0101{p1:02x}0202000105010 09000").replace(' ', "")
            );
        }
    }

    #[test]
    fn witness_form_as_yubico_piv_tool_does_it() {
        let key = AdminKey::new(h("0102030405060708").repeat(3)).unwrap();
        let mut c = card_with(
            Config::default(),
            Persistent {
                admin_key: key.clone(),
                ..Persistent::default()
            },
        );
        let answer = c.transmit(&h("00 87 03 9B 04 7C 02 80 00"));
        assert_eq!(&answer[..4], &h("7c0a8008")[..]);
        let witness = key.decrypt(&answer[4..12]).unwrap();
        let mine = h("0011223344556677");
        let apdu = [
            &h("00 87 03 9B 16 7C 14 80 08")[..],
            &witness,
            &h("81 08"),
            &mine,
        ]
        .concat();
        let answer = c.transmit(&apdu);
        assert_eq!(&answer[..4], &h("7c0a8208")[..]);
        assert_eq!(answer[4..12], key.encrypt(&mine).unwrap()[..]);
        assert_eq!(&answer[12..], &h("9000")[..]);
        assert!(c.session.admin_authenticated);
        assert_eq!(
            tx(&mut c, "00 F7 00 9B"),
            "01010302020001050101 9000".replace(' ', "")
        );
        // A wrong witness.
        c.transmit(&h("00 87 03 9B 04 7C 02 80 00"));
        let apdu = [
            &h("00 87 03 9B 16 7C 14 80 08")[..],
            &[0; 8],
            &h("81 08"),
            &mine,
        ]
        .concat();
        assert_eq!(c.transmit(&apdu), h("6982"));
        assert!(!c.session.admin_authenticated);
        assert_eq!(c.persistent.admin_tries, 4);
        assert_eq!(c.log.admin_responses, 2);
    }

    #[test]
    fn pin_and_puk() {
        let mut c = card();
        let padded = |s: &str| {
            let mut v = s.as_bytes().to_vec();
            v.resize(8, 0xFF);
            hex::encode(v)
        };
        assert_eq!(tx(&mut c, "00 20 00 80"), "63c3");
        assert_eq!(tx(&mut c, "00 20 00 81"), "6a88");
        for left in ["63c2", "63c1", "6983"] {
            assert_eq!(
                tx(&mut c, &format!("00 20 00 80 08 {}", padded("000000"))),
                left
            );
        }
        // Wrong PUK: one PUK try less.
        let rrc = |puk: &str, pin: &str| format!("00 2C 00 80 10 {} {}", padded(puk), padded(pin));
        assert_eq!(tx(&mut c, &rrc("87654321", "4321")), "63c2");
        assert_eq!(c.persistent.puk_tries, 2);
        assert_eq!(tx(&mut c, &rrc("12345678", "4321")), "9000");
        assert_eq!(
            (
                c.persistent.pin.as_slice(),
                c.persistent.pin_tries,
                c.persistent.puk_tries
            ),
            (&b"4321"[..], 3, 3)
        );
        assert_eq!(
            tx(&mut c, &format!("00 20 00 80 08 {}", padded("4321"))),
            "9000"
        );
        transcript(
            &mut c,
            &[
                ("00 20 00 80", "9000"),
                ("00 2C 02 80 04 31323334", "6a86"),
                ("00 2C 00 80 08 3132333435363738", "6700"),
                ("00 F7 00 80", "0101ff050100060203039000"),
                ("00 F7 00 81", "0101ff050101060203039000"),
            ],
        );
        for _ in 0..3 {
            tx(&mut c, &rrc("00000000", "4321"));
        }
        assert_eq!(tx(&mut c, &rrc("12345678", "4321")), "6983");
        assert_eq!(c.persistent.puk_tries, 0);
    }

    #[test]
    fn chuid_and_put_data() {
        let mut c = card();
        let got = tx(&mut c, "00 CB 3F FF 05 5C 03 5F C1 02 00");
        assert!(got.starts_with("533b3019d4e739"), "{got}");
        assert!(got.contains("341000112233445566778899aabbccddeeff3508"));
        assert!(got.ends_with("3e00fe009000"));
        assert_eq!(tx(&mut c, "00 CB 3F FF 05 5C 03 5F C1 05 00"), "6a82");
        let new = chuid(&[0x77; 16]);
        let put = [
            &h("00 DB 3F FF")[..],
            &[(5 + 2 + new.len()) as u8],
            &h("5C 03 5F C1 02 53"),
            &[new.len() as u8],
            &new,
        ]
        .concat();
        assert_eq!(c.transmit(&put), h("6982"));
        tx(&mut c, "00 87 03 9B 04 7C 02 81 00");
        tx(&mut c, &format!("00 87 03 9B 0C 7C 0A 82 08 {RESPONSE}"));
        assert_eq!(c.transmit(&put), h("9000"));
        assert_eq!(c.persistent.card_id, Some([0x77; 16]));
        let got = tx(&mut c, "00 CB 3F FF 05 5C 03 5F C1 02 00");
        assert!(got.contains(&format!("3410{}", "77".repeat(16))));

        let mut c = card_with(
            Config::default(),
            Persistent {
                card_id: None,
                ..Persistent::default()
            },
        );
        assert_eq!(tx(&mut c, "00 CB 3F FF 05 5C 03 5F C1 02 00"), "6a82");
    }

    #[test]
    fn yubikey_extras_or_not() {
        let mut c = card();
        transcript(
            &mut c,
            &[
                ("00 FD 00 00 00", "0507019000"),
                ("00 F8 00 00 00", "00bc614e9000"),
                ("00 F7 00 9A", "6a88"),
            ],
        );
        let mut c = card_with(
            Config {
                metadata: false,
                ..Config::default()
            },
            Persistent::default(),
        );
        for apdu in [
            "00 FD 00 00 00",
            "00 F8 00 00 00",
            "00 F7 00 9B",
            "00 F7 00 80",
        ] {
            assert_eq!(tx(&mut c, apdu), "6d00", "{apdu}");
        }
    }
}
