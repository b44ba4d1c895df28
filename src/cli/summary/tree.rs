//! The module tree of `detc summary`: state-dict names grouped by their
//! module prefixes, children in the config's order, list elements grouped
//! under their parent (`bbox_head  6 × DIIHead`).

use std::cmp::Ordering;

use serde_json::Value;

use super::render::{Counts, Var};

/// A module: a name prefix shared by state-dict entries.
#[derive(Debug, Default)]
pub(super) struct Node {
    pub name: String,
    pub counts: Counts,
    pub children: Vec<Node>,
}

impl Node {
    /// The tree of module prefixes of `vars` (the last segment of a name is
    /// the tensor, not a module). Children are in the order of the config's
    /// keys where the config has them (`backbone, neck, rpn_head, roi_head`),
    /// else in natural order.
    pub fn build(model: &Value, vars: &[Var]) -> Node {
        let mut root = Node::default();
        for var in sorted(vars) {
            let segments: Vec<&str> = var.name.split('.').collect();
            let mut node = &mut root;
            node.counts.add(var);
            for seg in &segments[..segments.len() - 1] {
                let i = match node.children.iter().position(|c| c.name == *seg) {
                    Some(i) => i,
                    None => {
                        node.children.push(Node {
                            name: seg.to_string(),
                            ..Node::default()
                        });
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[i];
                node.counts.add(var);
            }
        }
        root.order_like(Some(model));
        root
    }

    fn order_like(&mut self, config: Option<&Value>) {
        let keys = config.and_then(Value::as_object);
        let rank = |name: &str| {
            keys.and_then(|k| k.keys().position(|k| k == name))
                .unwrap_or(usize::MAX)
        };
        // Stable: natural order among names the config does not hold.
        self.children.sort_by_key(|c| rank(&c.name));
        for child in &mut self.children {
            child.order_like(config.and_then(|c| child_config(c, &child.name)));
        }
    }

    /// A list of modules (`ModuleList`): every child is an index.
    fn is_list(&self) -> bool {
        !self.children.is_empty()
            && self
                .children
                .iter()
                .all(|c| c.name.parse::<usize>().is_ok())
    }

    /// One `(label, counts)` row per module down to `depth` levels below this one.
    pub fn rows(
        &self,
        config: &Value,
        path: &str,
        indent: &str,
        depth: usize,
        rows: &mut Vec<(String, Counts)>,
    ) {
        if depth == 0 {
            return;
        }
        let last = self.children.len().saturating_sub(1);
        for (i, child) in self.children.iter().enumerate() {
            let (branch, next) = if i == last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            let child_path = if path.is_empty() {
                child.name.clone()
            } else {
                format!("{path}.{}", child.name)
            };
            let cfg = config_at(config, &child_path);
            let mut label = format!("{indent}{branch}{}", child.name);
            if let Some(t) = cfg.and_then(|c| c.get("type")).and_then(Value::as_str) {
                label += &format!("  {t}");
            }
            if child.is_list() && depth == 1 {
                label += &list_note(child, cfg);
            }
            rows.push((label, child.counts));
            child.rows(
                config,
                &child_path,
                &format!("{indent}{next}"),
                depth - 1,
                rows,
            );
        }
    }
}

/// `  ×4`, or `  6 × DIIHead` when the config lists the elements' types.
fn list_note(node: &Node, cfg: Option<&Value>) -> String {
    let n = node.children.len();
    let types: Vec<&str> = cfg
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c.get("type").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    match types.first() {
        Some(t) if types.len() == n && types.iter().all(|x| x == t) => format!("  {n} × {t}"),
        _ => format!("  ×{n}"),
    }
}

/// The config section at a module path (`roi_head.bbox_head.0`), if the
/// config has one: where a module's type comes from.
fn config_at<'a>(config: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(config, child_config)
}

fn child_config<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    match config {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

/// `vars` in natural name order.
pub(super) fn sorted(vars: &[Var]) -> Vec<&Var> {
    let mut out: Vec<&Var> = vars.iter().collect();
    out.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    out
}

/// Compares dotted names segment by segment, numbers as numbers
/// (`layer1.2.conv1` < `layer1.10.conv1`).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n).then_with(|| x.cmp(y)),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_indices_as_numbers() {
        let mut names = ["b.10.w", "b.2.w", "a.x", "b.2", "b.x"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["a.x", "b.2", "b.2.w", "b.10.w", "b.x"]);
    }
}
