//! The commands of the `cnflow` program.

pub mod args;
pub mod common;
mod datasets;
mod evaluate;
mod observers;
mod plot;
mod train;

use anyhow::Result;

use args::{Cli, Command};

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
    }
}
