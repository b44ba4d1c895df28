//! A threaded loader: decodes and augments on worker threads with bounded prefetch, in sampler order.
