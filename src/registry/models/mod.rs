//! Config structs of model components, grouped like `mmdet/models`.

pub mod backbones;
