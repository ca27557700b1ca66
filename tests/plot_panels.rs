//! The data / density / samples panels: files decode at the requested size, the density
//! panel shows the density where it is, titles are real text, and bad inputs are errors
//! that name the file.

mod plot_common;

use cnflow::plot::{panels, DensityGrid, PanelsConfig, PlotError, PointStyle};
use plot_common::{brightness, check_png, check_svg, cloud, scratch_dir, variance};

/// log N(x; c, s² I) on the grid's points.
fn gaussian_grid(c: [f64; 2], s: f64) -> DensityGrid {
    let mut grid = DensityGrid::square(-4.0, 4.0, 80);
    grid.log_p = grid
        .points()
        .iter()
        .map(|[x, y]| {
            let r2 = ((x - c[0]).powi(2) + (y - c[1]).powi(2)) / (s * s);
            -0.5 * r2 - (2.0 * std::f64::consts::PI * s * s).ln()
        })
        .collect();
    grid
}

#[test]
fn grid_points_are_cell_centres_y_outer_and_mass_integrates_to_one() {
    let grid = DensityGrid::new(0.0, 2.0, -1.0, 1.0, 2, 4);
    let pts = grid.points();
    assert_eq!(pts.len(), 8);
    assert_eq!(pts[0], [0.5, -0.75]);
    assert_eq!(pts[1], [1.5, -0.75]);
    assert_eq!(pts[2], [0.5, -0.25]);
    assert_eq!(pts[7], [1.5, 0.75]);
    let mass = gaussian_grid([0.0, 0.0], 1.0).total_mass();
    assert!(
        (mass - 1.0).abs() < 2e-3,
        "midpoint mass of N(0, I) on [-4, 4]² = {mass}"
    );
}

#[test]
fn panels_png_has_requested_size_and_density_where_the_mass_is() {
    let dir = scratch_dir("panels_png");
    let path = dir.join("panels.png");
    let config = PanelsConfig::default();
    let data = cloud(2000);
    // Drawing twice replaces the picture and leaves no temporary file behind.
    panels(&path, &[], &gaussian_grid([0.0, 0.0], 1.0), &[], &config).expect("first draw");
    panels(&path, &data, &gaussian_grid([2.0, 2.0], 0.5), &data, &config).expect("draw");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("panels.png")]);
    let (w, h) = config.size;
    let img = check_png(&path, w, h);
    // Middle panel: x in the middle third; its plot square lies well inside these bounds.
    let (mx0, mx1) = (w / 3 + 60, 2 * w / 3 - 10);
    let (my0, my1) = (70, h - 60);
    assert!(variance(&img, (mx0, mx1), (my0, my1)) > 10.0, "density panel is blank");
    let (cx, cy) = ((mx0 + mx1) / 2, (my0 + my1) / 2);
    let upper_right = brightness(&img, (cx, mx1), (my0, cy));
    let lower_left = brightness(&img, (mx0, cx), (cy, my1));
    assert!(
        upper_right > lower_left + 10.0,
        "mass at (2, 2) should light the upper right: {upper_right} vs {lower_left}"
    );
    // The panel titles are drawn with the embedded font: dark glyph pixels on white.
    assert!(
        variance(&img, (w / 6 - 60, w / 6 + 60), (0, 34)) > 10.0,
        "no title text over the data panel"
    );
    // The data panel is not blank either.
    assert!(
        variance(&img, (70, w / 3 - 10), (my0, my1)) > 10.0,
        "data panel is blank"
    );
}

#[test]
fn panels_svg_carries_the_titles_as_text() {
    let dir = scratch_dir("panels_svg");
    let path = dir.join("panels.svg");
    let config = PanelsConfig {
        title: "8gaussians, iteration 100".into(),
        style: PointStyle::Scatter { radius: 2 },
        ..PanelsConfig::default()
    };
    let data = cloud(300);
    panels(&path, &data, &gaussian_grid([0.0, 0.0], 1.0), &data, &config).expect("draw");
    let (w, h) = config.size;
    check_svg(
        &path,
        w,
        h,
        &["data", "model density", "model samples", "8gaussians, iteration 100"],
    );
}

#[test]
fn unsupported_extension_is_an_error_naming_the_file() {
    let dir = scratch_dir("panels_ext");
    let path = dir.join("panels.jpg");
    let err = panels(
        &path,
        &[],
        &gaussian_grid([0.0, 0.0], 1.0),
        &[],
        &PanelsConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, PlotError::UnsupportedFormat { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("panels.jpg") && msg.contains(".png") && msg.contains(".svg"),
        "{msg}"
    );
    assert!(!path.exists());
    let no_ext = dir.join("panels");
    assert!(matches!(
        panels(
            &no_ext,
            &[],
            &gaussian_grid([0.0, 0.0], 1.0),
            &[],
            &PanelsConfig::default()
        ),
        Err(PlotError::UnsupportedFormat { .. })
    ));
}

#[test]
fn missing_folder_is_an_io_error_naming_the_file() {
    let dir = scratch_dir("panels_missing");
    for name in ["panels.png", "panels.svg"] {
        let path = dir.join("no_such_folder").join(name);
        let err = panels(
            &path,
            &[],
            &gaussian_grid([0.0, 0.0], 1.0),
            &[],
            &PanelsConfig::default(),
        )
        .unwrap_err();
        assert!(matches!(err, PlotError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }
}

#[test]
fn grid_with_wrong_number_of_values_is_rejected() {
    let dir = scratch_dir("panels_shape");
    let mut grid = gaussian_grid([0.0, 0.0], 1.0);
    grid.log_p.pop();
    let path = dir.join("p.png");
    let err = panels(&path, &[], &grid, &[], &PanelsConfig::default()).unwrap_err();
    assert!(matches!(err, PlotError::InvalidInput { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("p.png") && msg.contains("80 × 80") && msg.contains("6399"),
        "{msg}"
    );
    let bad_extent = PanelsConfig {
        extent: (1.0, -1.0),
        ..PanelsConfig::default()
    };
    let err = panels(&path, &[], &gaussian_grid([0.0, 0.0], 1.0), &[], &bad_extent).unwrap_err();
    assert!(matches!(err, PlotError::InvalidInput { .. }), "{err:?}");
}

#[test]
fn empty_and_degenerate_inputs_draw_without_panicking() {
    let dir = scratch_dir("panels_empty");
    let empty_grid = DensityGrid::square(-4.0, 4.0, 0);
    let mut zero_grid = DensityGrid::square(-4.0, 4.0, 3);
    zero_grid.log_p = vec![
        f64::NEG_INFINITY,
        f64::NAN,
        f64::NEG_INFINITY,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ];
    zero_grid.log_p[3..].fill(f64::NEG_INFINITY);
    let far = vec![[100.0, 100.0], [f64::NAN, 0.0]];
    for (k, style) in [PointStyle::Histogram { bins: 50 }, PointStyle::Scatter { radius: 1 }]
        .into_iter()
        .enumerate()
    {
        let config = PanelsConfig {
            style,
            ..PanelsConfig::default()
        };
        for ext in ["png", "svg"] {
            panels(dir.join(format!("a{k}.{ext}")), &[], &empty_grid, &[], &config).expect("empty");
            panels(dir.join(format!("b{k}.{ext}")), &far, &zero_grid, &far, &config).expect("degenerate");
        }
    }
    let img = check_png(&dir.join("a0.png"), 1500, 560);
    assert!(variance(&img, (0, 1500), (0, 560)) > 0.0);
}
