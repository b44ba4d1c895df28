//! GCNet's context blocks against MMCV's and MMDetection's own
//! (`tests/models/gcnet_reference.py`, run once per test process): the
//! block alone (its own initialisation, both poolings and fusions) and as a
//! plugin of ResNet and ResNeXt (names with postfixes, the backbone's
//! Kaiming init reaching the plugins, frozen stages, train-mode outputs and
//! every gradient).

use std::sync::OnceLock;

use detc::registry::models::backbones::{ResNeXtConfig, ResNetConfig};
use detc::registry::models::layers::ContextBlockConfig;
use serde_json::json;
use tch::nn::VarStore;
use tch::{Device, Kind};

use crate::models::backbones::ResNet;
use crate::models::layers::context_block::{ContextBlock, ContextInit};
use crate::models::layers::fixtures::{check_module_case, script_state_dict, StateDict};

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/gcnet_reference.py", "detc-gcnet", "gcnet.pth"))
}

fn check_block(case: &str, cfg: serde_json::Value) {
    let _seed = crate::models::layers::fixtures::seeded();
    let cfg: ContextBlockConfig = serde_json::from_value(cfg).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let block = ContextBlock::new(&vs.root(), 32, &cfg, ContextInit::Own, true).unwrap();
    check_module_case(fixture(), case, &vs, |inputs| vec![block.forward(&inputs[0]).unwrap()]);
}

fn resnet_cfg(extra: serde_json::Value) -> serde_json::Value {
    let mut cfg = json!({"depth": 50, "base_channels": 16, "stem_channels": 16, "num_stages": 4,
        "out_indices": [0, 1, 2, 3], "frozen_stages": 1, "norm_eval": false, "style": "pytorch"});
    cfg.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    cfg
}

#[test]
fn context_block_equals_mmcv() {
    check_block("att_add", json!({"ratio": 0.25}));
}

#[test]
fn context_block_with_average_pooling_and_both_fusions_equals_mmcv() {
    check_block("avg_both", json!({"ratio": 0.125, "pooling_type": "avg", "fusion_types": ["channel_add", "channel_mul"]}));
}

#[test]
fn resnet50_with_context_blocks_equals_mmdet() {
    let _seed = crate::models::layers::fixtures::seeded();
    let cfg = resnet_cfg(json!({"plugins": [{"cfg": {"type": "ContextBlock", "ratio": 0.25},
        "stages": [false, true, true, true], "position": "after_conv3"}]}));
    let vs = VarStore::new(Device::Cpu);
    let net = ResNet::new(&serde_json::from_value::<ResNetConfig>(cfg).unwrap(), vs.root()).unwrap();
    check_module_case(fixture(), "r50_gcb", &vs, |inputs| net.forward_t(&inputs[0], true).unwrap());
}

#[test]
fn resnext50_with_two_named_context_blocks_equals_mmdet() {
    let _seed = crate::models::layers::fixtures::seeded();
    let cfg = resnet_cfg(json!({"groups": 2, "base_width": 4, "plugins": [
        {"cfg": {"type": "ContextBlock", "ratio": 0.25, "fusion_types": ["channel_mul"], "postfix": 1}, "position": "after_conv2"},
        {"cfg": {"type": "ContextBlock", "ratio": 0.25, "pooling_type": "avg", "fusion_types": ["channel_mul"], "postfix": "_b"},
         "stages": [false, false, true, true], "position": "after_conv1"}]}));
    let vs = VarStore::new(Device::Cpu);
    let net = ResNet::resnext(&serde_json::from_value::<ResNeXtConfig>(cfg).unwrap(), vs.root()).unwrap();
    check_module_case(fixture(), "x50_gcb", &vs, |inputs| net.forward_t(&inputs[0], true).unwrap());
}

/// Under a checkpoint the blocks keep their own initialisation (the
/// checkpoint lacks them): each starts as the identity.
#[test]
fn context_blocks_under_a_pretrained_backbone_start_as_the_identity() {
    let cfg = resnet_cfg(json!({"init_cfg": {"type": "Pretrained", "checkpoint": "torchvision://resnet50"},
        "plugins": [{"cfg": {"type": "ContextBlock", "ratio": 0.25}, "position": "after_conv3"}]}));
    let vs = VarStore::new(Device::Cpu);
    let _net = ResNet::new(&serde_json::from_value::<ResNetConfig>(cfg).unwrap(), vs.root()).unwrap();
    let vars = vs.variables();
    let last = &vars["layer2.0.context_block.channel_add_conv.3.weight"];
    assert_eq!(last.abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert_eq!(vars["layer2.0.context_block.channel_add_conv.3.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
}

#[test]
fn plugins_that_share_a_name_in_a_stage_are_refused() {
    let block = json!({"cfg": {"type": "ContextBlock", "ratio": 0.25}, "position": "after_conv3"});
    let cfg = resnet_cfg(json!({"plugins": [block.clone(), block]}));
    let vs = VarStore::new(Device::Cpu);
    let err = ResNet::new(&serde_json::from_value::<ResNetConfig>(cfg).unwrap(), vs.root()).unwrap_err();
    assert!(err.to_string().contains("postfix"), "{err}");
}
