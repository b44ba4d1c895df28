"""One module case of a reference script, recorded as the Rust side's
`check_module_case` (src/models/layers/fixtures.rs) reads it.

For a module built from a config the Rust test builds too, under `name`:
`name.init.*` (the state dict after `init_weights()`), `name.sd.*` (the
weights moved by a random perturbation, so that every affine term and bias
counts), `name.in.{i}` (inputs of `shapes`), `name.out.{i}` (train-mode
outputs), `name.dy.{i}` (random weights of the loss sum_i (out_i *
dy_i).sum()), and its gradients: `name.gin.{i}` w.r.t. each input (zeros
for an input it does not read) and
`name.grad.*` w.r.t. every parameter that gets one (frozen ones get none).
"""

import torch


def record_module_case(d, name, module, shapes, forward):
    """`forward(module, inputs)` gives the list of outputs. A plain
    `nn.Module` without `init_weights` (MMCV's ContextBlock) keeps what its
    constructor drew."""
    getattr(module, "init_weights", lambda: None)()
    for k, v in module.state_dict().items():
        d[f"{name}.init.{k}"] = v.detach().clone()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    for k, v in module.state_dict().items():
        d[f"{name}.sd.{k}"] = v.detach().clone()
    module.train()
    inputs = [torch.randn(s, requires_grad=True) for s in shapes]
    for i, x in enumerate(inputs):
        d[f"{name}.in.{i}"] = x.detach().clone()
    loss = 0
    for i, y in enumerate(forward(module, inputs)):
        dy = torch.randn_like(y)
        d[f"{name}.out.{i}"] = y.detach().clone()
        d[f"{name}.dy.{i}"] = dy
        loss = loss + (y * dy).sum()
    loss.backward()
    for i, x in enumerate(inputs):
        # An input the module does not read (FPN's levels below start_level): zeros.
        d[f"{name}.gin.{i}"] = x.grad.clone() if x.grad is not None else torch.zeros_like(x)
    for k, p in module.named_parameters():
        if p.grad is not None:
            d[f"{name}.grad.{k}"] = p.grad.clone()
