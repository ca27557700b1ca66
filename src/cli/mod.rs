//! The commands of the `cnflow` program.

pub mod args;
pub mod common;
mod datasets;
mod evaluate;
mod memory;
mod observers;
mod plot;
mod recipes;
mod run_folder;
mod series;
pub mod signals;
mod solve;
mod train;

use anyhow::Result;

use args::{Cli, Command};

/// A command stopped by a signal after cleaning up: the program exits with `0`
/// (128 + the signal) and no error line.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by a signal (exit code {})", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Runs one command.
/// `explicit` names the `train` flags given on the command line.
pub fn run(cli: Cli, explicit: &[String]) -> Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a, explicit),
        Command::Density(a) => evaluate::density(a),
        Command::Sample(a) => evaluate::sample(a),
        Command::Eval(a) => evaluate::eval(a),
        Command::Plot(a) => plot::run(a),
        Command::Datasets(a) => datasets::run(a),
        Command::FitSeries(a) => series::fit(a),
        Command::Predict(a) => series::predict(a),
        Command::Solve(a) => solve::run(a),
    }
}
