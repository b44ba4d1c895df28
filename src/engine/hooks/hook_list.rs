//! The registered hooks in execution order (`Runner._hooks`), and the table
//! MMEngine logs at start-up (`Runner.get_hooks_info`).

use super::{Hook, HookPriority, HookResult, Stage, TrainIter};
use crate::engine::runner::RunState;

struct Registered {
    hook: Box<dyn Hook>,
    priority: HookPriority,
}

/// Hooks sorted by priority; equal priorities keep registration order.
#[derive(Default)]
pub struct Hooks {
    list: Vec<Registered>,
    /// Hooks left out on this rank ([`Hooks::retain`]), whose schedules still
    /// say when every rank reads the losses.
    schedule_only: Vec<Box<dyn Hook>>,
}

impl Hooks {
    /// `Runner.register_hook`: `priority` (the config's) or the hook's own;
    /// inserted after the last hook whose priority value is lower or equal.
    pub fn register(&mut self, hook: Box<dyn Hook>, priority: Option<HookPriority>) {
        let priority = priority.unwrap_or_else(|| hook.priority());
        let at = self
            .list
            .iter()
            .rposition(|r| r.priority.value() <= priority.value())
            .map_or(0, |i| i + 1);
        self.list.insert(at, Registered { hook, priority });
    }

    /// Whether a hook of class `name` is registered.
    pub fn has(&self, name: &str) -> bool {
        self.list.iter().any(|r| r.hook.name() == name)
    }

    /// Keeps the hooks whose class name `keep` accepts (in order).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let (kept, left): (Vec<_>, Vec<_>) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|r| keep(r.hook.name()));
        self.list = kept;
        self.schedule_only.extend(left.into_iter().map(|r| r.hook));
    }

    /// Whether a hook, here or left out on this rank, reads the losses of
    /// the steps so far after `iter` ([`Hook::reads_train_values`]).
    pub fn read_train_values(&self, state: &RunState, iter: &TrainIter) -> bool {
        let mut hooks = self.list.iter().map(|r| &r.hook).chain(&self.schedule_only);
        hooks.any(|h| h.reads_train_values(state, iter))
    }

    /// Calls one stage on every hook in order; the first failure stops it.
    pub fn call(
        &mut self,
        state: &mut RunState,
        mut stage: impl FnMut(&mut dyn Hook, &mut RunState) -> HookResult,
    ) -> HookResult {
        for r in &mut self.list {
            stage(r.hook.as_mut(), state)?;
        }
        Ok(())
    }

    /// `get_hooks_info`: per stage, the hooks acting there in order, as
    /// `(PRIORITY    ) ClassName` rows, stages separated by a rule.
    pub fn info_table(&self) -> String {
        let mut blocks = vec![];
        for stage in Stage::ALL {
            let rows: Vec<String> = self
                .list
                .iter()
                .filter(|r| r.hook.stages().contains(&stage))
                .map(|r| format!("({:<12}) {:<35}", r.priority.label(), r.hook.name()))
                .collect();
            if !rows.is_empty() {
                blocks.push(format!(
                    "{}:\n{}\n -------------------- ",
                    stage.as_str(),
                    rows.join("\n")
                ));
            }
        }
        blocks.join("\n")
    }
}
