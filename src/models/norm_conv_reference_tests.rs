//! GroupNorm (`norm_cfg: {type: GN}`), weight-standardised convs
//! (`conv_cfg: {type: ConvWS}`) and `ConvFCBBoxHead`'s layouts against
//! MMDetection's own modules (`tests/models/norm_conv_reference.py`, run
//! once per test process): for each module of the `gn/` and `gn+ws/`
//! configs (ResNet, FPN, Shared4Conv1FCBBoxHead, FCNMaskHead) and two other
//! ConvFCBBoxHead layouts, the state-dict names and shapes after init, the
//! norms' initial values, and, on MMDetection's perturbed weights, the
//! train-mode outputs and the gradients of every input and parameter.

use std::sync::OnceLock;

use detc::registry::models::backbones::ResNetConfig;
use detc::registry::models::mask_heads::FCNMaskHeadConfig;
use detc::registry::models::necks::FPNConfig;
use detc::registry::refs::BBoxHeadCfg;
use serde_json::json;
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::models::backbones::resnet::ResNet;
use crate::models::layers::fixtures::{check_module_case, script_state_dict, StateDict};
use crate::models::necks::fpn::FPN;
use crate::models::roi_heads::bbox_heads::{build_bbox_head, ConvFCBBoxHead};
use crate::models::roi_heads::mask_heads::FCNMaskHead;

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/norm_conv_reference.py", "detc-norm-conv", "norm_conv.pth"))
}

enum Module {
    ResNet(ResNet),
    Fpn(FPN),
    BBox(ConvFCBBoxHead),
    Mask(FCNMaskHead),
}

#[allow(non_snake_case)]
fn GN(groups: u32) -> serde_json::Value {
    json!({"type": "GN", "num_groups": groups, "requires_grad": true})
}

/// The case's module, built from the config the script builds it from.
fn build(case: &str, vs: &VarStore) -> Module {
    let ws = json!({"type": "ConvWS"});
    let p = vs.root();
    match case {
        "resnet" => {
            let cfg: ResNetConfig = serde_json::from_value(json!({
                "depth": 50, "base_channels": 16, "num_stages": 4, "out_indices": [0, 1, 2, 3],
                "frozen_stages": 1, "norm_cfg": GN(4), "conv_cfg": ws, "norm_eval": true, "style": "pytorch"
            }))
            .unwrap();
            Module::ResNet(ResNet::new(&cfg, p).unwrap())
        }
        "fpn" => {
            let cfg: FPNConfig = serde_json::from_value(json!({
                "in_channels": [16, 32, 64, 128], "out_channels": 16, "num_outs": 5,
                "add_extra_convs": "on_input", "norm_cfg": GN(4), "conv_cfg": ws
            }))
            .unwrap();
            Module::Fpn(FPN::new(&cfg, p).unwrap())
        }
        "mask" => {
            let cfg: FCNMaskHeadConfig = serde_json::from_value(json!({
                "num_convs": 2, "roi_feat_size": 14, "in_channels": 8, "conv_out_channels": 8,
                "num_classes": 3, "norm_cfg": GN(2), "conv_cfg": ws
            }))
            .unwrap();
            Module::Mask(FCNMaskHead::new(&cfg, &p).unwrap())
        }
        _ => {
            let head = json!({"in_channels": 8, "fc_out_channels": 16, "roi_feat_size": 7, "num_classes": 3});
            let extra = match case {
                "s4c1" => json!({"type": "Shared4Conv1FCBBoxHead", "conv_out_channels": 8, "norm_cfg": GN(2), "conv_cfg": ws}),
                "convfc_a" => json!({"type": "ConvFCBBoxHead", "num_shared_convs": 1, "num_cls_convs": 1, "num_cls_fcs": 1,
                    "num_reg_convs": 2, "conv_out_channels": 8, "norm_cfg": {"type": "BN"}}),
                "convfc_b" => json!({"type": "ConvFCBBoxHead", "num_shared_fcs": 1, "num_cls_fcs": 1, "num_reg_fcs": 2,
                    "with_avg_pool": true, "reg_class_agnostic": true}),
                other => panic!("unknown case {other}"),
            };
            let mut cfg = head;
            cfg.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            Module::BBox(build_bbox_head(&BBoxHeadCfg(cfg), &p).unwrap())
        }
    }
}

/// The module's train-mode outputs, in the script's order.
fn forward(module: &Module, inputs: &[Tensor]) -> Vec<Tensor> {
    match module {
        Module::ResNet(m) => m.forward_t(&inputs[0], true).unwrap(),
        Module::Fpn(m) => m.forward_t(inputs, true).unwrap(),
        Module::BBox(m) => {
            let (cls, reg) = m.forward_t(&inputs[0], true).unwrap();
            vec![cls, reg]
        }
        Module::Mask(m) => vec![m.forward_t(&inputs[0], true).unwrap()],
    }
}

fn check_case(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let vs = VarStore::new(Device::Cpu);
    let module = build(case, &vs);
    check_module_case(fixture(), case, &vs, |inputs| forward(&module, inputs));
}

#[test]
fn resnet_with_group_norm_and_weight_standardisation_equals_mmdet() {
    check_case("resnet");
}

#[test]
fn fpn_with_group_norm_and_weight_standardisation_equals_mmdet() {
    check_case("fpn");
}

#[test]
fn shared4conv1fc_bbox_head_equals_mmdet() {
    check_case("s4c1");
}

#[test]
fn convfc_bbox_head_layouts_equal_mmdet() {
    check_case("convfc_a");
    check_case("convfc_b");
}

#[test]
fn fcn_mask_head_with_group_norm_and_weight_standardisation_equals_mmdet() {
    check_case("mask");
}

#[test]
fn group_norm_and_conv_cfg_refuse_what_they_cannot_build() {
    let vs = VarStore::new(Device::Cpu);
    // 16 channels in 3 groups.
    let cfg = json!({"type": "Shared4Conv1FCBBoxHead", "in_channels": 8, "conv_out_channels": 16, "norm_cfg": GN(3)});
    let err = build_bbox_head(&BBoxHeadCfg(cfg), &vs.root()).unwrap_err();
    assert!(err.message.contains("num_groups 3 does not divide the 16 channels"), "{err}");
    let cfg = json!({"type": "ConvFCBBoxHead", "num_shared_fcs": 1, "num_cls_convs": 1});
    let err = build_bbox_head(&BBoxHeadCfg(cfg), &vs.root()).unwrap_err();
    assert!(err.message.contains("num_shared_fcs: 0"), "{err}");
    let err = build_bbox_head(&BBoxHeadCfg(json!({"type": "ConvFCBBoxHead"})), &vs.root()).unwrap_err();
    assert!(err.message.contains("at least one"), "{err}");
    let cfg = json!({"type": "Shared4Conv1FCBBoxHead", "conv_cfg": {"type": "Conv2d", "padding_mode": "reflect"}});
    let err = build_bbox_head(&BBoxHeadCfg(cfg), &vs.root()).unwrap_err();
    assert!(err.message.contains("padding_mode"), "{err}");
}
