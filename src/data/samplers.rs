//! MMEngine's `DefaultSampler` and `InfiniteSampler` and MMDetection's `AspectRatioBatchSampler`.
