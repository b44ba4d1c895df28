//! What calls (`REDUCE`, `NEWOBJ`) build, and the unfolding of the arena into
//! an owned [`Value`] tree.

use super::machine::{Id, Machine, Node, Res, MAX_DEPTH};
use super::{dedup, Value};

impl Machine<'_> {
    /// `callable(*args)`: plain-data constructors are rebuilt, anything else
    /// becomes an opaque object.
    pub(super) fn call(&mut self, callable: Id, args: Vec<Id>) -> Res<()> {
        let (module, name) = match self.leaf(callable) {
            Some(Value::Global { module, name }) => (module.clone(), name.clone()),
            // Calling a computed callable (a bound method from `getattr`):
            // kept as an opaque `.__call__(callable, *args)`.
            _ => {
                let args = std::iter::once(callable).chain(args).collect();
                let node = Node::Object {
                    module: String::new(),
                    name: "__call__".into(),
                    args,
                    state: None,
                    items: Vec::new(),
                    elements: Vec::new(),
                };
                self.push_node(node);
                return Ok(());
            }
        };
        let node = match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") | ("collections", "defaultdict") => {
                // OrderedDict(pairs); defaultdict(factory) drops its factory.
                match args.first() {
                    Some(&first) if name == "OrderedDict" => Node::Dict(self.pair_list(first)?),
                    _ => Node::Dict(Vec::new()),
                }
            }
            ("builtins" | "__builtin__", "set") => Node::Set(self.sequence(args.first().copied())?),
            ("builtins" | "__builtin__", "frozenset") => {
                Node::FrozenSet(self.sequence(args.first().copied())?)
            }
            ("builtins" | "__builtin__", "list") => {
                Node::List(self.sequence(args.first().copied())?)
            }
            ("builtins" | "__builtin__", "tuple") => {
                Node::Tuple(self.sequence(args.first().copied())?)
            }
            ("_codecs", "encode") => Node::Leaf(self.codecs_encode(&args)?),
            ("builtins" | "__builtin__", "bytearray") if args.is_empty() => {
                Node::Leaf(Value::Bytes(Vec::new()))
            }
            ("builtins" | "__builtin__", "bytearray") => Node::Leaf(self.codecs_encode(&args)?),
            ("copyreg" | "copy_reg", "_reconstructor") | ("copyreg" | "copy_reg", "__newobj__")
                if !args.is_empty() =>
            {
                let (module, name) = match self.leaf(args[0]) {
                    Some(Value::Global { module, name }) => (module.clone(), name.clone()),
                    _ => return self.err("copyreg constructor of something that is not a class"),
                };
                let rest = args[1..].iter().copied().filter(|&a| !matches!(self.leaf(a), Some(Value::Global { name, .. }) if name == "object")).collect();
                Node::Object {
                    module,
                    name,
                    args: rest,
                    state: None,
                    items: Vec::new(),
                    elements: Vec::new(),
                }
            }
            _ => Node::Object {
                module,
                name,
                args,
                state: None,
                items: Vec::new(),
                elements: Vec::new(),
            },
        };
        self.push_node(node);
        Ok(())
    }

    /// The items of a list/tuple/set argument, charged to the copy budget.
    fn sequence(&mut self, id: Option<Id>) -> Res<Vec<Id>> {
        let items = match id.and_then(|id| self.arena.get(id)) {
            None => Vec::new(),
            Some(Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v)) => v.clone(),
            Some(_) => return self.err("expected a sequence"),
        };
        self.charge(items.len())?;
        Ok(items)
    }

    fn pair_list(&mut self, id: Id) -> Res<Vec<(Id, Id)>> {
        let mut pairs = Vec::new();
        for item in self.sequence(Some(id))? {
            match self.arena.get(item) {
                Some(Node::List(kv) | Node::Tuple(kv)) if kv.len() == 2 => {
                    pairs.push((kv[0], kv[1]))
                }
                _ => return self.err("OrderedDict item is not a pair"),
            }
        }
        Ok(pairs)
    }

    /// `_codecs.encode(text, 'latin1')`: protocol 2's spelling of `bytes`.
    fn codecs_encode(&self, args: &[Id]) -> Res<Value> {
        let text = match args.first().and_then(|&a| self.leaf(a)) {
            Some(Value::Str(s)) => s,
            Some(Value::Bytes(b)) => return Ok(Value::Bytes(b.clone())),
            _ => return self.err("_codecs.encode of something that is not a string"),
        };
        let encoding = args
            .get(1)
            .and_then(|&a| self.leaf(a))
            .and_then(Value::as_str)
            .unwrap_or("utf-8");
        match encoding
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "latin1" | "iso88591" => {
                let mut out = Vec::with_capacity(text.len());
                for c in text.chars() {
                    match u8::try_from(u32::from(c)) {
                        Ok(b) => out.push(b),
                        Err(_) => return self.err("latin1 text holds a character above U+00FF"),
                    }
                }
                Ok(Value::Bytes(out))
            }
            "utf8" | "ascii" => Ok(Value::Bytes(text.as_bytes().to_vec())),
            other => self.err(format!(
                "_codecs.encode with unsupported encoding `{other}`"
            )),
        }
    }

    /// The owned tree under `id`; `budget` bounds the total number of values
    /// so shared references cannot blow up.
    pub(super) fn unfold(&self, id: Id, depth: usize, budget: &mut usize) -> Res<Value> {
        if depth > MAX_DEPTH {
            return self.err(format!(
                "values nest deeper than {MAX_DEPTH} levels (a cycle?)"
            ));
        }
        if *budget == 0 {
            return self.err("the pickle expands into too many values (shared references)");
        }
        *budget -= 1;
        let list = |ids: &[Id], budget: &mut usize| {
            ids.iter()
                .map(|&i| self.unfold(i, depth + 1, budget))
                .collect::<Res<Vec<_>>>()
        };
        let pairs = |ids: &[(Id, Id)], budget: &mut usize| {
            ids.iter()
                .map(|&(k, v)| {
                    Ok((
                        self.unfold(k, depth + 1, budget)?,
                        self.unfold(v, depth + 1, budget)?,
                    ))
                })
                .collect::<Res<Vec<_>>>()
        };
        let Some(node) = self.arena.get(id) else {
            return self.err("internal: dangling value");
        };
        Ok(match node {
            Node::Leaf(v) => v.clone(),
            Node::List(ids) => Value::List(list(ids, budget)?),
            Node::Tuple(ids) => Value::Tuple(list(ids, budget)?),
            Node::Set(ids) => Value::Set(list(ids, budget)?),
            Node::FrozenSet(ids) => Value::FrozenSet(list(ids, budget)?),
            Node::Dict(kvs) => Value::Dict(dedup(pairs(kvs, budget)?)),
            Node::Persistent(pid) => {
                Value::Persistent(Box::new(self.unfold(*pid, depth + 1, budget)?))
            }
            Node::Object {
                module,
                name,
                args,
                state,
                items,
                elements,
            } => Value::Object {
                module: module.clone(),
                name: name.clone(),
                args: list(args, budget)?,
                state: match state {
                    Some(s) => Some(Box::new(self.unfold(*s, depth + 1, budget)?)),
                    None => None,
                },
                items: pairs(items, budget)?,
                elements: list(elements, budget)?,
            },
        })
    }
}
