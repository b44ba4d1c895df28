//! Deformable convolutions (`dcn: {type: DCN}` / `{type: DCNv2}`) against
//! outside references (`tests/models/dcn_reference.py`, run once per test
//! process): the operator against `torchvision.ops.deform_conv2d` (outputs
//! and every gradient, taps outside the map and on pixel borders included),
//! and ResNet / ResNeXt with deformable stages against MMDetection's, built
//! on MMCV's own `DeformConv2dPack` / `ModulatedDeformConv2dPack`: names,
//! initialisation, train-mode outputs and gradients.

use std::sync::OnceLock;

use detc::registry::models::backbones::{ResNeXtConfig, ResNetConfig};
use serde_json::json;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::models::backbones::resnet::ResNet;
use crate::models::layers::deform_conv::deform_conv2d;
use crate::models::layers::fixtures::{assert_scaled, check_module_case, script_state_dict, StateDict};
use crate::models::layers::ConvGeom;

fn fixture() -> &'static StateDict {
    static FX: OnceLock<StateDict> = OnceLock::new();
    FX.get_or_init(|| script_state_dict("tests/models/dcn_reference.py", "detc-dcn", "dcn.pth"))
}

fn fx(key: &str) -> Tensor {
    crate::models::layers::fixtures::tensor(fixture(), key)
}

fn has(key: &str) -> bool {
    fixture().contains_key(key)
}

/// One operator case of the script's `OPS`: (geometry, deform groups).
fn op_geometry(case: &str) -> (ConvGeom, i64) {
    match case {
        "v1" => (ConvGeom::k(3).padding(1), 2),
        "v2" => (ConvGeom::k(3).stride(2).padding(2).dilation(2), 4),
        "int" => (ConvGeom::k(3).padding(1), 1),
        other => panic!("unknown case {other}"),
    }
}

fn check_op(case: &str) {
    let (geom, deform_groups) = op_geometry(case);
    let input = |k: &str| has(&format!("{case}.{k}")).then(|| fx(&format!("{case}.{k}")).set_requires_grad(true));
    let (x, offset, weight) = (input("x").unwrap(), input("offset").unwrap(), input("weight").unwrap());
    let (mask, bias) = (input("mask"), input("bias"));
    let groups = x.size()[1] / weight.size()[1];
    let out = deform_conv2d(&x, &offset, mask.as_ref(), &weight, bias.as_ref(), geom.groups(groups), deform_groups).unwrap();
    assert_scaled(&out, &fx(&format!("{case}.out")), &format!("{case}: output"));
    (out * fx(&format!("{case}.dy"))).sum(Kind::Float).backward();
    for (name, t) in [("x", Some(&x)), ("weight", Some(&weight)), ("mask", mask.as_ref()), ("bias", bias.as_ref())] {
        if let Some(t) = t {
            assert_scaled(&t.grad(), &fx(&format!("{case}.grad.{name}")), &format!("{case}: gradient of {name}"));
        }
    }
    // MMCV (get_coordinate_weight in mmcv/ops/csrc) gives a tap exactly on
    // the -1 border no offset gradient along that axis; torchvision takes
    // the one-sided difference into the map. Elsewhere they agree.
    let on_border = sample_positions(&offset.detach(), geom, deform_groups).eq(-1.0);
    let theirs = fx(&format!("{case}.grad.offset"));
    let ours = offset.grad();
    if case == "int" {
        assert!(on_border.any().int64_value(&[]) == 1, "the case has taps on the -1 border");
    }
    assert_eq!(ours.masked_select(&on_border).abs().sum(Kind::Double).double_value(&[]), 0.0, "{case}: border taps");
    let zero = Tensor::zeros([], (Kind::Float, Device::Cpu));
    assert_scaled(&ours.where_self(&on_border.logical_not(), &zero), &theirs.where_self(&on_border.logical_not(), &zero), &format!("{case}: gradient of offset"));
}

/// The (y, x) sampling position of every offset entry, laid out as `offset`.
fn sample_positions(offset: &Tensor, geom: ConvGeom, deform_groups: i64) -> Tensor {
    let (n, c, ho, wo) = offset.size4().unwrap();
    let taps = c / deform_groups / 2;
    let k = (taps as f64).sqrt() as i64;
    let tap = Tensor::arange(taps, (Kind::Float, Device::Cpu));
    let tap_y = (tap.divide_scalar_mode(k, "floor") * geom.dilation).view([taps, 1, 1]);
    let tap_x = (tap.remainder(k) * geom.dilation).view([taps, 1, 1]);
    let rows = (Tensor::arange(ho, (Kind::Float, Device::Cpu)) * geom.stride - geom.padding).view([1, ho, 1]);
    let cols = (Tensor::arange(wo, (Kind::Float, Device::Cpu)) * geom.stride - geom.padding).view([1, 1, wo]);
    let base = Tensor::stack(&[(tap_y + rows).expand([taps, ho, wo], false), (tap_x + cols).expand([taps, ho, wo], false)], 1);
    (offset.view([n, deform_groups, taps, 2, ho, wo]) + base).view([n, c, ho, wo])
}

#[test]
fn deform_conv_equals_torchvision() {
    check_op("v1");
}

#[test]
fn modulated_grouped_strided_dilated_deform_conv_equals_torchvision() {
    check_op("v2");
}

#[test]
fn deform_conv_on_pixel_and_padding_borders_equals_torchvision() {
    check_op("int");
}

fn backbone(case: &str, vs: &VarStore) -> ResNet {
    let common = json!({"base_channels": 16, "num_stages": 4, "out_indices": [0, 1, 2, 3], "frozen_stages": 1,
        "norm_eval": false, "style": "pytorch", "depth": 50});
    let mut cfg = common.as_object().unwrap().clone();
    match case {
        "r50_dcn" => {
            cfg.insert("dcn".into(), json!({"type": "DCN", "deform_groups": 1, "fallback_on_stride": false}));
            cfg.insert("stage_with_dcn".into(), json!([false, true, true, true]));
            let cfg: ResNetConfig = serde_json::from_value(cfg.into()).unwrap();
            ResNet::new(&cfg, vs.root()).unwrap()
        }
        "x50_mdcn" => {
            cfg.insert("dcn".into(), json!({"type": "DCNv2", "deform_groups": 2, "fallback_on_stride": false}));
            cfg.insert("stage_with_dcn".into(), json!([false, false, true, true]));
            cfg.insert("groups".into(), json!(4));
            cfg.insert("base_width".into(), json!(4));
            let cfg: ResNeXtConfig = serde_json::from_value(cfg.into()).unwrap();
            ResNet::resnext(&cfg, vs.root()).unwrap()
        }
        other => panic!("unknown case {other}"),
    }
}

fn check_backbone(case: &str) {
    let _seed = crate::models::layers::fixtures::seeded();
    let vs = VarStore::new(Device::Cpu);
    let net = backbone(case, &vs);
    // The deformable convs' weights: MMCV's uniform bounds (the spreads and
    // the zero or Kaiming offsets are checked with the rest below).
    for (name, a) in vs.variables() {
        if has(&format!("{case}.init.{}", name.replace(".weight", ".conv_offset.weight"))) {
            let b = fx(&format!("{case}.init.{name}"));
            let (ma, mb) = (a.abs().max().double_value(&[]), b.abs().max().double_value(&[]));
            assert!(ma <= mb * 1.01 && ma >= mb * 0.9, "{case}: initial {name} bound {ma} vs {mb}");
        }
    }
    check_module_case(fixture(), case, &vs, |inputs| net.forward_t(&inputs[0], true).unwrap());
}

#[test]
fn resnet50_with_dcn_stages_equals_mmdet() {
    check_backbone("r50_dcn");
}

#[test]
fn resnext50_with_modulated_dcn_groups_equals_mmdet() {
    check_backbone("x50_mdcn");
}

#[test]
fn dcn_offsets_start_at_zero_under_a_checkpoint() {
    let vs = VarStore::new(Device::Cpu);
    let cfg: ResNetConfig = serde_json::from_value(json!({"depth": 50, "base_channels": 16,
        "dcn": {"type": "DCN"}, "stage_with_dcn": [false, true, true, true],
        "init_cfg": {"type": "Pretrained", "checkpoint": "torchvision://resnet50"}}))
    .unwrap();
    ResNet::new(&cfg, vs.root()).unwrap();
    let offsets: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(n, _)| n.contains("conv_offset")).collect();
    assert_eq!(offsets.len(), 2 * (4 + 6 + 3));
    for (name, t) in offsets {
        assert_eq!(t.abs().max().double_value(&[]), 0.0, "{name}");
    }
}

#[test]
fn dcn_configs_mmdet_refuses_are_errors() {
    let build = |extra: serde_json::Value| {
        let mut cfg = json!({"depth": 50, "base_channels": 16, "dcn": {"type": "DCN"}, "stage_with_dcn": [false, true, true, true]});
        cfg.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let cfg: ResNetConfig = serde_json::from_value(cfg).unwrap();
        ResNet::new(&cfg, VarStore::new(Device::Cpu).root()).unwrap_err().message
    };
    assert!(build(json!({"stage_with_dcn": [true, true]})).contains("one flag per stage"));
    assert!(build(json!({"conv_cfg": {"type": "ConvWS"}})).contains("conv_cfg must be null"));
    assert!(build(json!({"depth": 18})).contains("bottleneck"));
    assert!(build(json!({"dcn": {"type": "DCN", "deform_groups": 3}})).contains("deform_groups"));
    // MMCV's old name counts as the new one, and both at once is refused.
    assert!(build(json!({"dcn": {"type": "DCNv2", "deformable_groups": 3}})).contains("deform_groups"));
    assert!(build(json!({"dcn": {"type": "DCNv2", "deformable_groups": 1, "deform_groups": 1}})).contains("not both"));
}
