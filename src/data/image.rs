//! Image decoding (libjpeg-turbo, bit-identical to OpenCV's `imread`) and OpenCV-compatible resizing and flipping.
