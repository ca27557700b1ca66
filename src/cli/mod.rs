//! The commands of the `cnflow` program.

pub mod args;
mod common;
mod datasets;
mod evaluate;
mod plot;
mod train;

use anyhow::Result;

use args::{Cli, Command};

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Density(a) => evaluate::density(a),
        Command::Sample(a) => evaluate::sample(a),
        Command::Eval(a) => evaluate::eval(a),
        Command::Plot(a) => plot::run(a),
        Command::Datasets(a) => datasets::run(a),
    }
}
