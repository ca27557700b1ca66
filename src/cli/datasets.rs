//! `cnflow datasets`: list the built-in datasets, or write points of one.

use anyhow::{anyhow, bail, Result};
use cnflow::data::{write_points, Dataset};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::args::DatasetsArgs;

pub fn run(args: DatasetsArgs) -> Result<()> {
    let Some(name) = args.name else {
        println!("{:<14} {:>16}   training recipe", "dataset", "entropy (nats)");
        for d in Dataset::ALL {
            let recipe = super::recipes::recipe(d.name())
                .map(|r| r.describe(None))
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "the defaults".to_string());
            println!("{:<14} {:>16.4}   {recipe}", d.name(), d.entropy());
        }
        println!("\nWith --objective mle typed, the likelihood alone trains with its own measured recipe:");
        for d in Dataset::ALL {
            let recipe = super::recipes::recipe(d.name())
                .map(|r| r.describe(Some(super::args::ObjectiveArg::Mle)))
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "the defaults".to_string());
            println!("{:<14} {recipe}", d.name());
        }
        println!("\nThe entropy is the lowest test NLL any model can reach; `cnflow eval` reports NLL − entropy.");
        println!(
            "Every dataset is drawn i.i.d. from the density of that entropy; FFJORD's evenly spaced moons, \
             circles and rings (not i.i.d.) are `cnflow datasets NAME --grid`."
        );
        return Ok(());
    };
    let dataset: Dataset = name.parse().map_err(|e| anyhow!("{e}"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let points = if args.grid {
        let Some(points) = dataset.sample_grid(args.n, &mut rng) else {
            bail!("--grid: only moons, circles and rings have FFJORD's evenly spaced version");
        };
        eprintln!(
            "note: --grid places the points at evenly spaced angles as FFJORD does; they are not i.i.d., \
             and a model trained on batches of them learns those spots instead of the density"
        );
        points
    } else {
        dataset.sample(args.n, &mut rng)
    };
    write_points(&args.output, points.view())?;
    if args.output.as_os_str() != "-" {
        eprintln!(
            "wrote {} points of {} to {}",
            args.n,
            dataset.name(),
            args.output.display()
        );
    }
    Ok(())
}
