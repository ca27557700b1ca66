//! Streamed `cnflow density` and `cnflow sample`: the output equals the library's
//! whole-array results for every chunk size, format and thread count; the `.npy`
//! header round-trips; bad `.npy` files and failures mid-stream leave nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cnflow::cnf::{Block, Cnf, CnfError, Trace};
use cnflow::data::{read_npy, read_points, write_points, NpyChunks, NpyDtype, NpyHeader, NpyRowWriter, Standardizer};
use cnflow::model_file::{EvalSolver, ModelFile};
use cnflow::nn::{Mlp, MlpConfig};
use cnflow::ode::{Method, SolverConfig};
use ndarray::{Array2, Array3};
use ndarray_npy::WriteNpyExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const RTOL: f64 = 1e-6;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `cnflow` with `RAYON_NUM_THREADS = threads`.
fn cnflow(args: &[&str], threads: usize) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cnflow"))
        .args(args)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .expect("cnflow runs")
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {}\n{err}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small two-block model with random (non-trivial) weights and a standardiser, saved
/// as an f64 model file; and the model itself.
fn small_model(dir: &Path) -> (PathBuf, ModelFile, Cnf<f64, Mlp<f64>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let arch = MlpConfig::parse(2, "8-8", "concatsquash", "tanh").unwrap();
    let blocks = (0..2)
        .map(|_| Block {
            field: Mlp::<f64>::new(arch.clone(), &mut rng, false),
            t_end: 0.7,
            learn_t: false,
        })
        .collect();
    let standardizer = Standardizer {
        mean: ndarray::arr1(&[0.5, -1.0]),
        std: ndarray::arr1(&[2.0, 0.5]),
    };
    let model = Cnf::new(blocks).unwrap().with_standardizer(standardizer).unwrap();
    let solver = EvalSolver {
        method: Method::Dopri5,
        rtol: RTOL,
        atol: RTOL,
        implicit: None,
    };
    let file = ModelFile::new(&model, solver, serde_json::json!({}));
    let path = dir.join("model.json");
    file.save(&path).unwrap();
    (path, file, model)
}

fn points(n: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((n, 2), || {
        let v: f64 = StandardNormal.sample(&mut rng);
        2.0 * v
    })
}

/// log p(x) in the user's units from the library (the model's affine block takes the
/// points as they are): the whole array at once, or in parallel chunks (`Some(chunk)`).
fn library_log_p(
    file: &ModelFile,
    x: &Array2<f64>,
    solver: &SolverConfig,
    trace: Trace,
    chunk: Option<usize>,
) -> Vec<f64> {
    let u: Vec<f64> = x.iter().copied().collect();
    let model = file.to_model::<f64>(Path::new("m")).unwrap();
    let lp = match chunk {
        Some(c) => model.log_prob_par(&u, solver, trace, c, 0).unwrap(),
        None => model
            .log_prob(&u, solver, trace, &mut ChaCha8Rng::seed_from_u64(0))
            .unwrap(),
    };
    lp.log_p
}

/// The values of a density output (CSV with a `log_p` header, or n × 1 `.npy`).
fn read_log_p(path: &Path) -> Vec<f64> {
    if path.extension().is_some_and(|e| e == "npy") {
        return read_npy(path).unwrap().iter().copied().collect();
    }
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("log_p"));
    lines.map(|l| l.parse().unwrap()).collect()
}

/// Writes `x` as a little-endian C-order `.npy` of f4 or f8 with our own header.
fn write_npy_as(path: &Path, x: &Array2<f64>, dtype: NpyDtype) {
    let mut bytes = NpyHeader::rows(dtype, x.nrows(), x.ncols()).to_bytes();
    for &v in x.iter() {
        match dtype {
            NpyDtype::F4 => bytes.extend_from_slice(&(v as f32).to_le_bytes()),
            NpyDtype::F8 => bytes.extend_from_slice(&v.to_le_bytes()),
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn streamed_density_equals_the_whole_array_for_every_chunk_size_and_format() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, file, _) = small_model(tmp.path());
    let x = points(37, 1);
    let csv = tmp.path().join("x.csv");
    let npy = tmp.path().join("x.npy");
    write_points(&csv, x.view()).unwrap();
    write_points(&npy, x.view()).unwrap();
    // Fixed steps: every point's result is independent of its batch, so streamed chunks
    // must reproduce the whole array (up to the matrix products' summation order).
    let fixed = SolverConfig::fixed_steps(Method::Rk4, 6);
    let whole = library_log_p(&file, &x, &fixed, Trace::Exact, None);
    for chunk in [1, 4, 10, 37, 64] {
        for input in [&csv, &npy] {
            for out_name in ["lp.csv", "lp.npy"] {
                let out = tmp.path().join(out_name);
                let c = chunk.to_string();
                ok(&cnflow(
                    &[
                        "density",
                        "--model",
                        p(&model),
                        "--input",
                        p(input),
                        "--output",
                        p(&out),
                        "--solver",
                        "rk4",
                        "--steps",
                        "6",
                        "--chunk",
                        &c,
                    ],
                    2,
                ));
                let got = read_log_p(&out);
                assert_eq!(got.len(), whole.len(), "chunk {chunk}, {input:?} → {out_name}");
                for (i, (a, b)) in got.iter().zip(&whole).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-12,
                        "chunk {chunk}, {input:?} → {out_name}, point {i}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn adaptive_streamed_density_is_log_prob_par_exactly_whatever_the_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, file, _) = small_model(tmp.path());
    let x = points(45, 2);
    let npy4 = tmp.path().join("x4.npy");
    write_npy_as(&npy4, &x, NpyDtype::F4);
    let x4 = read_npy(&npy4).unwrap(); // the points as the f4 file holds them
    let csv = tmp.path().join("x4.csv");
    write_points(&csv, x4.view()).unwrap();
    let solver = SolverConfig::adaptive(Method::Dopri5, RTOL, RTOL);
    let whole = library_log_p(&file, &x4, &solver, Trace::Exact, None);
    for (trace, flag) in [(Trace::Exact, "exact"), (Trace::Rademacher(1), "hutchinson")] {
        for chunk in [7, 15, 45] {
            let expected = library_log_p(&file, &x4, &solver, trace, Some(chunk));
            for threads in [1, 2] {
                for input in [&npy4, &csv] {
                    let out = tmp.path().join("lp.csv");
                    let c = chunk.to_string();
                    ok(&cnflow(
                        &[
                            "density",
                            "--model",
                            p(&model),
                            "--input",
                            p(input),
                            "--output",
                            p(&out),
                            "--chunk",
                            &c,
                            "--trace",
                            flag,
                        ],
                        threads,
                    ));
                    assert_eq!(read_log_p(&out), expected, "{flag}, chunk {chunk}, {threads} threads");
                }
            }
            if trace == Trace::Exact {
                // Chunking changes the adaptive steps, not the answer beyond the tolerance.
                for (a, b) in expected.iter().zip(&whole) {
                    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn precision_defaults_to_the_models_and_f32_matches_the_f32_library() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, file, _) = small_model(tmp.path());
    let x = points(20, 3);
    let csv = tmp.path().join("x.csv");
    write_points(&csv, x.view()).unwrap();
    let out = tmp.path().join("lp.csv");
    let solver = SolverConfig::adaptive(Method::Dopri5, 1e-5, 1e-5);
    // The f64 points reach the f32 flow through its affine block.
    let x_flat: Vec<f64> = x.iter().copied().collect();
    let m32 = file.to_model::<f32>(Path::new("m")).unwrap();
    let lp = m32.log_prob_par(&x_flat, &solver, Trace::Exact, 8, 0).unwrap();
    let expected: Vec<f64> = lp.log_p.iter().map(|&v| f64::from(v)).collect();
    let args = |precision: Option<&'static str>| {
        let mut a = vec![
            "density",
            "--model",
            p(&model),
            "--input",
            p(&csv),
            "--output",
            p(&out),
            "--chunk",
            "8",
            "--rtol",
            "1e-5",
            "--atol",
            "1e-5",
        ];
        if let Some(prec) = precision {
            a.extend(["--precision", prec]);
        }
        a
    };
    ok(&cnflow(&args(Some("f32")), 2));
    let f32_values = read_log_p(&out);
    assert_eq!(f32_values, expected);
    ok(&cnflow(&args(None), 2)); // the model file says f64
    let f64_values = read_log_p(&out);
    assert_ne!(f32_values, f64_values);
    for (a, b) in f32_values.iter().zip(&f64_values) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

#[test]
fn streamed_samples_equal_sample_par_for_every_chunk_size_and_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, cnf) = small_model(tmp.path());
    let n = 30;
    let solver = SolverConfig::adaptive(Method::Dopri5, RTOL, RTOL);
    for chunk in [1, 7, 10, 30, 64] {
        let (x, _) = cnf.sample_par(n, &solver, chunk, 11).unwrap();
        let expected = Array2::from_shape_vec((n, 2), x).unwrap();
        for threads in [1, 2] {
            for name in ["s.csv", "s.npy"] {
                let out = tmp.path().join(name);
                let c = chunk.to_string();
                ok(&cnflow(
                    &[
                        "sample",
                        "--model",
                        p(&model),
                        "-n",
                        "30",
                        "--seed",
                        "11",
                        "--chunk",
                        &c,
                        "--output",
                        p(&out),
                    ],
                    threads,
                ));
                assert_eq!(
                    read_points(&out, Some(2)).unwrap(),
                    expected,
                    "chunk {chunk}, {threads} threads, {name}"
                );
            }
        }
    }
}

#[test]
fn log_prob_stream_runs_inside_a_one_thread_pool_and_stops_at_the_first_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, cnf) = small_model(tmp.path());
    let x: Vec<f64> = points(40, 4).iter().copied().collect();
    let solver = SolverConfig::adaptive(Method::Dopri5, 1e-5, 1e-5);
    let expected = cnf.log_prob_par(&x, &solver, Trace::Exact, 6, 0).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let chunks = || x.chunks(2 * 6).map(|c| Ok::<_, CnfError>(c.to_vec()));
    let mut got = Vec::new();
    // A caller on the pool's only thread must not wait for itself.
    pool.install(|| {
        cnf.log_prob_stream(
            x.chunks(2 * 6).map(|c| Ok(c.to_vec())),
            &solver,
            Trace::Exact,
            0,
            3,
            |lp| {
                got.extend(lp.log_p);
                Ok::<(), CnfError>(())
            },
        )
    })
    .unwrap();
    assert_eq!(got, expected.log_p);
    let mut n_calls = 0;
    let result = cnf.log_prob_stream(chunks(), &solver, Trace::Exact, 0, 2, |_| {
        n_calls += 1;
        if n_calls == 2 {
            Err(CnfError::EmptyBatch)
        } else {
            Ok(())
        }
    });
    assert!(result.is_err());
    assert_eq!(n_calls, 2, "no chunk is handed on after an error");
}

#[test]
fn npy_header_round_trips_for_f4_and_f8_and_agrees_with_ndarray_npy() {
    for dtype in [NpyDtype::F4, NpyDtype::F8] {
        for shape in [vec![5, 3], vec![7], vec![123_456_789, 2]] {
            for (little_endian, fortran_order) in [(true, false), (false, true)] {
                let h = NpyHeader {
                    dtype,
                    little_endian,
                    fortran_order,
                    shape: shape.clone(),
                };
                let bytes = h.to_bytes();
                assert_eq!(bytes.len() % 64, 0, "{h:?}");
                let (back, data_start) = NpyHeader::read(&mut &bytes[..], "h.npy").unwrap();
                assert_eq!(back, h);
                assert_eq!(data_start, bytes.len() as u64);
            }
        }
    }
    // Files from ndarray-npy read back through our header and blocks, f4 and f8, C and
    // Fortran order; and our f4 file reads back through ndarray-npy.
    let tmp = tempfile::tempdir().unwrap();
    let x = points(11, 5);
    let path = tmp.path().join("a.npy");
    let x32 = x.mapv(|v| v as f32);
    type Writer<'a> = Box<dyn Fn(&mut std::fs::File) + 'a>;
    let cases: [(&str, Writer); 3] = [
        ("f8", Box::new(|f| x.write_npy(f).unwrap())),
        ("f4", Box::new(|f| x32.write_npy(f).unwrap())),
        (
            "f8 Fortran",
            Box::new(|f| x.t().as_standard_layout().t().write_npy(f).unwrap()),
        ),
    ];
    for (name, write) in cases {
        write(&mut std::fs::File::create(&path).unwrap());
        let whole = read_npy(&path).unwrap();
        let header = NpyChunks::open(&path, 1).unwrap().header().clone();
        assert_eq!(header.fortran_order, name.contains("Fortran"), "{name}");
        assert_eq!(header.dtype == NpyDtype::F4, name == "f4", "{name}");
        for chunk in [1, 4, 11, 20] {
            let blocks: Vec<Array2<f64>> = NpyChunks::open(&path, chunk).unwrap().map(|b| b.unwrap()).collect();
            let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
            assert_eq!(
                ndarray::concatenate(ndarray::Axis(0), &views).unwrap(),
                whole,
                "{name}, chunk {chunk}"
            );
        }
    }
    write_npy_as(&path, &x, NpyDtype::F4);
    assert_eq!(read_npy(&path).unwrap(), x.mapv(|v| f64::from(v as f32)));
}

#[test]
fn npy_row_writer_fixes_the_row_count_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rows.npy");
    let x = points(1234, 6);
    let flat: Vec<f64> = x.iter().copied().collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut w = NpyRowWriter::new(&mut f, 2, "rows.npy").unwrap();
    for block in flat.chunks(2 * 100) {
        w.write_rows(block).unwrap();
    }
    assert_eq!(w.finish().unwrap(), 1234);
    drop(f);
    assert_eq!(read_npy(&path).unwrap(), x);
}

#[test]
fn bad_npy_files_are_refused_naming_the_file_and_leave_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, _) = small_model(tmp.path());
    let good = tmp.path().join("good.npy");
    write_points(&good, points(10, 7).view()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let write_with = |name: &str, write: &dyn Fn(&mut std::fs::File)| {
        let path = tmp.path().join(name);
        write(&mut std::fs::File::create(&path).unwrap());
        path
    };
    let cases: Vec<(PathBuf, &[&str])> = vec![
        (
            write_with("ints.npy", &|f| Array2::<i64>::zeros((4, 2)).write_npy(f).unwrap()),
            &["ints.npy", "dtype `<i8`", "float64"],
        ),
        (
            write_with("cube.npy", &|f| Array3::<f64>::zeros((2, 2, 2)).write_npy(f).unwrap()),
            &["cube.npy", "3 dimensions", "2-D"],
        ),
        (
            write_with("cut.npy", &|f| {
                use std::io::Write;
                f.write_all(&bytes[..bytes.len() - 12]).unwrap()
            }),
            &["cut.npy", "truncated"],
        ),
        (
            write_with("text.npy", &|f| {
                use std::io::Write;
                f.write_all(b"1,2\n3,4\n").unwrap()
            }),
            &["text.npy", "not a .npy file"],
        ),
    ];
    for (input, needles) in cases {
        let out = tmp.path().join("lp.csv");
        let o = cnflow(
            &[
                "density",
                "--model",
                p(&model),
                "--input",
                p(&input),
                "--output",
                p(&out),
            ],
            2,
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{input:?} accepted");
        for n in needles {
            assert!(err.contains(n), "{input:?}: stderr lacks {n:?}:\n{err}");
        }
        assert!(!out.exists(), "{input:?}: output left behind");
    }
}

#[test]
fn a_failure_mid_stream_leaves_neither_output_nor_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, _) = small_model(tmp.path());
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(&if i == 49 {
            "0.5,oops\n".to_string()
        } else {
            format!("{},{}\n", i % 7, i % 5)
        });
    }
    let input = tmp.path().join("late.csv");
    std::fs::write(&input, text).unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    for name in ["lp.csv", "lp.npy"] {
        let out = out_dir.join(name);
        let o = cnflow(
            &[
                "density",
                "--model",
                p(&model),
                "--input",
                p(&input),
                "--output",
                p(&out),
                "--chunk",
                "10",
            ],
            2,
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains("late.csv:50:2") && err.contains("oops"), "{err}");
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "{name}: files left");
    }
}
