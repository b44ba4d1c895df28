//! `RandomChoice` (`mmcv.transforms.RandomChoice`): draws one of its
//! candidates (`np.random.choice` with `prob`, uniform without) and runs its
//! transforms in order, as MMCV's `Compose` (a candidate may be a single
//! transform). A transform that drops the sample drops it for the pipeline.

use rand::Rng;

use super::{build_step, transform_name, Site, Transform};
use crate::data::{DataError, DataResult, Sample, SampleRng};
use crate::registry::data::RandomChoiceConfig;
use crate::registry::models::common::OneOrMany;

/// One of several transform lists, drawn per sample.
pub struct RandomChoice {
    candidates: Vec<Vec<Box<dyn Transform>>>,
    /// The cumulative probabilities of the candidates; `None`: uniform.
    cumulative: Option<Vec<f64>>,
}

impl RandomChoice {
    pub fn new(cfg: RandomChoiceConfig, at: Site<'_>) -> DataResult<Self> {
        if cfg.transforms.is_empty() {
            return Err(at.error("`transforms` needs at least one candidate"));
        }
        let mut candidates = Vec::with_capacity(cfg.transforms.len());
        for (i, candidate) in cfg.transforms.iter().enumerate() {
            let list: Vec<&serde_json::Value> = match candidate {
                OneOrMany::One(t) => vec![&t.0],
                OneOrMany::Many(ts) => ts.iter().map(|t| &t.0).collect(),
            };
            let mut steps = Vec::with_capacity(list.len());
            for (j, t) in list.into_iter().enumerate() {
                let nested = |e: DataError| at.error(format!("transforms[{i}][{j}]: {}", e.message));
                let name = transform_name(t, "a transform").map_err(nested)?;
                steps.push(build_step(t, Site { index: at.index, name }).map_err(nested)?);
            }
            candidates.push(steps);
        }
        let cumulative = match cfg.prob {
            None => None,
            Some(prob) => {
                // MMCV asserts `sum(prob) == 1`, summed left to right.
                if prob.len() != candidates.len() || prob.iter().sum::<f64>() != 1.0 || prob.iter().any(|p| *p < 0.0) {
                    return Err(at.error(format!(
                        "`prob` {prob:?} needs one probability per candidate ({}), summing to 1",
                        candidates.len()
                    )));
                }
                Some(prob.iter().scan(0.0, |acc, p| { *acc += p; Some(*acc) }).collect())
            }
        };
        Ok(RandomChoice { candidates, cumulative })
    }

    fn choose(&self, rng: &mut SampleRng) -> usize {
        match &self.cumulative {
            None => rng.random_range(0..self.candidates.len()),
            Some(cumulative) => {
                let u = rng.random::<f64>();
                cumulative.iter().position(|&c| u < c).unwrap_or(self.candidates.len() - 1)
            }
        }
    }
}

impl Transform for RandomChoice {
    fn apply(&self, sample: Sample, rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        let mut sample = sample;
        for t in &self.candidates[self.choose(rng)] {
            match t.apply(sample, rng)? {
                Some(s) => sample = s,
                None => return Ok(None),
            }
        }
        Ok(Some(sample))
    }
}
