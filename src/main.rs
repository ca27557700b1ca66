//! The `cnflow` command-line program: a thin layer over the library.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::args::Cli::parse();
    if let Err(err) = cli::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
