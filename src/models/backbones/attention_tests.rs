//! Generalized attention blocks against MMCV's and MMDetection's own
//! (`tests/models/attention_reference.py`, run once per test process): the
//! block alone with five `attention_type`s (its own initialisation, key and
//! query strides, offset magnitude, embedding width) and as a ResNet-50
//! plugin (names, the block's own init surviving the backbone's Kaiming
//! init, frozen stages, train-mode outputs and every gradient).

use std::sync::OnceLock;

use detc::registry::models::backbones::ResNetConfig;
use detc::registry::models::layers::GeneralizedAttentionConfig;
use serde_json::json;
use tch::nn::VarStore;
use tch::Device;

use crate::models::backbones::ResNet;
use crate::models::layers::fixtures::{check_module_case, script_state_dict, StateDict};
use crate::models::layers::generalized_attention::GeneralizedAttention;

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/attention_reference.py", "detc-attention", "attention.pth"))
}

fn check_block(case: &str, cfg: serde_json::Value) {
    let _seed = crate::models::layers::fixtures::seeded();
    let mut full = json!({"num_heads": 4, "spatial_range": -1});
    full.as_object_mut().unwrap().extend(cfg.as_object().unwrap().clone());
    let cfg: GeneralizedAttentionConfig = serde_json::from_value(full).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let block = GeneralizedAttention::new(&vs.root(), 32, &cfg, true).unwrap();
    check_module_case(fixture(), case, &vs, |inputs| vec![block.forward(&inputs[0]).unwrap()]);
}

#[test]
fn attention_of_all_four_terms_equals_mmcv() {
    check_block("all", json!({"attention_type": "1111", "kv_stride": 2}));
}

#[test]
fn attention_of_key_content_alone_equals_mmcv() {
    check_block("key", json!({"attention_type": "0010", "kv_stride": 2}));
}

#[test]
fn attention_of_query_and_key_content_with_a_key_bias_equals_mmcv() {
    check_block("mix", json!({"attention_type": "1010", "kv_stride": 1}));
}

#[test]
fn attention_of_relative_position_with_strided_queries_equals_mmcv() {
    check_block(
        "pos",
        json!({"attention_type": "0101", "kv_stride": 1, "q_stride": 2, "position_magnitude": 2, "position_embedding_dim": 16}),
    );
}

#[test]
fn attention_of_key_bias_and_position_alone_equals_mmcv() {
    check_block("geom", json!({"attention_type": "0011", "kv_stride": 2}));
}

#[test]
fn resnet50_with_attention_blocks_equals_mmdet() {
    let _seed = crate::models::layers::fixtures::seeded();
    let cfg = json!({"depth": 50, "base_channels": 16, "stem_channels": 16, "num_stages": 4, "out_indices": [0, 1, 2, 3],
        "frozen_stages": 1, "norm_eval": false, "style": "pytorch", "plugins": [{
            "cfg": {"type": "GeneralizedAttention", "spatial_range": -1, "num_heads": 8, "attention_type": "1111", "kv_stride": 2},
            "stages": [false, false, true, true], "position": "after_conv3"}]});
    let vs = VarStore::new(Device::Cpu);
    let net = ResNet::new(&serde_json::from_value::<ResNetConfig>(cfg).unwrap(), vs.root()).unwrap();
    check_module_case(fixture(), "r50_attn", &vs, |inputs| net.forward_t(&inputs[0], true).unwrap());
}

#[test]
fn a_local_constraint_is_refused() {
    let cfg: GeneralizedAttentionConfig = serde_json::from_value(json!({"spatial_range": 3})).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let err = GeneralizedAttention::new(&vs.root(), 32, &cfg, true).unwrap_err();
    assert!(err.to_string().contains("spatial_range"), "{err}");
}
