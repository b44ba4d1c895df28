//! The mask ops around a mask head, as MMDetection 3.3 computes them:
//! training targets ([`mask_target`]: each positive's GT mask cropped by its
//! box and resized to `mask_size`) and inference pasting ([`predict_masks`]:
//! the `h x w` probabilities drawn back into the image and thresholded).

pub mod mask_target;
mod paste;

pub use mask_target::{mask_target, mask_targets, PositivesOf};
pub use paste::{paste_masks, predict_by_feat_single, predict_masks, Window};

/// The reference fixture both halves test against.
#[cfg(test)]
pub(crate) mod fixture {
    use std::sync::OnceLock;

    use tch::{Kind, Tensor};

    use crate::models::data_preprocessors::MaskTensors;
    use crate::models::layers::fixtures::{script_state_dict, StateDict};

    /// tests/models/masks_reference.py's `masks.pth` (MMDetection 3.3's
    /// `mask_target_single` and `FCNMaskHead` outputs), made once per test
    /// process.
    pub fn fixture() -> &'static StateDict {
        static FX: OnceLock<StateDict> = OnceLock::new();
        FX.get_or_init(|| script_state_dict("tests/models/masks_reference.py", "detc-masks-fixtures", "masks.pth"))
    }

    /// The fixture's three polygon objects on their 40x50 canvas.
    pub fn polygons(fx: &StateDict) -> MaskTensors {
        let polygons = (0..3)
            .map(|g| {
                (0..)
                    .map_while(|j| fx.get(&format!("poly.obj{g}.{j}")))
                    .map(|t| {
                        Vec::<f64>::try_from(crate::models::weights::to_tensor(t).unwrap()).unwrap()
                    })
                    .collect()
            })
            .collect();
        MaskTensors::Polygons {
            polygons,
            height: 40,
            width: 50,
        }
    }

    /// Asserts equal dtypes and values, reporting how many values differ.
    pub fn assert_same(got: &Tensor, want: &Tensor, what: &str) {
        assert_eq!(got.size(), want.size(), "{what}: shapes");
        assert_eq!(got.kind(), want.kind(), "{what}: dtypes");
        let diff = got
            .to_kind(Kind::Double)
            .ne_tensor(&want.to_kind(Kind::Double));
        let n = diff.sum(Kind::Int64).int64_value(&[]);
        assert_eq!(n, 0, "{what}: {n} of {} values differ", want.numel());
    }
}
