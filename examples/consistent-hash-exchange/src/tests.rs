use super::*;
use warren_plugin_api::reply_code;
use warren_plugin_api::testing;

const KEYS: usize = 60_000;

fn long_string(text: &[u8]) -> Vec<u8> {
    let mut out = vec![b'S'];
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text);
    out
}

/// Encodes one table entry: shortstr key, then the already tagged value.
fn entry(key: &str, tagged_value: &[u8]) -> Vec<u8> {
    let mut out = vec![key.len() as u8];
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(tagged_value);
    out
}

fn exchange_with(arguments: &[u8]) -> ConsistentHashExchange {
    ConsistentHashExchange::create("e", &FieldTable::new(arguments)).expect("created")
}

fn exchange() -> ConsistentHashExchange {
    exchange_with(&[])
}

fn validate(exchange: &ConsistentHashExchange, key: &str) -> Result<(), PluginError> {
    testing::validate_binding(exchange, 1, key.as_bytes(), &[])
}

fn bind(exchange: &mut ConsistentHashExchange, destination: u64, key: &str) {
    testing::validate_binding(exchange, destination, key.as_bytes(), &[]).expect("valid weight");
    testing::add_binding(exchange, destination, key.as_bytes(), &[]).expect("added");
}

fn unbind(exchange: &mut ConsistentHashExchange, destination: u64, key: &str) {
    testing::remove_binding(exchange, destination, key.as_bytes(), &[]).expect("removed");
}

/// Routes one message and returns every destination it reached, duplicates included (each
/// message must reach exactly one).
fn route_message(exchange: &ConsistentHashExchange, keys: &[&[u8]], headers: &[u8]) -> Vec<u64> {
    testing::route_raw(exchange, keys, headers).expect("route succeeds")
}

/// The one destination of a message with routing key `key`.
fn route(exchange: &ConsistentHashExchange, key: &str) -> u64 {
    let found = route_message(exchange, &[key.as_bytes()], &[]);
    assert_eq!(found.len(), 1, "exactly one destination for {key}");
    found[0]
}

fn key(i: usize) -> String {
    format!("key-{i}")
}

/// Weights 1, 2 and 3 on destinations 1, 2 and 3.
fn one_two_three() -> ConsistentHashExchange {
    let mut exchange = exchange();
    bind(&mut exchange, 1, "1");
    bind(&mut exchange, 2, "2");
    bind(&mut exchange, 3, "3");
    exchange
}

#[test]
fn weights_one_two_three_split_sixty_thousand_keys_one_two_three() {
    let exchange = one_two_three();
    let mut counts = [0usize; 4];
    for i in 0..KEYS {
        counts[route(&exchange, &key(i)) as usize] += 1;
    }
    for (destination, weight) in [(1, 1.0), (2, 2.0), (3, 3.0)] {
        let share = counts[destination] as f64 / KEYS as f64;
        let expected = weight / 6.0;
        let off = (share - expected).abs() / expected;
        assert!(
            off <= 0.05,
            "destination {destination}: share {share:.4}, expected {expected:.4} ({off:.3} off)"
        );
    }
}

#[test]
fn the_same_key_always_reaches_the_same_destination() {
    let a = one_two_three();
    // Bound in another order, as recovery may replay them: the ring is the same.
    let mut b = exchange();
    bind(&mut b, 3, "3");
    bind(&mut b, 1, "1");
    bind(&mut b, 2, "2");
    assert!(a.points().eq(b.points()));
    for i in 0..1000 {
        let first = route(&a, &key(i));
        assert_eq!(route(&a, &key(i)), first);
        assert_eq!(route(&b, &key(i)), first);
    }
}

#[test]
fn removing_a_destination_moves_only_its_own_keys() {
    let mut exchange = one_two_three();
    let before: Vec<u64> = (0..KEYS).map(|i| route(&exchange, &key(i))).collect();
    unbind(&mut exchange, 2, "2");
    let mut moved = 0;
    for (i, &was) in before.iter().enumerate() {
        let now = route(&exchange, &key(i));
        if was == 2 {
            assert_ne!(now, 2);
            moved += 1;
        } else {
            assert_eq!(now, was, "{} moved from {was} to {now}", key(i));
        }
    }
    assert!(moved > 0);
    // Binding it again puts every key back where it was.
    bind(&mut exchange, 2, "2");
    assert!((0..KEYS).all(|i| route(&exchange, &key(i)) == before[i]));
}

#[test]
fn raising_a_weight_moves_keys_only_onto_that_destination() {
    let mut exchange = one_two_three();
    let before: Vec<u64> = (0..KEYS).map(|i| route(&exchange, &key(i))).collect();
    // A second binding with another key adds its weight to the destination's.
    bind(&mut exchange, 1, "2");
    for (i, &was) in before.iter().enumerate() {
        let now = route(&exchange, &key(i));
        assert!(
            now == was || now == 1,
            "{} moved from {was} to {now}",
            key(i)
        );
    }
    unbind(&mut exchange, 1, "2");
    assert!((0..KEYS).all(|i| route(&exchange, &key(i)) == before[i]));
}

#[test]
fn identical_bindings_are_counted_and_the_points_stay_until_the_last_goes() {
    let mut exchange = exchange();
    bind(&mut exchange, 1, "1");
    bind(&mut exchange, 1, "1");
    bind(&mut exchange, 2, "1");
    assert_eq!(exchange.ring.len(), 2 * POINTS_PER_WEIGHT as usize);
    unbind(&mut exchange, 1, "1");
    assert_eq!(exchange.ring.len(), 2 * POINTS_PER_WEIGHT as usize);
    unbind(&mut exchange, 1, "1");
    assert!(exchange.points().all(|d| d == DestinationId(2)));
    assert!((0..100).all(|i| route(&exchange, &key(i)) == 2));
    unbind(&mut exchange, 2, "1");
    assert!(
        exchange.ring.is_empty() && exchange.weights.is_empty() && exchange.bindings.is_empty()
    );
    assert_eq!(route_message(&exchange, &[b"k"], &[]), Vec::<u64>::new());
    // Removing what is not there is not an error.
    unbind(&mut exchange, 2, "1");
}

#[test]
fn weights_that_are_not_positive_integers_are_refused_with_406() {
    let exchange = exchange();
    for (key, text) in [
        ("abc", r#"The binding key must be an integer: <<"abc">>"#),
        ("", r#"The binding key must be an integer: <<"">>"#),
        ("1.5", r#"The binding key must be an integer: <<"1.5">>"#),
        (" 1", r#"The binding key must be an integer: <<" 1">>"#),
        ("+", r#"The binding key must be an integer: <<"+">>"#),
        ("0", "The binding key must be greater than 0"),
        ("-3", "The binding key must be greater than 0"),
        (
            "1001",
            r#"The binding key must be at most 1000 (it is the destination's weight): <<"1001">>"#,
        ),
        (
            "99999999999999999999999",
            r#"The binding key must be at most 1000 (it is the destination's weight): <<"99999999999999999999999">>"#,
        ),
    ] {
        let err = validate(&exchange, key).unwrap_err();
        assert_eq!(err.code, reply_code::PRECONDITION_FAILED, "{key:?}");
        assert_eq!(err.text, text, "{key:?}");
    }
    for key in ["1", "+7", "007", "1000"] {
        assert!(validate(&exchange, key).is_ok(), "{key:?}");
    }
}

#[test]
fn only_the_publish_routing_key_is_hashed() {
    let exchange = one_two_three();
    for i in 0..200 {
        let alone = route(&exchange, &key(i));
        let cc = key(i + 1);
        assert_eq!(
            route_message(&exchange, &[key(i).as_bytes(), cc.as_bytes()], &[]),
            [alone]
        );
    }
}

#[test]
fn hash_header_routes_on_the_header_and_ignores_the_routing_key() {
    let mut exchange = exchange_with(&entry("hash-header", &long_string(b"user")));
    bind(&mut exchange, 1, "1");
    bind(&mut exchange, 2, "1");
    bind(&mut exchange, 3, "1");
    let user = |value: &[u8]| entry("user", value);
    let mut seen = [false; 4];
    for i in 0..300 {
        let name = format!("user-{i}");
        let headers = user(&long_string(name.as_bytes()));
        let first = route_message(&exchange, &[b"a"], &headers);
        assert_eq!(route_message(&exchange, &[b"b"], &headers), first);
        seen[first[0] as usize] = true;
    }
    assert_eq!(
        seen,
        [false, true, true, true],
        "header values spread over every destination"
    );
    // 5 as a byte, as a long and as the string "5" hash alike.
    let five = route_message(&exchange, &[b"x"], &user(&long_string(b"5")));
    assert_eq!(route_message(&exchange, &[b"y"], &user(&[b'b', 5])), five);
    assert_eq!(
        route_message(
            &exchange,
            &[b"z"],
            &user(&[[b'l'].as_slice(), &5i64.to_be_bytes()].concat())
        ),
        five
    );
    // Without the header every message goes to the same destination.
    let missing = route_message(&exchange, &[b"p"], &[]);
    assert_eq!(missing.len(), 1);
    assert_eq!(
        route_message(&exchange, &[b"q"], &entry("other", &long_string(b"v"))),
        missing
    );
}

#[test]
fn exchange_arguments_are_checked_like_rabbitmq() {
    let refused = |arguments: Vec<u8>| {
        let err = ConsistentHashExchange::validate(&FieldTable::new(&arguments)).unwrap_err();
        assert_eq!(err.code, reply_code::PRECONDITION_FAILED);
        err.text.into_owned()
    };
    let header = entry("hash-header", &long_string(b"h"));
    let property = entry("hash-property", &long_string(b"message_id"));
    assert_eq!(
        refused([header.clone(), property.clone()].concat()),
        "hash-header and hash-property are mutually exclusive"
    );
    assert_eq!(
        refused(entry("hash-property", &long_string(b"colour"))),
        "Unsupported property: colour"
    );
    assert!(refused(property).starts_with("Unsupported property: message_id; "));
    assert_eq!(
        refused(entry("hash-header", &[b'b', 1])),
        "hash-header must be a string (longstr), not byte"
    );
    assert!(
        refused(header[..header.len() - 1].to_vec())
            .starts_with("exchange arguments are not a valid field table")
    );
    // Arguments the broker itself handles are no business of the type.
    let alternate = entry("alternate-exchange", &long_string(b"ae"));
    assert!(
        ConsistentHashExchange::validate(&FieldTable::new(&[alternate, header].concat())).is_ok()
    );
}

#[test]
fn redeclaring_with_another_hash_header_is_inequivalent() {
    let header = entry("hash-header", &long_string(b"a"));
    let exchange = exchange_with(&header);
    assert!(
        exchange
            .assert_args_equivalence(&FieldTable::new(&header))
            .is_ok()
    );
    let err = exchange
        .assert_args_equivalence(&FieldTable::new(&entry("hash-header", &long_string(b"b"))))
        .unwrap_err();
    assert_eq!(err.code, reply_code::PRECONDITION_FAILED);
    assert_eq!(
        err.text,
        "inequivalent arg 'hash-header' for exchange 'e': received the value 'b' of type 'longstr' \
         but current is the value 'a' of type 'longstr'"
    );
    let err = exchange
        .assert_args_equivalence(&FieldTable::new(&[]))
        .unwrap_err();
    assert!(
        err.text
            .contains("received none but current is the value 'a'"),
        "{}",
        err.text
    );
}

#[test]
fn the_hash_spreads_similar_keys_evenly_over_its_high_and_low_bits() {
    let hashes: Vec<u64> = (0..KEYS).map(|i| hash(key(i).as_bytes())).collect();
    // Chi-square over 256 buckets (255 degrees of freedom); 330 is the 0.1% critical value.
    for (name, shift) in [("high", 56), ("low", 0)] {
        let mut counts = [0f64; 256];
        for &h in &hashes {
            counts[((h >> shift) & 0xff) as usize] += 1.0;
        }
        let expected = KEYS as f64 / 256.0;
        let chi_square: f64 = counts
            .iter()
            .map(|c| (c - expected).powi(2) / expected)
            .sum();
        assert!(
            chi_square < 330.0,
            "{name} byte: chi-square {chi_square:.1}"
        );
    }
}

#[test]
fn flipping_one_input_bit_flips_about_half_the_output_bits() {
    let mut flipped = 0u64;
    let mut trials = 0u64;
    for i in 0..500 {
        let input = key(i).into_bytes();
        let base = hash(&input);
        for bit in 0..input.len() * 8 {
            let mut changed = input.clone();
            changed[bit / 8] ^= 1 << (bit % 8);
            flipped += u64::from((hash(&changed) ^ base).count_ones());
            trials += 1;
        }
    }
    let mean = flipped as f64 / trials as f64;
    assert!((31.0..=33.0).contains(&mean), "mean flipped bits {mean:.2}");
}

#[test]
fn hash_values_are_stable() {
    // The position of a key decides its queue: changing the hash reshuffles every deployment.
    assert_eq!(hash(b""), fmix64(FNV_OFFSET_BASIS));
    assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(hash(b"key-0"), 0x1813_7ad0_31db_6589);
}
