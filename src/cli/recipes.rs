//! Per-dataset training recipes: the flags `cnflow train --data NAME` takes for a
//! built-in dataset unless the user gives them. Each was chosen by measurement, three
//! seeds, for the shortest time to a good fit (BENCHMARKS.md, "Per-dataset recipes").
//!
//! With no `--objective` typed, checkerboard, circles and rings train by flow-matching
//! pretraining and likelihood fine-tuning (`--objective cfm --then-mle N`), which
//! reached a KL gap ≤ 0.05 on them in under a minute where the likelihood alone did
//! not; the other five reach 0.05 sooner by the likelihood alone (flow matching's
//! 10 000 cheap iterations cost more than they save there), though pretraining ends
//! lower on them too. With `--objective mle` typed, the likelihood's own
//! measured recipe applies (the global defaults where it has none); with a
//! flow-matching objective typed, none does.

use anyhow::{bail, Context, Result};

use super::args::{ObjectiveArg, TrainArgs};

/// The flags of one dataset's recipes, as `(clap id, i.e. the flag's field name, value)`.
pub struct Recipe {
    pub dataset: &'static str,
    /// When no `--objective` is typed.
    pub flags: &'static [(&'static str, &'static str)],
    /// When `--objective mle` is typed.
    pub mle: &'static [(&'static str, &'static str)],
}

/// Flow-matching pretraining (10 000 cheap iterations), then 4 000 of the likelihood.
const CFM_THEN_MLE: &[(&str, &str)] = &[
    ("objective", "cfm"),
    ("iters", "14000"),
    ("then_mle", "4000"),
    ("eval_every", "500"),
];

/// The measured recipes, one per built-in dataset.
pub const RECIPES: &[Recipe] = &[
    Recipe {
        dataset: "8gaussians",
        flags: &[],
        mle: &[],
    },
    Recipe {
        dataset: "checkerboard",
        flags: &[
            ("objective", "cfm"),
            ("iters", "26000"),
            ("then_mle", "8000"),
            ("eval_every", "500"),
            ("lr", "0.008"),
        ],
        mle: &[("iters", "6000")],
    },
    Recipe {
        dataset: "2spirals",
        flags: &[("iters", "3000")],
        mle: &[("iters", "3000")],
    },
    Recipe {
        dataset: "moons",
        flags: &[],
        mle: &[],
    },
    Recipe {
        dataset: "circles",
        flags: CFM_THEN_MLE,
        mle: &[],
    },
    Recipe {
        dataset: "rings",
        flags: CFM_THEN_MLE,
        mle: &[("hidden", "32-32-32"), ("batch", "256"), ("iters", "4000")],
    },
    Recipe {
        dataset: "swissroll",
        flags: &[],
        mle: &[],
    },
    Recipe {
        dataset: "pinwheel",
        flags: &[],
        mle: &[],
    },
];

/// The recipe of a built-in dataset, if it has one.
pub fn recipe(dataset: &str) -> Option<&'static Recipe> {
    RECIPES.iter().find(|r| r.dataset == dataset)
}

impl Recipe {
    /// The flags for the objective the user typed (`None`: none typed); empty when no
    /// recipe applies.
    pub fn flags_for(&self, typed: Option<ObjectiveArg>) -> &'static [(&'static str, &'static str)] {
        match typed {
            None => self.flags,
            Some(ObjectiveArg::Mle) => self.mle,
            Some(_) => &[],
        }
    }

    /// The recipe for `typed` as command-line flags, e.g. `--hidden 32-32-32 --batch
    /// 256`.
    pub fn describe(&self, typed: Option<ObjectiveArg>) -> String {
        let flags: Vec<String> = self
            .flags_for(typed)
            .iter()
            .map(|(id, v)| format!("--{} {v}", id.replace('_', "-")))
            .collect();
        flags.join(" ")
    }

    /// Sets the recipe's flags that the user did not give (`given` holds the ids of the
    /// flags typed); returns the ones it set, as flags.
    pub fn apply(
        &self,
        typed: Option<ObjectiveArg>,
        args: &mut TrainArgs,
        given: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let flags = self.flags_for(typed);
        let own_iters: Option<usize> = flags
            .iter()
            .find(|(id, _)| *id == "iters")
            .and_then(|(_, v)| v.parse().ok());
        let mut set = Vec::new();
        for &(id, value) in flags {
            if given(id) {
                continue;
            }
            let bad = || format!("recipe of {}: --{id} {value}", self.dataset);
            match id {
                "objective" => {
                    args.objective = clap::ValueEnum::from_str(value, false)
                        .map_err(|e| anyhow::anyhow!("{e}"))
                        .with_context(bad)?
                }
                "then_mle" => {
                    let n: usize = value.parse().with_context(bad)?;
                    // With --iters typed, the likelihood keeps the recipe's share of them.
                    let n = match (given("iters"), args.iters, own_iters) {
                        (true, Some(typed), Some(own)) => {
                            ((n as f64 * typed as f64 / own as f64).round() as usize).clamp(1, typed.max(1))
                        }
                        _ => n,
                    };
                    args.then_mle = Some(n);
                    set.push(format!("--then-mle {n}"));
                    continue;
                }
                "eval_every" => args.eval_every = value.parse().with_context(bad)?,
                "iters" => args.iters = Some(value.parse().with_context(bad)?),
                "batch" => args.batch = value.parse().with_context(bad)?,
                "hidden" => args.hidden = value.to_string(),
                "lr" => args.lr = value.parse().with_context(bad)?,
                "kinetic" => args.kinetic = value.parse().with_context(bad)?,
                "jacobian" => args.jacobian = value.parse().with_context(bad)?,
                _ => bail!("recipe of {}: --{id} is not a flag recipes may set", self.dataset),
            }
            set.push(format!("--{} {value}", id.replace('_', "-")));
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{Cli, Command};
    use clap::Parser;
    use cnflow::data::Dataset;

    fn parse(words: &[&str]) -> TrainArgs {
        match Cli::try_parse_from(words).expect("flags parse").command {
            Command::Train(a) => a,
            _ => panic!("not train"),
        }
    }

    /// Applying a recipe gives exactly what typing its flags gives, and flags the user
    /// typed win over it.
    #[test]
    fn recipes_equal_their_flags_typed_and_yield_to_given_flags() {
        for r in RECIPES {
            assert!(
                r.dataset.parse::<Dataset>().is_ok(),
                "{} is not a built-in dataset",
                r.dataset
            );
            for (typed, words) in [(None, vec![]), (Some(ObjectiveArg::Mle), vec!["--objective", "mle"])] {
                let mut base = vec!["cnflow", "train", "--data", r.dataset];
                base.extend(&words);
                let mut applied = parse(&base);
                let set = r.apply(typed, &mut applied, |_| false).unwrap();
                assert_eq!(set.len(), r.flags_for(typed).len());
                let described: Vec<String> = r.describe(typed).split(' ').map(str::to_string).collect();
                let mut all = base.clone();
                all.extend(described.iter().map(String::as_str).filter(|w| !w.is_empty()));
                let typed_args = parse(&all);
                assert_eq!(
                    serde_json::to_string(&applied).unwrap(),
                    serde_json::to_string(&typed_args).unwrap(),
                    "{} {typed:?}",
                    r.dataset
                );
                // Every flag given: the recipe changes nothing.
                let mut untouched = parse(&base);
                let before = serde_json::to_string(&untouched).unwrap();
                assert!(r.apply(typed, &mut untouched, |_| true).unwrap().is_empty());
                assert_eq!(serde_json::to_string(&untouched).unwrap(), before);
            }
            // A flow-matching objective typed: no recipe.
            assert!(r.flags_for(Some(ObjectiveArg::OtCfm)).is_empty());
        }
    }

    /// With --iters typed, the likelihood phase keeps the recipe's share of them.
    #[test]
    fn typed_iterations_scale_the_likelihood_phase() {
        let r = recipe("rings").unwrap();
        let mut args = parse(&["cnflow", "train", "--data", "rings", "--iters", "1400"]);
        r.apply(None, &mut args, |id| id == "iters").unwrap();
        assert_eq!((args.iters, args.then_mle), (Some(1400), Some(400)));
        assert_eq!(args.objective, ObjectiveArg::Cfm);
        let mut args = parse(&["cnflow", "train", "--data", "rings", "--iters", "3"]);
        r.apply(None, &mut args, |id| id == "iters").unwrap();
        assert_eq!(args.then_mle, Some(1));
    }
}
