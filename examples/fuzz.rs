//! Mutation fuzzing of every loader: `cargo run --release --example fuzz -- N [SEED]`
//! runs N mutated inputs per loader and prints the cases, the distinct outcomes and
//! any panics (whose inputs are written to fuzz-panic-LOADER-K.bin). Exits 1 on a panic.

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut panicked = false;
    println!("| loader | cases | ok | distinct error kinds | panics | seconds |");
    println!("|---|---|---|---|---|---|");
    for target in cnflow::fuzz::targets() {
        let started = Instant::now();
        let report = cnflow::fuzz::run(&target, n, seed);
        let ok = report.outcomes.get("ok").copied().unwrap_or(0);
        let kinds: Vec<String> = report
            .outcomes
            .iter()
            .filter(|(k, _)| *k != "ok" && !k.starts_with("seed:"))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "| {} | {} | {ok} | {} ({}) | {} | {:.1} |",
            target.name,
            report.cases,
            kinds.len(),
            kinds.join(", "),
            report.n_panics,
            started.elapsed().as_secs_f64()
        );
        for (k, (input, msg)) in report.panics.iter().enumerate() {
            let path = format!("fuzz-panic-{}-{k}.bin", target.name);
            let _ = std::fs::write(&path, input);
            eprintln!("{}: panic ({msg}); input in {path}", target.name);
            panicked = true;
        }
    }
    if panicked {
        std::process::exit(1);
    }
}
