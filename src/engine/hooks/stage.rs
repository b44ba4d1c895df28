//! The stages at which a runner calls its hooks, in MMEngine's order
//! (`Hook.stages`), which is the row order of the hooks table.

/// A hook stage (`mmengine.hooks.Hook.stages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    BeforeRun,
    AfterLoadCheckpoint,
    BeforeTrain,
    BeforeTrainEpoch,
    BeforeTrainIter,
    AfterTrainIter,
    AfterTrainEpoch,
    BeforeVal,
    BeforeValEpoch,
    BeforeValIter,
    AfterValIter,
    AfterValEpoch,
    AfterVal,
    BeforeSaveCheckpoint,
    AfterTrain,
    BeforeTest,
    BeforeTestEpoch,
    BeforeTestIter,
    AfterTestIter,
    AfterTestEpoch,
    AfterTest,
    AfterRun,
}

impl Stage {
    /// Every stage, in `Hook.stages` order.
    pub const ALL: [Stage; 22] = [
        Stage::BeforeRun,
        Stage::AfterLoadCheckpoint,
        Stage::BeforeTrain,
        Stage::BeforeTrainEpoch,
        Stage::BeforeTrainIter,
        Stage::AfterTrainIter,
        Stage::AfterTrainEpoch,
        Stage::BeforeVal,
        Stage::BeforeValEpoch,
        Stage::BeforeValIter,
        Stage::AfterValIter,
        Stage::AfterValEpoch,
        Stage::AfterVal,
        Stage::BeforeSaveCheckpoint,
        Stage::AfterTrain,
        Stage::BeforeTest,
        Stage::BeforeTestEpoch,
        Stage::BeforeTestIter,
        Stage::AfterTestIter,
        Stage::AfterTestEpoch,
        Stage::AfterTest,
        Stage::AfterRun,
    ];

    /// The method name (`after_train_iter`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::BeforeRun => "before_run",
            Stage::AfterLoadCheckpoint => "after_load_checkpoint",
            Stage::BeforeTrain => "before_train",
            Stage::BeforeTrainEpoch => "before_train_epoch",
            Stage::BeforeTrainIter => "before_train_iter",
            Stage::AfterTrainIter => "after_train_iter",
            Stage::AfterTrainEpoch => "after_train_epoch",
            Stage::BeforeVal => "before_val",
            Stage::BeforeValEpoch => "before_val_epoch",
            Stage::BeforeValIter => "before_val_iter",
            Stage::AfterValIter => "after_val_iter",
            Stage::AfterValEpoch => "after_val_epoch",
            Stage::AfterVal => "after_val",
            Stage::BeforeSaveCheckpoint => "before_save_checkpoint",
            Stage::AfterTrain => "after_train",
            Stage::BeforeTest => "before_test",
            Stage::BeforeTestEpoch => "before_test_epoch",
            Stage::BeforeTestIter => "before_test_iter",
            Stage::AfterTestIter => "after_test_iter",
            Stage::AfterTestEpoch => "after_test_epoch",
            Stage::AfterTest => "after_test",
            Stage::AfterRun => "after_run",
        }
    }
}
