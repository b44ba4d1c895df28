//! pycocotools' `COCOeval` (evaluate, accumulate, summarize) for `bbox` and `segm`.
