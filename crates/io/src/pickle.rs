//! A safe, non-executing reader for the subset of the Python pickle format
//! (protocols 2-5) that `torch.save` emits.
//!
//! The unpickler interprets the opcode stream into plain [`Value`]s.  Nothing
//! is ever executed: `GLOBAL`/`STACK_GLOBAL` resolve only an allow-list of
//! PyTorch names ([`Global`]) and anything else is refused.  `REDUCE` applies
//! the allow-listed callables symbolically (`OrderedDict` builds a dict, the
//! `torch._utils._rebuild_*` functions build a [`TensorRef`]).  Persistent ids
//! (`BINPERSID`) of the form `('storage', StorageType, key, location, numel
//! [, view_metadata])` become [`StorageRef`]s; the storage bytes are resolved
//! later by the caller.
//!
//! Resource bounds: the number of pending marks, stack size, memo size and the
//! nesting depth of containers are limited, and every length read from the
//! stream is checked against the bytes actually present before it is used.

use std::collections::HashMap;
use std::rc::Rc;

use crate::PthDtype;

/// Maximum nesting depth of lists/tuples/dicts.
pub const MAX_DEPTH: usize = 128;
/// Maximum number of items on one stack frame.
pub const MAX_STACK: usize = 1 << 22;
/// Maximum number of open `MARK`s.
pub const MAX_MARKS: usize = 4096;
/// Maximum number of memo entries.
pub const MAX_MEMO: usize = 1 << 22;

/// Why unpickling failed.
#[derive(Debug, Clone)]
pub enum PickleError {
    /// The stream asked for a global that is not on the allow-list.
    Refused(String),
    /// The stream is malformed, truncated or uses an unsupported feature.
    Malformed(String),
}

type Res<T> = Result<T, PickleError>;

fn bad<T>(msg: impl Into<String>) -> Res<T> {
    Err(PickleError::Malformed(msg.into()))
}

/// The allow-listed Python globals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    Storage(PthDtype),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Res<Global> {
        let g = match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", s) => match s {
                "FloatStorage" => Global::Storage(PthDtype::F32),
                "DoubleStorage" => Global::Storage(PthDtype::F64),
                "HalfStorage" => Global::Storage(PthDtype::F16),
                "BFloat16Storage" => Global::Storage(PthDtype::BF16),
                "LongStorage" => Global::Storage(PthDtype::I64),
                "IntStorage" => Global::Storage(PthDtype::I32),
                "ShortStorage" => Global::Storage(PthDtype::I16),
                "CharStorage" => Global::Storage(PthDtype::I8),
                "ByteStorage" => Global::Storage(PthDtype::U8),
                "BoolStorage" => Global::Storage(PthDtype::Bool),
                _ => return Err(PickleError::Refused(format!("{module}.{name}"))),
            },
            _ => return Err(PickleError::Refused(format!("{module}.{name}"))),
        };
        Ok(g)
    }
}

/// A reference to (a window of) a serialized storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub dtype: PthDtype,
    /// Key of the root storage (file name in the zip format).
    pub key: String,
    /// Element offset of this view inside the root storage (legacy views).
    pub elem_offset: usize,
    /// Number of elements declared by the header (unchecked until resolved).
    pub numel: usize,
}

/// A tensor view description: storage + offset + size + stride (in elements).
#[derive(Debug, Clone)]
pub struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A sequence with its cached nesting depth.
#[derive(Debug, Clone, Default)]
pub struct Seq {
    pub items: Vec<Value>,
    pub depth: usize,
}

/// An insertion-ordered dict with its cached nesting depth.
#[derive(Debug, Clone, Default)]
pub struct Map {
    pub items: Vec<(Value, Value)>,
    pub depth: usize,
}

/// An unpickled value (payloads of floats/bytes are kept for completeness).
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    List(Rc<Seq>),
    Tuple(Rc<Seq>),
    Dict(Rc<Map>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    fn depth(&self) -> usize {
        match self {
            Value::List(s) | Value::Tuple(s) => s.depth,
            Value::Dict(m) => m.depth,
            _ => 0,
        }
    }

    fn tuple(items: Vec<Value>) -> Res<Value> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return bad(format!("nesting deeper than {MAX_DEPTH}"));
        }
        Ok(Value::Tuple(Rc::new(Seq { items, depth })))
    }

    fn as_usize(&self, what: &str) -> Res<usize> {
        match self {
            Value::Int(i) if *i >= 0 && *i <= usize::MAX as i128 => Ok(*i as usize),
            other => bad(format!(
                "expected a non-negative int for {what}, found {}",
                other.kind()
            )),
        }
    }

    fn as_usize_tuple(&self, what: &str) -> Res<Vec<usize>> {
        match self {
            Value::Tuple(s) | Value::List(s) => s.items.iter().map(|v| v.as_usize(what)).collect(),
            other => bad(format!(
                "expected a tuple of ints for {what}, found {}",
                other.kind()
            )),
        }
    }
}

fn seq_items(v: &Value, what: &str) -> Res<Vec<Value>> {
    match v {
        Value::Tuple(s) | Value::List(s) => Ok(s.items.clone()),
        other => bad(format!(
            "expected a tuple for {what}, found {}",
            other.kind()
        )),
    }
}

/// Result of unpickling one pickle: the value and the number of bytes read.
pub struct Unpickled {
    pub value: Value,
    pub consumed: usize,
}

/// Unpickles a single pickle starting at the beginning of `data`.
pub fn unpickle(data: &[u8]) -> Res<Unpickled> {
    let mut u = Unpickler {
        data,
        pos: 0,
        stack: Vec::new(),
        metastack: Vec::new(),
        memo: HashMap::new(),
    };
    let value = u.run()?;
    Ok(Unpickled {
        value,
        consumed: u.pos,
    })
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    metastack: Vec<Vec<Value>>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => bad(format!(
                "truncated pickle: needed {n} bytes at offset {}, only {} left",
                self.pos,
                self.data.len() - self.pos
            )),
        }
    }
    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Res<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(nl) = rest.iter().take(256).position(|&b| b == b'\n') else {
            return bad("unterminated or over-long GLOBAL line");
        };
        let s = std::str::from_utf8(&rest[..nl])
            .map_err(|_| PickleError::Malformed("non-UTF-8 GLOBAL name".into()))?;
        self.pos += nl + 1;
        Ok(s)
    }
    fn string(&mut self, n: u64) -> Res<Value> {
        let n = usize::try_from(n)
            .map_err(|_| PickleError::Malformed("string length overflow".into()))?;
        let b = self.take(n)?;
        let s = std::str::from_utf8(b)
            .map_err(|_| PickleError::Malformed("invalid UTF-8 in string".into()))?;
        Ok(Value::Str(Rc::from(s)))
    }
    fn bytes(&mut self, n: u64) -> Res<Value> {
        let n = usize::try_from(n)
            .map_err(|_| PickleError::Malformed("bytes length overflow".into()))?;
        Ok(Value::Bytes(Rc::from(self.take(n)?)))
    }

    fn push(&mut self, v: Value) -> Res<()> {
        if self.stack.len() >= MAX_STACK {
            return bad("pickle stack too large");
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Res<Value> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => bad("pickle stack underflow"),
        }
    }
    fn top(&mut self) -> Res<&mut Value> {
        match self.stack.last_mut() {
            Some(v) => Ok(v),
            None => bad("pickle stack underflow"),
        }
    }
    fn pop_mark(&mut self) -> Res<Vec<Value>> {
        match self.metastack.pop() {
            Some(prev) => Ok(std::mem::replace(&mut self.stack, prev)),
            None => bad("MARK expected but none open"),
        }
    }
    fn memo_put(&mut self, idx: u32) -> Res<()> {
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&idx) {
            return bad("pickle memo too large");
        }
        self.memo.insert(idx, v);
        Ok(())
    }
    fn memo_get(&mut self, idx: u32) -> Res<()> {
        match self.memo.get(&idx) {
            Some(v) => {
                let v = v.clone();
                self.push(v)
            }
            None => bad(format!("memo key {idx} not found")),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Res<()> {
        let child_depth = items.iter().map(Value::depth).max().unwrap_or(0);
        match self.top()? {
            Value::List(l) => {
                let l = Rc::make_mut(l);
                l.depth = l.depth.max(child_depth + 1);
                if l.depth > MAX_DEPTH {
                    return bad(format!("nesting deeper than {MAX_DEPTH}"));
                }
                l.items.extend(items);
                Ok(())
            }
            other => bad(format!("APPEND to a {}", other.kind())),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Res<()> {
        if !items.len().is_multiple_of(2) {
            return bad("SETITEMS with an odd number of items");
        }
        let child_depth = items.iter().map(Value::depth).max().unwrap_or(0);
        match self.top()? {
            Value::Dict(m) => {
                let m = Rc::make_mut(m);
                m.depth = m.depth.max(child_depth + 1);
                if m.depth > MAX_DEPTH {
                    return bad(format!("nesting deeper than {MAX_DEPTH}"));
                }
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    m.items.push((k, v));
                }
                Ok(())
            }
            other => bad(format!("SETITEM on a {}", other.kind())),
        }
    }

    fn persistent_load(&mut self, pid: Value) -> Res<Value> {
        let items = seq_items(&pid, "persistent id")?;
        match items.first() {
            Some(Value::Str(s)) if &**s == "storage" => {}
            _ => return bad("unsupported persistent id (expected ('storage', ...))"),
        }
        if items.len() < 5 {
            return bad("persistent id tuple too short");
        }
        let dtype = match &items[1] {
            Value::Global(Global::Storage(d)) => *d,
            other => {
                return bad(format!(
                    "expected a torch storage type in persistent id, found {}",
                    other.kind()
                ))
            }
        };
        let key = match &items[2] {
            Value::Str(s) => s.to_string(),
            other => {
                return bad(format!(
                    "expected a str storage key, found {}",
                    other.kind()
                ))
            }
        };
        let numel = items[4].as_usize("storage size")?;
        let mut r = StorageRef {
            dtype,
            key,
            elem_offset: 0,
            numel,
        };
        // Legacy storage views: (view_key, offset, view_size).
        if let Some(view) = items.get(5) {
            if !matches!(view, Value::None) {
                let v = seq_items(view, "view metadata")?;
                if v.len() != 3 {
                    return bad("view metadata must have 3 entries");
                }
                let offset = v[1].as_usize("view offset")?;
                let size = v[2].as_usize("view size")?;
                let end = offset.checked_add(size).filter(|&e| e <= numel);
                if end.is_none() {
                    return bad("storage view exceeds its root storage");
                }
                r.elem_offset = offset;
                r.numel = size;
            }
        }
        Ok(Value::Storage(Rc::new(r)))
    }

    fn reduce(&mut self, func: Value, args: Value) -> Res<Value> {
        let g = match func {
            Value::Global(g) => g,
            other => return bad(format!("REDUCE on a non-callable {}", other.kind())),
        };
        let args = seq_items(&args, "REDUCE arguments")?;
        match g {
            Global::OrderedDict => {
                let mut m = Map::default();
                if let Some(pairs) = args.first() {
                    for p in seq_items(pairs, "OrderedDict items")? {
                        let kv = seq_items(&p, "OrderedDict item")?;
                        if kv.len() != 2 {
                            return bad("OrderedDict item is not a pair");
                        }
                        m.depth = m.depth.max(kv[0].depth().max(kv[1].depth()) + 1);
                        m.items.push((kv[0].clone(), kv[1].clone()));
                    }
                }
                if m.depth > MAX_DEPTH {
                    return bad(format!("nesting deeper than {MAX_DEPTH}"));
                }
                Ok(Value::Dict(Rc::new(m)))
            }
            Global::RebuildTensorV2 | Global::RebuildTensor => {
                if args.len() < 4 {
                    return bad("_rebuild_tensor expects (storage, offset, size, stride, ...)");
                }
                let storage = match &args[0] {
                    Value::Storage(s) => s.clone(),
                    other => {
                        return bad(format!(
                            "expected a storage as tensor source, found {}",
                            other.kind()
                        ))
                    }
                };
                let offset = args[1].as_usize("storage offset")?;
                let size = args[2].as_usize_tuple("tensor size")?;
                let stride = args[3].as_usize_tuple("tensor stride")?;
                if size.len() != stride.len() {
                    return bad("tensor size and stride have different lengths");
                }
                if size.len() > 64 {
                    return bad("tensor has more than 64 dimensions");
                }
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage,
                    offset,
                    size,
                    stride,
                })))
            }
            Global::RebuildParameter => match args.first() {
                Some(Value::Tensor(t)) => Ok(Value::Tensor(t.clone())),
                _ => bad("_rebuild_parameter expects a tensor"),
            },
            Global::Storage(_) => bad("calling a storage type is not supported"),
        }
    }

    fn run(&mut self) -> Res<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return bad(format!("unsupported pickle protocol {p}"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: length hint only
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => {
                    if self.metastack.len() >= MAX_MARKS {
                        return bad("too many nested MARKs");
                    }
                    let prev = std::mem::take(&mut self.stack);
                    self.metastack.push(prev);
                }
                b'}' => self.push(Value::Dict(Rc::new(Map {
                    items: Vec::new(),
                    depth: 1,
                })))?,
                b']' => self.push(Value::List(Rc::new(Seq {
                    items: Vec::new(),
                    depth: 1,
                })))?,
                b')' => self.push(Value::tuple(Vec::new())?)?,
                b'X' => {
                    let n = self.u32()? as u64;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = self.u64()?;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                b'B' => {
                    let n = self.u32()? as u64;
                    let v = self.bytes(n)?;
                    self.push(v)?
                }
                b'C' => {
                    let n = self.u8()? as u64;
                    let v = self.bytes(n)?;
                    self.push(v)?
                }
                0x8e => {
                    let n = self.u64()?;
                    let v = self.bytes(n)?;
                    self.push(v)?
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.push(Value::Int(v as i128))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i128))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i128))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    if n > 16 {
                        return bad("integer wider than 128 bits");
                    }
                    let b = self.take(n)?;
                    let mut v: i128 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i128) << (8 * i);
                    }
                    if n > 0 && n < 16 && b[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(v))?
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b't' => {
                    let items = self.pop_mark()?;
                    let t = Value::tuple(items)?;
                    self.push(t)?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return bad("pickle stack underflow in TUPLEn");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let t = Value::tuple(items)?;
                    self.push(t)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| PickleError::Malformed("memo overflow".into()))?;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.memo_get(i)?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = Global::resolve(module, name)?;
                    self.push(Value::Global(g))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let g = Global::resolve(&m, &n)?;
                            self.push(Value::Global(g))?
                        }
                        _ => return bad("STACK_GLOBAL expects two strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.push(v)?
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args); only OrderedDict is allowed.
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    match cls {
                        Value::Global(Global::OrderedDict) => {
                            self.push(Value::Dict(Rc::new(Map {
                                items: Vec::new(),
                                depth: 1,
                            })))?
                        }
                        other => return bad(format!("NEWOBJ on unsupported {}", other.kind())),
                    }
                }
                b'b' => {
                    // BUILD: object state (e.g. OrderedDict `_metadata`) is ignored.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) | Value::Tensor(_) => {}
                        other => return bad(format!("BUILD on unsupported {}", other.kind())),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?
                }
                other => {
                    return bad(format!(
                        "unsupported pickle opcode 0x{other:02x} at offset {}",
                        self.pos - 1
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_os_system() {
        let evil = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R.";
        match unpickle(evil) {
            Err(PickleError::Refused(s)) => assert_eq!(s, "os.system"),
            other => panic!("unexpected {:?}", other.map(|u| u.value)),
        }
    }

    #[test]
    fn refuses_stack_global_builtins_eval() {
        let evil = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R.";
        assert!(matches!(unpickle(evil), Err(PickleError::Refused(s)) if s == "builtins.eval"));
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let mut p = vec![0x80, 2, b')'];
        p.extend(std::iter::repeat_n(0x85, 10_000));
        p.push(b'.');
        assert!(unpickle(&p).is_err());
    }

    #[test]
    fn long1_magic() {
        // pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
        let p = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";
        match unpickle(p).unwrap().value {
            Value::Int(v) => assert_eq!(v, 0x1950a86a20f9469cfc6c),
            other => panic!("{other:?}"),
        }
        // negative: pickle.dumps(-300, 2) -> LONG1? (BININT) ; LONG1 of -1
        let p = b"\x80\x02\x8a\x01\xff.";
        assert!(matches!(unpickle(p).unwrap().value, Value::Int(-1)));
    }

    #[test]
    fn truncation_never_panics() {
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x05X\x01\x00\x00\x00bq\x02]q\x03(K\x01G?\xf0\x00\x00\x00\x00\x00\x00eu.";
        assert!(unpickle(p).is_ok());
        for n in 0..p.len() {
            assert!(unpickle(&p[..n]).is_err());
        }
    }
}
