//! "What is scheduled, and when will it fire?": `GET /api/scheduled/{vhost}/{exchange}/due`
//! buckets pending messages by due time (next minute, hour, day, later) from the
//! scheduler's slot counts; `GET /api/scheduled` reports each delayed exchange's held,
//! fired and cancelled counts and its next due time; `POST …/cancel` with a `limit`
//! cancels in batches.

use lapin::types::FieldTable;
use serde_json::{Value, json};
use warren_tests::broker::TestBroker;
use warren_tests::delayed::{
    bind, confirming, delay_ms, delayed_exchange, publish, queue, wait_get, with_headers,
};
use warren_tests::management::{Http, segment};

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

fn due_path(x: &str) -> String {
    format!("/api/scheduled/%2F/{}/due", segment(x))
}

fn cancel_path(x: &str) -> String {
    format!("/api/scheduled/%2F/{}/cancel", segment(x))
}

/// The bucket counts of `GET …/due`, after checking the answer's shape against its `now_ms`.
async fn buckets(http: &Http, x: &str) -> Vec<u64> {
    let (status, body) = http.get(&due_path(x)).await;
    assert_eq!(status, 200, "{body}");
    let now = body["now_ms"].as_u64().expect("now_ms");
    let buckets = body["buckets"].as_array().expect("buckets");
    let shape: Vec<(&str, u64, Option<u64>)> = buckets
        .iter()
        .map(|b| {
            (
                b["label"].as_str().expect("label"),
                b["from_ms"].as_u64().expect("from_ms"),
                b["to_ms"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("next minute", now, Some(now + MINUTE)),
            ("next hour", now + MINUTE, Some(now + HOUR)),
            ("next day", now + HOUR, Some(now + DAY)),
            ("later", now + DAY, None),
        ]
    );
    assert!(buckets[3]["to_ms"].is_null(), "{body}");
    assert_eq!(
        body["exact"],
        json!(true),
        "a few messages are counted exactly"
    );
    let counts: Vec<u64> = buckets
        .iter()
        .map(|b| b["count"].as_u64().expect("count"))
        .collect();
    assert_eq!(
        Some(counts.iter().sum()),
        body["pending"].as_u64(),
        "{body}"
    );
    counts
}

/// The row of `GET /api/scheduled` for exchange `x`.
async fn summary(http: &Http, x: &str) -> Value {
    let (status, body) = http.get("/api/scheduled").await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .expect("a list")
        .iter()
        .find(|row| row["exchange"] == json!(x))
        .cloned()
        .unwrap_or_else(|| panic!("{x} listed in {body}"))
}

/// Ids of the pending messages of `x` with `routing_key`.
async fn ids_with_key(http: &Http, x: &str, routing_key: &str) -> Vec<u64> {
    let path = format!(
        "/api/scheduled/%2F/{}?routing_key={routing_key}",
        segment(x)
    );
    let (status, body) = http.get(&path).await;
    assert_eq!(status, 200, "{body}");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["id"].as_u64().expect("id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_buckets_count_messages_by_when_they_fire_and_cancels_move_them() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    assert_eq!(buckets(&http, &x).await, [0, 0, 0, 0]);
    for (key, delay) in [
        ("ten-seconds", 10_000),
        ("half-hour", 30 * MINUTE),
        ("five-hours", 5 * HOUR),
        ("three-days", 3 * DAY),
        ("three-days", 3 * DAY + 1),
    ] {
        publish(&ch, &x, key, b"m", with_headers(delay_ms(delay as i64))).await;
    }
    assert_eq!(buckets(&http, &x).await, [1, 1, 1, 2]);
    let row = summary(&http, &x).await;
    assert_eq!(
        (row["pending"].clone(), row["held"].clone()),
        (json!(5), json!(5))
    );
    let first_due = http
        .get(&format!("/api/scheduled/%2F/{}?page_size=1", segment(&x)))
        .await
        .1["items"][0]["due_ms"]
        .clone();
    assert_eq!(row["next_due_ms"], first_due, "{row}");

    // Cancelling one by id empties its bucket; by routing key, the two of "later".
    let half_hour = ids_with_key(&http, &x, "half-hour").await;
    let (status, _) = http
        .delete(&format!(
            "/api/scheduled/%2F/{}/{}",
            segment(&x),
            half_hour[0]
        ))
        .await;
    assert_eq!(status, 204);
    assert_eq!(buckets(&http, &x).await, [1, 0, 1, 2]);
    let (status, body) = http
        .post(&cancel_path(&x), json!({"routing_key": "three-days"}))
        .await;
    assert_eq!(
        (status, body["cancelled"].clone()),
        (200, json!(2)),
        "{body}"
    );
    assert_eq!(buckets(&http, &x).await, [1, 0, 1, 0]);
    let row = summary(&http, &x).await;
    assert_eq!(
        (row["pending"].clone(), row["cancelled"].clone()),
        (json!(2), json!(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fired_message_counts_as_fired_and_leaves_the_buckets() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    publish(&ch, &x, "k", b"soon", with_headers(delay_ms(300))).await;
    publish(
        &ch,
        &x,
        "k",
        b"later",
        with_headers(delay_ms(2 * HOUR as i64)),
    )
    .await;
    let (m, _) = wait_get(&ch, &q).await;
    assert_eq!(m.delivery.data, b"soon");
    // The driver counts a message once it has routed it; the get may see it a moment sooner.
    let mut row = summary(&http, &x).await;
    for _ in 0..100 {
        if row["fired"] == json!(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        row = summary(&http, &x).await;
    }
    assert_eq!(
        (
            &row["held"],
            &row["fired"],
            &row["cancelled"],
            &row["pending"]
        ),
        (&json!(2), &json!(1), &json!(0), &json!(1)),
        "{row}"
    );
    assert_eq!(buckets(&http, &x).await, [0, 0, 1, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_a_limit_goes_in_batches_and_says_when_none_are_left() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    for i in 0..25 {
        let key = if i < 22 { "batch" } else { "other" };
        publish(&ch, &x, key, b"m", with_headers(delay_ms(HOUR as i64))).await;
    }
    let mut answers = Vec::new();
    loop {
        let (status, body) = http
            .post(
                &cancel_path(&x),
                json!({"routing_key": "batch", "limit": 10}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let more = body["more"].as_bool().expect("more");
        answers.push((body["cancelled"].as_u64().expect("cancelled"), more));
        if !more {
            break;
        }
        assert!(answers.len() < 5, "batches never end: {answers:?}");
    }
    assert_eq!(answers, [(10, true), (10, true), (2, false)]);
    assert_eq!(ids_with_key(&http, &x, "batch").await, Vec::<u64>::new());
    assert_eq!(ids_with_key(&http, &x, "other").await.len(), 3);
    // Exactly the limit left: the answer says nothing more matches.
    let (_, body) = http.post(&cancel_path(&x), json!({"limit": 3})).await;
    assert_eq!(body, json!({"cancelled": 3, "more": false}));

    let (status, body) = http.post(&cancel_path(&x), json!({"limit": 0})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["reason"].as_str().is_some_and(|r| r.contains("limit")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_is_for_delayed_exchanges_the_caller_may_read() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (status, body) = http.get(&due_path("amq.direct")).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = http.get(&due_path("no-such-exchange")).await;
    assert_eq!(status, 404);
    let (status, _) = http.anonymous().get(&due_path("amq.direct")).await;
    assert_eq!(status, 401);
}
