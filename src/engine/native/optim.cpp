// torch.optim's multi-tensor updates (`foreach=True`, torch's default for
// CUDA parameters): one `at::_foreach_*` call per operation over all the
// parameters of a group, in the order `_multi_tensor_adam` and
// `_multi_tensor_sgd` of torch 2.11 make them. On CUDA each call is a few
// kernels for the whole list instead of several per parameter; on the CPU
// the per-parameter loop runs inside libtorch. Each element gets the same
// roundings as torch's single-tensor path (`add_(g, alpha)` is one rounding).

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "status.h"

using detc::DETC_OK;
using detc::guarded;

namespace {

template <class Ptr>
std::vector<at::Tensor> tensors(const Ptr* ptrs, int64_t n) {
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (ptrs[i] == nullptr || !ptrs[i]->defined()) {
      throw std::invalid_argument("undefined tensor in an optimizer list");
    }
    out.push_back(*ptrs[i]);
  }
  return out;
}

}  // namespace

extern "C" {

// Adam / AdamW (`decoupled`) over n parameters with gradients, as
// `_multi_tensor_adam` (not capturable): `steps[i]` is parameter i's step
// count after this step's increment; `max_exp_avg_sqs` only with amsgrad.
int detc_adam_foreach(const at::Tensor* const* params, const at::Tensor* const* grads,
                      const at::Tensor* const* exp_avgs, const at::Tensor* const* exp_avg_sqs,
                      const at::Tensor* const* max_exp_avg_sqs, const double* steps, int64_t n,
                      double lr, double beta1, double beta2, double weight_decay, double eps,
                      int amsgrad, int maximize, int decoupled) {
  return guarded([&] {
    if (n == 0) return DETC_OK;
    at::NoGradGuard no_grad;
    auto p = tensors(params, n);
    auto g = tensors(grads, n);
    auto m = tensors(exp_avgs, n);
    auto v = tensors(exp_avg_sqs, n);
    if (maximize) g = at::_foreach_neg(g);
    if (weight_decay != 0.0) {
      if (decoupled) {
        at::_foreach_mul_(p, c10::Scalar(1.0 - lr * weight_decay));
      } else {
        g = at::_foreach_add(g, p, c10::Scalar(weight_decay));
      }
    }
    at::_foreach_lerp_(m, g, c10::Scalar(1.0 - beta1));
    at::_foreach_mul_(v, c10::Scalar(beta2));
    at::_foreach_addcmul_(v, g, g, c10::Scalar(1.0 - beta2));
    // Python floats: `(lr / bc1) * -1` and `bc2 ** 0.5`.
    std::vector<c10::Scalar> step_size, bc2_sqrt;
    step_size.reserve(static_cast<size_t>(n));
    bc2_sqrt.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      double bc1 = 1.0 - std::pow(beta1, steps[i]);
      double bc2 = 1.0 - std::pow(beta2, steps[i]);
      step_size.emplace_back((lr / bc1) * -1.0);
      bc2_sqrt.emplace_back(std::pow(bc2, 0.5));
    }
    std::vector<at::Tensor> denom;
    if (amsgrad) {
      auto mx = tensors(max_exp_avg_sqs, n);
      at::_foreach_maximum_(mx, v);
      denom = at::_foreach_sqrt(mx);
    } else {
      denom = at::_foreach_sqrt(v);
    }
    at::_foreach_div_(denom, bc2_sqrt);
    at::_foreach_add_(denom, c10::Scalar(eps));
    at::_foreach_addcdiv_(p, m, denom, step_size);
    return DETC_OK;
  });
}

// SGD over n parameters with gradients, as `_multi_tensor_sgd`.
// `momentum_buffers` (null without momentum) holds each parameter's buffer
// or null where it has none yet: that one is made here, a copy of the
// gradient, and written back as a new tensor the caller takes over.
int detc_sgd_foreach(const at::Tensor* const* params, const at::Tensor* const* grads,
                     at::Tensor** momentum_buffers, int64_t n, double lr, double weight_decay,
                     double momentum, double dampening, int nesterov, int maximize) {
  return guarded([&] {
    if (n == 0) return DETC_OK;
    at::NoGradGuard no_grad;
    auto p = tensors(params, n);
    auto g = tensors(grads, n);
    if (maximize) g = at::_foreach_neg(g);
    if (weight_decay != 0.0) g = at::_foreach_add(g, p, c10::Scalar(weight_decay));
    if (momentum != 0.0) {
      bool all_exist = true;
      for (int64_t i = 0; i < n; ++i) all_exist = all_exist && momentum_buffers[i] != nullptr;
      std::vector<at::Tensor> bufs;
      if (all_exist) {
        bufs = tensors(momentum_buffers, n);
        at::_foreach_mul_(bufs, c10::Scalar(momentum));
        at::_foreach_add_(bufs, g, c10::Scalar(1.0 - dampening));
      } else {
        // torch's step with a new buffer: parameter by parameter.
        for (int64_t i = 0; i < n; ++i) {
          if (momentum_buffers[i] == nullptr) {
            bufs.push_back(g[i].clone().detach());
          } else {
            bufs.push_back(momentum_buffers[i]->mul_(momentum).add_(g[i], 1.0 - dampening));
          }
        }
      }
      // torch adds in place into the gradients here; a new list leaves
      // `.grad` as backward made it, with the same numbers.
      g = nesterov ? at::_foreach_add(g, bufs, c10::Scalar(momentum)) : bufs;
      if (!all_exist) {
        for (int64_t i = 0; i < n; ++i) {
          if (momentum_buffers[i] == nullptr) momentum_buffers[i] = new at::Tensor(bufs[i]);
        }
      }
    }
    at::_foreach_add_(p, g, c10::Scalar(-lr));
    return DETC_OK;
  });
}

// torch.nn.utils.clip_grad_norm_ over n gradients (foreach, as torch runs
// it for CUDA gradients; per element the same as its CPU loop): each
// gradient's norm, the norm of those, `max_norm / (total + 1e-6)` clamped at
// 1 multiplied into every gradient. *total receives the total norm, a new
// tensor on the gradients' device, read back only for `error_if_nonfinite`:
// then a non-finite total scales nothing (the caller reports it).
int detc_clip_grad_norm_foreach(const at::Tensor* const* grads, int64_t n, double max_norm,
                                double norm_type, int error_if_nonfinite, at::Tensor** total) {
  return guarded([&] {
    at::NoGradGuard no_grad;
    auto g = tensors(grads, n);
    auto norms = at::_foreach_norm(g, c10::Scalar(norm_type));
    auto device = g[0].device();
    for (auto& t : norms) t = t.to(device);
    auto total_norm = at::linalg_vector_norm(at::stack(norms), c10::Scalar(norm_type));
    if (!error_if_nonfinite || std::isfinite(total_norm.item<double>())) {
      // Python's `max_norm / tensor` is `tensor.reciprocal() * max_norm`.
      auto coef = ((total_norm + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
      at::_foreach_mul_(g, coef);
    }
    *total = new at::Tensor(total_norm);
    return DETC_OK;
  });
}

// GradScaler's `torch._amp_foreach_non_finite_check_and_unscale_` over n
// gradients of one device and dtype: each times `inv_scale` in place, and
// `found_inf` (float32, one element, on their device) set to 1 when any
// element is inf or NaN.
int detc_amp_unscale_foreach(const at::Tensor* const* grads, int64_t n, at::Tensor* found_inf,
                             const at::Tensor* inv_scale) {
  return guarded([&] {
    if (n == 0) return DETC_OK;
    at::NoGradGuard no_grad;
    auto g = tensors(grads, n);
    at::_amp_foreach_non_finite_check_and_unscale_(g, *found_inf, *inv_scale);
    return DETC_OK;
  });
}

}  // extern "C"
