//! Routing truth tables for every built-in exchange type, run twice: through the types linked
//! into the broker and through their shared-library builds loaded from a plugins directory.
//! Both go through the C vtable; the two runs must agree with the table and with each other.

use warren::plugin::{ExchangeTypeRegistry, RouteRequest};
use warren::protocol::ReplyCode;
use warren_tests::dylibs;
use warren_tests::tables::{AMQPValue, encode, string, table};

struct Binding {
    destination: u64,
    key: &'static str,
    arguments: Vec<u8>,
}

struct Case {
    keys: Vec<&'static str>,
    headers: Vec<u8>,
    expected: Vec<u64>,
}

struct Scenario {
    type_name: &'static str,
    bindings: Vec<Binding>,
    /// Indexes into `bindings` removed after all were added.
    removed: Vec<usize>,
    cases: Vec<Case>,
}

fn bind(destination: u64, key: &'static str) -> Binding {
    Binding {
        destination,
        key,
        arguments: Vec::new(),
    }
}

fn bind_args(destination: u64, arguments: Vec<(&'static str, AMQPValue)>) -> Binding {
    Binding {
        destination,
        key: "",
        arguments: encode(&table(arguments)),
    }
}

fn keys(keys: &[&'static str], expected: &[u64]) -> Case {
    Case {
        keys: keys.to_vec(),
        headers: Vec::new(),
        expected: expected.to_vec(),
    }
}

fn headers(headers: Vec<(&'static str, AMQPValue)>, expected: &[u64]) -> Case {
    Case {
        keys: vec!["ignored"],
        headers: encode(&table(headers)),
        expected: expected.to_vec(),
    }
}

/// Routes every case of `scenario` through a fresh exchange of `registry` and returns the
/// destinations per case.
fn run(registry: &ExchangeTypeRegistry, scenario: &Scenario) -> Vec<Vec<u64>> {
    let exchange_type = registry.get(scenario.type_name).expect("type registered");
    let mut router = exchange_type.create("x", &[]).expect("exchange created");
    for b in &scenario.bindings {
        router
            .validate_binding(b.destination, b.key.as_bytes(), &b.arguments)
            .expect("binding valid");
        router
            .add_binding(b.destination, b.key.as_bytes(), &b.arguments)
            .expect("binding added");
    }
    let removed = scenario.removed.iter().map(|&i| &scenario.bindings[i]);
    router
        .remove_bindings(removed.map(|b| (b.destination, b.key.as_bytes(), b.arguments.as_slice())))
        .expect("bindings removed");
    let mut out = Vec::new();
    scenario
        .cases
        .iter()
        .map(|case| {
            let keys: Vec<&[u8]> = case.keys.iter().map(|k| k.as_bytes()).collect();
            let request = RouteRequest {
                exchange: b"x",
                routing_keys: &keys,
                headers: &case.headers,
            };
            router.route(&request, &mut out).expect("route succeeds");
            out.clone()
        })
        .collect()
}

fn check(scenario: Scenario) {
    let linked = ExchangeTypeRegistry::with_builtins();
    let dir = dylibs::plugins_dir(
        &format!("truth-{}", scenario.type_name),
        &[
            "warren-plugin-direct",
            "warren-plugin-fanout",
            "warren-plugin-topic",
            "warren-plugin-headers",
        ],
    );
    let mut loaded = ExchangeTypeRegistry::empty();
    assert!(
        loaded.load_dir(&dir).is_empty(),
        "the built-in dylibs load cleanly"
    );
    assert!(
        loaded
            .get(scenario.type_name)
            .unwrap()
            .origin()
            .to_string()
            .contains(".so")
    );

    let from_linked = run(&linked, &scenario);
    let from_dylib = run(&loaded, &scenario);
    for (i, case) in scenario.cases.iter().enumerate() {
        assert_eq!(
            from_linked[i], case.expected,
            "{} (linked) keys {:?} case #{i}",
            scenario.type_name, case.keys
        );
    }
    assert_eq!(
        from_linked, from_dylib,
        "{}: the dylib build routes exactly like the linked one",
        scenario.type_name
    );
}

#[test]
fn direct_routes_on_exact_key_match() {
    check(Scenario {
        type_name: "direct",
        bindings: vec![
            bind(1, "a"),
            bind(2, "a"),
            bind(3, "b"),
            bind(4, ""),
            bind(5, "A"),
            bind(1, "c"),
        ],
        removed: vec![],
        cases: vec![
            keys(&["a"], &[1, 2]),
            keys(&["b"], &[3]),
            keys(&[""], &[4]),
            keys(&["A"], &[5]),
            keys(&["c"], &[1]),
            keys(&["x"], &[]),
            keys(&["a", "b"], &[1, 2, 3]),
            keys(&["a", "c"], &[1, 2]),
            keys(&["a.b"], &[]),
        ],
    });
}

#[test]
fn direct_unbinding_one_of_two_identical_keys_keeps_the_route() {
    check(Scenario {
        type_name: "direct",
        bindings: vec![bind(1, "a"), bind(1, "a"), bind(2, "b")],
        removed: vec![0, 2],
        cases: vec![keys(&["a"], &[1]), keys(&["b"], &[])],
    });
}

#[test]
fn fanout_routes_to_every_binding_whatever_the_key() {
    check(Scenario {
        type_name: "fanout",
        bindings: vec![
            bind(1, "x"),
            bind(2, ""),
            bind(3, "whatever"),
            bind(4, "gone"),
        ],
        removed: vec![3],
        cases: vec![
            keys(&["anything"], &[1, 2, 3]),
            keys(&[""], &[1, 2, 3]),
            keys(&["a", "b"], &[1, 2, 3]),
        ],
    });
}

#[test]
fn topic_follows_amqp_wildcard_semantics() {
    check(Scenario {
        type_name: "topic",
        bindings: vec![
            bind(1, "#"),
            bind(2, "*"),
            bind(3, "a.#"),
            bind(4, "#.a"),
            bind(5, "a.*.b"),
            bind(6, "a.#.b"),
            bind(7, "#.#"),
            bind(8, "*.*"),
            bind(9, "a..b"),
            bind(10, "a.*"),
            bind(11, "a.b.c"),
            bind(12, "*.b.#"),
            bind(13, ""),
            bind(14, "#.b.#.d"),
        ],
        removed: vec![],
        cases: vec![
            // `#` matches the empty key, `*` does not; an empty binding key matches only it.
            keys(&[""], &[1, 7, 13]),
            keys(&["a"], &[1, 2, 3, 4, 7]),
            keys(&["a.b"], &[1, 3, 6, 7, 8, 10, 12]),
            keys(&["a.x.b"], &[1, 3, 5, 6, 7]),
            // Empty words are words.
            keys(&["a..b"], &[1, 3, 5, 6, 7, 9]),
            keys(&["a."], &[1, 3, 7, 8, 10]),
            keys(&["x.a"], &[1, 4, 7, 8]),
            keys(&["a.b.c"], &[1, 3, 7, 11, 12]),
            keys(&["x.b.y.z.d"], &[1, 7, 12, 14]),
            keys(&["b.d"], &[1, 7, 8, 14]),
            keys(&["a.x.y.b"], &[1, 3, 6, 7]),
            // A literal `#` in a routing key is just a word.
            keys(&["#"], &[1, 2, 7]),
            // CC keys route too, each destination once.
            keys(&["a.b", "x.a"], &[1, 3, 4, 6, 7, 8, 10, 12]),
        ],
    });
}

#[test]
fn topic_removal_keeps_other_bindings_of_the_same_destination() {
    check(Scenario {
        type_name: "topic",
        bindings: vec![
            bind(1, "q.*"),
            bind(1, "q.*"),
            bind(1, "q.#"),
            bind(2, "q.*"),
            bind(3, "r.#"),
        ],
        removed: vec![0, 2, 4],
        cases: vec![
            keys(&["q.x"], &[1, 2]),
            keys(&["q"], &[]),
            keys(&["q.x.y"], &[]),
            keys(&["r"], &[]),
        ],
    });
}

#[test]
fn headers_match_all_any_and_the_with_x_forms() {
    let s = string;
    check(Scenario {
        type_name: "headers",
        bindings: vec![
            bind_args(
                1,
                vec![
                    ("x-match", s("all")),
                    ("format", s("pdf")),
                    ("type", s("report")),
                ],
            ),
            bind_args(
                2,
                vec![
                    ("x-match", s("any")),
                    ("format", s("pdf")),
                    ("type", s("log")),
                ],
            ),
            bind_args(3, vec![("format", s("pdf"))]),
            bind_args(4, vec![("x-match", s("all")), ("present", AMQPValue::Void)]),
            bind_args(
                5,
                vec![("x-match", s("all")), ("n", AMQPValue::LongLongInt(5))],
            ),
            bind_args(6, vec![("x-match", s("all")), ("n", s("5"))]),
            bind_args(7, vec![("x-match", s("any-with-x")), ("x-tag", s("yes"))]),
            bind_args(8, vec![("x-match", s("any")), ("x-tag", s("yes"))]),
            bind_args(9, vec![("x-match", s("all"))]),
            bind_args(
                10,
                vec![
                    ("x-match", s("all-with-x")),
                    ("x-tag", s("yes")),
                    ("format", s("pdf")),
                ],
            ),
            bind_args(11, vec![("x-match", s("all")), ("x-tag", s("yes"))]),
        ],
        removed: vec![],
        cases: vec![
            headers(
                vec![("format", s("pdf")), ("type", s("report"))],
                &[1, 2, 3, 9, 11],
            ),
            headers(
                vec![
                    ("format", s("pdf")),
                    ("type", s("log")),
                    ("x-tag", s("yes")),
                ],
                &[2, 3, 7, 9, 10, 11],
            ),
            // A void binding value matches on presence alone.
            headers(vec![("present", s("anything"))], &[4, 9, 11]),
            headers(vec![("present", AMQPValue::Void)], &[4, 9, 11]),
            // Integer widths compare equal; 5 is not "5"; a float is not an integer.
            headers(vec![("n", AMQPValue::ShortShortInt(5))], &[5, 9, 11]),
            headers(vec![("n", AMQPValue::LongUInt(5))], &[5, 9, 11]),
            headers(vec![("n", s("5"))], &[6, 9, 11]),
            headers(vec![("n", AMQPValue::Double(5.0))], &[9, 11]),
            headers(vec![], &[9, 11]),
            headers(vec![("format", s("PDF"))], &[9, 11]),
        ],
    });
}

#[test]
fn headers_refuses_an_unknown_x_match_with_406() {
    for registry in [ExchangeTypeRegistry::with_builtins(), {
        let mut r = ExchangeTypeRegistry::empty();
        r.load_library(&dylibs::library("warren-plugin-headers", false))
            .expect("loads");
        r
    }] {
        let router = registry.get("headers").unwrap().create("h", &[]).unwrap();
        let args = encode(&table(vec![("x-match", string("some"))]));
        let err = router.validate_binding(1, b"", &args).unwrap_err();
        assert_eq!(err.code, ReplyCode::PreconditionFailed);
        assert!(err.text.contains("x-match"), "{}", err.text);
    }
}
