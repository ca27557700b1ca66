//! Solves the Lotka–Volterra predator–prey system with Dopri5 and reports the solution
//! at irregular times, read from the method's dense output, with the solve's statistics.
//!
//! Run: `cargo run --release --example lotka_volterra`

use cnflow::ode::{integrate, Method, SaveAt, SolverConfig};

fn main() -> anyhow::Result<()> {
    // x' = αx − βxy (prey), y' = δxy − γy (predators).
    let (alpha, beta, delta, gamma) = (1.5, 1.0, 1.0, 3.0);
    let mut lotka_volterra = |_t: f64, y: &[f64], dy: &mut [f64]| {
        dy[0] = alpha * y[0] - beta * y[0] * y[1];
        dy[1] = delta * y[0] * y[1] - gamma * y[1];
    };
    let times = vec![0.0, 0.37, 1.0, 2.5, 2.6, 4.9, 7.25, 10.0];
    let config = SolverConfig::adaptive(Method::Dopri5, 1e-8, 1e-8);
    let sol = integrate(
        &mut lotka_volterra,
        &[1.0, 1.0],
        0.0,
        10.0,
        &config,
        &SaveAt::times(times),
    )?;

    println!("{:>8} {:>14} {:>14}", "t", "prey", "predators");
    for (i, t) in sol.t.iter().enumerate() {
        let y = sol.y_at(i);
        println!("{t:>8.3} {:>14.9} {:>14.9}", y[0], y[1]);
    }
    // The first integral V = δx − γ ln x + βy − α ln y is conserved by the exact flow.
    let v = |y: &[f64]| delta * y[0] - gamma * y[0].ln() + beta * y[1] - alpha * y[1].ln();
    println!(
        "\n{} evaluations, {} accepted and {} rejected steps; drift of the first integral: {:.1e}",
        sol.stats.n_evals,
        sol.stats.n_accepted,
        sol.stats.n_rejected,
        (v(&sol.y_final) - v(&[1.0, 1.0])).abs()
    );
    Ok(())
}
