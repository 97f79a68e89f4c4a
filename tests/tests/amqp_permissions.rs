//! Permissions over AMQP: which of configure, write and read each channel method needs, the
//! 403 ACCESS_REFUSED text RabbitMQ gives when one is missing (the channel is closed and
//! nothing happened), passive declares that need none, server-named queues checked under the
//! name the server generated, the extra checks on a new queue's dead-letter exchange and a
//! new exchange's alternate exchange (and none per message afterwards), permission changes
//! reaching open connections, 530 for a vhost the user may not use, and vhosts as separate
//! namespaces.
//!
//! Users, vhosts and permissions are made on the in-process broker (`warren_tests::tenancy`);
//! guest, with every permission on `/`, sets up and inspects what the tested user may not.

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    ExchangeUnbindOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use warren_tests::broker::{Exceptions, TestBroker, assert_exception, reply_of, unique};
use warren_tests::queues::{count, get, wait_get};
use warren_tests::tenancy::{add_user, add_vhost, connect_as, forbid, permit};

const PASSWORD: &str = "secret";

/// A broker with one user besides guest, and guest's channel on `/` (in confirm mode, so what
/// it published has been routed once confirmed) for setting up and looking at what the user
/// did (or did not do).
struct Tenant {
    broker: TestBroker,
    _admin_conn: Connection,
    admin: Channel,
    user: String,
}

impl Tenant {
    /// A user with `configure`, `write` and `read` on `/`.
    async fn with(configure: &str, write: &str, read: &str) -> Tenant {
        let broker = TestBroker::start().await;
        let user = unique("user");
        add_user(&broker, &user, PASSWORD);
        permit(&broker, "/", &user, configure, write, read);
        let (admin_conn, admin) = broker.channel().await;
        admin
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        Tenant {
            broker,
            _admin_conn: admin_conn,
            admin,
            user,
        }
    }

    /// Replaces the user's permissions on `/`.
    fn permit(&self, configure: &str, write: &str, read: &str) {
        permit(&self.broker, "/", &self.user, configure, write, read);
    }

    /// A connection and channel on `/` as the user.
    async fn channel(&self) -> (Connection, Channel) {
        let conn = connect_as(&self.broker, &self.user, PASSWORD, "/")
            .await
            .expect("the user connects to /");
        let ch = conn.create_channel().await.expect("channel");
        (conn, ch)
    }

    /// RabbitMQ's refusal text for the user on `kind` `name` in `/`.
    /// Checks that `op` (run on a fresh channel each time) is refused naming the write side
    /// when the user may only read `read`, and naming the read side when it may only write
    /// `write` (RabbitMQ checks write first). Each side is `(kind, name)`.
    async fn refused_without_write_or_read<F, Fut>(
        &self,
        op: F,
        write: (&str, &str),
        read: (&str, &str),
    ) where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = lapin::Result<()>>,
    {
        self.permit("", "", &format!("^{}$", read.1));
        assert_exception(
            op(self.channel().await.1).await,
            403,
            &self.refused(write.0, write.1),
        );
        self.permit("", &format!("^{}$", write.1), "");
        assert_exception(
            op(self.channel().await.1).await,
            403,
            &self.refused(read.0, read.1),
        );
    }

    fn refused(&self, kind: &str, name: &str) -> String {
        format!(
            "ACCESS_REFUSED - access to {kind} '{name}' in vhost '/' refused for user '{}'",
            self.user
        )
    }

    /// A queue declared by guest, holding `messages` messages.
    async fn queue_with(&self, messages: usize) -> String {
        let q = unique("q");
        self.admin
            .queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("queue declare");
        for i in 0..messages {
            self.publish("", &q, format!("m{i}").as_bytes()).await;
        }
        assert_eq!(count(&self.admin, &q).await, messages as u32);
        q
    }

    /// Publishes as guest and waits for the confirm: the message is then in its queues.
    async fn publish(&self, x: &str, key: &str, body: &[u8]) {
        let confirm = self
            .admin
            .basic_publish(
                x,
                key,
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack(), "guest's publish to {x:?} was acked");
    }

    /// A direct exchange declared by guest.
    async fn exchange(&self) -> String {
        let x = unique("x");
        self.admin
            .exchange_declare(
                &x,
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("exchange declare");
        x
    }

    /// Whether the exchange `x` exists (guest's passive declare on a channel of its own).
    async fn exchange_exists(&self, x: &str) -> bool {
        let ch = self.broker.channel().await.1;
        ch.exchange_declare(
            x,
            ExchangeKind::Direct,
            passive_exchange(),
            FieldTable::default(),
        )
        .await
        .is_ok()
    }

    /// Whether the queue `q` exists.
    async fn queue_exists(&self, q: &str) -> bool {
        let ch = self.broker.channel().await.1;
        ch.queue_declare(q, passive_queue(), FieldTable::default())
            .await
            .is_ok()
    }

    /// Whether a message published by guest to `x` with `key` reaches `q` (which it empties).
    async fn routes(&self, x: &str, key: &str, q: &str) -> bool {
        self.publish(x, key, b"probe").await;
        let routed = count(&self.admin, q).await > 0;
        while get(&self.admin, q).await.is_some() {}
        routed
    }
}

fn passive_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

fn passive_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

fn text_arg(key: &str, value: &str) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    t
}

async fn declare_exchange(ch: &Channel, x: &str, args: FieldTable) -> lapin::Result<()> {
    ch.exchange_declare(
        x,
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
}

async fn declare_queue(ch: &Channel, q: &str, args: FieldTable) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(q, QueueDeclareOptions::default(), args)
        .await
}

/// Publishes on `ch` and returns the exception that closes the channel.
async fn publish_refusal(conn: &Connection, ch: &Channel, x: &str, key: &str) -> (u16, String) {
    let mut errors = Exceptions::watch(conn);
    let _ = ch
        .basic_publish(
            x,
            key,
            BasicPublishOptions::default(),
            b"refused",
            BasicProperties::default(),
        )
        .await;
    errors.next().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_declare_needs_configure_and_a_refusal_creates_nothing() {
    let t = Tenant::with("^mine-", "", "").await;
    let (_c, ch) = t.channel().await;
    let mine = unique("mine");
    declare_exchange(&ch, &mine, FieldTable::default())
        .await
        .expect("configure matches");
    assert!(t.exchange_exists(&mine).await);

    let other = unique("other");
    assert_exception(
        declare_exchange(&ch, &other, FieldTable::default()).await,
        403,
        &t.refused("exchange", &other),
    );
    assert!(!t.exchange_exists(&other).await, "nothing was declared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declares_need_no_permission() {
    let t = Tenant::with("", "", "").await;
    let (x, q) = (t.exchange().await, t.queue_with(2).await);
    let (_c, ch) = t.channel().await;
    ch.exchange_declare(
        &x,
        ExchangeKind::Direct,
        passive_exchange(),
        FieldTable::default(),
    )
    .await
    .expect("a passive exchange declare is not checked");
    let ok = ch
        .queue_declare(&q, passive_queue(), FieldTable::default())
        .await
        .expect("a passive queue declare is not checked");
    assert_eq!(ok.message_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_delete_needs_configure_even_for_a_missing_exchange() {
    let t = Tenant::with("^nothing$", "", "").await;
    let x = t.exchange().await;
    let (_c, ch) = t.channel().await;
    assert_exception(
        ch.exchange_delete(&x, ExchangeDeleteOptions::default())
            .await,
        403,
        &t.refused("exchange", &x),
    );
    assert!(t.exchange_exists(&x).await, "the exchange is still there");

    let (_c, ch) = t.channel().await;
    let missing = unique("missing");
    assert_exception(
        ch.exchange_delete(&missing, ExchangeDeleteOptions::default())
            .await,
        403,
        &t.refused("exchange", &missing),
    );

    t.permit(&format!("^{x}$"), "", "");
    let (_c, ch) = t.channel().await;
    ch.exchange_delete(&x, ExchangeDeleteOptions::default())
        .await
        .expect("configure matches");
    assert!(!t.exchange_exists(&x).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declare_needs_configure_and_a_refusal_creates_nothing() {
    let t = Tenant::with("^mine-", "", "").await;
    let (_c, ch) = t.channel().await;
    let mine = unique("mine");
    declare_queue(&ch, &mine, FieldTable::default())
        .await
        .expect("configure matches");
    assert!(t.queue_exists(&mine).await);

    let other = unique("other");
    assert_exception(
        declare_queue(&ch, &other, FieldTable::default()).await,
        403,
        &t.refused("queue", &other),
    );
    assert!(!t.queue_exists(&other).await, "nothing was declared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_queue_name_is_refused_for_its_prefix_before_permissions() {
    let t = Tenant::with("", "", "").await;
    let (_c, ch) = t.channel().await;
    assert_exception(
        declare_queue(&ch, "amq.mine", FieldTable::default()).await,
        403,
        "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_named_queue_is_checked_under_its_generated_name() {
    let t = Tenant::with("^amq\\.gen-", "", "").await;
    let (_c, ch) = t.channel().await;
    let q = declare_queue(&ch, "", FieldTable::default())
        .await
        .expect("the generated name matches");
    assert!(q.name().as_str().starts_with("amq.gen-"));

    t.permit("^mine-", "", "");
    let (_c, ch) = t.channel().await;
    let err = declare_queue(&ch, "", FieldTable::default())
        .await
        .expect_err("the generated name does not match");
    let (code, text) = reply_of(&err);
    assert_eq!(code, 403, "{text}");
    let prefix = "ACCESS_REFUSED - access to queue 'amq.gen-";
    let suffix = format!("' in vhost '/' refused for user '{}'", t.user);
    assert!(
        text.starts_with(prefix) && text.ends_with(&suffix),
        "{text}"
    );
    let generated = &text[prefix.len() - "amq.gen-".len()..text.len() - suffix.len()];
    assert_eq!(generated.len(), "amq.gen-".len() + 22, "{generated}");
    assert!(!t.queue_exists(generated).await, "nothing was declared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_queue_with_a_dead_letter_exchange_needs_read_on_it_and_write_on_the_exchange() {
    let t = Tenant::with("^dq-", "", "").await;
    let dlx = t.exchange().await;
    let args = || text_arg("x-dead-letter-exchange", &dlx);

    let (_c, ch) = t.channel().await;
    let q = unique("dq");
    assert_exception(
        declare_queue(&ch, &q, args()).await,
        403,
        &t.refused("queue", &q),
    );
    assert!(!t.queue_exists(&q).await);

    t.permit("^dq-", "", "^dq-");
    let (_c, ch) = t.channel().await;
    assert_exception(
        declare_queue(&ch, &q, args()).await,
        403,
        &t.refused("exchange", &dlx),
    );
    assert!(!t.queue_exists(&q).await);

    // The default exchange as a dead-letter exchange is checked as amq.default.
    let (_c, ch) = t.channel().await;
    assert_exception(
        declare_queue(&ch, &q, text_arg("x-dead-letter-exchange", "")).await,
        403,
        &t.refused("exchange", "amq.default"),
    );

    t.permit("^dq-", &format!("^{dlx}$"), "^dq-");
    let (_c, ch) = t.channel().await;
    declare_queue(&ch, &q, args())
        .await
        .expect("read on the queue, write on the dead-letter exchange");

    // Redeclaring the existing queue only needs configure.
    t.permit("^dq-", "", "");
    let (_c, ch) = t.channel().await;
    declare_queue(&ch, &q, args())
        .await
        .expect("an existing queue's dead-letter exchange is not checked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_exchange_with_an_alternate_needs_read_on_it_and_write_on_the_alternate() {
    let t = Tenant::with("^ax-", "", "").await;
    let ae = t.exchange().await;
    let args = || text_arg("alternate-exchange", &ae);
    let x = unique("ax");

    let (_c, ch) = t.channel().await;
    assert_exception(
        declare_exchange(&ch, &x, args()).await,
        403,
        &t.refused("exchange", &x),
    );
    t.permit("^ax-", "", "^ax-");
    let (_c, ch) = t.channel().await;
    assert_exception(
        declare_exchange(&ch, &x, args()).await,
        403,
        &t.refused("exchange", &ae),
    );
    assert!(!t.exchange_exists(&x).await);

    t.permit("^ax-", &format!("^{ae}$"), "^ax-");
    let (_c, ch) = t.channel().await;
    declare_exchange(&ch, &x, args())
        .await
        .expect("read on the exchange, write on the alternate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delete_needs_configure_and_a_refusal_keeps_the_messages() {
    let t = Tenant::with("^nothing$", "", "").await;
    let q = t.queue_with(3).await;
    let (_c, ch) = t.channel().await;
    assert_exception(
        ch.queue_delete(&q, QueueDeleteOptions::default()).await,
        403,
        &t.refused("queue", &q),
    );
    assert_eq!(count(&t.admin, &q).await, 3);

    t.permit(&format!("^{q}$"), "", "");
    let (_c, ch) = t.channel().await;
    let deleted = ch
        .queue_delete(&q, QueueDeleteOptions::default())
        .await
        .expect("configure matches");
    assert_eq!(deleted, 3);
    assert!(!t.queue_exists(&q).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_purge_needs_read() {
    let t = Tenant::with(".*", ".*", "^nothing$").await;
    let q = t.queue_with(2).await;
    let (_c, ch) = t.channel().await;
    assert_exception(
        ch.queue_purge(&q, QueuePurgeOptions::default()).await,
        403,
        &t.refused("queue", &q),
    );
    assert_eq!(count(&t.admin, &q).await, 2, "nothing was purged");

    t.permit("", "", &format!("^{q}$"));
    let (_c, ch) = t.channel().await;
    let purged = ch
        .queue_purge(&q, QueuePurgeOptions::default())
        .await
        .expect("read matches");
    assert_eq!(purged, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_bind_needs_write_on_the_queue_and_read_on_the_exchange() {
    let t = Tenant::with("", "", "").await;
    let (x, q) = (t.exchange().await, t.queue_with(0).await);
    let bind = |ch: Channel| {
        let (x, q) = (x.clone(), q.clone());
        async move {
            ch.queue_bind(
                &q,
                &x,
                "k",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        }
    };

    t.refused_without_write_or_read(&bind, ("queue", &q), ("exchange", &x))
        .await;
    assert!(!t.routes(&x, "k", &q).await, "no binding was made");

    t.permit("", &format!("^{q}$"), &format!("^{x}$"));
    bind(t.channel().await.1)
        .await
        .expect("write on the queue, read on the exchange");
    assert!(t.routes(&x, "k", &q).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_unbind_needs_write_on_the_queue_and_read_on_the_exchange() {
    let t = Tenant::with("", "", "").await;
    let (x, q) = (t.exchange().await, t.queue_with(0).await);
    t.admin
        .queue_bind(
            &q,
            &x,
            "k",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let unbind = |ch: Channel| {
        let (x, q) = (x.clone(), q.clone());
        async move { ch.queue_unbind(&q, &x, "k", FieldTable::default()).await }
    };

    t.refused_without_write_or_read(&unbind, ("queue", &q), ("exchange", &x))
        .await;
    assert!(t.routes(&x, "k", &q).await, "the binding is still there");

    t.permit("", &format!("^{q}$"), &format!("^{x}$"));
    unbind(t.channel().await.1)
        .await
        .expect("write on the queue, read on the exchange");
    assert!(!t.routes(&x, "k", &q).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_bind_needs_write_on_the_destination_and_read_on_the_source() {
    let t = Tenant::with("", "", "").await;
    let (source, destination, q) = (
        t.exchange().await,
        t.exchange().await,
        t.queue_with(0).await,
    );
    t.admin
        .queue_bind(
            &q,
            &destination,
            "k",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let bind = |ch: Channel| {
        let (s, d) = (source.clone(), destination.clone());
        async move {
            ch.exchange_bind(
                &d,
                &s,
                "k",
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await
        }
    };

    t.refused_without_write_or_read(&bind, ("exchange", &destination), ("exchange", &source))
        .await;
    assert!(!t.routes(&source, "k", &q).await, "no binding was made");

    t.permit("", &format!("^{destination}$"), &format!("^{source}$"));
    bind(t.channel().await.1)
        .await
        .expect("write on the destination, read on the source");
    assert!(t.routes(&source, "k", &q).await);

    // Unbinding needs the same two.
    t.permit("", "", &format!("^{source}$"));
    let (_c, ch) = t.channel().await;
    assert_exception(
        ch.exchange_unbind(
            &destination,
            &source,
            "k",
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        &t.refused("exchange", &destination),
    );
    assert!(
        t.routes(&source, "k", &q).await,
        "the binding is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_needs_write_on_the_exchange_and_a_refused_message_is_not_routed() {
    let t = Tenant::with("", "", "").await;
    let (x, q) = (t.exchange().await, t.queue_with(0).await);
    t.admin
        .queue_bind(
            &q,
            &x,
            "k",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");

    let (conn, ch) = t.channel().await;
    assert_eq!(
        publish_refusal(&conn, &ch, &x, "k").await,
        (403, t.refused("exchange", &x))
    );
    assert_eq!(
        count(&t.admin, &q).await,
        0,
        "the refused message was not routed"
    );

    t.permit("", &format!("^{x}$"), "");
    let (_c, ch) = t.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let confirm = ch
        .basic_publish(
            &x,
            "k",
            BasicPublishOptions::default(),
            b"allowed",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack());
    assert_eq!(wait_get(&t.admin, &q).await.data, b"allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_exchange_is_checked_as_amq_default() {
    let t = Tenant::with("", "^nothing$", "").await;
    let q = t.queue_with(0).await;
    let (conn, ch) = t.channel().await;
    assert_eq!(
        publish_refusal(&conn, &ch, "", &q).await,
        (403, t.refused("exchange", "amq.default"))
    );
    assert_eq!(
        count(&t.admin, &q).await,
        0,
        "the refused message was not routed"
    );

    t.permit("", "^amq\\.default$", "");
    let (_c, ch) = t.channel().await;
    ch.basic_publish(
        "",
        &q,
        BasicPublishOptions::default(),
        b"allowed",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert_eq!(wait_get(&t.admin, &q).await.data, b"allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_a_missing_exchange_without_write_is_403_not_404() {
    let t = Tenant::with("", "^nothing$", "").await;
    let missing = unique("missing");
    let (conn, ch) = t.channel().await;
    assert_eq!(
        publish_refusal(&conn, &ch, &missing, "k").await,
        (403, t.refused("exchange", &missing))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_and_get_need_read_on_the_queue() {
    let t = Tenant::with("", "", "^nothing$").await;
    let q = t.queue_with(1).await;
    let (_c, ch) = t.channel().await;
    assert_exception(
        ch.basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        &t.refused("queue", &q),
    );
    let (_c, ch) = t.channel().await;
    assert_exception(
        ch.basic_get(&q, BasicGetOptions { no_ack: true }).await,
        403,
        &t.refused("queue", &q),
    );
    assert_eq!(count(&t.admin, &q).await, 1, "nothing was taken");

    t.permit("", "", &format!("^{q}$"));
    let (_c, ch) = t.channel().await;
    let got = ch
        .basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .expect("read matches")
        .expect("a message");
    assert_eq!(got.delivery.data, b"m0");
    ch.basic_consume(
        &q,
        "",
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("read matches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_change_reaches_an_open_connection_at_its_next_operation() {
    let t = Tenant::with("", ".*", "").await;
    let q = t.queue_with(0).await;
    let (conn, ch) = t.channel().await;
    ch.basic_publish(
        "",
        &q,
        BasicPublishOptions::default(),
        b"before",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert_eq!(wait_get(&t.admin, &q).await.data, b"before");

    // Taken away: the same channel's next publish (cached as allowed) is refused.
    forbid(&t.broker, "/", &t.user);
    assert_eq!(
        publish_refusal(&conn, &ch, "", &q).await,
        (403, t.refused("exchange", "amq.default"))
    );
    assert_eq!(
        count(&t.admin, &q).await,
        0,
        "the refused message was not routed"
    );

    // Given: a new channel on the same connection may now declare.
    let ch = conn.create_channel().await.expect("channel");
    let mine = unique("mine");
    assert_exception(
        declare_queue(&ch, &mine, FieldTable::default()).await,
        403,
        &t.refused("queue", &mine),
    );
    t.permit("^mine-", "", "");
    let ch = conn.create_channel().await.expect("channel");
    declare_queue(&ch, &mine, FieldTable::default())
        .await
        .expect("the new permission applies to the open connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_and_dead_letter_exchanges_are_not_checked_per_message() {
    let t = Tenant::with("", "", "").await;
    let (ae, dlx) = (t.exchange().await, t.exchange().await);
    let (ae_q, dl_q) = (t.queue_with(0).await, t.queue_with(0).await);
    for (q, x) in [(&ae_q, &ae), (&dl_q, &dlx)] {
        t.admin
            .queue_bind(
                q,
                x,
                "k",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
    }
    let x = unique("x");
    declare_exchange(&t.admin, &x, text_arg("alternate-exchange", &ae))
        .await
        .expect("exchange with an alternate");
    let q = unique("q");
    let mut dead_lettering = text_arg("x-dead-letter-exchange", &dlx);
    dead_lettering.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from("k")),
    );
    declare_queue(&t.admin, &q, dead_lettering)
        .await
        .expect("queue with a dead-letter exchange");

    // The user may write to x and read q, and nothing else.
    t.permit("", &format!("^{x}$"), &format!("^{q}$"));
    let (_c, ch) = t.channel().await;
    ch.basic_publish(
        &x,
        "k",
        BasicPublishOptions::default(),
        b"unroutable",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert_eq!(wait_get(&t.admin, &ae_q).await.data, b"unroutable");

    t.publish("", &q, b"rejected").await;
    let got = ch
        .basic_get(&q, BasicGetOptions { no_ack: false })
        .await
        .expect("get")
        .expect("a message");
    got.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    assert_eq!(wait_get(&t.admin, &dl_q).await.data, b"rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_through_a_delayed_exchange_checks_that_exchange_only() {
    let t = Tenant::with("", "", "").await;
    let mut args = text_arg("x-delayed-type", "direct");
    let delayed = unique("delayed");
    t.admin
        .exchange_declare(
            &delayed,
            ExchangeKind::Custom("x-delayed-message".into()),
            ExchangeDeclareOptions::default(),
            args.clone(),
        )
        .await
        .expect("delayed exchange");
    let q = t.queue_with(0).await;
    t.admin
        .queue_bind(
            &q,
            &delayed,
            "k",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    args = FieldTable::default();
    args.insert("x-delay".into(), AMQPValue::LongLongInt(50));
    let props = BasicProperties::default().with_headers(args);

    t.permit("", "^nothing$", "");
    let (conn, ch) = t.channel().await;
    let mut errors = Exceptions::watch(&conn);
    let _ = ch
        .basic_publish(
            &delayed,
            "k",
            BasicPublishOptions::default(),
            b"refused",
            props.clone(),
        )
        .await;
    assert_eq!(errors.next().await, (403, t.refused("exchange", &delayed)));

    t.permit("", &format!("^{delayed}$"), "");
    let (_c, ch) = t.channel().await;
    ch.basic_publish(
        &delayed,
        "k",
        BasicPublishOptions::default(),
        b"later",
        props,
    )
    .await
    .expect("publish");
    assert_eq!(wait_get(&t.admin, &q).await.data, b"later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhost_without_permissions_is_refused_at_connection_open_with_530() {
    let broker = TestBroker::start().await;
    let (a, b) = (unique("vhost-a"), unique("vhost-b"));
    add_vhost(&broker, &a);
    add_vhost(&broker, &b);
    let user = unique("user");
    add_user(&broker, &user, PASSWORD);
    permit(&broker, &a, &user, ".*", ".*", ".*");

    let conn = connect_as(&broker, &user, PASSWORD, &a)
        .await
        .expect("the user may use vhost a");
    conn.create_channel().await.expect("channel");

    let refused = connect_as(&broker, &user, PASSWORD, &b)
        .await
        .expect_err("no permissions in vhost b");
    assert_eq!(
        reply_of(&refused),
        (
            530,
            format!("NOT_ALLOWED - access to vhost '{b}' refused for user '{user}'")
        )
    );

    let missing = connect_as(&broker, &user, PASSWORD, "nope")
        .await
        .expect_err("no such vhost");
    assert_eq!(
        reply_of(&missing),
        (530, "NOT_ALLOWED - vhost nope not found".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_names_in_two_vhosts_are_separate_objects() {
    let broker = TestBroker::start().await;
    let (a, b) = (unique("vhost-a"), unique("vhost-b"));
    let user = unique("user");
    add_user(&broker, &user, PASSWORD);
    for v in [&a, &b] {
        add_vhost(&broker, v);
        permit(&broker, v, &user, ".*", ".*", ".*");
    }
    let conn_a = connect_as(&broker, &user, PASSWORD, &a).await.expect("a");
    let conn_b = connect_as(&broker, &user, PASSWORD, &b).await.expect("b");
    let ch_a = conn_a.create_channel().await.expect("channel");
    let ch_b = conn_b.create_channel().await.expect("channel");

    // The same exchange name, of different types, and the same queue name.
    ch_a.exchange_declare(
        "shared-x",
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("direct in a");
    ch_b.exchange_declare(
        "shared-x",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("fanout in b: a's exchange is not b's");
    for ch in [&ch_a, &ch_b] {
        declare_queue(ch, "shared-q", FieldTable::default())
            .await
            .expect("queue");
    }
    ch_a.queue_bind(
        "shared-q",
        "shared-x",
        "k",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind in a");
    ch_a.basic_publish(
        "shared-x",
        "k",
        BasicPublishOptions::default(),
        b"in a",
        BasicProperties::default(),
    )
    .await
    .expect("publish in a");
    assert_eq!(wait_get(&ch_a, "shared-q").await.data, b"in a");
    assert_eq!(count(&ch_b, "shared-q").await, 0, "b's queue got nothing");

    // Deleting a's queue leaves b's.
    ch_a.queue_delete("shared-q", QueueDeleteOptions::default())
        .await
        .expect("delete in a");
    ch_b.basic_publish(
        "",
        "shared-q",
        BasicPublishOptions::default(),
        b"in b",
        BasicProperties::default(),
    )
    .await
    .expect("publish in b");
    assert_eq!(wait_get(&ch_b, "shared-q").await.data, b"in b");
}
