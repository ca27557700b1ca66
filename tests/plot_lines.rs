//! Training curves and multi-line plots: sizes, legends and labels as text, log axes,
//! gaps, and errors that name the file.

mod plot_common;

use cnflow::plot::{curves, metrics, MetricsConfig, PlotError, Subplot};
use plot_common::{check_png, check_svg, scratch_dir, svg_texts, variance};

fn loss_curve(n: usize) -> Vec<(f64, f64)> {
    (0..n)
        .map(|i| {
            (
                i as f64,
                3.0 + 2.0 * (-(i as f64) / 200.0).exp() + 0.05 * ((i * 37) % 11) as f64,
            )
        })
        .collect()
}

#[test]
fn metrics_draws_one_subplot_per_series() {
    let dir = scratch_dir("metrics");
    let loss = loss_curve(1000);
    let nll: Vec<(f64, f64)> = (0..=10)
        .map(|k| (100.0 * k as f64, 2.9 + 1.5 / (1.0 + k as f64)))
        .collect();
    let kl: Vec<(f64, f64)> = nll.iter().map(|&(x, y)| (x, y - 2.832)).collect();
    let subplots = [
        Subplot::single("training loss", "iteration", "NLL (nats)", &loss),
        Subplot::single("test NLL", "iteration", "NLL (nats)", &nll),
        Subplot::single("KL gap", "iteration", "nats", &kl).log_y(),
        Subplot {
            title: "against wall time",
            x_label: "wall time (s)",
            y_label: "nats",
            lines: vec![("test NLL", &nll), ("KL gap", &kl)],
            log_y: false,
        },
    ];
    let config = MetricsConfig {
        cols: 2,
        title: "run 8gaussians".into(),
        ..MetricsConfig::default()
    };
    let (w, h) = config.subplot_size;
    metrics(dir.join("m.png"), &subplots, &config).expect("png");
    let img = check_png(&dir.join("m.png"), 2 * w, 2 * h + 40);
    for (col, row) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let (x0, y0) = (col * w + 80, 40 + row * h + 40);
        assert!(
            variance(&img, (x0, x0 + w - 120), (y0, y0 + h - 100)) > 5.0,
            "subplot ({row}, {col}) is blank"
        );
    }
    metrics(dir.join("m.svg"), &subplots, &config).expect("svg");
    let texts = [
        "training loss",
        "test NLL",
        "KL gap",
        "iteration",
        "wall time (s)",
        "run 8gaussians",
    ];
    let svg = check_svg(&dir.join("m.svg"), 2 * w, 2 * h + 40, &texts);
    // Legend entries appear for the two-line subplot only: "test NLL" as a title and a legend label.
    assert_eq!(svg_texts(&svg).iter().filter(|t| *t == "test NLL").count(), 2);
}

#[test]
fn curves_draws_a_legend_and_log_axis() {
    let dir = scratch_dir("curves");
    let series = vec![
        (
            "dopri5",
            (1..50).map(|i| (i as f64 * 2.0, 1.0 / i as f64)).collect::<Vec<_>>(),
        ),
        (
            "rk4, h = 0.05",
            (1..50).map(|i| (i as f64 * 1.5, 2.0 / i as f64)).collect(),
        ),
        (
            "with gaps",
            vec![(1.0, 0.5), (2.0, f64::NAN), (3.0, 0.2), (4.0, -1.0), (5.0, 0.1)],
        ),
    ];
    for ext in ["png", "svg"] {
        curves(
            dir.join(format!("c.{ext}")),
            "KL gap against wall time",
            "wall time (s)",
            "KL gap (nats)",
            &series,
            true,
        )
        .expect("draw");
    }
    let img = check_png(&dir.join("c.png"), 1000, 640);
    assert!(variance(&img, (150, 950), (80, 560)) > 5.0);
    let texts = [
        "KL gap against wall time",
        "wall time (s)",
        "KL gap (nats)",
        "dopri5",
        "rk4, h = 0.05",
    ];
    check_svg(&dir.join("c.svg"), 1000, 640, &texts);
}

#[test]
fn errors_name_the_file() {
    let dir = scratch_dir("lines_err");
    let series = vec![("a", vec![(0.0, 1.0), (1.0, 2.0)])];
    let err = curves(dir.join("c.pdf"), "t", "x", "y", &series, false).unwrap_err();
    assert!(
        matches!(err, PlotError::UnsupportedFormat { .. }) && err.to_string().contains("c.pdf"),
        "{err}"
    );
    let missing = dir.join("absent").join("c.png");
    let err = curves(&missing, "t", "x", "y", &series, false).unwrap_err();
    assert!(
        matches!(err, PlotError::Io { .. }) && err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    let tiny = MetricsConfig {
        subplot_size: (10, 10),
        ..MetricsConfig::default()
    };
    let err = metrics(dir.join("m.png"), &[], &tiny).unwrap_err();
    assert!(
        matches!(err, PlotError::InvalidInput { .. }) && err.to_string().contains("m.png"),
        "{err}"
    );
}

#[test]
fn empty_inputs_draw_without_panicking() {
    let dir = scratch_dir("lines_empty");
    let nothing: Vec<(f64, f64)> = Vec::new();
    let negative = vec![(0.0, -1.0), (1.0, 0.0)];
    let constant = vec![(5.0, 2.0), (5.0, 2.0)];
    for ext in ["png", "svg"] {
        curves(dir.join(format!("c0.{ext}")), "", "", "", &[], false).expect("no series");
        curves(
            dir.join(format!("c1.{ext}")),
            "t",
            "x",
            "y",
            &[("neg", negative.clone())],
            true,
        )
        .expect("log of <= 0");
        curves(
            dir.join(format!("c2.{ext}")),
            "t",
            "x",
            "y",
            &[("flat", constant.clone())],
            false,
        )
        .expect("one point");
        metrics(dir.join(format!("m0.{ext}")), &[], &MetricsConfig::default()).expect("no subplots");
        let subs = [
            Subplot::single("empty", "x", "y", &nothing),
            Subplot::single("neg", "x", "y", &negative).log_y(),
        ];
        metrics(dir.join(format!("m1.{ext}")), &subs, &MetricsConfig::default()).expect("empty subplots");
    }
    let (w, h) = MetricsConfig::default().subplot_size;
    check_png(&dir.join("m0.png"), w, h);
    check_png(&dir.join("m1.png"), 2 * w, h);
    let notes = svg_texts(&std::fs::read_to_string(dir.join("m1.svg")).expect("read svg"));
    assert!(notes.iter().any(|t| t == "no data") && notes.iter().any(|t| t == "no positive values for a log axis"));
}

#[test]
fn extreme_values_draw_and_finish() {
    // Ranges near the ends of f64 once sent plotters' axes into endless loops.
    let dir = scratch_dir("lines_extreme");
    let linear = vec![("a", vec![(0.0, 1e308), (1.0, -1e308), (1e-300, 5.0)])];
    curves(dir.join("lin.png"), "t", "x", "y", &linear, false).expect("huge linear range");
    for (k, pts) in [
        vec![(0.0, 1e-320), (1.0, 1e308)],
        vec![(0.0, 1e-290), (1.0, 1e290)],
        vec![(0.0, 1e-320), (1.0, 1.0)],
    ]
    .into_iter()
    .enumerate()
    {
        curves(dir.join(format!("log{k}.png")), "t", "x", "y", &[("a", pts)], true).expect("huge log range");
    }
    let flat = vec![("a", vec![(1.0, 1.0), (1.0 + 1e-15, 1.0 + 1e-15)])];
    curves(dir.join("flat.png"), "t", "x", "y", &flat, false).expect("nearly one point");
}
