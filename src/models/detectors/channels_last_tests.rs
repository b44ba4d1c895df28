//! `env_cfg.channels_last` changes the memory layout, not the model: the
//! demo detectors give the same losses, gradients and detections with their
//! convolution weights laid out channels-last as in the default layout.
//! In float64, so that the kernels' different order of summation stays far
//! below the tolerance and cannot flip a proposal's rank or a sampled RoI.

use detc::data::transforms::Pipeline;
use tch::{nn, Device, Kind, Tensor};

use super::overfit_tests::{demo_config, samples, train_images, FASTER_RCNN, MASK_RCNN, QUERYINST};
use super::{build, parse_losses};
use crate::engine::memory_format::to_channels_last;
use crate::engine::native::is_channels_last;
use crate::models::data_preprocessors::DetDataPreprocessor;

/// Losses, then every trainable variable's gradient, then the first
/// image's detections (boxes and scores), of one training and one
/// predicting pass with the sampling generator seeded alike.
fn one_step(config: &str, channels_last: bool) -> (Vec<(String, f64)>, Vec<(String, Tensor)>, Tensor) {
    let cfg = demo_config(config, &["train_dataloader.dataset.pipeline.3.prob=0.0"]);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _seeded = crate::models::layers::fixtures::seeded();
    tch::manual_seed(0);
    let model = build(&cfg["model"], vs.root()).unwrap();
    vs.double();
    if channels_last {
        let converted = to_channels_last(&vs).unwrap();
        assert!(converted > 20, "{config}: {converted} weights converted");
        for (name, var) in vs.variables() {
            if var.dim() == 4 {
                assert!(is_channels_last(&var).unwrap(), "{config}: {name} is not channels-last");
            }
        }
    }
    let dataset = train_images(&cfg);
    let pipeline = |section: &str| {
        Pipeline::from_config(cfg[section]["dataset"]["pipeline"].as_array().unwrap()).unwrap()
    };
    let pre = DetDataPreprocessor::new(model.data_preprocessor().unwrap(), Device::Cpu)
        .unwrap()
        .with_kind(Kind::Double);
    let mut train = samples(&dataset, &pipeline("train_dataloader"), 0);
    train.truncate(2);
    let batch = pre.forward(train, true).unwrap();
    tch::manual_seed(1);
    let losses = model.loss(&batch, &|n: f64| Ok(n)).unwrap();
    parse_losses(&losses).unwrap().backward();
    let values = losses.iter().map(|(k, v)| (k.clone(), v.double_value(&[]))).collect();
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let grads = names
        .into_iter()
        .filter(|n| vars[*n].grad().defined())
        .map(|n| (n.clone(), vars[n].grad().contiguous()))
        .collect();
    let mut test = samples(&dataset, &pipeline("test_dataloader"), 0);
    test.truncate(1);
    let dets = tch::no_grad(|| model.predict(&pre.forward(test, false).unwrap(), true)).unwrap();
    let first = Tensor::cat(&[dets[0].bboxes.shallow_clone(), dets[0].scores.unsqueeze(1)], 1);
    (values, grads, first)
}

fn assert_same_step(config: &str) {
    let (losses, grads, dets) = one_step(config, false);
    let (cl_losses, cl_grads, cl_dets) = one_step(config, true);
    assert_eq!(losses.len(), cl_losses.len());
    for ((name, a), (_, b)) in losses.iter().zip(&cl_losses) {
        assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{config}: {name} {a} against {b}");
    }
    assert!(grads.len() > 20, "{config}: {} gradients", grads.len());
    assert_eq!(grads.len(), cl_grads.len());
    for ((name, a), (_, b)) in grads.iter().zip(&cl_grads) {
        let scale = a.abs().max().double_value(&[]).max(1e-12);
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff <= 1e-9 * scale, "{config}: gradient of {name} differs by {diff} (largest {scale})");
    }
    assert_eq!(dets.size(), cl_dets.size(), "{config}: detections");
    let diff = (&dets - &cl_dets).abs().max().double_value(&[]);
    assert!(diff <= 1e-6, "{config}: detections differ by {diff}");
}

#[test]
fn faster_rcnn_is_the_same_channels_last() {
    assert_same_step(FASTER_RCNN);
}

#[test]
fn mask_rcnn_is_the_same_channels_last() {
    assert_same_step(MASK_RCNN);
}

#[test]
fn queryinst_is_the_same_channels_last() {
    assert_same_step(QUERYINST);
}
