//! Samplers against MMEngine/PyTorch: order, sharding over ranks, resume.
