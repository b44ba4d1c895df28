//! The registry: every `type:` name detc knows, mapped to its component's
//! config struct (serde + schemars).
//!
//! One explicit static table, [`COMPONENTS`], is the single source for
//! validation (`detc check`), the "did you mean" of unknown types, the JSON
//! Schema (`detc schema`) and the reference docs. No tch here: the light `detc`
//! binary links this module, so it must never refer to a model builder. The
//! builders live with the models (`src/models`) keyed by the same names.
//!
//! Config structs follow MMDetection 3.x: same field names, same defaults.
//! A field that holds another component (`backbone`, `loss_cls`, `norm_cfg`)
//! is typed by the component's [`Role`], e.g. [`refs::BackboneCfg`]; the
//! validator then dispatches on that dict's `type`.

pub mod components;
pub mod data;
pub mod engine;
pub mod models;
pub mod reference;
pub mod refs;
pub mod root;
pub mod schema;
pub mod schema_index;
pub mod sections;
pub mod validate;

use schemars::{Schema, SchemaGenerator};

/// What a component is for: which config fields may name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Detector,
    DataPreprocessor,
    BatchAugment,
    Backbone,
    Neck,
    RpnHead,
    DenseHead,
    RoiHead,
    SharedHead,
    BBoxHead,
    MaskHead,
    RoiExtractor,
    RoiLayer,
    AnchorGenerator,
    BBoxCoder,
    Assigner,
    Sampler,
    MatchCost,
    Loss,
    Nms,
    Conv,
    Norm,
    Activation,
    Plugin,
    Init,
    Dataset,
    Transform,
    DataSampler,
    BatchSampler,
    Evaluator,
    OptimWrapper,
    Optimizer,
    ParamScheduler,
    Hook,
    Loop,
    Visualizer,
    VisBackend,
    LogProcessor,
}

impl Role {
    /// The name used in messages and as the JSON Schema definition name.
    pub fn as_str(self) -> &'static str {
        macro_rules! names { ($($v:ident),*) => { match self { $(Role::$v => stringify!($v)),* } } }
        names!(
            Detector, DataPreprocessor, BatchAugment, Backbone, Neck, RpnHead, DenseHead, RoiHead, SharedHead, BBoxHead, MaskHead,
            RoiExtractor, RoiLayer, AnchorGenerator, BBoxCoder, Assigner, Sampler, MatchCost, Loss,
            Nms, Conv, Norm, Activation, Plugin, Init, Dataset, Transform, DataSampler, BatchSampler,
            Evaluator, OptimWrapper, Optimizer, ParamScheduler, Hook, Loop, Visualizer, VisBackend,
            LogProcessor
        )
    }

    pub fn from_name(name: &str) -> Option<Role> {
        ALL_ROLES.iter().copied().find(|r| r.as_str() == name)
    }
}

pub const ALL_ROLES: &[Role] = &[
    Role::Detector, Role::DataPreprocessor, Role::BatchAugment, Role::Backbone, Role::Neck, Role::RpnHead, Role::DenseHead,
    Role::RoiHead, Role::SharedHead, Role::BBoxHead, Role::MaskHead, Role::RoiExtractor, Role::RoiLayer,
    Role::AnchorGenerator, Role::BBoxCoder, Role::Assigner, Role::Sampler, Role::MatchCost,
    Role::Loss, Role::Nms, Role::Conv, Role::Norm, Role::Activation, Role::Plugin, Role::Init, Role::Dataset,
    Role::Transform, Role::DataSampler, Role::BatchSampler, Role::Evaluator, Role::OptimWrapper,
    Role::Optimizer, Role::ParamScheduler, Role::Hook, Role::Loop, Role::Visualizer,
    Role::VisBackend, Role::LogProcessor,
];

/// One registered component: its `type:` name, role and config schema.
pub struct Component {
    pub name: &'static str,
    pub role: Role,
    /// Adds the config struct's schema to the generator and returns a `$ref` to it.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

/// Builds a [`Component`] entry from its config struct.
pub const fn component<T: schemars::JsonSchema>(name: &'static str, role: Role) -> Component {
    Component { name, role, schema: schema_of::<T> }
}

fn schema_of<T: schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Every component detc knows, in table order.
pub fn all() -> &'static [Component] {
    components::COMPONENTS
}

/// The component registered under `name` (exact, case-sensitive as in MMEngine).
pub fn lookup(name: &str) -> Option<&'static Component> {
    all().iter().find(|c| c.name == name)
}

/// Components that may stand where `role` is expected.
pub fn of_role(role: Role) -> impl Iterator<Item = &'static Component> {
    all().iter().filter(move |c| c.role == role)
}
