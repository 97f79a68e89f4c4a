//! Static versus dylib dispatch, side by side: for each workload, rounds alternate between
//! the linked-in exchange type and its release shared library, routing the same messages,
//! and the median nanoseconds per route of each are compared. Alternating within one run is
//! what makes the comparison hold on a shared, noisy machine, where two separate runs (or
//! criterion's back-to-back groups) drift by more than the difference being measured.
//!
//! Run with `cargo bench -p warren-tests --bench dispatch`.

use std::hint::black_box;
use std::time::Instant;
use warren::plugin::ExchangeTypeRegistry;
use warren_tests::{dylibs, workloads};

const ROUNDS: usize = 31;
const TARGET_ROUND_NANOS: f64 = 20e6;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let linked = ExchangeTypeRegistry::with_builtins();
    let loaded = dylibs::release_builtins();
    println!(
        "{:<22} {:>10} {:>12} {:>12} {:>9}",
        "workload", "dest/route", "static ns", "dylib ns", "dylib/static"
    );
    for w in &workloads::all() {
        let routers = [w.router(&linked), w.router(&loaded)];
        let mut out = Vec::with_capacity(64);
        // Size a round to about 20 ms so that timer resolution is irrelevant.
        let probe = Instant::now();
        for i in 0..1000 {
            w.route(&routers[0], black_box(i), &mut out);
        }
        let per_route = probe.elapsed().as_nanos() as f64 / 1000.0;
        let batch = ((TARGET_ROUND_NANOS / per_route.max(1.0)) as usize).clamp(1000, 5_000_000);
        let mut samples = [Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            // Alternate which build goes first, so neither always runs on a warmer cache.
            for k in [round % 2, 1 - round % 2] {
                let start = Instant::now();
                for i in 0..batch {
                    w.route(&routers[k], black_box(i), &mut out);
                }
                samples[k].push(start.elapsed().as_nanos() as f64 / batch as f64);
            }
        }
        let [s, d] = samples.map(median);
        let label = format!("{}/{}", w.name, w.size);
        println!(
            "{label:<22} {:>10.1} {s:>12.1} {d:>12.1} {:>9.3}",
            w.fan_out(&routers[0]),
            d / s
        );
    }
}
