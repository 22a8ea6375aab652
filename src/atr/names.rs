//! The card's names from pcsc-tools' `smartcard_list.txt`: entries of ATR patterns (Perl
//! regular expressions, matched whole and case-insensitively, as pcsc-tools' ATR_analysis
//! does) and description lines. The patterns run on `regex-lite`; a literal pre-filter
//! skips the patterns (~4 000 in Debian 12's list) whose fixed start cannot fit, before any is
//! compiled.

use std::path::Path;

use regex_lite::Regex;

use super::Atr;

/// Where pcsc-tools installs its ATR list. The list is GPL-2: it is read at
/// run time when present and never bundled with scunblock.
pub const SMARTCARD_LIST_PATH: &str = "/usr/share/pcsc/smartcard_list.txt";

/// Card descriptions for this ATR from the system `smartcard_list.txt`
/// (pcsc-tools); empty when the file is absent or nothing matches.
pub fn lookup_names(atr: &Atr) -> Vec<String> {
    lookup_names_in(Path::new(SMARTCARD_LIST_PATH), atr)
}

/// [`lookup_names`] against a list file at `list`.
pub fn lookup_names_in(list: &Path, atr: &Atr) -> Vec<String> {
    match std::fs::read(list) {
        // The strict check is much faster than the lossy one, which only
        // invalid files need.
        Ok(data) => match std::str::from_utf8(&data) {
            Ok(text) => names_from_list(text, &atr.hex()),
            Err(_) => names_from_list(&String::from_utf8_lossy(&data), &atr.hex()),
        },
        Err(_) => Vec::new(),
    }
}

/// Descriptions of the entries whose pattern matches `atr_hex`. The file has
/// entries made of one pattern line, then description lines that start with
/// a tab, then an empty line; `#` starts a comment line.
fn names_from_list(text: &str, atr_hex: &str) -> Vec<String> {
    let atr = Subject::new(atr_hex);
    let mut names: Vec<String> = Vec::new();
    let mut matching = false;
    let mut in_patterns = false;
    // The system list is ~480 KB of mostly description lines: memchr finds the line ends,
    // and a description line is only read under a matching pattern (`scunblock info`: 8.4 M
    // -> 4.0 M instructions with the pre-filter below; docs/performance.md). A '\r' before
    // a '\n' is whitespace that `trim` removes, as `lines` would.
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text.as_bytes()).chain([text.len()]) {
        let line = &text[start..end];
        start = end + 1;
        match line.as_bytes().first() {
            Some(b'#') => continue,
            // A description, or a line of blanks that ends the entry: either way the
            // patterns above are over, and nothing else changes unless they matched.
            Some(b' ' | b'\t') if !matching => in_patterns = false,
            Some(b' ' | b'\t') => {
                in_patterns = false;
                let name = line.trim();
                if name.is_empty() {
                    matching = false;
                } else if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
            _ => match line.trim() {
                "" => {
                    matching = false;
                    in_patterns = false;
                }
                pattern => {
                    // Several pattern lines in a row share the descriptions below them.
                    let hit = atr.matched_by(pattern);
                    matching = if in_patterns { matching || hit } else { hit };
                    in_patterns = true;
                }
            },
        }
    }
    names
}

/// Whether `pattern` matches all of `atr_hex`, ignoring case. A pattern regex-lite rejects
/// matches nothing, rather than something wrong.
#[cfg(test)]
fn pattern_matches(pattern: &str, atr_hex: &str) -> bool {
    Subject::new(atr_hex).matched_by(pattern)
}

/// The text the list's patterns are matched against (an ATR's hex), upper-cased once.
struct Subject<'a> {
    text: &'a str,
    upper: Vec<char>,
    /// ASCII and one line: a `.` matches any one of its characters.
    plain: bool,
}

impl<'a> Subject<'a> {
    fn new(text: &'a str) -> Subject<'a> {
        Subject {
            text,
            upper: text.chars().flat_map(char::to_uppercase).collect(),
            plain: text.is_ascii() && !text.contains('\n'),
        }
    }

    fn matched_by(&self, pattern: &str) -> bool {
        literal_start_fits(pattern, self) && full_match(pattern, self.text)
    }
}

/// The whole-string match, without the pre-filter. The pattern is compiled alone first: only
/// a pattern whose groups balance may sit inside `^(?:...)$` (`a)|(b` would otherwise
/// escape the anchors and match a part of the text).
fn full_match(pattern: &str, text: &str) -> bool {
    Regex::new(pattern).is_ok()
        && Regex::new(&format!("(?i)^(?:{pattern})$")).is_ok_and(|re| re.is_match(text))
}

/// False when the pattern's literal start (up to its first metacharacter, or
/// the character a quantifier applies to) differs from the start of `text`:
/// then the whole-string match fails too. Compiling every one of the system
/// list's patterns cost `scunblock info` ~60 M instructions (scripts/bench).
/// On a one-line ASCII text (an ATR's hex) a `.` matches any one character, and
/// a pattern that is all literal must end where the text ends. A `|` anywhere
/// may start an alternative with another literal start: no check then.
fn literal_start_fits(pattern: &str, text: &Subject) -> bool {
    let mut upper = text.upper.iter().copied();
    let mut chars = pattern
        .strip_prefix('^')
        .unwrap_or(pattern)
        .chars()
        .peekable();
    let fits = loop {
        let Some(c) = chars.next() else {
            break !text.plain || upper.next().is_none();
        };
        let quantified = matches!(chars.peek(), Some('*' | '+' | '?' | '{'));
        if c == '.' && !quantified && text.plain {
            if upper.next().is_none() {
                break false;
            }
        } else if quantified || ".[\\*+?(){}|^$".contains(c) {
            return true;
        } else if c.is_ascii() {
            if upper.next() != Some(c.to_ascii_uppercase()) {
                break false;
            }
        } else if !c.to_uppercase().all(|u| upper.next() == Some(u)) {
            break false;
        }
    };
    // A `|` further on may start an alternative with another literal start.
    fits || memchr::memchr(b'|', pattern.as_bytes()).is_some()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parsed, Rng, GEMXPLORE, MS_VSC, MULTIFLEX, YUBIKEY_5_NFC};
    use super::*;
    use crate::atr::bytes_from_hex;

    // -- smartcard_list.txt ---------------------------------------------------

    #[test]
    fn pattern_subset() {
        let hex = "3B 02 14 52";
        assert!(pattern_matches("3B 02 14 52", hex));
        assert!(pattern_matches("3b 02 14 52", hex));
        assert!(pattern_matches("3B .. 14 5.", hex));
        assert!(pattern_matches("3B 02 14 5[0-3]", hex));
        assert!(pattern_matches("3B 02 14 5[1,2]", hex));
        assert!(!pattern_matches("3B 02 14 5[^2]", hex));
        assert!(pattern_matches("3B 02 .*", hex));
        assert!(pattern_matches("3B 02 14 52.*", hex));
        assert!(pattern_matches("^3B 02 14 52$", hex));
        // Anchored at both ends.
        assert!(!pattern_matches("3B 02 14", hex));
        assert!(!pattern_matches("02 14 52", hex));
        assert!(!pattern_matches("3B 02 14 52 ..", hex));
        // Groups, alternation and counted repeats are Perl's, as in pcsc-tools.
        assert!(pattern_matches("3B (02|03) 14 52", hex));
        assert!(pattern_matches("3B( ..){3}", hex));
        assert!(!pattern_matches("3B( ..){2}", hex));
        // A group that would escape the anchors is refused, not matched in part.
        assert!(!pattern_matches("3B)|(14", hex));
        // Broken syntax matches nothing instead of something wrong.
        assert!(!pattern_matches("3B 02 14 5[", hex));
        assert!(!pattern_matches("*3B", hex));
        assert!(pattern_matches("3B 0?2 14 52", hex));
        assert!(pattern_matches("3B 02+ 14 52", hex));
    }

    fn write_list(name: &str, text: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("scunblock-atr-{name}-{}.txt", std::process::id()));
        std::fs::write(&path, text).expect("write test list");
        path
    }

    #[test]
    fn lookup_in_a_list_file() {
        let list = "# a comment\n\
                    3B 02 14 50\n\
                    \tFirst test card\n\
                    \tsecond line\n\
                    \n\
                    3B .. 14 5[0-3]\n\
                    \tWildcard card\n\
                    \n\
                    3F .*\n\
                    \tAny inverse card\n\
                    \n\
                    3B 8D 01 80 FB A0 00 00 03 97 42 54 46 59 04 01\n\
                    \tNo TCK, never matches\n\
                    \n\
                    3B 8D 01 80 FB A0 00 00 03 97 42 54 46 59 04 01 CF\r\n\
                    \tVirtual card\r\n";
        let path = write_list("lookup", list);
        assert_eq!(
            lookup_names_in(&path, &parsed(MULTIFLEX)),
            vec!["First test card", "second line", "Wildcard card"]
        );
        assert_eq!(
            lookup_names_in(&path, &parsed(MS_VSC)),
            vec!["Virtual card"]
        );
        assert_eq!(
            lookup_names_in(&path, &parsed(GEMXPLORE)),
            vec!["Any inverse card"]
        );
        assert!(lookup_names_in(&path, &parsed(YUBIKEY_5_NFC)).is_empty());
        std::fs::remove_file(&path).ok();
        let absent = std::env::temp_dir().join("scunblock-atr-no-such-list.txt");
        assert!(lookup_names_in(&absent, &parsed(MS_VSC)).is_empty());
    }

    #[test]
    fn system_list_when_installed() {
        // Only where pcsc-tools is installed (never bundled); scripts/deps installs it, so
        // CI fails without it.
        let path = Path::new(SMARTCARD_LIST_PATH);
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if crate::all_tests_required() => panic!("{SMARTCARD_LIST_PATH}: {e}"),
            Err(e) => return eprintln!("SKIPPED (no {SMARTCARD_LIST_PATH}): {e}"),
        };
        assert!(lookup_names(&parsed(YUBIKEY_5_NFC))
            .iter()
            .any(|n| n.contains("YubiKey 5 NFC")));
        // Every exact ATR of the list decodes without panicking, and regex-lite takes every
        // pattern of the list.
        let mut patterns = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with(['#', '\t', ' ']) && !l.trim().is_empty())
        {
            patterns += 1;
            assert!(Regex::new(line.trim()).is_ok(), "{line:?}");
            if let Ok(bytes) = bytes_from_hex(line) {
                let (a, problems) = Atr::parse_lenient(&bytes);
                if let Some(a) = a {
                    let _ = a.describe();
                    assert_eq!(a.bytes(), bytes.as_slice());
                }
                assert_eq!(Atr::parse(&bytes).is_ok(), problems.is_empty());
            }
        }
        assert!(
            patterns > 3_000,
            "{patterns} patterns in {SMARTCARD_LIST_PATH}"
        );
    }

    #[test]
    fn random_patterns_never_panic() {
        let alphabet: Vec<char> = "0123456789ABCDEFab .*+?[]^$-,\\(|".chars().collect();
        let mut rng = Rng(0xFACE_B00C_0000_0001);
        for _ in 0..20_000 {
            let len = rng.below(24);
            let pattern: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let _ = pattern_matches(&pattern, YUBIKEY_5_NFC);
            let _ = pattern_matches(&pattern, "");
        }
    }

    #[test]
    fn the_literal_start_check_reads_dots_ends_and_alternatives() {
        let hex = "3B 02 14 52";
        assert!(literal_start_fits("3B .. 14 5.", &Subject::new(hex)));
        assert!(!literal_start_fits("3B .. 15 52", &Subject::new(hex)));
        // All literal, but shorter or longer than the text: no whole-string match.
        assert!(!literal_start_fits("3B 02", &Subject::new(hex)));
        assert!(!literal_start_fits("3B 02 14 52 00", &Subject::new(hex)));
        assert!(!literal_start_fits("3B 02 14 5..", &Subject::new(hex)));
        // The second alternative starts differently from the first.
        assert!(pattern_matches("3B 1.|3F 02 14 52", "3F 02 14 52"));
        assert!(pattern_matches("3B 02 14 5.", hex));
    }

    #[test]
    fn the_literal_start_check_rejects_no_match() {
        // Patterns made of the list's syntax and of pieces of the texts, so that many match.
        let alphabet: Vec<&str> = vec![
            "3", "B", "b", "0", "2", "1", "4", "5", " ", "3B ", "02 ", "14 ", "52", ".", "..", "*",
            "+", "?", "[0-3]", "[^2]", "^", "$", "\\", "ß", "|", "(", ")", "3F ", "{2}",
        ];
        let texts = ["3B 02 14 52", "3B 02 14 50", "3b 02", "", "SS", "3F 02"];
        let mut rng = Rng(0x5EED_0000_0000_0007);
        let mut matched = 0;
        for _ in 0..50_000 {
            let pattern: String = (0..rng.below(9))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            for text in texts {
                let full = full_match(&pattern, text);
                if full {
                    matched += 1;
                    assert!(
                        literal_start_fits(&pattern, &Subject::new(text)),
                        "{pattern:?} {text:?}"
                    );
                }
                assert_eq!(
                    pattern_matches(&pattern, text),
                    full,
                    "{pattern:?} {text:?}"
                );
            }
        }
        assert!(matched > 100, "{matched}");
    }
}
