//! Route throughput of the built-in exchange types, linked in versus loaded from their
//! release-built shared libraries. Run with `cargo bench -p warren-tests --bench routing`;
//! results and the machine are recorded in docs/BENCHMARKS.md. `--bench dispatch` answers
//! the static-versus-dylib question side by side; this one gives absolute rates.
//!
//! Each iteration routes one message; criterion's throughput is therefore routes per second.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use warren::plugin::ExchangeTypeRegistry;
use warren_tests::{dylibs, workloads};

fn bench_routing(c: &mut Criterion) {
    let linked = ExchangeTypeRegistry::with_builtins();
    let loaded = dylibs::release_builtins();
    for w in &workloads::all() {
        println!(
            "{}/{}: {:.1} destinations per route",
            w.name,
            w.size,
            w.fan_out(&w.router(&linked))
        );
        let mut group = c.benchmark_group(format!("route/{}/{}", w.name, w.size));
        group.throughput(Throughput::Elements(1));
        for (build, registry) in [("static", &linked), ("dylib", &loaded)] {
            let router = w.router(registry);
            let mut out = Vec::with_capacity(64);
            let mut i = 0usize;
            group.bench_function(BenchmarkId::from_parameter(build), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    w.route(&router, black_box(i), &mut out);
                    black_box(out.len())
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
