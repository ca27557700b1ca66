//! Fits the four parameters of the Lotka–Volterra system to noisy observations at
//! irregular times, some of them missing, with the generic training loop: the model is
//! written once, generic over the number type, and its derivatives come from dual
//! numbers; the gradient is the continuous adjoint with jumps at the observations (or
//! backprop with binomial checkpointing, `--backprop`).
//!
//! Run: `cargo run --release --example fit_lotka_volterra [-- --backprop]`

use std::ops::ControlFlow;

use cnflow::loss::SquaredError;
use cnflow::ode::{integrate, DualSystem, Method, SaveAt, SolverConfig};
use cnflow::optim::{AdamConfig, LrSchedule, OptimizerConfig};
use cnflow::sensitivity::{gradient, Checkpointing, SensitivityError, SensitivityMethod};
use cnflow::train::{minimise, Outcome, Problem};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use cnflow::ode::problems::LotkaVolterraModel as LotkaVolterra;

struct Fit {
    params: Vec<f64>,
    times: Vec<f64>,
    data: Vec<f64>,
    method: SensitivityMethod,
}

impl Problem for Fit {
    type T = f64;
    type Report = usize;
    type Error = SensitivityError;
    type Rng = ChaCha8Rng;

    fn params(&self, out: &mut Vec<f64>) {
        out.clear();
        out.extend_from_slice(&self.params);
    }

    fn set_params(&mut self, flat: &[f64]) {
        self.params.copy_from_slice(flat);
    }

    fn loss_and_grad(
        &mut self,
        _iter: usize,
        _rng: &mut ChaCha8Rng,
        grad: &mut Vec<f64>,
    ) -> Result<(f64, usize), SensitivityError> {
        let mut sys = DualSystem::new(LotkaVolterra, self.params.clone());
        let mut loss = SquaredError::mean(&self.data, 2);
        let config = SolverConfig::adaptive(Method::Tsit5, 1e-8, 1e-8);
        let s = gradient(&mut sys, &[1.0, 1.0], &self.times, &mut loss, &config, self.method)?;
        grad.clear();
        grad.extend_from_slice(&s.grad_params);
        Ok((s.loss, s.n_evals_forward + s.n_evals_backward))
    }
}

fn main() -> anyhow::Result<()> {
    let backprop = std::env::args().any(|a| a == "--backprop");
    let truth = [1.5, 1.0, 3.0, 1.0];
    // 30 irregular times in [0, 6], observations with noise 0.05, every seventh missing.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut times: Vec<f64> = (0..30)
        .map(|i| 0.2 * i as f64 + 0.05 * (3.0 * i as f64).sin())
        .collect();
    times[0] = 0.0;
    let mut sys = DualSystem::new(LotkaVolterra, truth.to_vec());
    let exact = SolverConfig::adaptive(Method::Dopri5, 1e-10, 1e-10);
    let sol = integrate(
        &mut sys,
        &[1.0, 1.0],
        0.0,
        times[29],
        &exact,
        &SaveAt::times(times.clone()),
    )?;
    let noise = Normal::new(0.0, 0.05)?;
    let mut data: Vec<f64> = sol.y.iter().map(|&v| v + noise.sample(&mut rng)).collect();
    for i in (3..30).step_by(7) {
        data[2 * i] = f64::NAN;
    }
    let method = if backprop {
        SensitivityMethod::Backprop(Checkpointing::Revolve { budget: 4 })
    } else {
        SensitivityMethod::Adjoint { seminorm: true }
    };
    let mut fit = Fit {
        params: vec![1.2, 0.7, 2.5, 0.8],
        times,
        data,
        method,
    };
    println!("gradient: {method:?}");
    let mut opt = OptimizerConfig::Adam(AdamConfig::new(0.02, 0.0)).build(4);
    let outcome = minimise(
        &mut fit,
        &mut opt,
        LrSchedule::Cosine { final_frac: 0.05 },
        1,
        1500,
        |i| ChaCha8Rng::seed_from_u64(i as u64),
        |step, fit| {
            if step.iter % 150 == 0 {
                let p: Vec<String> = fit.params.iter().map(|v| format!("{v:.4}")).collect();
                println!(
                    "iter {:5}  loss {:.6}  params [{}]  ({} evaluations, {:.2} ms)",
                    step.iter,
                    step.loss,
                    p.join(", "),
                    step.report,
                    1e3 * step.seconds
                );
            }
            ControlFlow::Continue(())
        },
    );
    if let Outcome::Failed { iter, failure } = outcome {
        anyhow::bail!("iteration {iter} failed: {failure:?}");
    }
    println!(
        "fitted  {:?}",
        fit.params.iter().map(|v| (v * 1e4).round() / 1e4).collect::<Vec<_>>()
    );
    println!("truth   {truth:?}");
    Ok(())
}
