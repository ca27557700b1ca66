//! The commands of the `cnflow` program.

pub mod args;
mod common;
mod datasets;
mod evaluate;
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
        Command::Plot(_) => anyhow::bail!("plot: pictures are not available in this build yet"),
        Command::Datasets(a) => datasets::run(a),
    }
}
