//! `detc data shapes` and `CocoDataset`: generated data loads in pycocotools; datasets parse as MMDetection parses them.
