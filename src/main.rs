//! The `cnflow` command-line program.
//!
//! The commands `train`, `sample`, `density`, `eval`, `plot` and `datasets` are built
//! on the library as it grows (see README.md for what is there today).

use clap::Parser;

/// cnflow: continuous normalizing flows — fit a density, evaluate it exactly, sample from it.
#[derive(Parser, Debug)]
#[command(name = "cnflow", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!(
        "cnflow {}: no command-line commands yet; the library (ODE solvers) is usable from Rust, see README.md",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
