//! The evaluation loop (MMEngine's `ValLoop` / `TestLoop`): predicts every
//! batch of a dataloader in eval mode, turns the detections into COCO
//! predictions and feeds `CocoMetric`. With several processes each predicts
//! its shard of the data and rank 0 gathers every rank's predictions and
//! computes the metric (MMEngine's `collect_results`).

use std::ops::ControlFlow;
use std::time::Instant;

use detc::data::coco::CocoDataset;
use detc::data::samplers::BatchIter;
use detc::data::SampleMeta;
use detc::evaluation::mask::Rle;
use detc::evaluation::metric::{CocoMetric, ImagePrediction, MetricResults};
use tch::Kind;

use super::data::{eval_dataset, DataParts};
use super::dist::Dist;
use crate::models::data_preprocessors::DetDataPreprocessor;
use crate::models::detectors::Detector;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::roi_heads::DetInstances;

/// The COCO prediction of one image from its detections (original-image pixels).
pub fn to_prediction(img_id: i64, det: &DetInstances) -> ModelResult<ImagePrediction> {
    let boxes = Vec::<f32>::try_from(
        det.bboxes
            .f_to_kind(Kind::Float)?
            .f_flatten(0, -1)?
            .f_to_device(tch::Device::Cpu)?,
    )?;
    let scores = Vec::<f32>::try_from(
        det.scores
            .f_to_kind(Kind::Float)?
            .f_to_device(tch::Device::Cpu)?,
    )?;
    let labels = Vec::<i64>::try_from(det.labels.f_to_device(tch::Device::Cpu)?)?;
    let masks = match &det.masks {
        None => None,
        Some(m) => {
            let (k, h, w) = m.size3()?;
            let bytes = Vec::<u8>::try_from(
                m.f_to_kind(Kind::Uint8)?
                    .f_flatten(0, -1)?
                    .f_to_device(tch::Device::Cpu)?,
            )?;
            let plane = (h * w) as usize;
            Some(
                (0..k as usize)
                    .map(|i| {
                        Rle::from_row_major(&bytes[i * plane..(i + 1) * plane], h as u32, w as u32)
                    })
                    .collect(),
            )
        }
    };
    Ok(ImagePrediction {
        img_id,
        bboxes: boxes.chunks(4).map(|b| [b[0], b[1], b[2], b[3]]).collect(),
        scores,
        labels: labels.into_iter().map(|l| l as usize).collect(),
        masks,
        mask_scores: None,
    })
}

/// One evaluated batch, reported after every batch (`after_val_iter` /
/// `after_test_iter`): its timing and its outputs, the predictions
/// (original-image pixels) with the samples' meta information.
pub struct EvalProgress<'a> {
    pub index: usize,
    pub total: usize,
    pub time: f64,
    pub data_time: f64,
    pub metas: &'a [SampleMeta],
    pub outputs: &'a [ImagePrediction],
    /// The dataset evaluated (its records hold the ground truth).
    pub dataset: &'a CocoDataset,
}

/// Predicts every batch of `data` and computes `metric`; `on_batch` sees
/// each batch (after the metric has taken it, as MMEngine's loops call
/// `after_val_iter` after `evaluator.process`) and may stop the loop (an
/// error then says so; the caller holds the reason). With `dist`, `data` is
/// this rank's shard and only rank 0 gets the results (the others `None`).
pub fn evaluate(
    model: &Detector,
    pre: &DetDataPreprocessor,
    data: &mut DataParts,
    metric: &mut CocoMetric,
    dist: Option<&Dist>,
    mut on_batch: impl FnMut(&EvalProgress<'_>) -> ControlFlow<()>,
) -> ModelResult<Option<MetricResults>> {
    // Every prediction of this process; `CocoMetric::process` only collects,
    // so handing them over at the end is the same as batch by batch.
    let mut mine = vec![];
    let total = data.len();
    let batches: BatchIter = data.batches(0, 0);
    let dataset = data.dataset.clone();
    let mut last = Instant::now();
    for (index, batch) in data.loader.epoch(0, batches, 0).enumerate() {
        let batch = batch.map_err(|e| ModelError::new("dataloader", e.to_string()))?;
        let data_time = batch.data_time.as_secs_f64();
        let metas: Vec<SampleMeta> = batch.samples.iter().map(|s| s.meta.clone()).collect();
        let det_batch = pre
            .forward(batch.samples, false)
            .map_err(|e| ModelError::new("data_preprocessor", e.to_string()))?;
        let dets = tch::no_grad(|| model.predict(&det_batch, true))?;
        let first = mine.len();
        for (meta, d) in metas.iter().zip(&dets) {
            mine.push(to_prediction(meta.img_id.unwrap_or(0) as i64, d)?);
        }
        let now = Instant::now();
        let flow = on_batch(&EvalProgress {
            index,
            total,
            time: (now - last).as_secs_f64(),
            data_time,
            metas: &metas,
            outputs: &mine[first..],
            dataset: eval_dataset(&dataset),
        });
        if flow.is_break() {
            return Err(ModelError::new("evaluation", "stopped after a batch"));
        }
        last = now;
    }
    match dist {
        Some(d) => match gather(d, &mine)? {
            Some(all) => metric.process(all, vec![]),
            None => return Ok(None),
        },
        None => metric.process(mine, vec![]),
    }
    metric
        .compute()
        .map(Some)
        .map_err(|e| ModelError::new("CocoMetric", e.to_string()))
}

/// On rank 0, every rank's predictions, each image once (the sampler pads
/// the shards to equal length by repeating images); `None` on the others.
fn gather(dist: &Dist, mine: &[ImagePrediction]) -> ModelResult<Option<Vec<ImagePrediction>>> {
    let mut bytes = vec![];
    detc::evaluation::pack::encode(mine, &mut bytes);
    let gathered = dist
        .gather_bytes(&bytes)
        .map_err(|e| ModelError::new("collect_results", e.message))?;
    if dist.rank() != 0 {
        return Ok(None);
    }
    let mut seen = std::collections::HashSet::new();
    let mut all = vec![];
    for part in gathered {
        let preds = detc::evaluation::pack::decode(&part)
            .map_err(|e| ModelError::new("collect_results", e))?;
        all.extend(preds.into_iter().filter(|p| seen.insert(p.img_id)));
    }
    Ok(Some(all))
}
