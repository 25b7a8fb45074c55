//! Personal data and secrets in text: e-mail addresses, phone numbers, payment cards (Luhn),
//! IBANs (mod 97), US social security numbers and well-known API-key formats.
//!
//! One `RegexSet` pass says which kinds a text may hold; only those kinds are then looked for
//! one by one, and checksummed kinds are confirmed before they count, so a text without
//! personal data costs a single scan.

use regex::{Regex, RegexSet};

/// A kind of personal data or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    /// `name@example.com`
    Email,
    /// `+1 415 555 0100`, `(415) 555-0100`, `+447700900123`
    Phone,
    /// 13 to 19 digits, spaced or dashed, that pass the Luhn check.
    CreditCard,
    /// `DE89 3704 0044 0532 0130 00`, checked with ISO 13616's mod 97.
    Iban,
    /// `123-45-6789`, without the numbers the SSA never issues.
    Ssn,
    /// OpenAI/Anthropic (`sk-...`), AWS (`AKIA...`), GitHub (`ghp_...`), Slack (`xoxb-...`)
    /// and Google (`AIza...`) keys.
    ApiKey,
}

impl PiiKind {
    /// Every kind with its config name.
    pub const ALL: [(&'static str, PiiKind); 6] = [
        ("email", PiiKind::Email),
        ("phone", PiiKind::Phone),
        ("credit_card", PiiKind::CreditCard),
        ("iban", PiiKind::Iban),
        ("ssn", PiiKind::Ssn),
        ("api_key", PiiKind::ApiKey),
    ];

    /// The config name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("pii", |(n, _)| n)
    }

    /// What a redacted match becomes.
    fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::CreditCard => "[CREDIT_CARD]",
            PiiKind::Iban => "[IBAN]",
            PiiKind::Ssn => "[SSN]",
            PiiKind::ApiKey => "[API_KEY]",
        }
    }

    // ASCII digits and ASCII word boundaries only: `\d` would take any script's digits (and
    // the byte offsets the checks slice by would then fall inside characters), and a Unicode
    // `\b` sees no boundary between CJK text and a number written right after it.
    fn pattern(self) -> &'static str {
        match self {
            PiiKind::Email => r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            // With separators or a leading `+`: a bare run of ten digits is as likely an order
            // number or a timestamp.
            PiiKind::Phone => {
                r"(?:\+[1-9][0-9]{0,2}[ .-]?)?(?:\([0-9]{3}\)[ .-]?|(?-u:\b)[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}(?-u:\b)|\+[1-9][0-9]{7,14}(?-u:\b)"
            }
            PiiKind::CreditCard => r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)",
            PiiKind::Iban => r"(?-u:\b)[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}(?-u:\b)",
            PiiKind::Ssn => r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
            PiiKind::ApiKey => {
                r"(?-u:\b)(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})"
            }
        }
    }

    /// The length of the part of a match that is real (checksums, numbers never issued), if
    /// any. A greedy match may have taken what follows a card or IBAN (a CVV, a currency
    /// code): shorter spans ending where a group ends are tried, longest first.
    fn confirmed(self, m: &str) -> Option<usize> {
        let check: fn(&str) -> bool = match self {
            PiiKind::CreditCard => luhn,
            PiiKind::Iban => iban_valid,
            PiiKind::Ssn => return ssn_valid(m).then_some(m.len()),
            _ => return Some(m.len()),
        };
        // The matched text is ASCII: each byte is a character.
        let bytes = m.as_bytes();
        (1..=bytes.len())
            .rev()
            .filter(|&end| {
                bytes[end - 1].is_ascii_alphanumeric()
                    && bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric())
            })
            .find(|&end| check(&m[..end]))
    }
}

/// The Luhn checksum of the digits in `s` (13 to 19 of them).
fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616: move the country and check digits to the end, letters to numbers, mod 97 = 1.
fn iban_valid(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rotated = compact[4..].iter().chain(&compact[..4]).copied();
    let mut rem: u32 = 0;
    for c in rotated.map(|c| c.to_ascii_uppercase()) {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        let (shift, value) = if v < 10 { (10, v) } else { (100, v) };
        rem = (rem * shift + value) % 97;
    }
    rem == 1
}

/// Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
fn ssn_valid(s: &str) -> bool {
    let area = &s[..3];
    area != "000"
        && area != "666"
        && !area.starts_with('9')
        && &s[4..6] != "00"
        && &s[7..] != "0000"
}

/// A compiled detector for some kinds.
#[derive(Debug, Clone)]
pub struct PiiDetector {
    kinds: Vec<PiiKind>,
    set: RegexSet,
    each: Vec<Regex>,
}

/// A confirmed match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    /// What it is.
    pub kind: PiiKind,
    /// Where, in bytes.
    pub range: std::ops::Range<usize>,
}

impl PiiDetector {
    /// A detector for `kinds` (every kind when empty).
    pub fn new(kinds: &[PiiKind]) -> PiiDetector {
        let kinds: Vec<PiiKind> = if kinds.is_empty() {
            PiiKind::ALL.iter().map(|(_, k)| *k).collect()
        } else {
            kinds.to_vec()
        };
        let patterns: Vec<&str> = kinds.iter().map(|k| k.pattern()).collect();
        // The patterns are constants, tested below: they compile.
        let set = RegexSet::new(&patterns).unwrap_or_else(|_| RegexSet::empty());
        let each = patterns.iter().filter_map(|p| Regex::new(p).ok()).collect();
        PiiDetector { kinds, set, each }
    }

    /// Every confirmed match in `text`, in order of kind, then position.
    pub fn find(&self, text: &str) -> Vec<PiiMatch> {
        let mut found = Vec::new();
        for i in self.set.matches(text).iter() {
            let kind = self.kinds[i];
            for m in self.each[i].find_iter(text) {
                if let Some(len) = kind.confirmed(m.as_str()) {
                    found.push(PiiMatch {
                        kind,
                        range: m.start()..m.start() + len,
                    });
                }
            }
        }
        found
    }

    /// The first confirmed match's kind, if any.
    pub fn first(&self, text: &str) -> Option<PiiKind> {
        self.find(text).first().map(|m| m.kind)
    }

    /// `text` with every confirmed match replaced by its placeholder (`[EMAIL]`, ...), and the
    /// kinds replaced; `None` when there was nothing to redact.
    pub fn redact(&self, text: &str) -> Option<(String, Vec<PiiKind>)> {
        let mut found = self.find(text);
        if found.is_empty() {
            return None;
        }
        // Earliest first, longest first at a tie; overlapping later matches are dropped.
        found.sort_by_key(|m| (m.range.start, std::cmp::Reverse(m.range.end)));
        let mut out = String::with_capacity(text.len());
        let mut kinds = Vec::new();
        let mut at = 0;
        for m in found {
            if m.range.start < at {
                continue;
            }
            out.push_str(&text[at..m.range.start]);
            out.push_str(m.kind.placeholder());
            at = m.range.end;
            if !kinds.contains(&m.kind) {
                kinds.push(m.kind);
            }
        }
        out.push_str(&text[at..]);
        Some((out, kinds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> PiiDetector {
        PiiDetector::new(&[])
    }

    #[test]
    fn each_kind_is_found_and_redacted() {
        let text = "Mail jane.doe+x@mail.example.co.uk or call +1 (415) 555-0100. Card 4111 1111 1111 1111, \
                    IBAN DE89 3704 0044 0532 0130 00, SSN 123-45-6789, key sk-proj-abcdefghijklmnopqrstuvwx.";
        let (out, kinds) = all().redact(text).expect("found");
        assert_eq!(
            out,
            "Mail [EMAIL] or call [PHONE]. Card [CREDIT_CARD], IBAN [IBAN], SSN [SSN], key [API_KEY]."
        );
        assert_eq!(kinds.len(), 6);
    }

    #[test]
    fn checksums_and_unissued_numbers_keep_false_positives_out() {
        let d = all();
        assert_eq!(d.first("order 4111 1111 1111 1112"), None, "fails Luhn");
        assert_eq!(d.first("DE00 3704 0044 0532 0130 00"), None, "fails mod 97");
        assert_eq!(
            d.first("code 000-12-3456 and 666-12-3456"),
            None,
            "never issued"
        );
        assert_eq!(d.first("nothing personal here, version 1.2.3"), None);
        assert_eq!(d.first("AKIAIOSFODNN7EXAMPLE"), Some(PiiKind::ApiKey));
        assert_eq!(d.first("GB82 WEST 1234 5698 7654 32"), Some(PiiKind::Iban));
    }

    #[test]
    fn every_pattern_compiles() {
        let d = all();
        assert_eq!(d.each.len(), PiiKind::ALL.len());
        assert_eq!(d.set.len(), PiiKind::ALL.len());
    }

    #[test]
    fn other_scripts_digits_and_neighbours_are_handled() {
        let d = all();
        // Arabic-Indic and fullwidth digits are not ASCII digits: no match, and no panic.
        assert_eq!(d.first("١٢٣-٤٥-٦٧٨٩ and １２３-４５-６７８９"), None);
        assert_eq!(d.first("卡号4111111111111111"), Some(PiiKind::CreditCard));
        // What follows a card or an IBAN is not swallowed into a failed checksum.
        let (out, _) = d.redact("card 4111 1111 1111 1111 123 exp").expect("card");
        assert_eq!(out, "card [CREDIT_CARD] 123 exp");
        assert_eq!(d.first("iban de89370400440532013000"), Some(PiiKind::Iban));
        // Bare ten-digit numbers are not phone numbers.
        assert_eq!(d.first("at 1796046054 the order 4155550100 shipped"), None);
        assert_eq!(d.first("call 415-555-0100"), Some(PiiKind::Phone));
    }

    #[test]
    fn a_detector_looks_only_for_its_kinds() {
        let emails = PiiDetector::new(&[PiiKind::Email]);
        assert_eq!(emails.first("call +14155550100"), None);
        assert_eq!(emails.first("a@b.io"), Some(PiiKind::Email));
    }
}
