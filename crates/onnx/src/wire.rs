//! The protobuf wire format, read by hand (no code generator, no `protoc`): a message is a
//! sequence of fields, each a key (field number and wire type, as a varint) and a value. Every
//! length is checked against the bytes that remain, so a lying size is an error, never a read
//! past the end or an allocation larger than the input.

use crate::error::{OnnxError, Result};

/// Deepest nesting of messages accepted (graphs inside attributes inside nodes inside graphs):
/// a bound on the recursion, so a hostile file cannot exhaust the stack.
pub const MAX_DEPTH: u32 = 64;

/// A field's value, as the wire type carries it.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Reads the fields of one message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the file, for error messages.
    base: usize,
    message: &'static str,
    depth: u32,
}

impl<'a> Reader<'a> {
    /// The top-level message `message` in `buf`.
    pub fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
            message,
            depth: 0,
        }
    }

    /// A reader of the embedded message `message` held in `bytes`, a field of this one.
    pub fn nested(&self, bytes: &'a [u8], message: &'static str) -> Result<Reader<'a>> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(self.err(format!("messages nested deeper than {MAX_DEPTH}")));
        }
        // `bytes` is a sub-slice of `self.buf`: its offset in the file follows from the pointers
        let off = (bytes.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        Ok(Reader {
            buf: bytes,
            pos: 0,
            base: self.base + off.min(self.buf.len()),
            message,
            depth: self.depth + 1,
        })
    }

    /// An error at the current position.
    pub fn err(&self, what: impl Into<String>) -> OnnxError {
        OnnxError::Decode {
            message: self.message,
            offset: self.base + self.pos,
            what: what.into(),
        }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("varint runs past the end of the message"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.err("varint longer than 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.err(format!(
                "{what} of {n} bytes, but only {left} remain in the message"
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next field (number, value), or None at the end of the message.
    pub fn next(&mut self) -> Result<Option<(u32, Value<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > (1 << 29) - 1 {
            return Err(self.err(format!("field number {field} out of range")));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let b = self.take(8, "fixed64 field")?;
                Value::Fixed64(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| self.err("length beyond memory"))?;
                Value::Bytes(self.take(len, "length-delimited field")?)
            }
            5 => {
                let b = self.take(4, "fixed32 field")?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().expect("4 bytes")))
            }
            w => return Err(self.err(format!("wire type {w} (groups are not used by ONNX)"))),
        };
        Ok(Some((field as u32, value)))
    }

    /// A field's value as a varint (int32, int64, uint64, enum, bool).
    pub fn int(&self, field: u32, v: Value<'a>) -> Result<i64> {
        match v {
            Value::Varint(x) => Ok(x as i64),
            _ => Err(self.err(format!("field {field}: expected a varint"))),
        }
    }

    /// A field's value as length-delimited bytes (string, bytes, message, packed repeated).
    pub fn bytes(&self, field: u32, v: Value<'a>) -> Result<&'a [u8]> {
        match v {
            Value::Bytes(b) => Ok(b),
            _ => Err(self.err(format!("field {field}: expected length-delimited bytes"))),
        }
    }

    /// A field's value as a UTF-8 string.
    pub fn string(&self, field: u32, v: Value<'a>) -> Result<String> {
        let b = self.bytes(field, v)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| self.err(format!("field {field}: string is not UTF-8")))
    }

    /// A float field.
    pub fn float(&self, field: u32, v: Value<'a>) -> Result<f32> {
        match v {
            Value::Fixed32(x) => Ok(f32::from_bits(x)),
            _ => Err(self.err(format!("field {field}: expected a 32-bit float"))),
        }
    }

    /// Appends a repeated varint field's values, packed or not, to `out`.
    pub fn ints(&self, field: u32, v: Value<'a>, out: &mut Vec<i64>) -> Result<()> {
        match v {
            Value::Varint(x) => out.push(x as i64),
            Value::Bytes(b) => {
                let mut r = self.nested(b, self.message)?;
                // at most one value per byte: the reservation is bounded by the input
                out.reserve(b.len().min(1 << 20));
                while r.pos < r.buf.len() {
                    out.push(r.varint()? as i64);
                }
            }
            _ => return Err(self.err(format!("field {field}: expected varints"))),
        }
        Ok(())
    }

    /// Appends a repeated fixed32 field's values (floats), packed or not, to `out`.
    pub fn floats(&self, field: u32, v: Value<'a>, out: &mut Vec<f32>) -> Result<()> {
        match v {
            Value::Fixed32(x) => out.push(f32::from_bits(x)),
            Value::Bytes(b) => {
                if b.len() % 4 != 0 {
                    return Err(self.err(format!(
                        "field {field}: packed floats of {} bytes, not a multiple of 4",
                        b.len()
                    )));
                }
                out.extend(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
                );
            }
            _ => return Err(self.err(format!("field {field}: expected 32-bit floats"))),
        }
        Ok(())
    }

    /// Appends a repeated fixed64 field's values (doubles, as bits), packed or not, to `out`.
    pub fn fixed64s(&self, field: u32, v: Value<'a>, out: &mut Vec<u64>) -> Result<()> {
        match v {
            Value::Fixed64(x) => out.push(x),
            Value::Bytes(b) => {
                if b.len() % 8 != 0 {
                    return Err(self.err(format!(
                        "field {field}: packed 64-bit values of {} bytes, not a multiple of 8",
                        b.len()
                    )));
                }
                out.extend(
                    b.chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
                );
            }
            _ => return Err(self.err(format!("field {field}: expected 64-bit values"))),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_varints_and_refuses_overlong_ones() {
        // field 1 varint 300, field 2 bytes "hi", field 3 fixed32 1.5
        let mut buf = vec![0x08, 0xac, 0x02, 0x12, 2, b'h', b'i', 0x1d];
        buf.extend(1.5f32.to_le_bytes());
        let mut r = Reader::new(&buf, "test");
        let (f, v) = r.next().unwrap().unwrap();
        assert_eq!((f, r.int(f, v).unwrap()), (1, 300));
        let (f, v) = r.next().unwrap().unwrap();
        assert_eq!((f, r.string(f, v).unwrap().as_str()), (2, "hi"));
        let (f, v) = r.next().unwrap().unwrap();
        assert_eq!((f, r.float(f, v).unwrap()), (3, 1.5));
        assert!(r.next().unwrap().is_none());
        // eleven continuation bytes
        let bad = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        let e = Reader::new(&bad, "test").next().unwrap_err().to_string();
        assert!(e.contains("varint"), "{e}");
    }

    #[test]
    fn a_length_past_the_end_is_an_error_naming_the_offset() {
        // field 2, length 1000, two bytes present
        let buf = [0x12, 0xe8, 0x07, 1, 2];
        let e = Reader::new(&buf, "ModelProto")
            .next()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ModelProto") && e.contains("1000 bytes") && e.contains("2 remain"),
            "{e}"
        );
    }
}
