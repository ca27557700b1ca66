//! `cnflow solve` as a user runs it: the solution as CSV or JSON, the statistics on
//! stderr, and one-line errors for bad input.

mod cli_common;

use cli_common::{cnflow, fails, ok, text};

const ROBER: &str = "dy1 = -0.04*y1 + 1e4*y2*y3; dy2 = 0.04*y1 - 1e4*y2*y3 - 3e7*y2^2; dy3 = 3e7*y2^2";

#[test]
fn robertson_to_1e11_matches_the_test_set_reference_with_every_stiff_method() {
    // Test Set for IVP Solvers (Mazzia, Magherini et al., Bari), ROBER at t = 1e11.
    let reference = [0.2083340149701255e-07, 0.8333360770334713e-13, 0.999_999_979_166_505];
    for solver in ["bdf", "rodas4", "radau5"] {
        let out = cnflow(&[
            "solve",
            "--equations",
            ROBER,
            "--y0",
            "1,0,0",
            "--t",
            "0:1e11",
            "--save",
            "0,1,1e11",
            "--solver",
            solver,
            "--rtol",
            "1e-8",
            "--atol",
            "1e-20",
        ]);
        let csv = ok(&out);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "t,y1,y2,y3", "{solver}");
        assert_eq!(lines.len(), 4, "{solver}: {csv}");
        let last: Vec<f64> = lines[3].split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(last[0], 1e11);
        for k in 0..3 {
            let rel = (last[k + 1] - reference[k]).abs() / reference[k];
            assert!(rel < 1e-5, "{solver}: y{} = {} vs {}", k + 1, last[k + 1], reference[k]);
        }
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("Jacobians") && stderr.contains("factorisations") && stderr.contains(solver),
            "{stderr}"
        );
    }
}

#[test]
fn json_output_has_the_solution_statistics_and_time() {
    let out = cnflow(&[
        "solve",
        "--equations",
        "dx = -k*x",
        "--params",
        "k=2",
        "--y0",
        "1",
        "--t",
        "0:1",
        "--save",
        "0:0.25:1",
        "--json",
        "--rtol",
        "1e-10",
        "--atol",
        "1e-12",
    ]);
    let v: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(v["method"], "radau5", "rtol 1e-10 picks radau5");
    assert_eq!(v["states"][0], "x");
    let t = v["t"].as_array().unwrap();
    assert_eq!(t.len(), 5);
    for (ti, yi) in t.iter().zip(v["y"].as_array().unwrap()) {
        let (ti, yi) = (ti.as_f64().unwrap(), yi[0].as_f64().unwrap());
        assert!((yi - (-2.0 * ti).exp()).abs() < 1e-8, "x({ti}) = {yi}");
    }
    assert!(v["seconds"].as_f64().unwrap() > 0.0);
    assert!(v["stats"]["n_jacobians"].as_u64().unwrap() >= 1);
}

#[test]
fn backward_euler_needs_steps_and_converges_at_first_order() {
    fails(
        &cnflow(&[
            "solve",
            "--equations",
            "dx = -x",
            "--y0",
            "1",
            "--t",
            "0:1",
            "--solver",
            "backward-euler",
        ]),
        &["--steps"],
    );
    let end = |steps: &str| -> f64 {
        let out = cnflow(&[
            "solve",
            "--equations",
            "dx = -x",
            "--y0",
            "1",
            "--t",
            "0:1",
            "--solver",
            "backward-euler",
            "--steps",
            steps,
        ]);
        ok(&out)
            .lines()
            .last()
            .unwrap()
            .split(',')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let (e1, e2) = ((end("50") - (-1f64).exp()).abs(), (end("100") - (-1f64).exp()).abs());
    assert!((e1 / e2 - 2.0).abs() < 0.1, "errors {e1} and {e2}");
}

#[test]
fn bad_input_gives_one_line_errors_naming_the_problem() {
    fails(
        &cnflow(&["solve", "--equations", "dy1 = -y1 + q", "--y0", "1", "--t", "0:1"]),
        &["unknown symbol 'q'"],
    );
    fails(
        &cnflow(&["solve", "--equations", "dy1 = -y1 +", "--y0", "1", "--t", "0:1"]),
        &["cannot parse"],
    );
    fails(
        &cnflow(&["solve", "--equations", "y1 + 2", "--y0", "1", "--t", "0:1"]),
        &["dNAME = expression"],
    );
    fails(
        &cnflow(&["solve", "--equations", ROBER, "--y0", "1,0", "--t", "0:1"]),
        &["--y0 has 2 values", "3 equations"],
    );
    fails(
        &cnflow(&["solve", "--equations", "dx = -x", "--y0", "1", "--t", "0"]),
        &["T0:T1"],
    );
    fails(
        &cnflow(&[
            "solve",
            "--equations",
            "dx = -x",
            "--y0",
            "1",
            "--t",
            "0:1",
            "--save",
            "2",
        ]),
        &["outside the span"],
    );
    // An explicit method on a stiff problem runs out of steps and says what to try.
    fails(
        &cnflow(&[
            "solve",
            "--equations",
            "dx = y; dy = 1000*(1-x^2)*y - x",
            "--y0",
            "2,0",
            "--t",
            "0:3000",
            "--solver",
            "dopri5",
            "--max-steps",
            "2000",
        ]),
        &["max_steps", "--solver bdf"],
    );
    // Blow-up: y' = y^2 from 1 has its pole at t = 1.
    fails(
        &cnflow(&["solve", "--equations", "dy = y^2", "--y0", "1", "--t", "0:2"]),
        &["rodas4 failed", "blow-up", "t = 1.0000"],
    );
}

#[test]
fn auto_reports_where_it_switched() {
    let out = cnflow(&[
        "solve",
        "--equations",
        "dx = y; dy = 1000*(1-x^2)*y - x",
        "--y0",
        "2,0",
        "--t",
        "0:3000",
        "--solver",
        "auto",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    let ts = v["switched_at"].as_f64().expect("a switch");
    assert!(ts > 0.0 && ts < 1.0, "{ts}");
    assert!(
        text(&out.stderr).contains("switched from dopri5 to rodas4"),
        "{}",
        text(&out.stderr)
    );
    let out = cnflow(&[
        "solve",
        "--equations",
        "dx = y; dy = -x",
        "--y0",
        "1,0",
        "--t",
        "0:10",
        "--solver",
        "auto",
    ]);
    ok(&out);
    assert!(
        text(&out.stderr).contains("no stiffness detected"),
        "{}",
        text(&out.stderr)
    );
}

/// `--split`: x' = −y by one method and y' = x by another, split; the exact solution is
/// (cos t, sin t). Strang's error falls 4× per halving of the step (order 2), Lie's 2×
/// (order 1); the split part may name a state --equations does not; bad input is named.
#[test]
fn split_solves_converge_at_the_splittings_order() {
    let error = |splitting: &str, steps: usize| -> f64 {
        let out = ok(&cnflow(&[
            "solve",
            "--equations",
            "dx = -y",
            "--split",
            "dy = x",
            "--y0",
            "1,0",
            "--t",
            "0:3",
            "--steps",
            &steps.to_string(),
            "--splitting",
            splitting,
            "--solver",
            "kvaerno5",
            "--split-solver",
            "dopri5",
            "--rtol",
            "1e-11",
            "--atol",
            "1e-13",
        ]));
        let last: Vec<f64> = out
            .lines()
            .last()
            .unwrap()
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        (last[1] - 3f64.cos()).abs() + (last[2] - 3f64.sin()).abs()
    };
    for (splitting, order) in [("strang", 2.0), ("lie", 1.0)] {
        let (e1, e2) = (error(splitting, 40), error(splitting, 80));
        let rate = (e1 / e2).log2();
        assert!(
            (rate - order).abs() < 0.2,
            "{splitting}: errors {e1:e}, {e2:e}, rate {rate}"
        );
    }
    fails(
        &cnflow(&[
            "solve",
            "--equations",
            "dx = -y",
            "--split",
            "dy = x",
            "--y0",
            "1,0",
            "--t",
            "0:3",
        ]),
        &["--split", "--steps"],
    );
    fails(
        &cnflow(&[
            "solve",
            "--equations",
            "dx = -y",
            "--split",
            "dy = x*q",
            "--y0",
            "1,0",
            "--t",
            "0:3",
            "--steps",
            "5",
        ]),
        &["--split", "q"],
    );
}
