//! Work-precision runs of the stiff solvers on the standard stiff test problems, one JSON
//! line per (problem, method, rtol) — the same problems, tolerances (atol = rtol·s) and
//! mixed error as `benches/peers/stiff_scipy.py`, so the two print comparable lines.
//!
//! ```sh
//! cargo run --release --example stiff_benchmark -- --problems hires,orego --rtols 1e-4,1e-8 --repeats 5
//! # pictures and the equal-accuracy table from the lines of benches/stiff.sh:
//! cargo run --release --example stiff_benchmark -- --plot stiff.jsonl --out assets
//! ```
//!
//! Reference values: the *Test Set for IVP Solvers* (Mazzia, Magherini et al., Bari)
//! where published; SciPy's Radau at rtol 1e-13 for Robertson at t = 1e5 and Van der Pol
//! at t = 3000 (see benches/peers/stiff_problems.md).

use std::time::Instant;

use cnflow::ode::{integrate, Jacobian, Method, OdeSystem, SaveAt, SolverConfig};
use cnflow::stiff::problems::{Hires, Orego, Robertson, VanDerPol, VanDerPolScaled};
use cnflow::stiff::{solve, StiffConfig, StiffMethod, StiffStats};

struct Problem {
    name: &'static str,
    y0: Vec<f64>,
    t_end: f64,
    atol_scale: f64,
    reference: Vec<f64>,
    system: Box<dyn FnMut() -> Box<dyn StiffSystem>>,
}

trait StiffSystem: OdeSystem<f64> + Jacobian<f64> {}
impl<S: OdeSystem<f64> + Jacobian<f64>> StiffSystem for S {}

fn problems() -> Vec<Problem> {
    vec![
        Problem {
            name: "robertson_1e5",
            y0: vec![1.0, 0.0, 0.0],
            t_end: 1e5,
            atol_scale: 1e-6,
            reference: vec![1.7865921142100043e-02, 7.274751468436544e-08, 9.821340061103871e-01],
            system: Box::new(|| Box::new(Robertson)),
        },
        Problem {
            name: "robertson_1e11",
            y0: vec![1.0, 0.0, 0.0],
            t_end: 1e11,
            atol_scale: 1e-10,
            reference: vec![0.2083340149701255e-07, 0.8333360770334713e-13, 0.999_999_979_166_505],
            system: Box::new(|| Box::new(Robertson)),
        },
        Problem {
            name: "vdpol_mu1e3",
            y0: vec![2.0, 0.0],
            t_end: 2e3,
            atol_scale: 1e-3,
            reference: vec![0.1706167732170469e+01, -0.8928097010248125e-03],
            system: Box::new(|| Box::new(VanDerPol { mu: 1e3 })),
        },
        Problem {
            name: "vdpol_mu1e3_t3000",
            y0: vec![2.0, 0.0],
            t_end: 3e3,
            atol_scale: 1e-3,
            reference: vec![-1.5106069367442216e+00, 1.1783800007306915e-03],
            system: Box::new(|| Box::new(VanDerPol { mu: 1e3 })),
        },
        Problem {
            name: "vdpol_eps1e-6",
            y0: vec![2.0, 0.0],
            t_end: 2.0,
            atol_scale: 1.0,
            reference: vec![0.1706167732170483e+01, -0.8928097010247975e+00],
            system: Box::new(|| Box::new(VanDerPolScaled { eps: 1e-6 })),
        },
        Problem {
            name: "hires",
            y0: vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057],
            t_end: 321.8122,
            atol_scale: 1e-4,
            reference: vec![
                0.7371312573325668e-3,
                0.1442485726316185e-3,
                0.5888729740967575e-4,
                0.1175651343283149e-2,
                0.2386356198831331e-2,
                0.6238968252742796e-2,
                0.2849998395185769e-2,
                0.2850001604814231e-2,
            ],
            system: Box::new(|| Box::new(Hires)),
        },
        Problem {
            name: "orego",
            y0: vec![1.0, 2.0, 3.0],
            t_end: 360.0,
            atol_scale: 1.0,
            reference: vec![0.1000814870318523e+01, 0.1228178521549917e+04, 0.1320554942846706e+03],
            system: Box::new(|| Box::new(Orego)),
        },
    ]
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// One record of a JSON line (cnflow's or a peer's).
struct Record {
    peer: String,
    method: String,
    problem: String,
    err: f64,
    seconds: f64,
    nfev: Option<f64>,
}

fn read_records(path: &str) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["success"].as_bool() == Some(true))
        .filter_map(|v| {
            Some(Record {
                peer: v["peer"].as_str()?.to_string(),
                method: v["method"].as_str()?.to_string(),
                problem: v["problem"].as_str()?.to_string(),
                err: v["err_mixed"].as_f64()?,
                seconds: v["wall_s_median"].as_f64()?,
                nfev: v["nfev"].as_f64(),
            })
        })
        .collect()
}

/// Milliseconds to reach a mixed error of `target`, from `(correct digits, ms)` points:
/// log time interpolated linearly in digits between the two runs that bracket it (no
/// extrapolation; `None` when no run reached it; the cheapest run when every run did).
fn time_at(points: &[(f64, f64)], target: f64) -> Option<f64> {
    let mut p: Vec<(f64, f64)> = points.iter().map(|&(d, ms)| (d, ms.ln())).collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let want = -target.log10();
    if let Some(first) = p.first() {
        if want <= first.0 {
            return p.iter().map(|q| q.1).reduce(f64::min).map(f64::exp);
        }
    }
    p.windows(2).find(|w| w[0].0 <= want && want <= w[1].0).map(|w| {
        let f = (want - w[0].0) / (w[1].0 - w[0].0);
        (w[0].1 + f * (w[1].1 - w[0].1)).exp()
    })
}

/// A named line of `(correct digits, cost)` points.
type Line = (String, Vec<(f64, f64)>);

fn plot(path: &str, out: &str) {
    use cnflow::plot::{metrics, MetricsConfig, Subplot};
    let records = read_records(path);
    let mut problems: Vec<String> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for r in &records {
        if !problems.contains(&r.problem) {
            problems.push(r.problem.clone());
        }
        let name = format!("{} {}", r.peer, r.method);
        if !lines.contains(&name) {
            lines.push(name);
        }
    }
    let series = |problem: &str, line: &str, nfe: bool| -> Vec<(f64, f64)> {
        let mut pts: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| r.problem == problem && format!("{} {}", r.peer, r.method) == line)
            .filter_map(|r| Some((-r.err.log10(), if nfe { r.nfev? } else { r.seconds * 1e3 })))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts
    };
    for (nfe, file, label) in [
        (false, "stiff-work-precision.png", "time (ms)"),
        (true, "stiff-work-precision-nfe.png", "evaluations of f"),
    ] {
        let data: Vec<Vec<Line>> = problems
            .iter()
            // Every line in every subplot (empty where a method has no run there), so a
            // method keeps its colour across subplots.
            .map(|p| lines.iter().map(|l| (l.clone(), series(p, l, nfe))).collect())
            .collect();
        let subplots: Vec<Subplot> = problems
            .iter()
            .zip(&data)
            .map(|(p, d)| Subplot {
                title: p,
                x_label: "correct digits, -log10(mixed error)",
                y_label: label,
                lines: d.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect(),
                log_y: true,
            })
            .collect();
        let config = MetricsConfig {
            cols: 3,
            title: format!("stiff test problems: {label} against accuracy"),
            ..Default::default()
        };
        let file = format!("{out}/{file}");
        metrics(&file, &subplots, &config).unwrap_or_else(|e| panic!("{file}: {e}"));
        eprintln!("wrote {file}");
    }
    // Equal accuracy: cnflow's fastest method against diffsol's BDF and SciPy's best.
    println!("| problem | error | cnflow (method) | diffsol BDF | SciPy best (method) | vs diffsol | vs SciPy |");
    println!("|---|---|---|---|---|---|---|");
    let best = |problem: &str, peer: &str, target: f64| -> Option<(f64, String)> {
        lines
            .iter()
            .filter(|l| l.starts_with(peer))
            .filter_map(|l| time_at(&series(problem, l, false), target).map(|t| (t, l[peer.len() + 1..].to_string())))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    for p in &problems {
        for k in 3..=9 {
            let target = 10f64.powi(-k);
            let ours = best(p, "cnflow", target);
            let ds = lines
                .iter()
                .find(|l| l.as_str() == "pydiffsol diffsol-bdf")
                .and_then(|l| time_at(&series(p, l, false), target));
            let sp = best(p, "scipy", target);
            let fmt = |v: Option<f64>| v.map_or("—".to_string(), |t| format!("{t:.3} ms"));
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => format!("{:.1}×", b / a),
                _ => "—".into(),
            };
            println!(
                "| {p} | 1e-{k} | {} | {} | {} | {} | {} |",
                ours.as_ref().map_or("—".into(), |(t, m)| format!("{t:.3} ms ({m})")),
                fmt(ds),
                sp.as_ref().map_or("—".into(), |(t, m)| format!("{t:.1} ms ({m})")),
                ratio(ours.as_ref().map(|o| o.0), ds),
                ratio(ours.as_ref().map(|o| o.0), sp.as_ref().map(|s| s.0)),
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(path) = arg(&args, "--plot") {
        let out = arg(&args, "--out").unwrap_or_else(|| ".".into());
        plot(&path, &out);
        return;
    }
    let wanted = arg(&args, "--problems");
    let methods: Vec<String> = arg(&args, "--methods")
        .unwrap_or_else(|| "bdf,rodas4,radau5,dopri5".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let rtols: Vec<f64> = arg(&args, "--rtols")
        .unwrap_or_else(|| "1e-3,1e-4,1e-5,1e-6,1e-7,1e-8,1e-9".into())
        .split(',')
        .map(|s| s.parse().expect("--rtols: numbers"))
        .collect();
    let repeats: usize = arg(&args, "--repeats").map_or(5, |s| s.parse().expect("--repeats: a count"));
    for mut p in problems() {
        if let Some(w) = &wanted {
            if !w.split(',').any(|x| x == p.name) {
                continue;
            }
        }
        for method in &methods {
            for &rtol in &rtols {
                let atol = rtol * p.atol_scale;
                let mut times = Vec::new();
                let mut last: Option<Result<(Vec<f64>, StiffStats), String>> = None;
                for _ in 0..repeats {
                    let mut sys = (p.system)();
                    let started = Instant::now();
                    let result = match method.as_str() {
                        "dopri5" => {
                            let mut config = SolverConfig::adaptive(Method::Dopri5, rtol, atol);
                            config.max_steps = 1_000_000;
                            integrate(sys.as_mut(), &p.y0, 0.0, p.t_end, &config, &SaveAt::times(vec![])).map(|s| {
                                let st = s.stats;
                                (
                                    s.y_final,
                                    StiffStats {
                                        n_evals: st.n_evals,
                                        n_accepted: st.n_accepted,
                                        n_rejected: st.n_rejected,
                                        ..Default::default()
                                    },
                                )
                            })
                        }
                        m => {
                            let m: StiffMethod = m.parse().expect("--methods");
                            let config = StiffConfig::adaptive(m, rtol, atol);
                            solve(sys.as_mut(), &p.y0, 0.0, p.t_end, &[], &config).map(|s| (s.y_final, s.stats))
                        }
                    };
                    times.push(started.elapsed().as_secs_f64());
                    let failed = result.is_err();
                    last = Some(result.map_err(|e| e.to_string()));
                    if failed {
                        break;
                    }
                }
                let line = match last.expect("at least one repeat") {
                    Ok((y, s)) => {
                        let err = y
                            .iter()
                            .zip(&p.reference)
                            .map(|(a, b)| (a - b).abs() / (p.atol_scale + b.abs()))
                            .fold(0.0, f64::max);
                        serde_json::json!({
                            "peer": "cnflow", "problem": p.name, "method": method, "rtol": rtol, "atol": atol,
                            "atol_scale": p.atol_scale, "t_end": p.t_end, "repeats": times.len(),
                            "wall_s_median": median(times.clone()), "wall_s_min": times.iter().cloned().fold(f64::INFINITY, f64::min),
                            "err_mixed": err, "mescd": -err.log10(), "success": true,
                            "nfev": s.n_evals, "njev": s.n_jacobians, "nlu": s.n_factorizations,
                            "n_steps": s.n_accepted, "n_rejected": s.n_rejected,
                        })
                    }
                    Err(e) => serde_json::json!({
                        "peer": "cnflow", "problem": p.name, "method": method, "rtol": rtol, "atol": atol,
                        "success": false, "message": e,
                    }),
                };
                println!("{line}");
            }
        }
    }
}
