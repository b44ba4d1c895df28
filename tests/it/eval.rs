//! `detc eval` against pycocotools on generated cases.
