//! `auto`: Dopri5 until the problem turns stiff, then an implicit method from there.
//!
//! Stiffness test (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.10, as in their code
//! `dopri5`): after an accepted step, `ρ = |h| ‖k₇ − k₆‖ / ‖y₇ − y₆‖` estimates `|h λ|` for
//! the dominant eigenvalue, with `y₆` the argument of stage 6 and `y₇ = y_new` that of
//! stage 7 (= `f(t + h, y_new)`, both at `c = 1`). Dopri5's stability region reaches
//! about 3.3 along the negative axis, so `ρ > 3.25` on 15 accepted steps (not
//! interrupted by 6 non-stiff ones in a row) means the step size is held by stability,
//! not accuracy: the solve switches. It also
//! switches where Dopri5's step size collapses.

use super::{solve as stiff_solve, StiffConfig, StiffMethod, StiffSolution, StiffStats};
use crate::ode::{Jacobian, Method, OdeSystem, SaveAt, SolveError, Solver, SolverConfig, StepOutcome, Stepper, DOPRI5};

const RHO: f64 = 3.25;
const IN_A_ROW: usize = 15;

pub(super) fn solve<S: OdeSystem<f64> + Jacobian<f64> + ?Sized>(
    system: &mut S,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    config: &StiffConfig,
) -> Result<StiffSolution, SolveError> {
    let n = y0.len();
    let mut explicit = SolverConfig::adaptive(Method::Dopri5, config.rtol, config.atol);
    explicit.max_steps = config.max_steps;
    if let Some(h) = config.h_max {
        if let crate::ode::StepControl::Adaptive(a) = &mut explicit.step {
            a.h_max = Some(h);
        }
    }
    let saveat = SaveAt::times(save.to_vec());
    let mut solver = Solver::new(explicit)?;
    let mut run = solver.start(system, y0, t0, t1, &saveat)?;
    let a6 = DOPRI5.a[5];
    let mut y_start = y0.to_vec();
    let mut y6 = vec![0.0; n];
    let mut in_a_row = 0;
    let mut non_stiff = 0;
    let mut switch = None;
    while !run.is_done() {
        y_start.copy_from_slice(run.y());
        let outcome = match run.step(system) {
            Ok(o) => o,
            // Dopri5 cannot go on (its step collapsed: typically stiffness at the start,
            // or an atol it cannot reach): the implicit method takes over from here.
            Err(SolveError::StepSizeTooSmall { .. }) => {
                switch = Some(run.t());
                break;
            }
            Err(e) => return Err(e),
        };
        if let StepOutcome::Accepted { h, t, last, .. } = outcome {
            let k = run.stepper().stages();
            for i in 0..n {
                y6[i] = y_start[i] + h * (0..a6.len()).map(|j| a6[j] * k[j][i]).sum::<f64>();
            }
            let y7 = run.y();
            let num: f64 = (0..n).map(|i| (k[6][i] - k[5][i]).powi(2)).sum::<f64>().sqrt();
            let den: f64 = (0..n).map(|i| (y7[i] - y6[i]).powi(2)).sum::<f64>().sqrt();
            let rho = if den > 0.0 { h.abs() * num / den } else { 0.0 };
            // Hairer's counting: stiff estimates add up until 6 non-stiff ones in a row
            // clear them (a step sequence that oscillates about the stability boundary
            // alternates between the two).
            if rho > RHO {
                in_a_row += 1;
                non_stiff = 0;
            } else {
                non_stiff += 1;
                if non_stiff >= 6 {
                    in_a_row = 0;
                }
            }
            if in_a_row >= IN_A_ROW && !last {
                switch = Some(t);
                break;
            }
        }
    }
    let stats = run.stats();
    let y_switch = run.y().to_vec();
    let first = run.finish();
    let mut out = StiffSolution {
        n,
        t: save.to_vec(),
        y: first.y,
        y_final: first.y_final,
        stats: StiffStats {
            n_evals: stats.n_evals,
            n_accepted: stats.n_accepted,
            n_rejected: stats.n_rejected,
            ..Default::default()
        },
        switched_at: None,
    };
    let Some(ts) = switch else {
        return Ok(out);
    };
    let served = out.y.len() / n;
    let method = if config.rtol >= 1e-6 {
        StiffMethod::Rodas4
    } else {
        StiffMethod::Radau5
    };
    let rest = StiffConfig {
        method,
        max_steps: config.max_steps.saturating_sub(stats.n_steps()),
        ..config.clone()
    };
    let second = stiff_solve(system, &y_switch, ts, t1, &save[served..], &rest)?;
    out.y.extend_from_slice(&second.y);
    out.y_final = second.y_final;
    let s = &mut out.stats;
    let b = second.stats;
    s.n_evals += b.n_evals;
    s.n_accepted += b.n_accepted;
    s.n_rejected += b.n_rejected;
    s.n_jacobians = b.n_jacobians;
    s.n_factorizations = b.n_factorizations;
    s.n_solves = b.n_solves;
    s.n_newton = b.n_newton;
    s.n_newton_failures = b.n_newton_failures;
    out.switched_at = Some(ts);
    Ok(out)
}
