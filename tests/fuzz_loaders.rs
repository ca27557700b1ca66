//! A small mutation-fuzzing run of every loader (the long runs are
//! `cargo run --release --example fuzz -- N`): no panic, the seeds themselves load,
//! and the mutations reach both successes and errors.

#[test]
fn every_loader_returns_ok_or_a_typed_error_on_mutated_input() {
    for target in cnflow::fuzz::targets() {
        let report = cnflow::fuzz::run(&target, 3000, 7);
        assert_eq!(report.n_panics, 0, "{}: panics on {:?}", target.name, report.panics);
        let seeds_ok = report.outcomes.get("seed:ok").copied().unwrap_or(0);
        assert_eq!(
            seeds_ok,
            target.seeds.len(),
            "{}: a seed does not load: {:?}",
            target.name,
            report.outcomes
        );
        let errors = report
            .outcomes
            .keys()
            .filter(|k| *k != "ok" && !k.starts_with("seed:"))
            .count();
        assert!(
            errors >= 1,
            "{}: the mutations found only {:?}",
            target.name,
            report.outcomes
        );
        assert!(
            report.outcomes.contains_key("ok"),
            "{}: no mutation loaded: {:?}",
            target.name,
            report.outcomes
        );
    }
}
