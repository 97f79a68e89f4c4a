//! Loading exchange-type libraries: good ones register, bad ones are refused with a text that
//! says which and why, and a plugin that panics fails one call without taking anything down.

use warren::plugin::{ExchangeTypeRegistry, LoadError, RouteRequest};
use warren::protocol::ReplyCode;
use warren_tests::dylibs::{self, library};

fn route(
    router: &warren::plugin::ExchangeRouter,
    key: &str,
) -> Result<Vec<u64>, warren::error::AmqpError> {
    let keys = [key.as_bytes()];
    let mut out = Vec::new();
    router.route(
        &RouteRequest {
            exchange: b"x",
            routing_keys: &keys,
            headers: &[],
        },
        &mut out,
    )?;
    Ok(out)
}

#[test]
fn builtin_types_load_from_their_shared_libraries() {
    let dir = dylibs::plugins_dir(
        "builtins-only",
        &[
            "warren-plugin-direct",
            "warren-plugin-fanout",
            "warren-plugin-topic",
            "warren-plugin-headers",
        ],
    );
    let mut registry = ExchangeTypeRegistry::empty();
    assert!(registry.load_dir(&dir).is_empty());
    assert_eq!(registry.names(), ["direct", "fanout", "headers", "topic"]);
}

#[test]
fn a_library_claiming_a_builtin_name_is_refused() {
    let mut registry = ExchangeTypeRegistry::with_builtins();
    let err = registry
        .load_library(&library("warren-plugin-topic", false))
        .unwrap_err();
    assert!(matches!(err, LoadError::NameTaken { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("exchange type 'topic'"), "{text}");
    assert!(
        text.contains("already provided by built-in plugin warren-topic"),
        "{text}"
    );
}

#[test]
fn a_panic_in_route_fails_that_call_only() {
    let mut registry = ExchangeTypeRegistry::with_builtins();
    registry
        .load_library(&library("warren-fixture-panicking-plugin", false))
        .expect("fixture loads");
    let mut router = registry
        .get("x-panicking")
        .unwrap()
        .create("p", &[])
        .unwrap();
    router.add_binding(7, b"", &[]).unwrap();
    assert_eq!(route(&router, "fine").unwrap(), [7]);

    let err = route(&router, "boom").unwrap_err();
    assert_eq!(err.code, ReplyCode::InternalError);
    assert_eq!(
        err.reply_text(),
        "INTERNAL_ERROR - exchange type 'x-panicking' failed in route: exchange type plugin panicked: route exploded on purpose"
    );

    // The exchange, and the process, carry on.
    assert_eq!(route(&router, "fine again").unwrap(), [7]);
    let err = router.add_binding(8, b"boom", &[]).unwrap_err();
    assert_eq!(err.code, ReplyCode::InternalError);
    assert!(
        err.text.contains("add_binding exploded on purpose"),
        "{}",
        err.text
    );
    assert_eq!(route(&router, "still fine").unwrap(), [7]);
}

#[test]
fn a_library_for_another_abi_major_is_refused_by_name() {
    let path = library("warren-fixture-wrong-major-plugin", false);
    let err = ExchangeTypeRegistry::empty()
        .load_library(&path)
        .unwrap_err();
    assert!(
        matches!(err, LoadError::WrongMajor { found: 2, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("was built for exchange-type ABI major 2"),
        "{text}"
    );
    assert!(text.contains("this broker speaks major 1"), "{text}");
}

#[test]
fn a_library_without_the_entry_symbol_is_refused() {
    let err = ExchangeTypeRegistry::empty()
        .load_library(&library("warren-fixture-no-entry-plugin", false))
        .unwrap_err();
    assert!(matches!(err, LoadError::MissingEntry { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("exports no warren_exchange_plugin_v1 symbol"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = dylibs::plugins_dir("not-a-library", &[]);
    let path = dir.join("libgarbage.so");
    std::fs::write(&path, b"not an ELF file").unwrap();
    let err = ExchangeTypeRegistry::empty()
        .load_library(&path)
        .unwrap_err();
    assert!(matches!(err, LoadError::Open { .. }), "{err}");
    assert!(
        err.to_string().starts_with("cannot load plugin library"),
        "{err}"
    );
}

#[test]
fn of_two_libraries_claiming_one_name_the_first_wins_and_the_second_is_refused() {
    let dir = dylibs::plugins_dir(
        "duplicates",
        &[
            "warren-fixture-duplicate-name-a",
            "warren-fixture-duplicate-name-b",
        ],
    );
    let mut registry = ExchangeTypeRegistry::empty();
    let errors = registry.load_dir(&dir);
    assert_eq!(errors.len(), 1);
    let text = errors[0].to_string();
    assert!(
        text.contains("exchange type 'x-duplicate' from plugin fixture-duplicate-b"),
        "{text}"
    );
    assert!(
        text.contains("is already provided by plugin fixture-duplicate-a"),
        "{text}"
    );
    let owner = registry.get("x-duplicate").unwrap().origin().to_string();
    assert!(owner.contains("fixture-duplicate-a"), "{owner}");
}

#[test]
fn the_broker_keeps_the_good_libraries_of_a_directory_with_bad_ones() {
    let dir = dylibs::plugins_dir(
        "mixed",
        &[
            "warren-example-consistent-hash",
            "warren-fixture-wrong-major-plugin",
            "warren-fixture-no-entry-plugin",
            "warren-fixture-panicking-plugin",
            "warren-plugin-topic",
        ],
    );
    let mut registry = ExchangeTypeRegistry::with_builtins();
    let errors = registry.load_dir(&dir);
    let kinds: Vec<&str> = errors
        .iter()
        .map(|e| match e {
            LoadError::WrongMajor { .. } => "wrong-major",
            LoadError::MissingEntry { .. } => "missing-entry",
            LoadError::NameTaken { .. } => "name-taken",
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(kinds, ["missing-entry", "wrong-major", "name-taken"]);
    assert_eq!(
        registry.names(),
        [
            "direct",
            "fanout",
            "headers",
            "topic",
            "x-consistent-hash",
            "x-panicking"
        ]
    );
}

#[test]
fn consistent_hash_spreads_keys_by_weight_through_the_dylib() {
    let mut registry = ExchangeTypeRegistry::empty();
    registry
        .load_library(&library("warren-example-consistent-hash", false))
        .expect("example loads");
    let mut router = registry
        .get("x-consistent-hash")
        .unwrap()
        .create("ch", &[])
        .unwrap();
    for (queue, weight) in [(1u64, "1"), (2, "2"), (3, "3")] {
        router
            .validate_binding(queue, weight.as_bytes(), &[])
            .unwrap();
        router.add_binding(queue, weight.as_bytes(), &[]).unwrap();
    }
    let mut counts = [0usize; 3];
    for i in 0..60_000 {
        let destinations = route(&router, &format!("order-{i}")).unwrap();
        assert_eq!(
            destinations.len(),
            1,
            "each message goes to exactly one queue"
        );
        counts[(destinations[0] - 1) as usize] += 1;
    }
    for (i, &count) in counts.iter().enumerate() {
        let expected = 60_000.0 * (i + 1) as f64 / 6.0;
        let deviation = (count as f64 - expected).abs() / expected;
        assert!(
            deviation <= 0.05,
            "queue {} got {count}, expected {expected} ± 5% ({counts:?})",
            i + 1
        );
    }
    let err = router.validate_binding(4, b"heavy", &[]).unwrap_err();
    assert_eq!(err.code, ReplyCode::PreconditionFailed);
}
