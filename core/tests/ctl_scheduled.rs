//! `warren ctl scheduled` against the real binary: `due` draws the histogram of what is
//! pending, and `cancel-matching` cancels in batches with a progress line per batch on
//! stderr while stdout keeps only the answer.

#[allow(dead_code)]
mod common;

use std::process::{Command, Output, Stdio};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

use common::broker_process::{BrokerProcess, TempDataDir};

/// Declares delayed exchange `x` and publishes `count` messages two hours away, confirmed.
async fn hold(broker: &BrokerProcess, x: &str, count: usize) {
    let conn = Connection::connect(&broker.amqp_uri(), ConnectionProperties::default())
        .await
        .expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut args = FieldTable::default();
    args.insert(
        "x-delayed-type".into(),
        AMQPValue::LongString(LongString::from("direct")),
    );
    ch.exchange_declare(
        x,
        ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .expect("declare");
    let mut headers = FieldTable::default();
    headers.insert("x-delay".into(), AMQPValue::LongLongInt(7_200_000));
    for _ in 0..count {
        ch.basic_publish(
            x,
            "k",
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default().with_headers(headers.clone()),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
    }
    conn.close(200, "done").await.expect("closes");
}

/// `warren ctl --management <admin> <args…>`, its output once it has exited.
fn ctl(broker: &BrokerProcess, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("ctl")
        .arg("--management")
        .arg(broker.admin_url())
        .args(args)
        .env_remove("WARREN_USER")
        .env_remove("WARREN_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("warren ctl starts");
    let output = common::exit_of(child, "as a ctl command");
    assert!(output.status.success(), "{}", common::text(&output));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_charts_and_cancel_matching_reports_each_batch() {
    let dir = TempDataDir::new("ctl-scheduled");
    let broker = BrokerProcess::start(dir.path());
    hold(&broker, "reminders", 25).await;

    let due = stdout(&ctl(
        &broker,
        &["-q", "scheduled", "due", "--exchange", "reminders"],
    ));
    assert_eq!(
        due,
        format!(
            "next minute   0\nnext hour     0\nnext day     25  {}\nlater         0\n\
             25 pending (exact)\n",
            "#".repeat(40)
        )
    );

    let cancelled = ctl(
        &broker,
        &[
            "scheduled",
            "cancel-matching",
            "--exchange",
            "reminders",
            "--all",
            "--batch",
            "10",
        ],
    );
    // Piped, so a line per batch (a terminal would get one line rewritten).
    assert_eq!(
        stderr(&cancelled),
        "cancelled 10 of at most 25 scheduled messages\n\
         cancelled 20 of at most 25 scheduled messages\n\
         cancelled 25 of at most 25 scheduled messages\n"
    );
    assert!(
        stdout(&cancelled).ends_with("Cancelled 25 scheduled messages\n"),
        "{}",
        stdout(&cancelled)
    );

    // Nothing left: JSON output keeps its shape, and --no-progress keeps stderr quiet.
    hold(&broker, "reminders", 3).await;
    let json = ctl(
        &broker,
        &[
            "--formatter",
            "json",
            "scheduled",
            "cancel-matching",
            "--exchange",
            "reminders",
            "--all",
            "--no-progress",
        ],
    );
    assert_eq!(stdout(&json), "{\"cancelled\":3}\n");
    assert_eq!(stderr(&json), "");
}
