//! Solver hot-loop benchmark: Dopri5 and Tsit5 on a batch of Lotka–Volterra systems.
//!
//! The right-hand side is cheap, so the time is the solver's own: stage sums, error
//! norm, controller. Throughput is in vector-field evaluations per second; the bench
//! name carries the step and evaluation counts of one solve.
//!
//! Run: `cargo bench --bench ode`

use cnflow::ode::problems::Problem;
use cnflow::ode::{integrate, Method, SaveAt, Solver, SolverConfig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

/// `n_batch` independent Lotka–Volterra systems as one flat state (a B × 2 batch).
fn batch_rhs(p: &Problem, t: f64, y: &[f64], dy: &mut [f64]) {
    for (yi, dyi) in y.chunks_exact(2).zip(dy.chunks_exact_mut(2)) {
        p.rhs(t, yi, dyi);
    }
}

fn solvers(c: &mut Criterion) {
    let mut group = c.benchmark_group("ode_solve");
    for n_batch in [1, 100] {
        for method in [Method::Dopri5, Method::Tsit5] {
            let config = SolverConfig::adaptive(method, 1e-6, 1e-6);
            let p = Problem::lotka_volterra();
            let mut f = |t: f64, y: &[f64], dy: &mut [f64]| batch_rhs(&p, t, y, dy);
            let y0: Vec<f64> = (0..n_batch).flat_map(|i| [1.0 + 0.01 * i as f64, 1.0]).collect();
            let stats = integrate(&mut f, &y0, 0.0, 10.0, &config, &SaveAt::default())
                .unwrap()
                .stats;
            group.throughput(Throughput::Elements(stats.n_evals as u64));
            let id = format!(
                "{method}/lv_batch{n_batch} ({} steps, {} evals)",
                stats.n_steps(),
                stats.n_evals
            );
            let mut solver = Solver::new(config).unwrap();
            group.bench_function(BenchmarkId::from_parameter(id), |b| {
                b.iter(|| {
                    solver
                        .solve(&mut f, black_box(&y0), 0.0, 10.0, &SaveAt::default())
                        .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, solvers);
criterion_main!(benches);
