//! Route throughput of the built-in exchange types, linked in versus loaded from their
//! release-built shared libraries. Run with `cargo bench -p warren-tests --bench routing`;
//! results and the machine are recorded in docs/BENCHMARKS.md.
//!
//! Each iteration routes one message; criterion's throughput is therefore routes per second.
//! Inputs are generated from a fixed seed so that runs are comparable.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use warren::exchange::{ExchangeRouter, ExchangeTypeRegistry, RouteRequest};
use warren_tests::dylibs;
use warren_tests::tables::{AMQPValue, encode, string, table};

/// xorshift64*: deterministic inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Workload {
    name: &'static str,
    type_name: &'static str,
    size: usize,
    bindings: Vec<(u64, String, Vec<u8>)>,
    keys: Vec<String>,
    headers: Vec<Vec<u8>>,
}

fn direct(size: usize) -> Workload {
    let mut rng = Rng(1);
    let bindings = (0..size)
        .map(|i| (i as u64, format!("key-{i}"), Vec::new()))
        .collect();
    let keys = (0..4096)
        .map(|_| format!("key-{}", rng.below(size as u64 * 11 / 10)))
        .collect();
    Workload {
        name: "direct",
        type_name: "direct",
        size,
        bindings,
        keys,
        headers: vec![Vec::new()],
    }
}

/// Topic bindings shaped like real use: a pattern starts with a selective word (one of 5000
/// tenants) followed by 1 to 3 words that are `*` (20%), `#` (10%) or one of 30 literals; one
/// pattern in 1000 is global (starts with `*` or `#`). Keys are a tenant and 1 to 3 literals.
/// A route then matches a handful of bindings, so the trie walk is what is measured.
fn topic(size: usize) -> Workload {
    let mut rng = Rng(2);
    let bindings = (0..size)
        .map(|i| {
            let first = if i % 1000 == 999 {
                ["*", "#"][rng.below(2) as usize].to_owned()
            } else {
                format!("tenant{}", rng.below(5000))
            };
            let mut words = vec![first];
            for _ in 0..1 + rng.below(3) {
                words.push(match rng.below(10) {
                    0 => "#".to_owned(),
                    1 | 2 => "*".to_owned(),
                    _ => format!("w{}", rng.below(30)),
                });
            }
            (i as u64, words.join("."), Vec::new())
        })
        .collect();
    let keys = (0..4096)
        .map(|_| {
            let mut words = vec![format!("tenant{}", rng.below(5000))];
            words.extend((0..1 + rng.below(3)).map(|_| format!("w{}", rng.below(30))));
            words.join(".")
        })
        .collect();
    Workload {
        name: "topic",
        type_name: "topic",
        size,
        bindings,
        keys,
        headers: vec![Vec::new()],
    }
}

/// The worst case kept for comparison: three-word patterns over 100 words, each word `*`
/// (15%), `#` (5%) or a literal, with no selective prefix. About 1% of patterns are all
/// wildcards and match every key, so each route returns hundreds of destinations and the
/// cost is in handing them over, not in the walk.
fn topic_broad(size: usize) -> Workload {
    let mut rng = Rng(2);
    let word = |rng: &mut Rng, wild: bool| -> String {
        let roll = rng.below(100);
        if wild && roll < 15 {
            "*".into()
        } else if wild && roll < 20 {
            "#".into()
        } else {
            format!("w{}", rng.below(100))
        }
    };
    let bindings = (0..size)
        .map(|i| {
            let pattern = [
                word(&mut rng, true),
                word(&mut rng, true),
                word(&mut rng, true),
            ]
            .join(".");
            (i as u64, pattern, Vec::new())
        })
        .collect();
    let keys = (0..4096)
        .map(|_| {
            let words = 3 + rng.below(3);
            (0..words)
                .map(|_| word(&mut rng, false))
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    Workload {
        name: "topic-broad",
        type_name: "topic",
        size,
        bindings,
        keys,
        headers: vec![Vec::new()],
    }
}

/// Each binding matches two of 20 header names against one of 10 values, half `all`, half
/// `any`; each message carries four headers.
fn headers(size: usize) -> Workload {
    let mut rng = Rng(3);
    let bindings = (0..size)
        .map(|i| {
            let mode = if i % 2 == 0 { "all" } else { "any" };
            let entries: Vec<(String, AMQPValue)> = (0..2)
                .map(|_| {
                    (
                        format!("h{}", rng.below(20)),
                        string(&format!("v{}", rng.below(10))),
                    )
                })
                .collect();
            let mut t = table([("x-match", string(mode))]);
            for (k, v) in entries {
                t.insert(k.into(), v);
            }
            (i as u64, String::new(), encode(&t))
        })
        .collect();
    let headers = (0..1024)
        .map(|_| {
            let mut t = table([]);
            for _ in 0..4 {
                t.insert(
                    format!("h{}", rng.below(20)).into(),
                    string(&format!("v{}", rng.below(10))),
                );
            }
            encode(&t)
        })
        .collect();
    Workload {
        name: "headers",
        type_name: "headers",
        size,
        bindings,
        keys: vec!["k".into()],
        headers,
    }
}

fn router(registry: &ExchangeTypeRegistry, w: &Workload) -> ExchangeRouter {
    let mut router = registry
        .get(w.type_name)
        .expect("registered")
        .create("bench", &[])
        .expect("created");
    for (destination, key, args) in &w.bindings {
        router
            .add_binding(*destination, key.as_bytes(), args)
            .expect("binding added");
    }
    router
}

/// Prints the mean number of destinations per route, which decides what a route costs.
fn report_fan_out(registry: &ExchangeTypeRegistry, w: &Workload) {
    let router = router(registry, w);
    let (mut out, mut total) = (Vec::new(), 0usize);
    for (i, key) in w.keys.iter().enumerate() {
        let keys = [key.as_bytes()];
        let headers = &w.headers[i % w.headers.len()];
        let request = RouteRequest {
            exchange: b"bench",
            routing_keys: &keys,
            headers,
        };
        router.route(&request, &mut out).expect("routes");
        total += out.len();
    }
    println!(
        "{}/{}: {:.1} destinations per route",
        w.name,
        w.size,
        total as f64 / w.keys.len() as f64
    );
}

fn bench_routing(c: &mut Criterion) {
    let linked = ExchangeTypeRegistry::with_builtins();
    let mut loaded = ExchangeTypeRegistry::empty();
    for package in [
        "warren-plugin-direct",
        "warren-plugin-topic",
        "warren-plugin-headers",
    ] {
        loaded
            .load_library(&dylibs::library(package, true))
            .expect("release dylib loads");
    }
    let workloads = [
        direct(10_000),
        topic(1),
        topic(1_000),
        topic(100_000),
        topic_broad(100_000),
        headers(1_000),
    ];
    for w in &workloads {
        report_fan_out(&linked, w);
        let mut group = c.benchmark_group(format!("route/{}/{}", w.name, w.size));
        group.throughput(Throughput::Elements(1));
        for (build, registry) in [("static", &linked), ("dylib", &loaded)] {
            let router = router(registry, w);
            let mut out = Vec::with_capacity(64);
            let mut i = 0usize;
            group.bench_function(BenchmarkId::from_parameter(build), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    let key = w.keys[i % w.keys.len()].as_bytes();
                    let headers = &w.headers[i % w.headers.len()];
                    let keys = [key];
                    let request = RouteRequest {
                        exchange: b"bench",
                        routing_keys: &keys,
                        headers,
                    };
                    router.route(black_box(&request), &mut out).expect("routes");
                    black_box(out.len())
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
