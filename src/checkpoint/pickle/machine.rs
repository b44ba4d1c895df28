//! The pickle machine proper: reading opcodes and their arguments, the
//! stack, marks and memo. Calls and the final unfolding are in `calls.rs`.

use std::collections::HashMap;

use super::{PickleError, Value};

/// The most nested containers [`Machine::unfold`] follows: deeper is a cycle or an attack.
pub(super) const MAX_DEPTH: usize = 200;
/// The most marks open at once.
const MAX_MARKS: usize = 1 << 16;

pub(super) type Id = usize;

/// A value in the arena: containers hold ids so that memoised objects can be
/// mutated after they were stored, as Python's references are.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Leaf(Value),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    FrozenSet(Vec<Id>),
    Object {
        module: String,
        name: String,
        args: Vec<Id>,
        state: Option<Id>,
        items: Vec<(Id, Id)>,
        elements: Vec<Id>,
    },
    Persistent(Id),
}

pub(super) struct Machine<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    pub(super) op_pos: usize,
    pub(super) op: Option<u8>,
    pub(super) arena: Vec<Node>,
    pub(super) stack: Vec<Id>,
    pub(super) marks: Vec<usize>,
    pub(super) memo: HashMap<u64, Id>,
    /// How many more ids calls may copy out of memoised containers: bounds
    /// memory when a hostile pickle calls with one big tuple again and again.
    pub(super) copies: usize,
}

pub(super) type Res<T> = Result<T, PickleError>;

impl<'a> Machine<'a> {
    pub(super) fn err<T>(&self, message: impl Into<String>) -> Res<T> {
        Err(PickleError {
            offset: self.op_pos,
            opcode: self.op,
            message: message.into(),
        })
    }

    pub(super) fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => end,
            _ => {
                return self.err(format!(
                    "needs {n} more bytes but the pickle ends at byte {}",
                    self.data.len()
                ))
            }
        };
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    pub(super) fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn le<const N: usize>(&mut self) -> Res<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn line(&mut self) -> Res<&'a str> {
        let bytes = self.line_bytes()?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.trim_end_matches('\r')),
            Err(_) => self.err("text argument is not UTF-8"),
        }
    }

    /// The bytes up to the next newline, which is consumed.
    fn line_bytes(&mut self) -> Res<&'a [u8]> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            return self.err("text argument has no newline");
        };
        Ok(&self.take(len + 1)?[..len])
    }

    /// Protocol 0 UNICODE: `raw-unicode-escape`, i.e. latin-1 bytes with
    /// `\uXXXX` and `\UXXXXXXXX` escapes.
    fn raw_unicode_line(&mut self) -> Res<String> {
        let bytes = self.line_bytes()?;
        let mut out = String::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let width = match (bytes[i], bytes.get(i + 1)) {
                (b'\\', Some(b'u')) => 4,
                (b'\\', Some(b'U')) => 8,
                (b, _) => {
                    out.push(char::from(b));
                    i += 1;
                    continue;
                }
            };
            let hex = bytes
                .get(i + 2..i + 2 + width)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32)
            {
                Some(c) => out.push(c),
                None => return self.err("bad \\u escape in UNICODE"),
            }
            i += 2 + width;
        }
        Ok(out)
    }

    pub(super) fn len_arg(&mut self, width: usize) -> Res<usize> {
        let n = match width {
            1 => u64::from(self.u8()?),
            4 => u64::from(u32::from_le_bytes(self.le()?)),
            _ => u64::from_le_bytes(self.le()?),
        };
        match usize::try_from(n) {
            Ok(n) if n <= self.data.len() - self.pos.min(self.data.len()) => Ok(n),
            _ => self.err(format!("length {n} runs past the end of the pickle")),
        }
    }

    pub(super) fn alloc(&mut self, node: Node) -> Id {
        self.arena.push(node);
        self.arena.len() - 1
    }

    pub(super) fn push_node(&mut self, node: Node) {
        let id = self.alloc(node);
        self.stack.push(id);
    }

    pub(super) fn push(&mut self, value: Value) {
        self.push_node(Node::Leaf(value));
    }

    pub(super) fn pop(&mut self) -> Res<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.err("the stack is empty");
        }
        Ok(self.stack.pop().unwrap_or_default())
    }

    pub(super) fn top(&self) -> Res<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(&id) if self.stack.len() > floor => Ok(id),
            _ => self.err("the stack is empty"),
        }
    }

    pub(super) fn pop_mark(&mut self) -> Res<Vec<Id>> {
        let Some(mark) = self.marks.pop() else {
            return self.err("no MARK before this opcode");
        };
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    pub(super) fn leaf(&self, id: Id) -> Option<&Value> {
        match self.arena.get(id) {
            Some(Node::Leaf(v)) => Some(v),
            _ => None,
        }
    }

    pub(super) fn str_of(&self, id: Id) -> Res<String> {
        match self.leaf(id) {
            Some(Value::Str(s)) => Ok(s.clone()),
            _ => self.err("expected a string"),
        }
    }

    pub(super) fn run(&mut self) -> Res<Id> {
        loop {
            self.op_pos = self.pos;
            self.op = None;
            let op = self.u8()?;
            self.op = Some(op);
            if op == b'.' {
                // STOP
                let id = self.pop()?;
                return Ok(id);
            }
            self.step(op)?;
        }
    }

    /// Runs one opcode; each family of opcodes has its own function, which
    /// answers `false` for opcodes not its own.
    pub(super) fn step(&mut self, op: u8) -> Res<()> {
        if self.literal(op)? || self.container(op)? || self.memo_op(op)? || self.object(op)? {
            return Ok(());
        }
        match op {
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return self.err(format!("unsupported pickle protocol {proto}"));
                }
                Ok(())
            }
            // FRAME: the frame length is only a read-ahead hint.
            0x95 => self.take(8).map(drop),
            0x97 | 0x98 => self.err("out-of-band buffers are not supported"),
            0x82..=0x84 => self.err("extension registry codes are not supported"),
            _ => self.err("unknown opcode"),
        }
    }

    /// Opcodes that push a constant: numbers, strings, bytes, None, bools.
    fn literal(&mut self, op: u8) -> Res<bool> {
        match op {
            b'X' => self.unicode(4)?,
            0x8c => self.unicode(1)?,
            0x8d => self.unicode(8)?,
            b'B' => self.bytes(4)?,
            b'C' => self.bytes(1)?,
            0x8e | 0x96 => self.bytes(8)?,
            b'T' => self.py2_str(4)?,
            b'U' => self.py2_str(1)?,
            b'J' => {
                let v = i32::from_le_bytes(self.le()?);
                self.push(Value::Int(i64::from(v)));
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(i64::from(v)));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.le()?);
                self.push(Value::Int(i64::from(v)));
            }
            0x8a => self.long(1)?,
            0x8b => self.long(4)?,
            b'G' => {
                let v = f64::from_be_bytes(self.le()?);
                self.push(Value::Float(v));
            }
            b'I' | b'L' => self.text_int()?,
            b'F' => {
                let line = self.line()?;
                let Ok(v) = line.parse::<f64>() else {
                    return self.err(format!("bad float `{line}`"));
                };
                self.push(Value::Float(v));
            }
            b'V' => {
                let text = self.raw_unicode_line()?;
                self.push(Value::Str(text));
            }
            b'S' => {
                let line = self.line()?;
                // Protocol 0 STRING: a quoted repr; escapes are not undone.
                let unquoted = line.trim_matches(|c| c == '\'' || c == '"').to_string();
                self.push(Value::Str(unquoted));
            }
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Opcodes that make or fill lists, tuples, dicts and sets, and MARK,
    /// POP and DUP.
    fn container(&mut self, op: u8) -> Res<bool> {
        match op {
            b'}' => self.push_node(Node::Dict(Vec::new())),
            b']' => self.push_node(Node::List(Vec::new())),
            b')' => self.push_node(Node::Tuple(Vec::new())),
            0x8f => self.push_node(Node::Set(Vec::new())),
            b'(' => {
                if self.marks.len() >= MAX_MARKS {
                    return self.err("too many nested MARKs");
                }
                self.marks.push(self.stack.len());
            }
            b'0' => drop(self.pop()?),
            b'1' => drop(self.pop_mark()?),
            b'2' => {
                let id = self.top()?;
                self.stack.push(id);
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() < floor + n {
                    return self.err(format!("needs {n} values on the stack"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.push_node(Node::Tuple(items));
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push_node(Node::Tuple(items));
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.push_node(Node::List(items));
            }
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.push_node(Node::Dict(pairs));
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push_node(Node::FrozenSet(items));
            }
            b'a' => {
                let item = self.pop()?;
                let target = self.top()?;
                self.append(target, vec![item])?;
            }
            // APPENDS, and ADDITEMS (whose target is a set: `append` adds to sets).
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                self.append(target, items)?;
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                let target = self.top()?;
                self.set_items(target, vec![(key, value)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                let target = self.top()?;
                self.set_items(target, pairs)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// PUT, GET and their binary forms, and MEMOIZE.
    fn memo_op(&mut self, op: u8) -> Res<bool> {
        match op {
            b'q' => {
                let key = u64::from(self.u8()?);
                self.put(key)?;
            }
            b'r' => {
                let key = u64::from(u32::from_le_bytes(self.le()?));
                self.put(key)?;
            }
            b'p' => {
                let key = self.memo_key()?;
                self.put(key)?;
            }
            0x94 => self.put(self.memo.len() as u64)?,
            b'h' => {
                let key = u64::from(self.u8()?);
                self.get(key)?;
            }
            b'j' => {
                let key = u64::from(u32::from_le_bytes(self.le()?));
                self.get(key)?;
            }
            b'g' => {
                let key = self.memo_key()?;
                self.get(key)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn memo_key(&mut self) -> Res<u64> {
        let line = self.line()?;
        match line.parse::<u64>() {
            Ok(key) => Ok(key),
            Err(_) => self.err(format!("bad memo key `{line}`")),
        }
    }

    /// Globals, calls (REDUCE, NEWOBJ, INST, OBJ), BUILD and persistent ids.
    fn object(&mut self, op: u8) -> Res<bool> {
        match op {
            b'c' => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                self.push(global(module, name));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (module, name) = (self.str_of(module)?, self.str_of(name)?);
                self.push(global(module, name));
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let args = self.tuple_items(args)?;
                self.call(callable, args)?;
            }
            0x92 => {
                // NEWOBJ_EX: keyword arguments are kept as a trailing dict.
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let mut args = self.tuple_items(args)?;
                if !matches!(self.arena.get(kwargs), Some(Node::Dict(d)) if d.is_empty()) {
                    args.push(kwargs);
                }
                self.call(cls, args)?;
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?;
                // Dicts (OrderedDict's `_metadata`), sets and others keep no
                // attributes here: the state is dropped.
                if let Some(Node::Object { state: slot, .. }) = self.arena.get_mut(target) {
                    *slot = Some(state);
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                self.push_node(Node::Persistent(pid));
            }
            b'P' => {
                let line = self.line()?.to_string();
                let pid = self.alloc(Node::Leaf(Value::Str(line)));
                self.push_node(Node::Persistent(pid));
            }
            b'i' => {
                // INST: protocol 0 object creation.
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                let args = self.pop_mark()?;
                let cls = self.alloc(Node::Leaf(global(module, name)));
                self.call(cls, args)?;
            }
            b'o' => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return self.err("OBJ needs a class");
                }
                let cls = items.remove(0);
                self.call(cls, items)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(super) fn unicode(&mut self, width: usize) -> Res<()> {
        let n = self.len_arg(width)?;
        let bytes = self.take(n)?;
        // Python writes lone surrogates with `surrogatepass`; keep what we can.
        let s = String::from_utf8_lossy(bytes).into_owned();
        self.push(Value::Str(s));
        Ok(())
    }

    pub(super) fn bytes(&mut self, width: usize) -> Res<()> {
        let n = self.len_arg(width)?;
        let bytes = self.take(n)?.to_vec();
        self.push(Value::Bytes(bytes));
        Ok(())
    }

    /// A Python 2 `str` (BINSTRING): text when it is UTF-8, as `torch.load`'s
    /// default `encoding='utf-8'` decodes it, else bytes.
    fn py2_str(&mut self, width: usize) -> Res<()> {
        let n = self.len_arg(width)?;
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => self.push(Value::Str(text.to_string())),
            Err(_) => self.push(Value::Bytes(bytes.to_vec())),
        }
        Ok(())
    }

    pub(super) fn long(&mut self, width: usize) -> Res<()> {
        let n = self.len_arg(width)?;
        let bytes = self.take(n)?;
        let value = if n == 0 {
            Value::Int(0)
        } else if n <= 8 {
            let fill = if bytes[n - 1] & 0x80 != 0 { 0xff } else { 0 };
            let mut full = [fill; 8];
            full[..n].copy_from_slice(bytes);
            Value::Int(i64::from_le_bytes(full))
        } else {
            Value::BigInt(bytes.to_vec())
        };
        self.push(value);
        Ok(())
    }

    pub(super) fn text_int(&mut self) -> Res<()> {
        let line = self.line()?;
        let digits = line.trim_end_matches('L');
        let value = match digits {
            "00" => Value::Bool(false),
            "01" => Value::Bool(true),
            _ => match digits.parse::<i64>() {
                Ok(v) => Value::Int(v),
                Err(_) => match big_from_decimal(digits) {
                    Some(bytes) => Value::BigInt(bytes),
                    None => return self.err(format!("bad integer `{line}`")),
                },
            },
        };
        self.push(value);
        Ok(())
    }

    pub(super) fn put(&mut self, key: u64) -> Res<()> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    pub(super) fn get(&mut self, key: u64) -> Res<()> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(id);
                Ok(())
            }
            None => self.err(format!("memo key {key} was never stored")),
        }
    }

    pub(super) fn pairs(&self, items: Vec<Id>) -> Res<Vec<(Id, Id)>> {
        if !items.len().is_multiple_of(2) {
            return self.err("odd number of items for a dict");
        }
        Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
    }

    pub(super) fn tuple_items(&mut self, id: Id) -> Res<Vec<Id>> {
        match self.arena.get(id) {
            Some(Node::Tuple(items)) => {
                let items = items.clone();
                self.charge(items.len())?;
                Ok(items)
            }
            _ => self.err("arguments are not a tuple"),
        }
    }

    pub(super) fn charge(&mut self, n: usize) -> Res<()> {
        match self.copies.checked_sub(n) {
            Some(left) => {
                self.copies = left;
                Ok(())
            }
            None => {
                self.err("the pickle copies too many values (repeated calls on shared arguments)")
            }
        }
    }

    pub(super) fn append(&mut self, target: Id, items: Vec<Id>) -> Res<()> {
        match self.arena.get_mut(target) {
            Some(Node::List(list)) => list.extend(items),
            Some(Node::Object { elements, .. }) => elements.extend(items),
            Some(Node::Set(set)) => set.extend(items),
            _ => return self.err("APPEND target is not a list"),
        }
        Ok(())
    }

    /// Adds dict items; a repeated key is resolved when the tree is unfolded (`dedup`).
    pub(super) fn set_items(&mut self, target: Id, pairs: Vec<(Id, Id)>) -> Res<()> {
        match self.arena.get_mut(target) {
            Some(Node::Dict(dict)) => dict.extend(pairs),
            Some(Node::Object { items, .. }) => items.extend(pairs),
            _ => return self.err("SETITEM target is not a dict"),
        }
        Ok(())
    }
}

pub(super) fn global(module: String, name: String) -> Value {
    Value::Global { module, name }
}

/// A decimal integer beyond `i64` as LONG1 spells it: minimal little-endian
/// two's complement bytes.
fn big_from_decimal(text: &str) -> Option<Vec<u8>> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.is_empty() || digits.len() > 10_000 {
        return None;
    }
    let mut bytes = vec![0u8];
    for d in digits.bytes() {
        let mut carry = u32::from(d.checked_sub(b'0').filter(|&d| d < 10)?);
        for b in &mut bytes {
            let v = u32::from(*b) * 10 + carry;
            *b = v as u8;
            carry = v >> 8;
        }
        if carry > 0 {
            bytes.push(carry as u8);
        }
    }
    bytes.push(0);
    if negative {
        let mut carry = true;
        for b in &mut bytes {
            let (v, c) = (!*b).overflowing_add(u8::from(carry));
            *b = v;
            carry = c;
        }
    }
    // Drop sign-extension bytes the byte below already implies.
    while bytes.len() > 1 {
        let (top, below) = (bytes[bytes.len() - 1], bytes[bytes.len() - 2]);
        if (top == 0 && below & 0x80 == 0) || (top == 0xff && below & 0x80 != 0) {
            bytes.pop();
        } else {
            break;
        }
    }
    Some(bytes)
}
