//! Seeing and cancelling what is scheduled through the management API's `/api/scheduled`
//! (pages, due ranges, cancel one or by filter), and deleting a delayed exchange dropping its
//! pending messages.

use std::time::Duration;

use lapin::types::FieldTable;
use serde_json::{Value, json};
use warren_tests::broker::TestBroker;
use warren_tests::delayed::{
    admin_url, assert_empty_for, bind, cancel, confirming, delay_ms, delayed_exchange,
    pending_count, pending_list, publish, queue, wait_get, with_headers,
};
use warren_tests::management::{Http, segment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_and_list_show_pending_messages_by_due_time() {
    let broker = TestBroker::start().await;
    let admin = admin_url(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    publish(&ch, &x, "late", b"12345", with_headers(delay_ms(120_000))).await;
    publish(&ch, &x, "early", b"1", with_headers(delay_ms(60_000))).await;
    assert_eq!(pending_count(&admin, &x).await, 2);
    let list = pending_list(&admin, &x).await;
    let summary: Vec<(&str, usize)> = list
        .iter()
        .map(|p| (p.routing_key.as_str(), p.body_size))
        .collect();
    assert_eq!(summary, [("early", 1), ("late", 5)]);
    assert!(list[0].due_ms < list[1].due_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_message_is_never_delivered() {
    let broker = TestBroker::start().await;
    let admin = admin_url(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    publish(&ch, &x, "k", b"cancel-me", with_headers(delay_ms(500))).await;
    publish(&ch, &x, "k", b"keep-me", with_headers(delay_ms(600))).await;
    let list = pending_list(&admin, &x).await;
    assert_eq!(list.len(), 2);
    cancel(&admin, &x, list[0].id).await.expect("cancelled");
    assert_eq!(pending_count(&admin, &x).await, 1);
    let (m, _) = wait_get(&ch, &q).await;
    assert_eq!(m.delivery.data, b"keep-me");
    assert_empty_for(&ch, &q, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_unknown_id_is_404() {
    let broker = TestBroker::start().await;
    let admin = admin_url(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let err = cancel(&admin, &x, 12345)
        .await
        .expect_err("nothing to cancel");
    assert!(err.status == 404, "{err}");
    let err = cancel(&admin, "no-such-exchange", 1)
        .await
        .expect_err("no exchange");
    assert!(
        err.to_string().contains("no exchange 'no-such-exchange'"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_exchange_drops_its_pending_messages() {
    let broker = TestBroker::start().await;
    let admin = admin_url(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    for _ in 0..3 {
        publish(&ch, &x, "k", b"m", with_headers(delay_ms(400))).await;
    }
    assert_eq!(pending_count(&admin, &x).await, 3);
    ch.exchange_delete(&x, Default::default())
        .await
        .expect("delete");
    assert_eq!(pending_count(&admin, &x).await, 0);
    // Recreated under the same name, it starts empty and the old messages never fire.
    ch.exchange_declare(
        &x,
        lapin::ExchangeKind::Custom("x-delayed-message".into()),
        Default::default(),
        warren_tests::delayed::delayed_args("direct"),
    )
    .await
    .expect("redeclare");
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    assert_eq!(pending_count(&admin, &x).await, 0);
    assert_empty_for(&ch, &q, Duration::from_millis(700)).await;
}

/// The ids and due times of one page, and its `next` cursor.
fn page_of(body: &Value) -> (Vec<(u64, u64)>, Option<String>) {
    let items = body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {body}"))
        .iter()
        .map(|p| {
            (
                p["due_ms"].as_u64().expect("due"),
                p["id"].as_u64().expect("id"),
            )
        })
        .collect();
    (items, body["next"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_each_other_by_due_time_and_a_range_narrows_them() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    // 250 messages due over the next 250 minutes, published in a shuffled order.
    for i in 0..250i64 {
        let minutes = (i * 97) % 250 + 1;
        let key = if minutes % 2 == 0 { "even" } else { "odd" };
        publish(&ch, &x, key, b"m", with_headers(delay_ms(minutes * 60_000))).await;
    }
    let base = format!("/api/scheduled/%2F/{}", segment(&x));
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &after {
            Some(cursor) => format!("{base}?page_size=100&after={cursor}"),
            None => format!("{base}?page_size=100"),
        };
        let (status, body) = http.get(&url).await;
        assert_eq!(status, 200, "{body}");
        let (items, next) = page_of(&body);
        pages += 1;
        seen.extend(items);
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
        assert!(pages < 10, "paging must end");
    }
    assert_eq!(pages, 3, "100 + 100 + 50");
    assert_eq!(seen.len(), 250);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "in due order, none twice");

    // A due range: the messages due between minute 100 and minute 150 (from inclusive).
    let from = seen[99].0;
    let to = seen[149].0;
    let (_, body) = http
        .get(&format!("{base}?page_size=1000&from_ms={from}&to_ms={to}"))
        .await;
    assert_eq!(page_of(&body).0, seen[99..149].to_vec());
    let (status, body) = http.get(&format!("{base}?after=nonsense")).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_filter_takes_only_what_matches() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let admin = admin_url(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    for (key, minutes) in [("a", 10), ("b", 10), ("a", 20), ("a", 30), ("b", 40)] {
        publish(&ch, &x, key, b"m", with_headers(delay_ms(minutes * 60_000))).await;
    }
    let list = pending_list(&admin, &x).await;
    let cut = list[3].due_ms; // the "a" due in 30 minutes
    let path = format!("/api/scheduled/%2F/{}/cancel", segment(&x));
    let (status, body) = http
        .post(&path, json!({"routing_key": "a", "to_ms": cut}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancelled"], 2, "the 'a's due before minute 30");
    let left: Vec<String> = pending_list(&admin, &x)
        .await
        .into_iter()
        .map(|p| p.routing_key)
        .collect();
    assert_eq!(left, ["b", "a", "b"], "by due time: b@10, a@30, b@40");
    let (_, body) = http.post(&path, json!({})).await;
    assert_eq!(body["cancelled"], 3, "no filter: everything");
    assert_eq!(pending_count(&admin, &x).await, 0);
}
