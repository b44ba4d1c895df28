//! MMCV/MMDetection transforms with their names and semantics, built from the pipeline config.
