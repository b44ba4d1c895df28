//! Transforms against OpenCV/NumPy (and MMDetection's own transforms) on the same inputs.
