//! Routing workloads for the benchmarks, generated from fixed seeds so that runs compare.

use crate::tables::{AMQPValue, encode, string, table};
use warren::plugin::{ExchangeRouter, ExchangeTypeRegistry, RouteRequest};

/// xorshift64*: deterministic inputs without a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One exchange type, its bindings and the messages routed through it.
pub struct Workload {
    pub name: &'static str,
    pub type_name: &'static str,
    pub size: usize,
    pub bindings: Vec<(u64, String, Vec<u8>)>,
    pub keys: Vec<String>,
    pub headers: Vec<Vec<u8>>,
}

/// Direct: `size` bindings `key-N`, keys drawn from 1.1 × `size` names.
pub fn direct(size: usize) -> Workload {
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
pub fn topic(size: usize) -> Workload {
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
pub fn topic_broad(size: usize) -> Workload {
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
pub fn headers(size: usize) -> Workload {
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

impl Workload {
    /// A fresh exchange of the workload's type from `registry`, with every binding added.
    pub fn router(&self, registry: &ExchangeTypeRegistry) -> ExchangeRouter {
        let exchange_type = registry.get(self.type_name).expect("type registered");
        let mut router = exchange_type
            .create("bench", &[])
            .expect("exchange created");
        for (destination, key, args) in &self.bindings {
            router
                .add_binding(*destination, key.as_bytes(), args)
                .expect("binding added");
        }
        router
    }

    /// Routes message `i` (cycling through the workload's keys and headers) into `out`.
    pub fn route(&self, router: &ExchangeRouter, i: usize, out: &mut Vec<u64>) {
        let keys = [self.keys[i % self.keys.len()].as_bytes()];
        let headers = &self.headers[i % self.headers.len()];
        let request = RouteRequest {
            exchange: b"bench",
            routing_keys: &keys,
            headers,
        };
        router.route(&request, out).expect("routes");
    }

    /// Mean destinations per route, which decides what a route costs.
    pub fn fan_out(&self, router: &ExchangeRouter) -> f64 {
        let (mut out, mut total) = (Vec::new(), 0usize);
        for i in 0..self.keys.len() {
            self.route(router, i, &mut out);
            total += out.len();
        }
        total as f64 / self.keys.len() as f64
    }
}

/// The workloads of the routing benchmarks.
pub fn all() -> Vec<Workload> {
    vec![
        direct(10_000),
        topic(1),
        topic(1_000),
        topic(100_000),
        topic_broad(100_000),
        headers(1_000),
    ]
}
