//! The synthetic shapes dataset behind `detc data shapes`: COCO JSON and JPEG images of drawn shapes with instance masks.
