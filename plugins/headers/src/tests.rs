use super::*;
use warren_plugin_api::reply_code;
use warren_plugin_api::testing;

/// A field value as a test writes it: the type tag and the big-endian payload.
#[derive(Clone)]
struct V(u8, Vec<u8>);

fn s(text: &str) -> V {
    let mut payload = (text.len() as u32).to_be_bytes().to_vec();
    payload.extend_from_slice(text.as_bytes());
    V(b'S', payload)
}
fn bytes(raw: &[u8]) -> V {
    let mut payload = (raw.len() as u32).to_be_bytes().to_vec();
    payload.extend_from_slice(raw);
    V(b'x', payload)
}
fn i8v(v: i8) -> V {
    V(b'b', v.to_be_bytes().to_vec())
}
fn u8v(v: u8) -> V {
    V(b'B', vec![v])
}
fn i16v(v: i16) -> V {
    V(b's', v.to_be_bytes().to_vec())
}
fn u32v(v: u32) -> V {
    V(b'i', v.to_be_bytes().to_vec())
}
fn i64v(v: i64) -> V {
    V(b'l', v.to_be_bytes().to_vec())
}
fn f32v(v: f32) -> V {
    V(b'f', v.to_be_bytes().to_vec())
}
fn f64v(v: f64) -> V {
    V(b'd', v.to_be_bytes().to_vec())
}
fn boolv(v: bool) -> V {
    V(b't', vec![v.into()])
}
fn void() -> V {
    V(b'V', Vec::new())
}
fn nested(entries: &[(&str, V)]) -> V {
    let inner = table(entries);
    let mut payload = (inner.len() as u32).to_be_bytes().to_vec();
    payload.extend_from_slice(&inner);
    V(b'F', payload)
}
fn array(items: &[V]) -> V {
    let mut inner = Vec::new();
    for V(tag, payload) in items {
        inner.push(*tag);
        inner.extend_from_slice(payload);
    }
    let mut payload = (inner.len() as u32).to_be_bytes().to_vec();
    payload.extend_from_slice(&inner);
    V(b'A', payload)
}

/// Encodes table entries: shortstr key, tag byte, big-endian value (no length prefix).
fn table(entries: &[(&str, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, V(tag, payload)) in entries {
        out.push(key.len() as u8);
        out.extend_from_slice(key.as_bytes());
        out.push(*tag);
        out.extend_from_slice(payload);
    }
    out
}

/// Headers bindings ignore their key; a fixed one stands in.
const KEY: &[u8] = b"ignored";

fn validate(exchange: &HeadersExchange, arguments: &[u8]) -> Result<(), PluginError> {
    testing::validate_binding(exchange, 1, KEY, arguments)
}

fn bind(exchange: &mut HeadersExchange, destination: u64, arguments: &[u8]) {
    testing::validate_binding(exchange, destination, KEY, arguments).expect("binding is valid");
    testing::add_binding(exchange, destination, KEY, arguments).expect("binding is added");
}

fn unbind(exchange: &mut HeadersExchange, destination: u64, arguments: &[u8]) {
    testing::remove_binding(exchange, destination, KEY, arguments).expect("binding is removed");
}

/// Routes a message with `headers` (and two routing keys, which headers ignore) and returns
/// the sorted, de-duplicated destinations.
fn route(exchange: &HeadersExchange, headers: &[u8]) -> Vec<u64> {
    testing::route(exchange, &[b"any.routing.key", b"a.cc.key"], headers).expect("route succeeds")
}

fn new_exchange() -> HeadersExchange {
    HeadersExchange::create("h", &FieldTable::new(&[])).expect("created")
}

/// Table entries as a test writes them.
type Entries = Vec<(&'static str, V)>;

fn matches(binding: &[(&str, V)], headers: &[(&str, V)]) -> bool {
    let mut exchange = new_exchange();
    bind(&mut exchange, 7, &table(binding));
    route(&exchange, &table(headers)) == [7]
}

#[test]
fn truth_table_of_x_match_modes_and_value_classes() {
    let all = || ("x-match", s("all"));
    let any = || ("x-match", s("any"));
    let all_x = || ("x-match", s("all-with-x"));
    let any_x = || ("x-match", s("any-with-x"));
    #[rustfmt::skip]
    let rows: Vec<(&str, Entries, Entries, bool)> = vec![
        ("all: every entry equal", vec![all(), ("a", s("1")), ("b", s("2"))], vec![("b", s("2")), ("a", s("1"))], true),
        ("all: one entry differs", vec![all(), ("a", s("1")), ("b", s("2"))], vec![("a", s("1")), ("b", s("3"))], false),
        ("all: one entry missing", vec![all(), ("a", s("1")), ("b", s("2"))], vec![("a", s("1"))], false),
        ("all is the default", vec![("a", s("1")), ("b", s("2"))], vec![("a", s("1"))], false),
        ("all: extra headers are fine", vec![all(), ("a", s("1"))], vec![("a", s("1")), ("z", s("9"))], true),
        ("all: no entries matches anything", vec![all()], vec![("z", s("9"))], true),
        ("all: no entries matches no headers", vec![all()], vec![], true),
        ("empty arguments match everything", vec![], vec![], true),
        ("all: missing headers", vec![all(), ("a", s("1"))], vec![], false),
        ("any: one entry equal", vec![any(), ("a", s("1")), ("b", s("2"))], vec![("b", s("2"))], true),
        ("any: none equal", vec![any(), ("a", s("1")), ("b", s("2"))], vec![("a", s("2")), ("b", s("1"))], false),
        ("any: no entries matches nothing", vec![any()], vec![("a", s("1"))], false),
        ("any: missing headers", vec![any(), ("a", s("1"))], vec![], false),
        ("void binding value: presence", vec![all(), ("a", void())], vec![("a", i64v(3))], true),
        ("void binding value: absence", vec![all(), ("a", void())], vec![("b", void())], false),
        ("void binding value: any", vec![any(), ("a", void()), ("b", s("x"))], vec![("a", s(""))], true),
        ("void header does not equal a value", vec![all(), ("a", s("1"))], vec![("a", void())], false),
        ("5 is not \"5\"", vec![all(), ("n", i64v(5))], vec![("n", s("5"))], false),
        ("\"5\" is not 5", vec![all(), ("n", s("5"))], vec![("n", u8v(5))], false),
        ("byte 5 equals long 5", vec![all(), ("n", i64v(5))], vec![("n", i8v(5))], true),
        ("unsigned int 5 equals short 5", vec![all(), ("n", i16v(5))], vec![("n", u32v(5))], true),
        ("-1 as byte is not 255 unsigned", vec![all(), ("n", i8v(-1))], vec![("n", u8v(255))], false),
        ("integer 5 is not float 5.0", vec![all(), ("n", i64v(5))], vec![("n", f64v(5.0))], false),
        ("f32 1.5 equals f64 1.5", vec![all(), ("f", f64v(1.5))], vec![("f", f32v(1.5))], true),
        ("bool is not an integer", vec![all(), ("t", boolv(true))], vec![("t", u8v(1))], false),
        ("bool equals bool", vec![all(), ("t", boolv(true))], vec![("t", boolv(true))], true),
        ("strings compare bytewise", vec![all(), ("a", s("pdf"))], vec![("a", s("PDF"))], false),
        ("byte array equals long string", vec![all(), ("a", s("pdf"))], vec![("a", bytes(b"pdf"))], true),
        ("nested tables equal by bytes", vec![all(), ("t", nested(&[("k", i8v(1))]))], vec![("t", nested(&[("k", i8v(1))]))], true),
        ("nested tables differ by width", vec![all(), ("t", nested(&[("k", i8v(1))]))], vec![("t", nested(&[("k", i64v(1))]))], false),
        ("arrays equal by bytes", vec![all(), ("l", array(&[s("a"), i8v(2)]))], vec![("l", array(&[s("a"), i8v(2)]))], true),
        ("arrays differ", vec![all(), ("l", array(&[s("a"), i8v(2)]))], vec![("l", array(&[s("a")]))], false),
        ("all: x- keys ignored", vec![all(), ("x-tag", s("y")), ("a", s("1"))], vec![("a", s("1"))], true),
        ("all: only x- keys means no entries", vec![all(), ("x-tag", s("y"))], vec![], true),
        ("any: x- keys ignored", vec![any(), ("x-tag", s("y"))], vec![("x-tag", s("y"))], false),
        ("all-with-x: x- key must match", vec![all_x(), ("x-tag", s("y")), ("a", s("1"))], vec![("a", s("1"))], false),
        ("all-with-x: x- key matches", vec![all_x(), ("x-tag", s("y")), ("a", s("1"))], vec![("a", s("1")), ("x-tag", s("y"))], true),
        ("any-with-x: x- key matches", vec![any_x(), ("x-tag", s("y"))], vec![("x-tag", s("y"))], true),
        ("any-with-x: x-match itself is never matched", vec![any_x()], vec![("x-match", s("any-with-x"))], false),
        ("all-with-x: x-match itself is never required", vec![all_x(), ("a", s("1"))], vec![("a", s("1"))], true),
        ("first of repeated header keys counts", vec![all(), ("a", s("1"))], vec![("a", s("2")), ("a", s("1"))], false),
    ];
    let mut failures = Vec::new();
    for (name, binding, headers, expected) in &rows {
        if matches(binding, headers) != *expected {
            failures.push(*name);
        }
    }
    assert!(rows.len() >= 20);
    assert!(failures.is_empty(), "rows that disagree: {failures:?}");
}

#[test]
fn unknown_x_match_value_is_refused_with_rabbitmqs_text() {
    let err = validate(
        &new_exchange(),
        &table(&[("x-match", s("foo")), ("a", s("1"))]),
    )
    .unwrap_err();
    assert_eq!(err.code, reply_code::PRECONDITION_FAILED);
    assert_eq!(
        err.text,
        r#"Invalid x-match field value <<"foo">>; expected all, any, all-with-x, or any-with-x"#
    );
}

#[test]
fn x_match_of_the_wrong_type_is_refused() {
    let err = validate(&new_exchange(), &table(&[("x-match", i64v(5))])).unwrap_err();
    assert_eq!(err.code, reply_code::PRECONDITION_FAILED);
    assert_eq!(
        err.text,
        "Invalid x-match field type long (value 5); expected longstr"
    );
    let err = validate(&new_exchange(), &table(&[("x-match", bytes(b"all"))])).unwrap_err();
    assert_eq!(
        err.text,
        r#"Invalid x-match field type binary (value <<"all">>); expected longstr"#
    );
}

#[test]
fn malformed_binding_arguments_are_refused_with_406() {
    let mut args = table(&[("a", s("long value"))]);
    args.truncate(args.len() - 3);
    let exchange = new_exchange();
    let err = validate(&exchange, &args).unwrap_err();
    assert_eq!(err.code, reply_code::PRECONDITION_FAILED);
    assert!(
        err.text
            .starts_with("binding arguments are not a valid field table"),
        "{}",
        err.text
    );
    let mut exchange = exchange;
    assert!(testing::add_binding(&mut exchange, 1, KEY, &args).is_err());
}

#[test]
fn routing_ignores_routing_keys_and_reaches_every_matching_destination() {
    let mut exchange = new_exchange();
    let pdf = table(&[("format", s("pdf"))]);
    bind(&mut exchange, 1, &pdf);
    bind(&mut exchange, 2, &pdf);
    bind(
        &mut exchange,
        3,
        &table(&[
            ("x-match", s("any")),
            ("format", s("pdf")),
            ("type", s("log")),
        ]),
    );
    bind(&mut exchange, 4, &table(&[("format", s("zip"))]));
    assert_eq!(route(&exchange, &table(&[("format", s("pdf"))])), [1, 2, 3]);
    assert_eq!(route(&exchange, &table(&[("type", s("log"))])), [3]);
    assert_eq!(route(&exchange, &[]), Vec::<u64>::new());
}

#[test]
fn unbinding_one_of_two_identical_bindings_keeps_the_route() {
    let mut exchange = new_exchange();
    let pdf = table(&[("format", s("pdf"))]);
    let message = table(&[("format", s("pdf"))]);
    bind(&mut exchange, 1, &pdf);
    bind(&mut exchange, 1, &pdf);
    bind(&mut exchange, 2, &pdf);
    unbind(&mut exchange, 1, &pdf);
    assert_eq!(route(&exchange, &message), [1, 2]);
    unbind(&mut exchange, 1, &pdf);
    assert_eq!(route(&exchange, &message), [2]);
    unbind(&mut exchange, 2, &pdf);
    assert_eq!(route(&exchange, &message), Vec::<u64>::new());
    assert!(exchange.patterns.is_empty() && exchange.by_arguments.is_empty());
    // Removing what is not there is not an error.
    unbind(&mut exchange, 2, &pdf);
}

#[test]
fn removing_a_pattern_keeps_the_index_of_the_one_moved_into_its_place() {
    let mut exchange = new_exchange();
    let args: Vec<Vec<u8>> = (0..5).map(|i| table(&[("k", i64v(i))])).collect();
    for (i, a) in args.iter().enumerate() {
        bind(&mut exchange, i as u64, a);
    }
    unbind(&mut exchange, 1, &args[1]);
    unbind(&mut exchange, 0, &args[0]);
    for (i, a) in args.iter().enumerate().skip(2) {
        assert_eq!(route(&exchange, &table(&[("k", u8v(i as u8))])), [i as u64]);
        unbind(&mut exchange, i as u64, a);
    }
    assert!(exchange.patterns.is_empty());
}

#[test]
fn messages_with_more_known_headers_than_fit_inline_still_match() {
    let mut exchange = new_exchange();
    let names: Vec<String> = (0..INLINE_HEADERS + 8).map(|i| format!("h{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        bind(
            &mut exchange,
            100 + i as u64,
            &table(&[(name, i64v(i as i64))]),
        );
    }
    bind(
        &mut exchange,
        1,
        &table(&[("late", s("yes")), ("h0", i64v(0))]),
    );
    bind(
        &mut exchange,
        2,
        &table(&[("x-match", s("any")), ("absent", void()), ("h1", i64v(-1))]),
    );
    bind(&mut exchange, 3, &table(&[("late", s("no"))]));
    let mut headers: Vec<(&str, V)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), u8v(i as u8)))
        .collect();
    headers.push(("late", s("yes")));
    let mut expected: Vec<u64> = (0..names.len() as u64).map(|i| 100 + i).collect();
    expected.insert(0, 1);
    assert_eq!(route(&exchange, &table(&headers)), expected);
}

#[test]
fn a_malformed_header_table_matches_on_the_entries_before_the_damage() {
    let mut exchange = new_exchange();
    bind(&mut exchange, 1, &table(&[("a", s("1"))]));
    bind(&mut exchange, 2, &table(&[("b", s("2"))]));
    let mut headers = table(&[("a", s("1")), ("b", s("2"))]);
    headers.truncate(headers.len() - 1);
    assert_eq!(route(&exchange, &headers), [1]);
}

#[test]
fn a_thousand_bindings_route_to_exactly_the_matching_ones() {
    let mut exchange = new_exchange();
    for i in 0..1000u64 {
        let mode = if i % 2 == 0 { "all" } else { "any" };
        bind(
            &mut exchange,
            i,
            &table(&[
                ("x-match", s(mode)),
                ("region", i64v((i % 10) as i64)),
                ("shard", s(&i.to_string())),
            ]),
        );
    }
    let found = route(&exchange, &table(&[("region", u8v(3)), ("shard", s("13"))]));
    // `all` bindings need both (only 13 is odd, so none); `any` bindings need either.
    let expected: Vec<u64> = (0..1000)
        .filter(|i| i % 2 == 1 && (i % 10 == 3 || *i == 13))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn key_masks_never_rule_out_a_pattern_that_matches() {
    // Many distinct keys, so several share a mask bit; the mask must only ever prune.
    let mut exchange = new_exchange();
    for i in 0..200u64 {
        bind(&mut exchange, i, &table(&[(&format!("key-{i}"), void())]));
    }
    for i in 0..200u64 {
        assert_eq!(
            route(&exchange, &table(&[(&format!("key-{i}"), boolv(false))])),
            [i]
        );
    }
}

#[test]
fn erlang_terms_render_like_rabbitmqs_error_texts() {
    assert_eq!(erlang_binary(b"a\"b"), r#"<<"a\"b">>"#);
    assert_eq!(erlang_binary(&[0, 255]), "<<0,255>>");
    assert_eq!(erlang_term(&FieldValue::U32(7)), "7");
}

#[test]
fn one_exchange_with_many_kinds_of_binding_routes_each_message_to_the_matching_ones() {
    let mut exchange = new_exchange();
    let bindings: Vec<(u64, Entries)> = vec![
        (
            1,
            vec![
                ("x-match", s("all")),
                ("format", s("pdf")),
                ("type", s("report")),
            ],
        ),
        (
            2,
            vec![
                ("x-match", s("any")),
                ("format", s("pdf")),
                ("type", s("log")),
            ],
        ),
        (3, vec![("format", s("pdf"))]),
        (4, vec![("x-match", s("all")), ("present", void())]),
        (5, vec![("x-match", s("all")), ("n", i64v(5))]),
        (6, vec![("x-match", s("all")), ("n", s("5"))]),
        (7, vec![("x-match", s("any-with-x")), ("x-tag", s("yes"))]),
        (8, vec![("x-match", s("any")), ("x-tag", s("yes"))]),
        (9, vec![("x-match", s("all"))]),
        (
            10,
            vec![
                ("x-match", s("all-with-x")),
                ("x-tag", s("yes")),
                ("format", s("pdf")),
            ],
        ),
        (11, vec![("x-match", s("all")), ("x-tag", s("yes"))]),
    ];
    for (destination, arguments) in &bindings {
        bind(&mut exchange, *destination, &table(arguments));
    }
    let cases: Vec<(Entries, Vec<u64>)> = vec![
        (
            vec![("format", s("pdf")), ("type", s("report"))],
            vec![1, 2, 3, 9, 11],
        ),
        (
            vec![
                ("format", s("pdf")),
                ("type", s("log")),
                ("x-tag", s("yes")),
            ],
            vec![2, 3, 7, 9, 10, 11],
        ),
        (vec![("present", s("anything"))], vec![4, 9, 11]),
        (vec![("present", void())], vec![4, 9, 11]),
        (vec![("n", i8v(5))], vec![5, 9, 11]),
        (vec![("n", u32v(5))], vec![5, 9, 11]),
        (vec![("n", s("5"))], vec![6, 9, 11]),
        (vec![("n", f64v(5.0))], vec![9, 11]),
        (vec![], vec![9, 11]),
        (vec![("format", s("PDF"))], vec![9, 11]),
    ];
    for (headers, expected) in &cases {
        assert_eq!(&route(&exchange, &table(headers)), expected);
    }
}
