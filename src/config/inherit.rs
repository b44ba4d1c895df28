//! `_base_` inheritance: loads a config and its bases into a petgraph file
//! graph, rejects cycles (naming every `_base_` entry on the cycle), then
//! resolves each file onto its merged bases exactly as MMEngine's
//! `Config._file2dict` does: sibling bases may not share a key, references
//! `{{_base_.x}}` are resolved against the merged bases, then the file is
//! merged onto them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use super::diagnostic::{did_you_mean, Diagnostic, Diagnostics, Result};
use super::merge::merge;
use super::source::{SourceId, Sources, Span};
use super::value::{Map, Node, Value};
use super::yaml;

pub const BASE_KEY: &str = "_base_";

/// One file of the graph: its own tree (without `_base_`) and where it came from.
struct File {
    source: SourceId,
    tree: Node,
    /// How many files still need this one as a base: the last user takes
    /// the tree instead of copying it.
    uses: usize,
    /// The absolute path as MMEngine forms it (`abspath`: `..` folded, links
    /// kept): bases are found relative to it, and `{{ fileDirname }}` is its folder.
    abs: PathBuf,
}

/// Loads `path` and everything it inherits from; returns the merged tree.
pub fn load(path: &Path, sources: &mut Sources) -> Result<Node> {
    let mut graph: DiGraph<File, Span> = DiGraph::new();
    let root = discover(path, sources, &mut graph)?;
    check_cycles(&graph, sources)?;
    for ix in graph.node_indices() {
        graph[ix].uses = graph.neighbors_directed(ix, petgraph::Direction::Incoming).count().max(1);
    }
    resolve(root, &mut graph)
}

/// Reads every reachable file into `graph`, edges labelled by their `_base_` entry.
fn discover(path: &Path, sources: &mut Sources, graph: &mut DiGraph<File, Span>) -> Result<NodeIndex> {
    let canonical = path.canonicalize().map_err(|e| {
        vec![Diagnostic::error("detc::config::file_not_found", format!("cannot read config `{}`: {e}", path.display()))]
    })?;
    let mut index_of: HashMap<PathBuf, NodeIndex> = HashMap::new();
    let abs = normalize_path(&std::path::absolute(path).unwrap_or_else(|_| canonical.clone()));
    let root = read_file(path.display().to_string(), canonical.clone(), abs, sources, graph)?;
    index_of.insert(canonical, root);
    let mut queue = vec![root];
    let mut errors: Diagnostics = vec![];
    while let Some(ix) = queue.pop() {
        let bases = match base_entries(&graph[ix].tree) {
            Ok(b) => b,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        let dir = graph[ix].abs.parent().map(Path::to_path_buf).unwrap_or_default();
        let shown_dir = Path::new(&sources.get(graph[ix].source).name).parent().map(Path::to_path_buf);
        for (rel, span) in bases {
            let full = normalize_path(&dir.join(&rel));
            let shown = normalize(&shown_dir.clone().unwrap_or_default().join(&rel));
            let Ok(canonical) = full.canonicalize() else {
                errors.push(Diagnostic::error("detc::config::missing_base", format!("base file `{rel}` not found"))
                    .label(span, format!("looked for `{shown}`"))
                    .help("`_base_` paths are relative to the file that names them"));
                continue;
            };
            let target = match index_of.get(&canonical) {
                Some(&t) => t,
                None => {
                    match read_file(shown, canonical.clone(), full, sources, graph) {
                        Ok(t) => {
                            index_of.insert(canonical, t);
                            queue.push(t);
                            t
                        }
                        Err(e) => {
                            errors.extend(e.into_iter().map(|d| d.label(span, "included from here")));
                            continue;
                        }
                    }
                }
            };
            graph.add_edge(ix, target, span);
        }
    }
    if errors.is_empty() { Ok(root) } else { Err(errors) }
}

fn read_file(
    name: String,
    path: PathBuf,
    abs: PathBuf,
    sources: &mut Sources,
    graph: &mut DiGraph<File, Span>,
) -> Result<NodeIndex> {
    let text = std::fs::read_to_string(&path).map_err(|e| {
        vec![Diagnostic::error("detc::config::file_not_found", format!("cannot read config `{name}`: {e}"))]
    })?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let source = sources.add(name.clone(), Some(path.clone()), text);
    if !matches!(ext, "yaml" | "yml" | "json") {
        return Err(vec![Diagnostic::error("detc::config::unsupported_format",
            format!("`{name}` is not a YAML or JSON config"))
            .help("detc reads `.yaml`, `.yml` and `.json` configs; see docs/config-language.md to convert Python configs")]);
    }
    let text = sources.get(source).text.clone();
    let tree = yaml::parse(source, &text, Some(&abs))?;
    Ok(graph.add_node(File { source, tree, uses: 1, abs }))
}

/// `a/./b/../c` → `a/c`, for the names messages show.
fn normalize(path: &Path) -> String {
    normalize_path(path).display().to_string()
}

/// Folds `.` and `name/..` without touching the file system (Python's `normpath`).
fn normalize_path(path: &Path) -> PathBuf {
    let mut parts: Vec<std::path::Component> = vec![];
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if matches!(parts.last(), Some(std::path::Component::Normal(_))) => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.iter().collect()
}

/// The `_base_` entries of a file: a string or a list of strings.
fn base_entries(tree: &Node) -> Result<Vec<(String, Span)>> {
    let Some(node) = tree.as_map().and_then(|m| m.get(BASE_KEY)) else { return Ok(vec![]) };
    let items: Vec<&Node> = match &node.value {
        Value::List(items) => items.iter().collect(),
        _ => vec![node],
    };
    items
        .into_iter()
        .map(|n| match &n.value {
            Value::Str(s) => Ok((s.clone(), n.span)),
            _ => Err(vec![Diagnostic::error("detc::config::bad_base", format!("`_base_` entries must be paths, found {}", n.kind()))
                .label(n.span, "expected a file path")]),
        })
        .collect()
}

/// Every cycle in the file graph is an error that walks the whole cycle.
fn check_cycles(graph: &DiGraph<File, Span>, sources: &Sources) -> Result<()> {
    let mut errors = vec![];
    for scc in petgraph::algo::tarjan_scc(graph) {
        let start = scc[0];
        let self_loop = graph.edges(start).any(|e| e.target() == start);
        if scc.len() == 1 && !self_loop {
            continue;
        }
        let cycle = find_cycle(graph, start, &scc);
        let names: Vec<&str> = cycle.iter().map(|e| sources.get(graph[e.0].source).name.as_str()).collect();
        let mut diag = Diagnostic::error("detc::config::base_cycle",
            format!("`_base_` cycle: {} -> {}", names.join(" -> "), names[0]))
            .help("a config cannot inherit from itself, directly or through its bases");
        for (from, span, to) in &cycle {
            diag = diag.label(*span, format!("`{}` inherits from `{}`",
                sources.get(graph[*from].source).name, sources.get(graph[*to].source).name));
        }
        errors.push(diag);
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// A path of edges from `start` back to `start` inside one strongly connected component.
fn find_cycle(graph: &DiGraph<File, Span>, start: NodeIndex, scc: &[NodeIndex]) -> Vec<(NodeIndex, Span, NodeIndex)> {
    let mut parent: HashMap<NodeIndex, (NodeIndex, Span)> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for e in graph.edges(n) {
            let t = e.target();
            if !scc.contains(&t) {
                continue;
            }
            if t == start {
                let mut path = vec![(n, *e.weight(), t)];
                let mut cur = n;
                while cur != start {
                    let (p, span) = parent[&cur];
                    path.push((p, span, cur));
                    cur = p;
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = parent.entry(t) {
                v.insert((n, *e.weight()));
                queue.push_back(t);
            }
        }
    }
    vec![]
}

/// The merged tree of file `ix`. (A base reached twice is merged twice; files
/// are parsed once, in `discover`, and merging is cheap.)
fn resolve(ix: NodeIndex, graph: &mut DiGraph<File, Span>) -> Result<Node> {
    let mut edges: Vec<_> = graph.edges(ix).map(|e| (e.id(), e.target())).collect();
    edges.sort_by_key(|(id, _)| *id);
    let mut bases = Map::default();
    let mut errors: Diagnostics = vec![];
    for (_, target) in edges {
        let base = resolve(target, graph)?;
        let Value::Map(map) = base.value else { unreachable!("files are mappings") };
        for (key, entry) in map {
            if let Some(first) = bases.entry(&key) {
                errors.push(Diagnostic::error("detc::config::duplicate_base_key",
                    format!("key `{key}` is defined in two sibling bases"))
                    .label(entry.key_span, "defined here")
                    .label(first.key_span, "and here")
                    .help("MMEngine does not allow sibling `_base_` files to share a top-level key; move it to one of them or to this file"));
                continue;
            }
            bases.insert(key, entry.key_span, entry.node);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let file = &mut graph[ix];
    file.uses -= 1;
    let placeholder = Node::new(Value::Null, file.tree.span);
    let tree = if file.uses == 0 { std::mem::replace(&mut file.tree, placeholder) } else { file.tree.clone() };
    let span = tree.span;
    let Value::Map(mut own) = tree.value else { unreachable!("files are mappings") };
    let has_bases = own.remove(BASE_KEY).is_some();
    // MMEngine drops a file's top-level `__private` keys.
    let private: Vec<String> = own.keys().filter(|k| k.starts_with("__")).cloned().collect();
    private.iter().for_each(|k| drop(own.remove(k)));
    let bases_node = Node::new(Value::Map(bases), span);
    substitute_references(&mut own, &bases_node, has_bases)?;
    merge(own, bases_node)
}

/// Replaces every `{{_base_.path}}` in `map` by a copy of that value of the merged bases.
fn substitute_references(map: &mut Map, bases: &Node, has_bases: bool) -> Result<()> {
    let mut errors = vec![];
    for (_, entry) in map.iter_mut() {
        substitute_in(&mut entry.node, bases, has_bases, &mut errors);
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn substitute_in(node: &mut Node, bases: &Node, has_bases: bool, errors: &mut Diagnostics) {
    match &mut node.value {
        Value::Reference(path) => {
            let parts: Vec<&str> = path.split('.').collect();
            match bases.at_path(&parts) {
                Some(found) => node.value = found.value.clone(),
                None => errors.push(missing_reference(path, node.span, bases, has_bases)),
            }
        }
        Value::List(items) => items.iter_mut().for_each(|n| substitute_in(n, bases, has_bases, errors)),
        Value::Map(map) => map.iter_mut().for_each(|(_, e)| substitute_in(&mut e.node, bases, has_bases, errors)),
        _ => {}
    }
}

fn missing_reference(path: &str, span: Span, bases: &Node, has_bases: bool) -> Diagnostic {
    let diag = Diagnostic::error("detc::config::unknown_reference", format!("`_base_.{path}` does not exist"));
    if !has_bases {
        return diag.label(span, "this file has no `_base_`").help("references read values of the files listed in `_base_`");
    }
    // The deepest existing prefix, to suggest a sibling key.
    let parts: Vec<&str> = path.split('.').collect();
    let mut depth = 0;
    while depth < parts.len() && bases.at_path(&parts[..=depth]).is_some() {
        depth += 1;
    }
    let parent = bases.at_path(&parts[..depth]);
    let suggestion = parent
        .and_then(Node::as_map)
        .and_then(|m| did_you_mean(parts[depth], m.keys().map(String::as_str)));
    let diag = diag.label(span, format!("no `{}` in the merged bases", parts[..=depth].join(".")));
    match suggestion {
        Some(s) => diag.help(format!("did you mean `{}`?", parts[..depth].iter().chain([&s]).copied().collect::<Vec<_>>().join("."))),
        None => diag.help("references are resolved against the merged `_base_` files, not this file"),
    }
}
