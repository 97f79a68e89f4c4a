//! Declaring an `x-delayed-message` exchange: `x-delayed-type` must name an existing type
//! other than itself (406 otherwise, missing or unknown alike), and a redeclare with another
//! `x-delayed-type` is 406 inequivalent arg (RabbitMQ's plugin silently ignores it).

use lapin::ExchangeKind;
use lapin::options::ExchangeDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use warren_tests::broker::{TestBroker, assert_exception, unique};
use warren_tests::delayed::delayed_args;

const MUST_EXIST: &str =
    "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type";

async fn declare(broker: &TestBroker, name: &str, args: FieldTable) -> lapin::Result<()> {
    let (_conn, ch) = broker.channel().await;
    ch.exchange_declare(
        name,
        ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
}

#[tokio::test]
async fn missing_x_delayed_type_is_406() {
    let broker = TestBroker::start().await;
    assert_exception(
        declare(&broker, &unique("x"), FieldTable::default()).await,
        406,
        MUST_EXIST,
    );
}

#[tokio::test]
async fn unknown_x_delayed_type_is_406() {
    let broker = TestBroker::start().await;
    assert_exception(
        declare(&broker, &unique("x"), delayed_args("no-such-type")).await,
        406,
        MUST_EXIST,
    );
}

#[tokio::test]
async fn x_delayed_type_naming_itself_is_406() {
    let broker = TestBroker::start().await;
    assert_exception(
        declare(&broker, &unique("x"), delayed_args("x-delayed-message")).await,
        406,
        MUST_EXIST,
    );
}

#[tokio::test]
async fn x_delayed_type_that_is_not_a_string_is_406() {
    let broker = TestBroker::start().await;
    let mut args = FieldTable::default();
    args.insert("x-delayed-type".into(), AMQPValue::LongInt(1));
    assert_exception(declare(&broker, &unique("x"), args).await, 406, MUST_EXIST);
}

#[tokio::test]
async fn redeclare_with_the_same_x_delayed_type_is_accepted() {
    let broker = TestBroker::start().await;
    let x = unique("x");
    declare(&broker, &x, delayed_args("direct"))
        .await
        .expect("declare");
    declare(&broker, &x, delayed_args("direct"))
        .await
        .expect("identical redeclare");
}

#[tokio::test]
async fn redeclare_with_another_x_delayed_type_is_406_inequivalent() {
    let broker = TestBroker::start().await;
    let x = unique("x");
    declare(&broker, &x, delayed_args("direct"))
        .await
        .expect("declare");
    assert_exception(
        declare(&broker, &x, delayed_args("topic")).await,
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-delayed-type' for exchange '{x}' in \
             vhost '/': received 'topic' but current is 'direct'"
        ),
    );
}
