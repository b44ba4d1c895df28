//! MMDetection 1.x's `LegacyAnchorGenerator` and `LegacyDeltaXYWHBBoxCoder`
//! (the `legacy_1.x` configs) against MMDetection's own
//! (`tests/models/legacy_reference.py`, run once per test process): the
//! rounded anchors of both orders, encoding, and decoding with and without
//! the image size to clamp to.

use std::sync::OnceLock;

use detc::registry::refs::{AnchorGeneratorCfg, BBoxCoderCfg};
use serde_json::json;
use tch::{Device, Tensor};

use crate::models::layers::fixtures::{assert_close, script_state_dict, tensor, StateDict};
use crate::models::ops::DeltaXYWHBBoxCoder;
use crate::models::task_modules::AnchorGenerator;

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/legacy_reference.py", "detc-legacy", "legacy.pth"))
}

fn fx(key: &str) -> Tensor {
    tensor(fixture(), key)
}

#[test]
fn legacy_anchors_equal_mmdet() {
    for (key, cfg) in [
        ("anchors", json!({"type": "LegacyAnchorGenerator", "strides": [4, 8], "ratios": [0.5, 1.0, 2.0], "scales": [8], "center_offset": 0.5})),
        ("anchors_major", json!({"type": "LegacyAnchorGenerator", "strides": [4, 8], "ratios": [0.5, 1.0, 2.0], "scales": [4, 6],
                                 "scale_major": false, "center_offset": 0.25})),
    ] {
        let generator = AnchorGenerator::from_cfg(&AnchorGeneratorCfg(cfg)).unwrap();
        let anchors = generator.grid_priors(&[(5, 6), (3, 3)], Device::Cpu).unwrap();
        for (i, a) in anchors.iter().enumerate() {
            assert_close(a, &fx(&format!("{key}.{i}")), 0.0, 0.0, &format!("{key} level {i}"));
        }
    }
}

#[test]
fn legacy_deltas_encode_and_decode_as_mmdet() {
    let cfg = json!({"type": "LegacyDeltaXYWHBBoxCoder", "target_means": [0.01, -0.02, 0.0, 0.03], "target_stds": [0.1, 0.1, 0.2, 0.2]});
    let coder = DeltaXYWHBBoxCoder::from_cfg(&BBoxCoderCfg(cfg), "bbox_coder").unwrap();
    assert_close(&coder.encode(&fx("boxes"), &fx("gt")).unwrap(), &fx("deltas"), 1e-6, 1e-5, "encode");
    assert_close(&coder.decode(&fx("rois"), &fx("pred"), None).unwrap(), &fx("decoded"), 1e-5, 1e-6, "decode");
    assert_close(&coder.decode(&fx("rois"), &fx("pred"), Some((30.0, 40.0))).unwrap(), &fx("decoded_clip"), 1e-5, 1e-6, "decode clamped");
}
