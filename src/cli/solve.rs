//! `cnflow solve`: integrate a system given as equations, stiff or not.

use std::io::Write;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use cnflow::ode::{integrate, Method, SaveAt, SolverConfig};
use cnflow::series::Equations;
use cnflow::stiff::{self, StiffConfig, StiffMethod, StiffStats};

use super::args::{SolveArgs, SolveMethodArg, SplittingArg};
use super::series::{parse_list, parse_params, parse_times};
use cnflow::series::EquationSystem;
use cnflow::stiff::{Flow, Splitting};

enum Kind {
    Stiff(StiffMethod),
    Explicit(Method),
}

fn kind(m: SolveMethodArg) -> Kind {
    match m {
        SolveMethodArg::Bdf => Kind::Stiff(StiffMethod::Bdf),
        SolveMethodArg::Rodas4 => Kind::Stiff(StiffMethod::Rodas4),
        SolveMethodArg::Radau5 => Kind::Stiff(StiffMethod::Radau5),
        SolveMethodArg::Auto => Kind::Stiff(StiffMethod::Auto),
        SolveMethodArg::TrBdf2 => Kind::Stiff(StiffMethod::TrBdf2),
        SolveMethodArg::Kvaerno5 => Kind::Stiff(StiffMethod::Kvaerno5),
        SolveMethodArg::BackwardEuler => Kind::Stiff(StiffMethod::BackwardEuler),
        SolveMethodArg::Trapezoid => Kind::Stiff(StiffMethod::Trapezoid),
        SolveMethodArg::Dopri5 => Kind::Explicit(Method::Dopri5),
        SolveMethodArg::Tsit5 => Kind::Explicit(Method::Tsit5),
        SolveMethodArg::Bosh3 => Kind::Explicit(Method::Bosh3),
    }
}

fn name(m: SolveMethodArg) -> &'static str {
    match kind(m) {
        Kind::Stiff(s) => s.name(),
        Kind::Explicit(e) => e.tableau().name,
    }
}

/// One part of a split system, advanced over each sub-step by its own method: a stiff
/// solve (fixed-step methods take one step), or an explicit adaptive one.
struct PartFlow {
    system: EquationSystem,
    kind: Kind,
    rtol: f64,
    atol: f64,
    max_steps: usize,
    stats: StiffStats,
}

impl PartFlow {
    fn new(system: EquationSystem, method: SolveMethodArg, args: &SolveArgs) -> Self {
        PartFlow {
            system,
            kind: kind(method),
            rtol: args.rtol,
            atol: args.atol,
            max_steps: args.max_steps,
            stats: StiffStats::default(),
        }
    }
}

impl Flow for PartFlow {
    fn advance(&mut self, t: f64, h: f64, y: &mut [f64]) -> Result<(), cnflow::ode::SolveError> {
        match self.kind {
            Kind::Stiff(method) => {
                let mut config = StiffConfig::adaptive(method, self.rtol, self.atol);
                config.max_steps = self.max_steps;
                if !method.is_adaptive() {
                    config.fixed_steps = Some(1);
                }
                let sol = stiff::solve(&mut self.system, y, t, t + h, &[], &config)?;
                let s = sol.stats;
                self.stats.n_evals += s.n_evals;
                self.stats.n_jacobians += s.n_jacobians;
                self.stats.n_factorizations += s.n_factorizations;
                self.stats.n_solves += s.n_solves;
                self.stats.n_newton += s.n_newton;
                self.stats.n_newton_failures += s.n_newton_failures;
                self.stats.n_accepted += s.n_accepted;
                self.stats.n_rejected += s.n_rejected;
                y.copy_from_slice(&sol.y_final);
            }
            Kind::Explicit(method) => {
                let mut config = SolverConfig::adaptive(method, self.rtol, self.atol);
                config.max_steps = self.max_steps;
                let sol = integrate(&mut self.system, y, t, t + h, &config, &SaveAt::default())?;
                self.stats.n_evals += sol.stats.n_evals;
                self.stats.n_accepted += sol.stats.n_accepted;
                self.stats.n_rejected += sol.stats.n_rejected;
                y.copy_from_slice(&sol.y_final);
            }
        }
        Ok(())
    }
}

/// [`stiff::split_solve`] from save time to save time, `steps` split steps over the
/// whole span shared in proportion (at least one per interval); the states at `save`.
#[allow(clippy::too_many_arguments)]
fn split_at_saves(
    a: &mut PartFlow,
    b: &mut PartFlow,
    splitting: Splitting,
    y0: &[f64],
    t0: f64,
    t1: f64,
    save: &[f64],
    steps: usize,
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(save.len() * y0.len());
    let (mut t, mut y) = (t0, y0.to_vec());
    for &ts in save {
        if ts != t {
            let k = ((steps as f64 * ((ts - t) / (t1 - t0)).abs()).round() as usize).max(1);
            y = stiff::split_solve(a, b, splitting, &y, t, ts, k)
                .map_err(|e| anyhow!("the split solve failed between t = {t} and {ts}: {e}"))?;
            t = ts;
        }
        out.extend_from_slice(&y);
    }
    Ok(out)
}

/// A number in full precision, in scientific notation when very small or large.
fn number(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e15) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

/// `cnflow solve`.
pub fn run(args: SolveArgs) -> Result<()> {
    let text = match args.equations.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading the equations from {path}"))?,
        None => args.equations.clone(),
    };
    let mut states = Equations::states_of(&text).map_err(|e| anyhow!("--equations: {e}"))?;
    // With --split, the states are those of both parts: --equations' in order, then the
    // ones only --split has.
    let text_b = match args.split.as_deref().map(|s| (s, s.strip_prefix('@'))) {
        Some((_, Some(path))) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("reading the --split equations from {path}"))?)
        }
        Some((s, None)) => Some(s.to_string()),
        None => None,
    };
    if let Some(text_b) = &text_b {
        for s in Equations::states_of(text_b).map_err(|e| anyhow!("--split: {e}"))? {
            if !states.contains(&s) {
                states.push(s);
            }
        }
    }
    let params = match &args.params {
        Some(spec) => parse_params(spec)?,
        None => Vec::new(),
    };
    let param_names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    let eq = Equations::parse(&text, &states, &param_names).map_err(|e| anyhow!("--equations: {e}"))?;
    let eq_b = match &text_b {
        Some(text_b) => Some(Equations::parse(text_b, &states, &param_names).map_err(|e| anyhow!("--split: {e}"))?),
        None => None,
    };
    let used_b = eq_b
        .as_ref()
        .map_or(vec![false; param_names.len()], |e| e.used_params());
    for (k, used) in eq.used_params().into_iter().enumerate() {
        if !used && !used_b[k] {
            eprintln!("warning: parameter {} is not used by the equations", param_names[k]);
        }
    }
    let y0 = parse_list(&args.y0, "--y0")?;
    if y0.len() != states.len() {
        bail!(
            "--y0 has {} values but there are {} equations (states {}): give one value per state",
            y0.len(),
            states.len(),
            states.join(", ")
        );
    }
    let span = parse_list(&args.t.replace(':', ","), "--t")?;
    let [t0, t1] = span[..] else {
        bail!("--t '{}': give the span as T0:T1, e.g. --t 0:1e5", args.t);
    };
    if t0 == t1 {
        bail!("--t '{}': the span is empty; give T1 different from T0", args.t);
    }
    let save = match &args.save {
        Some(spec) => {
            let s = parse_times(spec).map_err(|e| anyhow!("{}", e.to_string().replace("--t", "--save")))?;
            let (lo, hi) = (t0.min(t1), t0.max(t1));
            if let Some(bad) = s.iter().find(|&&t| t < lo || t > hi) {
                bail!("--save: time {bad} lies outside the span [{lo}, {hi}] of --t");
            }
            if t1 < t0 {
                s.into_iter().rev().collect()
            } else {
                s
            }
        }
        None => vec![t0, t1],
    };
    let solver = args.solver.unwrap_or(if args.rtol >= 1e-6 {
        SolveMethodArg::Rodas4
    } else {
        SolveMethodArg::Radau5
    });
    let values: Vec<f64> = params.iter().map(|(_, v)| *v).collect();
    let mut system = eq.with_params(values.clone());
    let started = Instant::now();
    let mut switched_at: Option<f64> = None;
    let mut split_note = None;
    let (y, stats): (Vec<f64>, StiffStats) = if let Some(eq_b) = eq_b {
        let split_solver = args.split_solver.unwrap_or(solver);
        let steps = args.steps.ok_or_else(|| {
            anyhow!("--split takes equal split steps: give their number with --steps N (e.g. --steps 100)")
        })?;
        if steps == 0 {
            bail!("--steps 0: give at least one split step");
        }
        let mut a = PartFlow::new(system, solver, &args);
        let mut b = PartFlow::new(eq_b.with_params(values), split_solver, &args);
        let splitting = match args.splitting {
            SplittingArg::Strang => Splitting::Strang,
            SplittingArg::Lie => Splitting::Lie,
        };
        let y = split_at_saves(&mut a, &mut b, splitting, &y0, t0, t1, &save, steps)?;
        let note = format!(
            "{} splitting, {steps} steps: --equations by {} ({} steps, {} evaluations), --split by {} ({} steps, {} evaluations)",
            match splitting {
                Splitting::Strang => "strang",
                Splitting::Lie => "lie",
            },
            name(solver),
            a.stats.n_accepted,
            a.stats.n_evals,
            name(split_solver),
            b.stats.n_accepted,
            b.stats.n_evals
        );
        let mut stats = a.stats;
        for (x, y) in [
            (&mut stats.n_evals, b.stats.n_evals),
            (&mut stats.n_jacobians, b.stats.n_jacobians),
            (&mut stats.n_factorizations, b.stats.n_factorizations),
            (&mut stats.n_solves, b.stats.n_solves),
            (&mut stats.n_newton, b.stats.n_newton),
            (&mut stats.n_newton_failures, b.stats.n_newton_failures),
            (&mut stats.n_accepted, b.stats.n_accepted),
            (&mut stats.n_rejected, b.stats.n_rejected),
        ] {
            *x += y;
        }
        split_note = Some(note);
        (y, stats)
    } else {
        match kind(solver) {
            Kind::Stiff(method) => {
                let mut config = StiffConfig::adaptive(method, args.rtol, args.atol);
                config.max_steps = args.max_steps;
                if !method.is_adaptive() {
                    config.fixed_steps = Some(args.steps.ok_or_else(|| {
                        anyhow!(
                            "--solver {} takes fixed steps: give their number with --steps N",
                            method.name()
                        )
                    })?);
                } else if args.steps.is_some() {
                    bail!(
                        "--steps is for the fixed-step methods (backward-euler, trapezoid) and --split; {} adapts its steps",
                        method.name()
                    );
                }
                let sol = stiff::solve(&mut system, &y0, t0, t1, &save, &config)
                    .map_err(|e| anyhow!("{} failed: {e}", method.name()))?;
                if let Some(ts) = sol.switched_at {
                    let to = if args.rtol >= 1e-6 { "rodas4" } else { "radau5" };
                    eprintln!("auto: stiffness detected at t = {ts}; switched from dopri5 to {to}");
                } else if method == StiffMethod::Auto {
                    eprintln!("auto: no stiffness detected; dopri5 throughout");
                }
                switched_at = sol.switched_at;
                (sol.y, sol.stats)
            }
            Kind::Explicit(method) => {
                if args.steps.is_some() {
                    bail!("--steps is for the fixed-step methods (backward-euler, trapezoid) and --split");
                }
                let mut config = SolverConfig::adaptive(method, args.rtol, args.atol);
                config.max_steps = args.max_steps;
                let sol = integrate(&mut system, &y0, t0, t1, &config, &SaveAt::times(save.clone())).map_err(|e| {
                    anyhow!(
                        "{} failed: {e}; if the problem is stiff, use --solver bdf or rodas4",
                        method.tableau().name
                    )
                })?;
                let s = sol.stats;
                (
                    sol.y,
                    StiffStats {
                        n_evals: s.n_evals,
                        n_accepted: s.n_accepted,
                        n_rejected: s.n_rejected,
                        ..Default::default()
                    },
                )
            }
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let n = states.len();
    let mut body = String::new();
    if args.json {
        let rows: Vec<&[f64]> = y.chunks(n).collect();
        let value = serde_json::json!({
            "method": name(solver),
            "rtol": args.rtol,
            "atol": args.atol,
            "states": states,
            "t": save,
            "y": rows,
            "stats": stats,
            "switched_at": switched_at,
            "splitting": split_note,
            "seconds": seconds,
        });
        body.push_str(&value.to_string());
        body.push('\n');
    } else {
        body.push_str("t,");
        body.push_str(&states.join(","));
        body.push('\n');
        for (t, row) in save.iter().zip(y.chunks(n)) {
            body.push_str(&number(*t));
            for v in row {
                body.push(',');
                body.push_str(&number(*v));
            }
            body.push('\n');
        }
    }
    if args.output.as_os_str() == "-" {
        std::io::stdout().write_all(body.as_bytes())?;
    } else {
        cnflow::data::write_atomic(&args.output, |w| -> Result<()> { Ok(w.write_all(body.as_bytes())?) })
            .with_context(|| format!("writing {}", args.output.display()))?;
    }
    let s = stats;
    let implicit = if matches!(kind(solver), Kind::Stiff(_)) {
        format!(
            ", {} Jacobians, {} factorisations, {} linear solves, {} Newton iterations ({} failed)",
            s.n_jacobians, s.n_factorizations, s.n_solves, s.n_newton, s.n_newton_failures
        )
    } else {
        String::new()
    };
    if let Some(note) = &split_note {
        eprintln!("{note}");
    }
    eprintln!(
        "{}: {} steps ({} rejected), {} evaluations{implicit}, {:.3} ms",
        if split_note.is_some() {
            "both parts"
        } else {
            name(solver)
        },
        s.n_accepted,
        s.n_rejected,
        s.n_evals,
        seconds * 1e3
    );
    Ok(())
}
