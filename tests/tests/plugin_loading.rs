//! Loading exchange-type libraries: good ones register, bad ones are refused with a text that
//! says which and why (a truncated or non-ELF file before the dynamic loader ever maps it),
//! and a plugin that panics fails one call without taking anything down.

use std::path::PathBuf;

use warren::plugin::{ExchangeTypeRegistry, LoadError, RouteRequest};
use warren::protocol::ReplyCode;
use warren_tests::broker::TestBroker;
use warren_tests::dylibs::{self, library};

/// How much of a library a half-finished copy leaves in the truncation tests.
const CUT: usize = 20 * 1024;

/// A plugins directory holding the consistent-hash example cut to its first [`CUT`] bytes,
/// as a copy still in progress leaves it. A new file: the built library itself may be mapped
/// into this process by another test and must not be touched.
fn truncated_plugins_dir(scenario: &str) -> (PathBuf, PathBuf) {
    let whole = std::fs::read(library("warren-example-consistent-hash", false))
        .expect("the example library was built");
    assert!(whole.len() > CUT, "the library is larger than the cut");
    let dir = dylibs::plugins_dir(scenario, &[]);
    let path = dir.join(dylibs::library_file_name("warren-example-consistent-hash"));
    std::fs::write(&path, &whole[..CUT]).expect("the truncated copy can be written");
    (dir, path)
}

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
    let text = err.to_string();
    if cfg!(target_os = "linux") {
        assert!(matches!(err, LoadError::NotSharedObject { .. }), "{err}");
        assert!(
            text.contains("is not a shared library for this platform"),
            "{text}"
        );
    } else {
        assert!(matches!(err, LoadError::Open { .. }), "{err}");
    }
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_truncated_library_is_refused_before_it_is_mapped() {
    let (dir, path) = truncated_plugins_dir("truncated");
    let mut registry = ExchangeTypeRegistry::with_builtins();
    let errors = registry.load_dir(&dir);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(errors[0], LoadError::Truncated { actual, .. } if actual == CUT as u64),
        "{}",
        errors[0]
    );
    let text = errors[0].to_string();
    assert!(
        text.starts_with(&format!(
            "plugin library {} is truncated: headers say at least ",
            path.display()
        )),
        "{text}"
    );
    assert!(text.contains(&format!("bytes, file has {CUT}")), "{text}");
    assert_eq!(registry.names(), ["direct", "fanout", "headers", "topic"]);
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_with_a_truncated_library_starts_with_the_builtins() {
    let (dir, _) = truncated_plugins_dir("truncated-broker");
    let broker = TestBroker::start_with(|c| c.plugins_dir = Some(dir)).await;
    if broker.is_external() {
        return;
    }
    let (conn, ch) = broker.channel().await;
    let declare = |kind: &str| {
        ch.exchange_declare(
            "truncation-test",
            lapin::ExchangeKind::Custom(kind.to_owned()),
            lapin::options::ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            Default::default(),
        )
    };
    declare("topic").await.expect("the built-ins are there");
    let refused = declare("x-consistent-hash").await;
    warren_tests::broker::assert_exception(refused, 503, "COMMAND_INVALID - unknown exchange type");
    drop(conn);
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
