//! The table of every registered component.

use super::models::backbones::ResNetConfig;
use super::{component, Component, Role};

pub static COMPONENTS: &[Component] = &[
    // backbones
    component::<ResNetConfig>("ResNet", Role::Backbone),
];

#[cfg(test)]
mod dump_tmp {
    #[test]
    fn dump() {
        let mut g = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        for c in super::COMPONENTS { let s = (c.schema)(&mut g); println!("{}", serde_json::to_string_pretty(&s).unwrap()); }
        println!("{}", serde_json::to_string_pretty(g.definitions()).unwrap());
    }
}
