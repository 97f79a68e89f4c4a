//! The per-message `expiration` property, parsed exactly as RabbitMQ 3.10 parses it
//! (`rabbit_basic:parse_expiration/1`: `string:to_integer/1`, then `check_expiry/1`), with its
//! 406 texts (`rabbit_channel:check_expiration_header/1`).
//!
//! Captured on 3.10.8 (reply texts after `PRECONDITION_FAILED - `):
//! - accepted: `0`, `007`, `+5`, `-0`, `315360000000` (10 years in ms);
//! - `soon`, `""`, `" 5"`, `"\n5"`, `-x`, `+` → `invalid expiration 'soon': no_integer`;
//! - `-5` → `invalid expiration '-5': {value_negative,-5}`;
//! - `315360000001` → `invalid expiration '315360000001': {value_too_large,315360000001}`;
//! - `5x` → `invalid expiration '5x': {leftover_string,"x"}`, likewise `1.5` (`".5"`), `"5 "`
//!   (`" "`), `"5\n"` (`"\\n"`), `5"\` (`"\"\\"`), `5\x01` (`[1]`);
//! - long terms wrap like Erlang's `~p`: 23 nines give `{value_too_large,\n` + 47 spaces +
//!   the number + `}`.
//!
//! RabbitMQ puts the raw bytes in its text; Warren's texts are `String`s, so bytes that are
//! not UTF-8 come out as U+FFFD (the code and the close are the same).

use crate::error::AmqpError;

use crate::broker::replies::term::Term;

/// The largest TTL RabbitMQ accepts anywhere, in ms (10 years).
pub const MAX_EXPIRY_MS: u64 = 315_360_000_000;

/// Why an `expiration` was refused, as RabbitMQ names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpirationError {
    /// No digits at the start (after an optional sign).
    NoInteger,
    /// Below zero.
    ValueNegative(i128),
    /// Above [`MAX_EXPIRY_MS`] (saturated at `i128::MAX` for absurd lengths).
    ValueTooLarge(i128),
    /// Digits followed by something else: the rest.
    LeftoverString(Vec<u8>),
}

impl ExpirationError {
    fn term(&self) -> Term {
        match self {
            ExpirationError::NoInteger => Term::Atom("no_integer"),
            ExpirationError::ValueNegative(n) => {
                Term::tuple(Term::Atom("value_negative"), Term::Int(*n))
            }
            ExpirationError::ValueTooLarge(n) => {
                Term::tuple(Term::Atom("value_too_large"), Term::Int(*n))
            }
            ExpirationError::LeftoverString(s) => {
                Term::tuple(Term::Atom("leftover_string"), Term::Str(s.clone()))
            }
        }
    }

    /// The channel error RabbitMQ closes with: 406 `invalid expiration '<raw>': <reason>`.
    pub fn to_amqp_error(&self, raw: &[u8]) -> AmqpError {
        let mut text = b"invalid expiration '".to_vec();
        text.extend_from_slice(raw);
        text.extend_from_slice(b"': ");
        self.term().pretty(&mut text, 80);
        AmqpError::precondition_failed(String::from_utf8_lossy(&text).into_owned())
    }
}

/// Parses an `expiration` property value into milliseconds.
pub fn parse_expiration(raw: &[u8]) -> Result<u64, ExpirationError> {
    let (negative, digits_at) = match raw.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let digits = raw[digits_at..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 {
        return Err(ExpirationError::NoInteger);
    }
    let end = digits_at + digits;
    // Erlang integers are unbounded; saturate far above the limit instead.
    let magnitude = raw[digits_at..end].iter().fold(0i128, |n, &c| {
        n.saturating_mul(10).saturating_add(i128::from(c - b'0'))
    });
    let value = if negative { -magnitude } else { magnitude };
    if end != raw.len() {
        return Err(ExpirationError::LeftoverString(raw[end..].to_vec()));
    }
    if value < 0 {
        return Err(ExpirationError::ValueNegative(value));
    }
    if value > i128::from(MAX_EXPIRY_MS) {
        return Err(ExpirationError::ValueTooLarge(value));
    }
    Ok(value as u64)
}

/// `check_expiry/1` for queue arguments (`x-message-ttl`, `x-expires`).
pub(crate) fn check_expiry(value: i128) -> Result<u64, Term> {
    if value < 0 {
        Err(Term::tuple(Term::Atom("value_negative"), Term::Int(value)))
    } else if value > i128::from(MAX_EXPIRY_MS) {
        Err(Term::tuple(Term::Atom("value_too_large"), Term::Int(value)))
    } else {
        Ok(value as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(raw: &str) -> String {
        let e = parse_expiration(raw.as_bytes()).unwrap_err();
        e.to_amqp_error(raw.as_bytes()).reply_text()
    }

    #[test]
    fn accepts_what_rabbitmq_accepts() {
        for (raw, ms) in [
            ("0", 0),
            ("007", 7),
            ("+5", 5),
            ("-0", 0),
            ("315360000000", MAX_EXPIRY_MS),
        ] {
            assert_eq!(parse_expiration(raw.as_bytes()), Ok(ms), "{raw}");
        }
    }

    #[test]
    fn refusals_carry_rabbitmq_texts() {
        let cases = [
            ("soon", "invalid expiration 'soon': no_integer"),
            ("", "invalid expiration '': no_integer"),
            (" 5", "invalid expiration ' 5': no_integer"),
            ("\n5", "invalid expiration '\n5': no_integer"),
            ("-x", "invalid expiration '-x': no_integer"),
            ("+", "invalid expiration '+': no_integer"),
            ("-5", "invalid expiration '-5': {value_negative,-5}"),
            (
                "315360000001",
                "invalid expiration '315360000001': {value_too_large,315360000001}",
            ),
            ("5x", "invalid expiration '5x': {leftover_string,\"x\"}"),
            ("1.5", "invalid expiration '1.5': {leftover_string,\".5\"}"),
            ("5 ", "invalid expiration '5 ': {leftover_string,\" \"}"),
            ("5\n", "invalid expiration '5\n': {leftover_string,\"\\n\"}"),
            (
                "5\"\\",
                "invalid expiration '5\"\\': {leftover_string,\"\\\"\\\\\"}",
            ),
            (
                "5\u{1}",
                "invalid expiration '5\u{1}': {leftover_string,[1]}",
            ),
            ("5é", "invalid expiration '5é': {leftover_string,\"é\"}"),
            (
                "99999999999999999999999",
                "invalid expiration '99999999999999999999999': {value_too_large,\n                                               99999999999999999999999}",
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                text(raw),
                format!("PRECONDITION_FAILED - {expected}"),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn wrapping_starts_where_erlang_wraps() {
        // Captured with erl: 18 digits stay on one line, 19 wrap; a 17-byte leftover stays,
        // 18 wrap.
        assert!(!text(&"9".repeat(18)).contains('\n'));
        assert!(text(&"9".repeat(19)).contains('\n'));
        assert!(!text(&format!("5{}", "a".repeat(17))).contains('\n'));
        assert!(text(&format!("5{}", "a".repeat(18))).contains('\n'));
    }
}
