//! torch.optim's multi-tensor (`foreach`) updates of Adam/AdamW and SGD,
//! and `clip_grad_norm_` (`optim.cpp`): one libtorch call per operation over
//! a whole parameter group. `engine::optim` keeps the state and calls these.

use tch::Tensor;

use super::{check, NativeError, NativeResult};

/// Adam's hyper-parameters for one group.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub lr: f64,
    pub betas: [f64; 2],
    pub weight_decay: f64,
    pub eps: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
}

/// SGD's hyper-parameters for one group.
#[derive(Debug, Clone, Copy)]
pub struct SgdStep {
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub maximize: bool,
}

fn pointers(ts: &[&Tensor]) -> Vec<*const torch_sys::C_tensor> {
    ts.iter().map(|t| t.as_ptr() as *const _).collect()
}

fn same_len(call: &'static str, n: usize, lens: &[usize]) -> NativeResult<()> {
    if lens.iter().all(|&l| l == n) {
        Ok(())
    } else {
        Err(NativeError {
            call,
            message: format!("lists of {lens:?} tensors for {n} parameters"),
        })
    }
}

/// `_multi_tensor_adam`: updates `params`, `exp_avgs`, `exp_avg_sqs` (and
/// `max_exp_avg_sqs` with amsgrad) in place; `steps[i]` is parameter i's
/// step count including this step.
pub fn adam_foreach(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    max_exp_avg_sqs: &[&Tensor],
    steps: &[f64],
    h: &AdamStep,
) -> NativeResult<()> {
    let n = params.len();
    let max_len = if h.amsgrad { max_exp_avg_sqs.len() } else { n };
    same_len(
        "adam_foreach",
        n,
        &[
            grads.len(),
            exp_avgs.len(),
            exp_avg_sqs.len(),
            max_len,
            steps.len(),
        ],
    )?;
    let (p, g, m, v, mx) = (
        pointers(params),
        pointers(grads),
        pointers(exp_avgs),
        pointers(exp_avg_sqs),
        pointers(max_exp_avg_sqs),
    );
    let [beta1, beta2] = h.betas;
    // SAFETY: every pointer is a live tensor for the call; the lists have n entries.
    let status = unsafe {
        super::ffi::detc_adam_foreach(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            if h.amsgrad {
                mx.as_ptr()
            } else {
                std::ptr::null()
            },
            steps.as_ptr(),
            n as i64,
            h.lr,
            beta1,
            beta2,
            h.weight_decay,
            h.eps,
            h.amsgrad as i32,
            h.maximize as i32,
            h.decoupled as i32,
        )
    };
    check("adam_foreach", status).map(|_| ())
}

/// `_multi_tensor_sgd`: updates `params` and the momentum buffers in place;
/// `momentum_buffers[i]` is `None` where parameter i has none yet (its first
/// step with momentum), and holds the new buffer afterwards.
pub fn sgd_foreach(
    params: &[&Tensor],
    grads: &[&Tensor],
    momentum_buffers: &mut [Option<Tensor>],
    h: &SgdStep,
) -> NativeResult<()> {
    let n = params.len();
    let bufs_len = if h.momentum != 0.0 {
        momentum_buffers.len()
    } else {
        n
    };
    same_len("sgd_foreach", n, &[grads.len(), bufs_len])?;
    let (p, g) = (pointers(params), pointers(grads));
    let mut b: Vec<*mut torch_sys::C_tensor> = momentum_buffers
        .iter_mut()
        .map(|t| t.as_mut().map_or(std::ptr::null_mut(), |t| t.as_mut_ptr()))
        .collect();
    // SAFETY: every pointer is a live tensor for the call, or null where a
    // buffer is missing; the lists have n entries.
    let status = unsafe {
        super::ffi::detc_sgd_foreach(
            p.as_ptr(),
            g.as_ptr(),
            if h.momentum != 0.0 {
                b.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            },
            n as i64,
            h.lr,
            h.weight_decay,
            h.momentum,
            h.dampening,
            h.nesterov as i32,
            h.maximize as i32,
        )
    };
    check("sgd_foreach", status)?;
    if h.momentum != 0.0 {
        for (slot, ptr) in momentum_buffers.iter_mut().zip(b) {
            if slot.is_none() && !ptr.is_null() {
                // SAFETY: a fresh heap tensor from the shim that nothing else owns.
                *slot = Some(unsafe { Tensor::from_ptr(ptr) });
            }
        }
    }
    Ok(())
}

/// `torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf,
/// inv_scale)`: `grads` of one device and dtype multiplied by `inv_scale`
/// in place; `found_inf` (float32, one element, their device) set to 1 when
/// any of them holds inf or NaN.
pub fn amp_unscale_foreach(grads: &[&Tensor], found_inf: &Tensor, inv_scale: &Tensor) -> NativeResult<()> {
    let g = pointers(grads);
    // SAFETY: every pointer is a live tensor for the call.
    let status = unsafe {
        super::ffi::detc_amp_unscale_foreach(g.as_ptr(), g.len() as i64, found_inf.as_ptr() as *mut _, inv_scale.as_ptr())
    };
    check("amp_unscale_foreach", status).map(|_| ())
}

/// `torch.nn.utils.clip_grad_norm_` over `grads` (at least one): scales them
/// in place and returns the total norm, on their device (read back only
/// with `error_if_nonfinite`, when a non-finite total scales nothing).
pub fn clip_grad_norm_foreach(
    grads: &[&Tensor],
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> NativeResult<Tensor> {
    if grads.is_empty() {
        return Err(NativeError {
            call: "clip_grad_norm",
            message: "no gradient".into(),
        });
    }
    let g = pointers(grads);
    // SAFETY: every pointer is a live tensor for the call.
    super::new_tensor("clip_grad_norm", |total| unsafe {
        super::ffi::detc_clip_grad_norm_foreach(
            g.as_ptr(),
            g.len() as i64,
            max_norm,
            norm_type,
            error_if_nonfinite as i32,
            total,
        )
    })
}
