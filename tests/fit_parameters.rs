//! The generic training loop on a problem that is not a CNF: Lotka–Volterra's four
//! parameters fitted to its own trajectory at irregular times, by the continuous
//! adjoint, with missing values in the data.

use std::ops::ControlFlow;

use cnflow::loss::SquaredError;
use cnflow::ode::{integrate, DualSystem, Method, SaveAt, SolverConfig};
use cnflow::optim::{AdamConfig, LrSchedule, OptimizerConfig};
use cnflow::sensitivity::{gradient, Checkpointing, SensitivityError, SensitivityMethod};
use cnflow::train::{minimise, Outcome, Problem};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use cnflow::ode::problems::LotkaVolterraModel as LotkaVolterra;

const TRUE: [f64; 4] = [1.5, 1.0, 3.0, 1.0];
const Y0: [f64; 2] = [1.0, 1.0];

struct Fit {
    params: Vec<f64>,
    times: Vec<f64>,
    data: Vec<f64>,
    method: SensitivityMethod,
}

impl Problem for Fit {
    type T = f64;
    type Report = ();
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
    ) -> Result<(f64, ()), SensitivityError> {
        let mut sys = DualSystem::new(LotkaVolterra, self.params.clone());
        let mut loss = SquaredError::mean(&self.data, 2);
        let config = SolverConfig::adaptive(Method::Tsit5, 1e-8, 1e-8);
        let s = gradient(&mut sys, &Y0, &self.times, &mut loss, &config, self.method)?;
        grad.clear();
        grad.extend_from_slice(&s.grad_params);
        Ok((s.loss, ()))
    }
}

fn problem(method: SensitivityMethod) -> Fit {
    let times: Vec<f64> = (0..20)
        .map(|i| 0.25 * i as f64 + 0.05 * (7.0 * i as f64).sin())
        .collect();
    let mut sys = DualSystem::new(LotkaVolterra, TRUE.to_vec());
    let config = SolverConfig::adaptive(Method::Dopri5, 1e-10, 1e-10);
    let sol = integrate(
        &mut sys,
        &Y0,
        times[0],
        times[19],
        &config,
        &SaveAt::times(times.clone()),
    )
    .unwrap();
    let mut data = sol.y;
    // Every fifth observation of the predator is missing.
    for i in (0..20).step_by(5) {
        data[2 * i + 1] = f64::NAN;
    }
    Fit {
        params: vec![1.3, 0.8, 2.7, 0.9],
        times,
        data,
        method,
    }
}

#[test]
fn the_generic_loop_recovers_lotka_volterra_parameters_by_either_gradient() {
    for method in [
        SensitivityMethod::Adjoint { seminorm: true },
        SensitivityMethod::Backprop(Checkpointing::Revolve { budget: 4 }),
    ] {
        let mut fit = problem(method);
        let mut opt = OptimizerConfig::Adam(AdamConfig::new(0.02, 0.0)).build(4);
        let mut losses = Vec::new();
        let outcome = minimise(
            &mut fit,
            &mut opt,
            LrSchedule::Cosine { final_frac: 0.05 },
            1,
            1500,
            |i| ChaCha8Rng::seed_from_u64(i as u64),
            |step, _| {
                losses.push(step.loss);
                ControlFlow::Continue(())
            },
        );
        assert_eq!(outcome, Outcome::Finished, "{method:?}");
        assert_eq!(losses.len(), 1500);
        assert!(
            losses[1499] < 1e-4 * losses[0],
            "{method:?}: loss {} → {}",
            losses[0],
            losses[1499]
        );
        for (k, (p, t)) in fit.params.iter().zip(TRUE).enumerate() {
            assert!((p - t).abs() < 1e-2, "{method:?}: parameter {k} = {p}, true {t}");
        }
    }
}

#[test]
fn an_observer_stops_the_loop_and_a_failed_evaluation_is_reported() {
    let mut fit = problem(SensitivityMethod::Adjoint { seminorm: true });
    let mut opt = OptimizerConfig::Adam(AdamConfig::new(0.02, 0.0)).build(4);
    let outcome = minimise(
        &mut fit,
        &mut opt,
        LrSchedule::Constant,
        1,
        100,
        |i| ChaCha8Rng::seed_from_u64(i as u64),
        |step, _| {
            if step.iter == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert_eq!(outcome, Outcome::Stopped { iter: 3 });
    // Times out of order make the evaluation fail; the parameters are left as they were.
    fit.times.swap(3, 4);
    let before = fit.params.clone();
    let outcome = minimise(
        &mut fit,
        &mut opt,
        LrSchedule::Constant,
        4,
        10,
        |i| ChaCha8Rng::seed_from_u64(i as u64),
        |_, _| ControlFlow::Continue(()),
    );
    assert!(matches!(outcome, Outcome::Failed { iter: 4, .. }), "{outcome:?}");
    assert_eq!(fit.params, before);
}
