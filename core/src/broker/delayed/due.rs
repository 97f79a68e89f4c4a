//! When a message published to a delayed exchange is due: the `x-delay` and `x-deliver-at`
//! headers, read straight from the raw header bytes.
//!
//! Kept apart from the driver because it is pure (time is passed in) and is where client
//! input is judged, so every form a client may send is unit-tested here:
//!
//! - `x-delay`: milliseconds as any AMQP integer width, a decimal string, or a human duration
//!   string (`"90s"`, `"1h 30m"`, humantime's syntax).
//! - `x-deliver-at`: an absolute time — an AMQP timestamp (seconds), an integer or decimal
//!   string (milliseconds since the Unix epoch), or an RFC 3339 string in UTC
//!   (`2030-01-01T00:00:00Z`; humantime's weak form also takes a space for the `T` and no
//!   `Z`). Offsets other than UTC are not understood.
//!
//! When both are present `x-delay` wins: it is the header existing RabbitMQ clients set, so a
//! client that adds `x-deliver-at` next to it keeps the behaviour it had. A delay that is
//! absent, zero or negative, or a time that has passed, means "route at once". A value that
//! cannot be read is also routed at once (the caller logs it) rather than refused: the
//! RabbitMQ plugin closes the connection with 541 there, which no client expects.

use warren_plugin_api::field_table::{FieldTable, FieldValue};

/// Header holding a delay.
pub const X_DELAY: &[u8] = b"x-delay";
/// Header holding an absolute delivery time.
pub const X_DELIVER_AT: &[u8] = b"x-deliver-at";

/// What the headers ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// Route now (no header, zero or negative delay, a time already passed).
    Now,
    /// Hold until this time (milliseconds since the Unix epoch, after `now`).
    At(u64),
    /// A header that could not be read: route now, and say why.
    Invalid(String),
}

/// Reads `x-delay` / `x-deliver-at` from a message's raw header table at time `now` (epoch
/// milliseconds).
pub fn when(headers: Option<&[u8]>, now: u64) -> When {
    let Some(raw) = headers else {
        return When::Now;
    };
    let table = FieldTable::new(raw);
    if let Some(value) = table.get(X_DELAY) {
        return delay(&value, now);
    }
    if let Some(value) = table.get(X_DELIVER_AT) {
        return deliver_at(&value, now);
    }
    When::Now
}

fn after(now: u64, ms: u64) -> When {
    if ms == 0 {
        When::Now
    } else {
        When::At(now.saturating_add(ms))
    }
}

fn at(now: u64, time: u64) -> When {
    if time <= now {
        When::Now
    } else {
        When::At(time)
    }
}

fn delay(value: &FieldValue<'_>, now: u64) -> When {
    if let Some(ms) = value.as_i64() {
        return after(now, u64::try_from(ms).unwrap_or(0));
    }
    let Some(text) = value.as_str().map(str::trim) else {
        return When::Invalid(format!("x-delay of type {}", value.type_name()));
    };
    if let Ok(ms) = text.parse::<i64>() {
        return after(now, u64::try_from(ms).unwrap_or(0));
    }
    match humantime::parse_duration(text) {
        Ok(d) => after(now, u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        Err(e) => When::Invalid(format!("x-delay '{text}': {e}")),
    }
}

fn deliver_at(value: &FieldValue<'_>, now: u64) -> When {
    if let FieldValue::Timestamp(secs) = value {
        return at(now, secs.saturating_mul(1000));
    }
    if let Some(ms) = value.as_i64() {
        return at(now, u64::try_from(ms).unwrap_or(0));
    }
    let Some(text) = value.as_str().map(str::trim) else {
        return When::Invalid(format!("x-deliver-at of type {}", value.type_name()));
    };
    if let Ok(ms) = text.parse::<i64>() {
        return at(now, u64::try_from(ms).unwrap_or(0));
    }
    match humantime::parse_rfc3339_weak(text) {
        Ok(time) => {
            let ms = time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            at(now, ms)
        }
        Err(e) => When::Invalid(format!("x-deliver-at '{text}': {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, FieldTable as Table, LongString};

    const NOW: u64 = 1_700_000_000_000;

    fn headers(pairs: &[(&str, AMQPValue)]) -> Vec<u8> {
        let mut t = Table::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        crate::protocol::encode_table_body(&t)
            .expect("encodes")
            .to_vec()
    }

    fn when_of(pairs: &[(&str, AMQPValue)]) -> When {
        when(Some(&headers(pairs)), NOW)
    }

    fn text(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s))
    }

    #[test]
    fn no_headers_or_no_delay_routes_now() {
        assert_eq!(when(None, NOW), When::Now);
        assert_eq!(when_of(&[("other", AMQPValue::LongInt(5))]), When::Now);
    }

    #[test]
    fn every_integer_width_is_milliseconds() {
        for v in [
            AMQPValue::ShortShortInt(5),
            AMQPValue::ShortShortUInt(5),
            AMQPValue::ShortInt(5),
            AMQPValue::ShortUInt(5),
            AMQPValue::LongInt(5),
            AMQPValue::LongUInt(5),
            AMQPValue::LongLongInt(5),
        ] {
            assert_eq!(when_of(&[("x-delay", v)]), When::At(NOW + 5));
        }
    }

    #[test]
    fn zero_and_negative_delays_route_now() {
        assert_eq!(when_of(&[("x-delay", AMQPValue::LongInt(0))]), When::Now);
        assert_eq!(when_of(&[("x-delay", AMQPValue::LongInt(-10))]), When::Now);
        assert_eq!(when_of(&[("x-delay", text("-10"))]), When::Now);
    }

    #[test]
    fn decimal_and_human_strings_are_delays() {
        assert_eq!(when_of(&[("x-delay", text("1500"))]), When::At(NOW + 1500));
        assert_eq!(when_of(&[("x-delay", text("90s"))]), When::At(NOW + 90_000));
        assert_eq!(
            when_of(&[("x-delay", text("1h 30m"))]),
            When::At(NOW + 5_400_000)
        );
    }

    #[test]
    fn ten_years_is_honoured() {
        let ten_years = 315_360_000_000_i64;
        assert_eq!(
            when_of(&[("x-delay", AMQPValue::LongLongInt(ten_years))]),
            When::At(NOW + ten_years as u64)
        );
    }

    #[test]
    fn unreadable_values_are_invalid() {
        assert!(matches!(
            when_of(&[("x-delay", text("abc"))]),
            When::Invalid(_)
        ));
        assert!(matches!(
            when_of(&[("x-delay", AMQPValue::Boolean(true))]),
            When::Invalid(_)
        ));
        assert!(matches!(
            when_of(&[("x-deliver-at", text("tomorrow"))]),
            When::Invalid(_)
        ));
    }

    #[test]
    fn deliver_at_takes_timestamps_epoch_ms_and_rfc3339() {
        let secs = NOW / 1000 + 60;
        assert_eq!(
            when_of(&[("x-deliver-at", AMQPValue::Timestamp(secs))]),
            When::At(secs * 1000)
        );
        assert_eq!(
            when_of(&[("x-deliver-at", AMQPValue::LongLongInt((NOW + 7) as i64))]),
            When::At(NOW + 7)
        );
        assert_eq!(
            when_of(&[("x-deliver-at", text("2030-01-01T00:00:00Z"))]),
            When::At(1_893_456_000_000)
        );
        assert_eq!(
            when_of(&[("x-deliver-at", text("2030-01-01T00:00:00.250Z"))]),
            When::At(1_893_456_000_250)
        );
    }

    #[test]
    fn deliver_at_in_the_past_routes_now() {
        assert_eq!(
            when_of(&[("x-deliver-at", text("2001-01-01T00:00:00Z"))]),
            When::Now
        );
        assert_eq!(
            when_of(&[("x-deliver-at", AMQPValue::LongLongInt(5))]),
            When::Now
        );
    }

    #[test]
    fn x_delay_wins_over_deliver_at() {
        assert_eq!(
            when_of(&[
                (
                    "x-deliver-at",
                    AMQPValue::LongLongInt((NOW + 100_000) as i64)
                ),
                ("x-delay", AMQPValue::LongInt(5)),
            ]),
            When::At(NOW + 5)
        );
    }
}
