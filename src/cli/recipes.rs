//! Per-dataset training recipes: the flags `cnflow train --data NAME` takes for a
//! built-in dataset unless the user gives them. Each was chosen by measurement, three
//! seeds, for the shortest time to a good fit (BENCHMARKS.md, "Per-dataset recipes");
//! a dataset without an entry trains with the global defaults, which fit it.

use anyhow::{bail, Context, Result};

use super::args::TrainArgs;

/// The flags of one dataset's recipe, as `(flag without dashes, value)`.
pub struct Recipe {
    pub dataset: &'static str,
    pub flags: &'static [(&'static str, &'static str)],
}

/// The measured recipes; the other built-in datasets use the global defaults.
pub const RECIPES: &[Recipe] = &[
    Recipe {
        dataset: "checkerboard",
        flags: &[("iters", "6000")],
    },
    Recipe {
        dataset: "2spirals",
        flags: &[("iters", "3000")],
    },
    Recipe {
        dataset: "rings",
        flags: &[("hidden", "32-32-32"), ("batch", "256"), ("iters", "4000")],
    },
];

/// The recipe of a built-in dataset, if it has one.
pub fn recipe(dataset: &str) -> Option<&'static Recipe> {
    RECIPES.iter().find(|r| r.dataset == dataset)
}

impl Recipe {
    /// The recipe as command-line flags, e.g. `--hidden 32-32-32 --batch 256`.
    pub fn describe(&self) -> String {
        let flags: Vec<String> = self.flags.iter().map(|(id, v)| format!("--{id} {v}")).collect();
        flags.join(" ")
    }

    /// Sets the recipe's flags that the user did not give (`given` holds the ids of the
    /// flags typed); returns the ones it set, as flags.
    pub fn apply(&self, args: &mut TrainArgs, given: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let mut set = Vec::new();
        for &(id, value) in self.flags {
            if given(id) {
                continue;
            }
            let bad = || format!("recipe of {}: --{id} {value}", self.dataset);
            match id {
                "iters" => args.iters = Some(value.parse().with_context(bad)?),
                "batch" => args.batch = value.parse().with_context(bad)?,
                "hidden" => args.hidden = value.to_string(),
                "lr" => args.lr = value.parse().with_context(bad)?,
                "kinetic" => args.kinetic = value.parse().with_context(bad)?,
                "jacobian" => args.jacobian = value.parse().with_context(bad)?,
                _ => bail!("recipe of {}: --{id} is not a flag recipes may set", self.dataset),
            }
            set.push(format!("--{id} {value}"));
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
            let mut applied = parse(&["cnflow", "train", "--data", r.dataset]);
            let set = r.apply(&mut applied, |_| false).unwrap();
            assert_eq!(set.len(), r.flags.len());
            let mut words = vec!["cnflow", "train", "--data", r.dataset];
            let typed: Vec<String> = r.describe().split(' ').map(str::to_string).collect();
            words.extend(typed.iter().map(String::as_str));
            let typed = parse(&words);
            assert_eq!(
                serde_json::to_string(&applied).unwrap(),
                serde_json::to_string(&typed).unwrap(),
                "{}",
                r.dataset
            );
            // Every flag given: the recipe changes nothing.
            let mut untouched = parse(&["cnflow", "train", "--data", r.dataset]);
            let before = serde_json::to_string(&untouched).unwrap();
            assert!(r.apply(&mut untouched, |_| true).unwrap().is_empty());
            assert_eq!(serde_json::to_string(&untouched).unwrap(), before);
        }
    }
}
