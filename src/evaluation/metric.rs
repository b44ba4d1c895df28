//! MMDetection's `CocoMetric`: predictions to COCO results JSON, then [`super::cocoeval`].
