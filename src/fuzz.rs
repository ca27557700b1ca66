//! Mutation fuzzing of every loader on the stable toolchain: valid files (CSV points,
//! `.npy` headers and data, model files, checkpoints) are mutated — bit flips, byte
//! changes, truncation, insertion, splicing of two valid files, runs of digits that
//! make huge numbers — and each loader must return `Ok` or its typed error: no panic,
//! no hang, memory bounded by the input's size.
//!
//! `cargo run --release --example fuzz -- N` runs N cases per loader; the test suite
//! runs a few thousand.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::{read_npy_bytes, NpyHeader};
use crate::model_file::{Checkpoint, ModelFile};

/// A loader under test: its name, its valid seed inputs, and a function that loads a
/// candidate and names the outcome (`"ok"` or the error's kind).
pub struct Target {
    /// The loader's name.
    pub name: &'static str,
    /// Valid inputs the mutations start from.
    pub seeds: Vec<Vec<u8>>,
    /// Loads bytes; returns the outcome's kind.
    pub load: fn(&[u8]) -> String,
}

/// What a run of one target found.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Cases run.
    pub cases: usize,
    /// Outcomes by kind (`"ok"` or an error's kind), with counts.
    pub outcomes: BTreeMap<String, usize>,
    /// Inputs that panicked (at most the first 10), with the panic's message.
    pub panics: Vec<(Vec<u8>, String)>,
    /// The number of panics.
    pub n_panics: usize,
}

/// The error's variant name from its `Debug` form (`Npy { .. }` → `Npy`).
fn kind<E: std::fmt::Debug>(e: &E) -> String {
    let d = format!("{e:?}");
    d.split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or("error")
        .to_string()
}

fn load_csv(bytes: &[u8]) -> String {
    match crate::data::csv_io::read_csv_from(bytes, "fuzz.csv") {
        Ok(_) => "ok".into(),
        Err(e) => kind(&e),
    }
}

fn load_npy(bytes: &[u8]) -> String {
    match read_npy_bytes(bytes, "fuzz.npy") {
        Ok(_) => "ok".into(),
        Err(e) => kind(&e),
    }
}

fn load_npy_header(bytes: &[u8]) -> String {
    match NpyHeader::read(&mut &bytes[..], "fuzz.npy") {
        Ok(_) => "ok".into(),
        Err(e) => kind(&e),
    }
}

fn load_model(bytes: &[u8]) -> String {
    match ModelFile::from_slice(bytes, "fuzz.json") {
        Ok(m) => match m.to_model::<f32>(std::path::Path::new("fuzz.json")) {
            Ok(_) => "ok".into(),
            Err(e) => format!("to_model:{}", kind(&e)),
        },
        Err(e) => kind(&e),
    }
}

fn load_checkpoint(bytes: &[u8]) -> String {
    match Checkpoint::<serde_json::Value>::from_slice(bytes, "fuzz.json") {
        Ok(_) => "ok".into(),
        Err(e) => kind(&e),
    }
}

/// Valid files of one format.
type Files = Vec<Vec<u8>>;

/// Valid seed files (CSV, .npy, model, checkpoint), built here (no files on disk).
fn seeds() -> (Files, Files, Files, Files) {
    use crate::cnf::{Block, Cnf};
    use crate::data::{Dataset, Standardizer};
    use crate::model_file::{EvalSolver, CHECKPOINT_FORMAT, CHECKPOINT_VERSION};
    use crate::nn::{Mlp, MlpConfig};
    use crate::ode::Method;
    use crate::optim::{Adam, AdamConfig, OptimizerState};
    use ndarray_npy::WriteNpyExt;

    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = Dataset::Moons.sample(6, &mut rng);
    let mut csv = b"x,y\n".to_vec();
    for r in x.rows() {
        csv.extend_from_slice(format!("{},{}\n", r[0], r[1]).as_bytes());
    }
    let csv_plain = b"1,2\n\n3.5e-3 , -4\n5,6\n".to_vec();
    let mut npy = Vec::new();
    x.write_npy(&mut npy).unwrap_or_default();
    let mut npy32 = Vec::new();
    x.mapv(|v| v as f32).write_npy(&mut npy32).unwrap_or_default();
    let arch = MlpConfig::parse(2, "3", "concatsquash", "tanh").expect("a valid architecture");
    let model = Cnf::new(vec![Block {
        field: Mlp::<f64>::new(arch, &mut rng, false),
        t_end: 0.5,
        learn_t: true,
    }])
    .and_then(|m| {
        m.with_standardizer(Standardizer {
            mean: ndarray::arr1(&[0.5, -0.25]),
            std: ndarray::arr1(&[0.9, 0.5]),
        })
    })
    .expect("a valid model");
    let solver = EvalSolver {
        method: Method::Dopri5,
        rtol: 1e-5,
        atol: 1e-5,
        implicit: None,
    };
    let file = ModelFile::new(&model, solver, serde_json::json!({"data": "moons", "seed": 1}));
    let model_json = serde_json::to_vec_pretty(&file).unwrap_or_default();
    let n = model.blocks[0].field.n_params() + 1;
    let ck = Checkpoint {
        format: CHECKPOINT_FORMAT.into(),
        version: CHECKPOINT_VERSION,
        args: serde_json::json!({"data": "moons"}),
        iter: 3,
        elapsed: 0.5,
        model: file.clone(),
        optimizer: OptimizerState::Adam(Adam::new(AdamConfig::new(1e-3, 0.0), n)),
        best: Some((file, 1.25, 2)),
    };
    let ck_json = serde_json::to_vec(&ck).unwrap_or_default();
    (vec![csv, csv_plain], vec![npy, npy32], vec![model_json], vec![ck_json])
}

/// The loaders: CSV points, `.npy` (header and data), the `.npy` header alone, model
/// files (parsed and built in f32), checkpoints.
pub fn targets() -> Vec<Target> {
    let (csv, npy, model, ck) = seeds();
    vec![
        Target {
            name: "csv",
            seeds: csv,
            load: load_csv,
        },
        Target {
            name: "npy",
            seeds: npy.clone(),
            load: load_npy,
        },
        Target {
            name: "npy-header",
            seeds: npy,
            load: load_npy_header,
        },
        Target {
            name: "model",
            seeds: model,
            load: load_model,
        },
        Target {
            name: "checkpoint",
            seeds: ck,
            load: load_checkpoint,
        },
    ]
}

/// One mutation of `input` (with `other`, another seed, for splicing).
fn mutate(input: &[u8], other: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut b = input.to_vec();
    let n_ops = 1 + rng.random_range(0..4);
    for _ in 0..n_ops {
        let len = b.len().max(1);
        match rng.random_range(0..8) {
            0 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            2 => b.truncate(rng.random_range(0..len)),
            3 => {
                let i = rng.random_range(0..=b.len());
                let k = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..k).map(|_| rng.random()).collect();
                b.splice(i..i, bytes);
            }
            4 if !other.is_empty() => {
                let cut = rng.random_range(0..=b.len());
                let from = rng.random_range(0..other.len());
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
            5 => {
                // A run of digits: huge numbers, long cells, huge shapes and lengths.
                let i = rng.random_range(0..=b.len());
                let k = rng.random_range(1..400);
                let digits: Vec<u8> = (0..k).map(|_| b'0' + rng.random_range(0..10u8)).collect();
                b.splice(i..i, digits);
            }
            6 if !b.is_empty() => {
                // Repeat a slice (ragged rows, duplicated keys).
                let i = rng.random_range(0..b.len());
                let j = (i + rng.random_range(1..64)).min(b.len());
                let piece = b[i..j].to_vec();
                b.splice(j..j, piece);
            }
            _ => {
                // Interesting bytes: separators, quotes, NaN text, newlines.
                const TOKENS: [&[u8]; 10] = [
                    b",",
                    b"\n",
                    b"\r\n",
                    b"\"",
                    b"nan",
                    b"inf",
                    b"-",
                    b"e999",
                    b"{",
                    b"\xff\xfe",
                ];
                let i = rng.random_range(0..=b.len());
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                b.splice(i..i, t.iter().copied());
            }
        }
    }
    b
}

/// Runs `cases` mutated inputs through `target`, seeded `seed`.
pub fn run(target: &Target, cases: usize, seed: u64) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut report = Report::default();
    // The seeds themselves must load.
    for s in &target.seeds {
        let outcome = (target.load)(s);
        *report.outcomes.entry(format!("seed:{outcome}")).or_default() += 1;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for _ in 0..cases {
        let a = &target.seeds[rng.random_range(0..target.seeds.len())];
        let b = &target.seeds[rng.random_range(0..target.seeds.len())];
        let input = mutate(a, b, &mut rng);
        report.cases += 1;
        match catch_unwind(AssertUnwindSafe(|| (target.load)(&input))) {
            Ok(outcome) => *report.outcomes.entry(outcome).or_default() += 1,
            Err(p) => {
                report.n_panics += 1;
                if report.panics.len() < 10 {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    report.panics.push((input, msg));
                }
            }
        }
    }
    std::panic::set_hook(previous);
    report
}
