//! The spiral demo of torchdiffeq and DiffEqFlux, on exactly its settings: data from
//! `du/dt = ((u³)ᵀA)ᵀ`, `A = [[-0.1, 2], [-2, -0.1]]`, `u0 = (2, 0)`, at 30 evenly spaced
//! times on `[0, 1.5]`; the model `du/dt = NN(u³)` with NN a 2-50-2 tanh network; Tsit5
//! at rtol 1e-7 / atol 1e-9; the sum of squared errors (DiffEqFlux's
//! `sum(abs2, data .- pred)`); Adam at 0.1 for 1000 iterations.
//!
//! Run: `cargo run --release --example spiral_fit [-- --adjoint] [--seed N] [--iters N] [--init FILE] [--log-every N]`
//! (`--adjoint`: the continuous adjoint instead of backprop). Prints the loss as it
//! goes and one JSON line at the end (time per iteration, evaluations, final loss).

use std::ops::ControlFlow;

use anyhow::Context;

use cnflow::loss::Reduction;
use cnflow::nn::Activation;
use cnflow::ode::{integrate, Method, SaveAt, SolverConfig};
use cnflow::optim::{AdamConfig, LrSchedule, OptimizerConfig};
use cnflow::sensitivity::{Checkpointing, SensitivityMethod};
use cnflow::series::{FitConfig, InputTransform, NeuralTerm, Series, SeriesFit, SeriesModel, Trajectory};
use cnflow::train::{minimise, Outcome};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let adjoint = std::env::args().any(|a| a == "--adjoint");
    let seed: u64 = arg("--seed").map_or(Ok(0), |s| s.parse())?;
    let iters: usize = arg("--iters").map_or(Ok(1000), |s| s.parse())?;

    // The true system and its data.
    let a = [[-0.1, 2.0], [-2.0, -0.1]];
    let mut truth = |_t: f64, u: &[f64], du: &mut [f64]| {
        let c = [u[0].powi(3), u[1].powi(3)];
        du[0] = c[0] * a[0][0] + c[1] * a[1][0];
        du[1] = c[0] * a[0][1] + c[1] * a[1][1];
    };
    let times: Vec<f64> = (0..30).map(|i| 1.5 * i as f64 / 29.0).collect();
    let exact = SolverConfig::adaptive(Method::Tsit5, 1e-12, 1e-12);
    let sol = integrate(&mut truth, &[2.0, 0.0], 0.0, 1.5, &exact, &SaveAt::times(times.clone()))?;
    let data = Series {
        time_name: "t".into(),
        names: vec!["u1".into(), "u2".into()],
        trajectories: vec![Trajectory::new("spiral", times, sol.y)],
    };

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let net = NeuralTerm::new(2, &[50], Activation::Tanh, InputTransform::Cube, None, false, &mut rng)?;
    let mut model = SeriesModel::new(data.names.clone(), None, Some(net))?;
    // Another framework's initial weights (W1, b1, W2, b2 flat, row-major), to run the
    // same training from the same start (benches/peers/spiral_same_init.py).
    if let Some(path) = arg("--init") {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading --init {path}"))?;
        let flat: Vec<f64> = text
            .split_whitespace()
            .map(|v| {
                v.parse()
                    .with_context(|| format!("--init {path}: '{v}' is not a number"))
            })
            .collect::<anyhow::Result<_>>()?;
        anyhow::ensure!(
            flat.len() == model.params().len(),
            "--init {path}: {} numbers, the network has {} parameters",
            flat.len(),
            model.params().len()
        );
        model.set_params(&flat);
    }
    let log_every: usize = arg("--log-every").map_or(Ok(100), |s| s.parse())?;
    let gradient = if adjoint {
        SensitivityMethod::Adjoint { seminorm: true }
    } else {
        SensitivityMethod::Backprop(Checkpointing::All)
    };
    let mut config = FitConfig::new(SolverConfig::adaptive(Method::Tsit5, 1e-7, 1e-9), gradient);
    config.reduction = Reduction::Sum;
    let mut fit = SeriesFit::new(model, None, data, config)?;

    let mut opt = OptimizerConfig::Adam(AdamConfig::new(0.1, 0.0)).build(fit.n_params());
    let mut ms = Vec::with_capacity(iters);
    let (mut nfe_fwd, mut nfe_bwd, mut last) = (0, 0, f64::NAN);
    let outcome = minimise(
        &mut fit,
        &mut opt,
        LrSchedule::Constant,
        1,
        iters,
        |i| ChaCha8Rng::seed_from_u64(i as u64),
        |step, _| {
            ms.push(1e3 * step.seconds);
            nfe_fwd += step.report.n_evals_forward;
            nfe_bwd += step.report.n_evals_backward;
            last = step.loss;
            if step.iter % log_every.max(1) == 0 || step.iter == 1 {
                println!(
                    "iter {:5}  loss {:.6}  ({} + {} evaluations, {:.3} ms)",
                    step.iter,
                    step.loss,
                    step.report.n_evals_forward,
                    step.report.n_evals_backward,
                    ms[ms.len() - 1]
                );
            }
            ControlFlow::Continue(())
        },
    );
    if let Outcome::Failed { iter, failure } = outcome {
        anyhow::bail!("iteration {iter} failed: {failure:?}");
    }
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let n = ms.len().max(1) as f64;
    println!(
        "{{\"peer\":\"cnflow\",\"seed\":{seed},\"adjoint\":\"{}\",\"iters\":{iters},\"compile_s\":0,\
         \"ms_per_iter_median\":{median:.4},\"nfe_forward_per_iter\":{:.1},\"nfe_backward_per_iter\":{:.1},\
         \"final_loss\":{last:.6}}}",
        if adjoint { "adjoint" } else { "backprop" },
        nfe_fwd as f64 / n,
        nfe_bwd as f64 / n
    );
    Ok(())
}
