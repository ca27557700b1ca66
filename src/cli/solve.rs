//! `cnflow solve`: integrate a system given as equations, stiff or not.

use std::io::Write;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use cnflow::ode::{integrate, Method, SaveAt, SolverConfig};
use cnflow::series::Equations;
use cnflow::stiff::{self, StiffConfig, StiffMethod, StiffStats};

use super::args::{SolveArgs, SolveMethodArg};
use super::series::{parse_list, parse_params, parse_times};

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
    let states = Equations::states_of(&text).map_err(|e| anyhow!("--equations: {e}"))?;
    let params = match &args.params {
        Some(spec) => parse_params(spec)?,
        None => Vec::new(),
    };
    let param_names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    let eq = Equations::parse(&text, &states, &param_names).map_err(|e| anyhow!("--equations: {e}"))?;
    for (k, used) in eq.used_params().into_iter().enumerate() {
        if !used {
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
    let mut system = eq.with_params(params.iter().map(|(_, v)| *v).collect());
    let started = Instant::now();
    let mut switched_at: Option<f64> = None;
    let (y, stats): (Vec<f64>, StiffStats) = match kind(solver) {
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
                    "--steps is for the fixed-step methods (backward-euler, trapezoid); {} adapts its steps",
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
                bail!("--steps is for the fixed-step methods (backward-euler, trapezoid)");
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
    eprintln!(
        "{}: {} steps ({} rejected), {} evaluations{implicit}, {:.3} ms",
        name(solver),
        s.n_accepted,
        s.n_rejected,
        s.n_evals,
        seconds * 1e3
    );
    Ok(())
}
