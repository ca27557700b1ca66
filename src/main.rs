//! The `cnflow` command-line program: a thin layer over the library.

mod cli;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

fn main() {
    if let Ok(v) = std::env::var("CNFLOW_SIMD") {
        if !cnflow::nn::SIMD_CHOICES.contains(&v.as_str()) {
            eprintln!(
                "error: CNFLOW_SIMD={v} is not one of {}; unset it to use the widest kernels the CPU has",
                cnflow::nn::SIMD_CHOICES.join(", ")
            );
            std::process::exit(2);
        }
    }
    cli::signals::install();
    let matches = cli::args::Cli::command().get_matches();
    let cli = cli::args::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Which train flags the user typed (a resumed run keeps the others from its checkpoint).
    let explicit: Vec<String> = matches
        .subcommand_matches("train")
        .map(|m| {
            m.ids()
                .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
                .map(|id| id.to_string())
                .collect()
        })
        .unwrap_or_default();
    if let Err(err) = cli::run(cli, &explicit) {
        if let Some(cli::Interrupted(code)) = err.downcast_ref::<cli::Interrupted>() {
            std::process::exit(*code);
        }
        eprintln!("error: {}", cli::common::one_line(&err));
        std::process::exit(1);
    }
}
