//! Helpers shared by the plot tests: scratch folders and checks on the written files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A fresh, empty folder for one test under cargo's scratch directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("plot_{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// Decodes `path` as a PNG, checks its size, and returns its pixels.
pub fn check_png(path: &Path, width: u32, height: u32) -> image::RgbImage {
    let bytes = std::fs::read(path).expect("read png");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} lacks the PNG signature",
        path.display()
    );
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .expect("decode png")
        .to_rgb8();
    assert_eq!(img.dimensions(), (width, height), "{}", path.display());
    img
}

/// Reads `path` as SVG text, checks its header, size and that every string in `texts` occurs.
pub fn check_svg(path: &Path, width: u32, height: u32, texts: &[&str]) -> String {
    let svg = std::fs::read_to_string(path).expect("read svg");
    assert!(svg.contains("<svg"), "{} is not SVG", path.display());
    assert!(svg.contains(&format!("width=\"{width}\"")) && svg.contains(&format!("height=\"{height}\"")));
    let found = svg_texts(&svg);
    for t in texts {
        assert!(
            found.iter().any(|f| f == t),
            "{} lacks the text {t:?}; has {found:?}",
            path.display()
        );
    }
    svg
}

/// The trimmed contents of every `<text …>…</text>` element.
pub fn svg_texts(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find("<text") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let Some(close) = after.find("</text>") else { break };
        out.push(after[open_end + 1..close].trim().to_string());
        rest = &after[close..];
    }
    out
}

/// Variance of the grey level over the pixel rectangle `[x0, x1) × [y0, y1)`.
pub fn variance(img: &image::RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> f64 {
    let mut values = Vec::new();
    for y in y0..y1 {
        for x in x0..x1 {
            let p = img.get_pixel(x, y).0;
            values.push((p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0);
        }
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n
}

/// Mean grey level over a pixel rectangle.
pub fn brightness(img: &image::RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> f64 {
    let mut sum = 0.0;
    for y in y0..y1 {
        for x in x0..x1 {
            let p = img.get_pixel(x, y).0;
            sum += (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0;
        }
    }
    sum / ((x1 - x0) * (y1 - y0)) as f64
}

/// `n` points of a fixed, deterministic spiral-ish cloud (no RNG needed).
pub fn cloud(n: usize) -> Vec<[f64; 2]> {
    (0..n)
        .map(|i| {
            let t = i as f64 * 0.618_033_988_75;
            let r = 0.5 + 2.5 * ((i * 7919) % n.max(1)) as f64 / n.max(1) as f64;
            [
                r * (t * std::f64::consts::TAU).cos(),
                r * (t * std::f64::consts::TAU).sin(),
            ]
        })
        .collect()
}
