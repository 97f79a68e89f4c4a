//! The ways to say when: `x-delay` as integers, decimal strings and human durations;
//! `x-deliver-at` as epoch milliseconds, an AMQP timestamp or RFC 3339; `x-delay` winning
//! when both are set; unreadable values routed at once; and delays of years held.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::types::{AMQPValue, FieldTable, LongString};
use warren_tests::broker::TestBroker;
use warren_tests::delayed::{
    admin_url, assert_empty_for, bind, confirming, delay_ms, delayed_exchange, get, header,
    pending_count, pending_list, publish, queue, wait_get, with_headers,
};

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

async fn setup(broker: &TestBroker) -> (lapin::Connection, lapin::Channel, String, String) {
    let (conn, ch) = confirming(broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    (conn, ch, x, q)
}

/// Publishes with the headers `headers` makes (called just before publishing, so absolute
/// times are not eaten by broker start-up), then checks nothing arrives for `quiet` and it
/// arrives later, not before `min` after publishing.
async fn held_for(headers: impl FnOnce() -> FieldTable, quiet: Duration, min: Duration) {
    let broker = TestBroker::start().await;
    let (_conn, ch, x, q) = setup(&broker).await;
    let published = Instant::now();
    publish(&ch, &x, "k", b"m", with_headers(headers())).await;
    assert_empty_for(&ch, &q, quiet).await;
    let (_, arrived) = wait_get(&ch, &q).await;
    assert!(arrived.duration_since(published) >= min, "arrived early");
}

#[tokio::test]
async fn x_delay_as_a_decimal_string_is_milliseconds() {
    held_for(
        || header("x-delay", text("500")),
        Duration::from_millis(300),
        Duration::from_millis(500),
    )
    .await;
}

#[tokio::test]
async fn x_delay_as_a_32_bit_integer_is_milliseconds() {
    held_for(
        || header("x-delay", AMQPValue::LongInt(400)),
        Duration::from_millis(250),
        Duration::from_millis(400),
    )
    .await;
}

#[tokio::test]
async fn x_delay_accepts_human_durations() {
    held_for(
        || header("x-delay", text("600ms")),
        Duration::from_millis(400),
        Duration::from_millis(600),
    )
    .await;
    let broker = TestBroker::start().await;
    let (_conn, ch, x, _q) = setup(&broker).await;
    publish(
        &ch,
        &x,
        "k",
        b"m",
        with_headers(header("x-delay", text("1h 30m"))),
    )
    .await;
    let list = pending_list(&admin_url(&broker), &x).await;
    assert_eq!(list.len(), 1);
    let delay = list[0].due_ms.saturating_sub(epoch_ms());
    assert!(
        (5_390_000..=5_400_000).contains(&delay),
        "1h 30m is 5 400 000 ms, due in {delay}"
    );
}

#[tokio::test]
async fn x_deliver_at_as_epoch_milliseconds() {
    held_for(
        || {
            header(
                "x-deliver-at",
                AMQPValue::LongLongInt((epoch_ms() + 600) as i64),
            )
        },
        Duration::from_millis(300),
        Duration::from_millis(450),
    )
    .await;
}

#[tokio::test]
async fn x_deliver_at_as_rfc3339() {
    held_for(
        || {
            let at = UNIX_EPOCH + Duration::from_millis(epoch_ms() + 700);
            header("x-deliver-at", text(&humantime_rfc3339(at)))
        },
        Duration::from_millis(300),
        Duration::from_millis(450),
    )
    .await;
}

#[tokio::test]
async fn x_deliver_at_as_an_amqp_timestamp_is_seconds() {
    let broker = TestBroker::start().await;
    let (_conn, ch, x, _q) = setup(&broker).await;
    let secs = epoch_ms() / 1000 + 3600;
    publish(
        &ch,
        &x,
        "k",
        b"m",
        with_headers(header("x-deliver-at", AMQPValue::Timestamp(secs))),
    )
    .await;
    let list = pending_list(&admin_url(&broker), &x).await;
    assert_eq!(list[0].due_ms, secs * 1000);
}

#[tokio::test]
async fn x_delay_wins_over_x_deliver_at() {
    let broker = TestBroker::start().await;
    let (_conn, ch, x, q) = setup(&broker).await;
    let mut headers = delay_ms(200);
    headers.insert(
        "x-deliver-at".into(),
        AMQPValue::LongLongInt((epoch_ms() + 3_600_000) as i64),
    );
    publish(&ch, &x, "k", b"m", with_headers(headers)).await;
    wait_get(&ch, &q).await;
}

#[tokio::test]
async fn an_unreadable_delay_is_routed_at_once() {
    let broker = TestBroker::start().await;
    let (_conn, ch, x, q) = setup(&broker).await;
    for bad in ["abc", "soon", "1 fortnight"] {
        publish(
            &ch,
            &x,
            "k",
            b"m",
            with_headers(header("x-delay", text(bad))),
        )
        .await;
        assert!(get(&ch, &q).await.is_some(), "'{bad}' routed at once");
    }
    publish(
        &ch,
        &x,
        "k",
        b"m",
        with_headers(header("x-deliver-at", text("next tuesday"))),
    )
    .await;
    assert!(get(&ch, &q).await.is_some());
    // The connection is still usable (the RabbitMQ plugin closes it with 541).
    publish(&ch, &x, "k", b"m", Default::default()).await;
}

#[tokio::test]
async fn a_ten_year_delay_stays_pending_without_firing() {
    let broker = TestBroker::start().await;
    let (_conn, ch, x, q) = setup(&broker).await;
    let ten_years = 315_360_000_000_i64;
    publish(&ch, &x, "k", b"m", with_headers(delay_ms(ten_years))).await;
    // Above 2^32 - 1 ms, where RabbitMQ's plugin fires at once.
    publish(&ch, &x, "k", b"m", with_headers(delay_ms(1 << 33))).await;
    assert_empty_for(&ch, &q, Duration::from_millis(500)).await;
    let admin = admin_url(&broker);
    assert_eq!(pending_count(&admin, &x).await, 2);
    let list = pending_list(&admin, &x).await;
    let due = list.last().expect("listed").due_ms;
    assert!(due >= epoch_ms() + ten_years as u64 - 60_000);
}

/// RFC 3339 with milliseconds, UTC (`2030-01-01T00:00:00.250Z`).
fn humantime_rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}
