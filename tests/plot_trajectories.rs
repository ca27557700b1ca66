//! The flow at several times: one panel per frame, sized by the panel grid.

mod plot_common;

use cnflow::plot::{flow_paths, trajectories, PlotError, TrajectoriesConfig};
use plot_common::{check_png, check_svg, cloud, scratch_dir, variance};

/// The cloud rotated by `angle` and shrunk by `scale` — a stand-in for a flow.
fn frames(n_frames: usize) -> (Vec<Vec<[f64; 2]>>, Vec<f64>) {
    let base = cloud(500);
    let times: Vec<f64> = (0..n_frames)
        .map(|k| 0.5 * k as f64 / (n_frames - 1).max(1) as f64)
        .collect();
    let frames = times
        .iter()
        .map(|&t| {
            let (s, c) = (3.0 * t).sin_cos();
            let scale = 1.0 - t;
            base.iter()
                .map(|&[x, y]| [scale * (c * x - s * y), scale * (s * x + c * y)])
                .collect()
        })
        .collect();
    (frames, times)
}

#[test]
fn one_panel_per_frame_in_rows_of_cols() {
    let dir = scratch_dir("traj_png");
    let (frames, times) = frames(6);
    let config = TrajectoriesConfig {
        cols: 3,
        title: "flow of 8gaussians".into(),
        ..TrajectoriesConfig::default()
    };
    let path = dir.join("traj.png");
    trajectories(&path, &frames, &times, &config).expect("draw");
    let p = config.panel_size;
    let img = check_png(&path, 3 * p, 2 * p + 40);
    // Every panel has points (colour variation) in its middle.
    for row in 0..2 {
        for col in 0..3 {
            let (x0, y0) = (col * p + 60, 40 + row * p + 50);
            assert!(
                variance(&img, (x0, x0 + p - 90), (y0, y0 + p - 90)) > 10.0,
                "panel ({row}, {col}) is blank"
            );
        }
    }
    let svg_path = dir.join("traj.svg");
    trajectories(&svg_path, &frames, &times, &config).expect("draw svg");
    check_svg(
        &svg_path,
        3 * p,
        2 * p + 40,
        &["t = 0", "t = 0.1", "t = 0.5", "flow of 8gaussians"],
    );
}

#[test]
fn default_layout_fits_frames_up_to_five_per_row() {
    let dir = scratch_dir("traj_default");
    let (frames, times) = frames(7);
    let config = TrajectoriesConfig {
        extent: Some((-4.0, 4.0)),
        max_points: 100,
        ..TrajectoriesConfig::default()
    };
    trajectories(dir.join("t.png"), &frames, &times, &config).expect("draw");
    let p = config.panel_size;
    check_png(&dir.join("t.png"), 5 * p, 2 * p);
}

#[test]
fn mismatched_times_and_bad_extension_are_errors_naming_the_file() {
    let dir = scratch_dir("traj_err");
    let (frames, times) = frames(3);
    let config = TrajectoriesConfig::default();
    let err = trajectories(dir.join("t.png"), &frames, &times[..2], &config).unwrap_err();
    assert!(
        matches!(err, PlotError::InvalidInput { .. }) && err.to_string().contains("t.png"),
        "{err}"
    );
    assert!(err.to_string().contains("3 frames but 2 times"), "{err}");
    let err = trajectories(dir.join("t.gif"), &frames, &times, &config).unwrap_err();
    assert!(
        matches!(err, PlotError::UnsupportedFormat { .. }) && err.to_string().contains("t.gif"),
        "{err}"
    );
    let missing = dir.join("nowhere").join("t.svg");
    let err = trajectories(&missing, &frames, &times, &config).unwrap_err();
    assert!(
        matches!(err, PlotError::Io { .. }) && err.to_string().contains("nowhere"),
        "{err}"
    );
}

#[test]
fn empty_inputs_draw_without_panicking() {
    let dir = scratch_dir("traj_empty");
    let config = TrajectoriesConfig::default();
    for ext in ["png", "svg"] {
        trajectories(dir.join(format!("none.{ext}")), &[], &[], &config).expect("no frames");
        let odd = vec![vec![], vec![[f64::NAN, 1.0], [0.0, f64::INFINITY]], vec![[1.0, 1.0]]];
        trajectories(dir.join(format!("odd.{ext}")), &odd, &[0.0, 0.1, 0.2], &config).expect("odd frames");
    }
    let p = config.panel_size;
    check_png(&dir.join("none.png"), p, p);
    check_png(&dir.join("odd.png"), 3 * p, p);
}

#[test]
fn flow_paths_draws_one_square_chart_with_marker_legend() {
    let dir = scratch_dir("paths");
    let (frames, times) = frames(8);
    let config = TrajectoriesConfig {
        n_paths: 60,
        title: "paths".into(),
        ..TrajectoriesConfig::default()
    };
    let side = 2 * config.panel_size;
    flow_paths(dir.join("p.png"), &frames, &times, &config).expect("png");
    let img = check_png(&dir.join("p.png"), side, side);
    assert!(
        variance(&img, (100, side - 40), (80, side - 60)) > 10.0,
        "paths chart is blank"
    );
    flow_paths(dir.join("p.svg"), &frames, &times, &config).expect("svg");
    check_svg(
        &dir.join("p.svg"),
        side,
        side,
        &["paths", "start, t = 0", "end, t = 0.5"],
    );
}

#[test]
fn flow_paths_handles_empty_ragged_and_bad_inputs() {
    let dir = scratch_dir("paths_edge");
    let config = TrajectoriesConfig::default();
    let ragged = vec![
        vec![[0.0, 0.0], [1.0, 1.0]],
        vec![[0.5, f64::NAN]],
        vec![],
        vec![[1.0, 0.0], [2.0, 2.0]],
    ];
    for ext in ["png", "svg"] {
        flow_paths(dir.join(format!("none.{ext}")), &[], &[], &config).expect("no frames");
        flow_paths(
            dir.join(format!("ragged.{ext}")),
            &ragged,
            &[0.0, 1.0, 2.0, 3.0],
            &config,
        )
        .expect("ragged");
    }
    let err = flow_paths(dir.join("p.png"), &ragged, &[0.0], &config).unwrap_err();
    assert!(
        matches!(err, PlotError::InvalidInput { .. }) && err.to_string().contains("p.png"),
        "{err}"
    );
    let err = flow_paths(dir.join("p.tiff"), &ragged, &[0.0, 1.0, 2.0, 3.0], &config).unwrap_err();
    assert!(
        matches!(err, PlotError::UnsupportedFormat { .. }) && err.to_string().contains("p.tiff"),
        "{err}"
    );
}

#[test]
fn extreme_values_draw_and_finish() {
    let dir = scratch_dir("traj_extreme");
    let frames = vec![vec![[1e308, -1e308], [0.0, 0.0]], vec![[0.0, 1.0], [1.0, 1e200]]];
    let fitted = TrajectoriesConfig::default();
    trajectories(dir.join("a.png"), &frames, &[0.0, 1.0], &fitted).expect("fitted extent");
    flow_paths(dir.join("b.png"), &frames, &[0.0, 1.0], &fitted).expect("fitted extent");
    let fixed = TrajectoriesConfig {
        extent: Some((-4.0, 4.0)),
        ..TrajectoriesConfig::default()
    };
    flow_paths(dir.join("c.png"), &frames, &[0.0, 1.0], &fixed).expect("points far outside");
    let infinite = TrajectoriesConfig {
        extent: Some((-1e308, 1e308)),
        ..TrajectoriesConfig::default()
    };
    let err = trajectories(dir.join("d.png"), &frames, &[0.0, 1.0], &infinite).unwrap_err();
    assert!(matches!(err, PlotError::InvalidInput { .. }), "{err}");
}
