//! `CocoDataset`: COCO-format annotations parsed into [`super::DataInfo`] records, as MMDetection does.
