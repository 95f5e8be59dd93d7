//! AMF0 encoding and decoding (Adobe "Action Message Format -- AMF 0", §2).
//!
//! RTMP commands (`connect`, `publish`, ...) and `@setDataFrame` metadata are AMF0. The
//! decoder is strict about structure (truncation, unknown markers, nesting deeper than
//! [`MAX_DEPTH`]) and lenient about text (invalid UTF-8 is replaced, not rejected), since a
//! publisher's stream name is more useful half-legible than refused.

use bytes::{BufMut, BytesMut};

/// Deepest object nesting accepted. Real publishers nest two levels at most.
pub const MAX_DEPTH: usize = 32;

/// An AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// 0x00
    Number(f64),
    /// 0x01
    Boolean(bool),
    /// 0x02 and 0x0C (long string)
    String(String),
    /// 0x03 anonymous object, and 0x10 typed object (class name dropped)
    Object(Vec<(String, Amf0Value)>),
    /// 0x05
    Null,
    /// 0x06
    Undefined,
    /// 0x08 associative array
    EcmaArray(Vec<(String, Amf0Value)>),
    /// 0x0A
    StrictArray(Vec<Amf0Value>),
    /// 0x0B milliseconds since the epoch (time zone ignored)
    Date(f64),
}

impl Amf0Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// Looks up `key` in an object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => {
                props.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }
}

/// Why AMF0 bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmfError {
    /// The input ended inside a value.
    #[error("truncated AMF0 value at byte {offset}")]
    Truncated {
        /// Where the value that ran out started.
        offset: usize,
    },
    /// A type marker AMF0 does not define, or one Sluice does not accept (references,
    /// AMF3 switch, movie clips).
    #[error("unsupported AMF0 type marker {marker:#04x} at byte {offset}")]
    Marker {
        /// The marker.
        marker: u8,
        /// Its position.
        offset: usize,
    },
    /// Objects nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 nesting deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Decodes every value in `data`.
pub fn decode_all(data: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    let mut d = Decoder { data, pos: 0 };
    let mut out = Vec::new();
    while d.pos < data.len() {
        out.push(d.value(0)?);
    }
    Ok(out)
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], AmfError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(AmfError::Truncated { offset: self.pos })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, AmfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string(&mut self, long: bool) -> Result<String, AmfError> {
        let len = if long { self.u32()? as usize } else { self.u16()? as usize };
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, AmfError> {
        let mut props = Vec::new();
        loop {
            let key = self.string(false)?;
            if key.is_empty() && self.data.get(self.pos) == Some(&0x09) {
                self.pos += 1;
                return Ok(props);
            }
            let v = self.value(depth + 1)?;
            props.push((key, v));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        if depth > MAX_DEPTH {
            return Err(AmfError::TooDeep);
        }
        let offset = self.pos;
        let marker = self.u8()?;
        Ok(match marker {
            0x00 => Amf0Value::Number(self.f64()?),
            0x01 => Amf0Value::Boolean(self.u8()? != 0),
            0x02 => Amf0Value::String(self.string(false)?),
            0x03 => Amf0Value::Object(self.properties(depth)?),
            0x05 => Amf0Value::Null,
            0x06 => Amf0Value::Undefined,
            0x08 => {
                // The count is a hint only (FLV writers get it wrong); the end marker rules.
                self.u32()?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            0x0A => {
                let n = self.u32()? as usize;
                // Never trust a count for an allocation: each element takes at least a byte.
                let mut items = Vec::with_capacity(n.min(self.data.len() - self.pos));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            0x0B => {
                let ms = self.f64()?;
                self.take(2)?;
                Amf0Value::Date(ms)
            }
            0x0C => Amf0Value::String(self.string(true)?),
            0x10 => {
                self.string(false)?;
                Amf0Value::Object(self.properties(depth)?)
            }
            marker => return Err(AmfError::Marker { marker, offset }),
        })
    }
}

/// Appends the AMF0 encoding of `v` to `out`.
pub fn encode(v: &Amf0Value, out: &mut BytesMut) {
    match v {
        Amf0Value::Number(n) => {
            out.put_u8(0x00);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(0x01);
            out.put_u8(*b as u8);
        }
        Amf0Value::String(s) if s.len() <= u16::MAX as usize => {
            out.put_u8(0x02);
            put_key(s, out);
        }
        Amf0Value::String(s) => {
            out.put_u8(0x0C);
            out.put_u32(s.len() as u32);
            out.put_slice(s.as_bytes());
        }
        Amf0Value::Object(props) => {
            out.put_u8(0x03);
            put_props(props, out);
        }
        Amf0Value::Null => out.put_u8(0x05),
        Amf0Value::Undefined => out.put_u8(0x06),
        Amf0Value::EcmaArray(props) => {
            out.put_u8(0x08);
            out.put_u32(props.len() as u32);
            put_props(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.put_u8(0x0A);
            out.put_u32(items.len() as u32);
            for i in items {
                encode(i, out);
            }
        }
        Amf0Value::Date(ms) => {
            out.put_u8(0x0B);
            out.put_f64(*ms);
            out.put_u16(0);
        }
    }
}

fn put_key(s: &str, out: &mut BytesMut) {
    // Keys longer than 64 KiB cannot be expressed; truncate at a char boundary.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(end as u16);
    out.put_slice(&s.as_bytes()[..end]);
}

fn put_props(props: &[(String, Amf0Value)], out: &mut BytesMut) {
    for (k, v) in props {
        put_key(k, out);
        encode(v, out);
    }
    out.put_slice(&[0, 0, 0x09]);
}

/// Shorthand for building an object.
pub fn object<const N: usize>(props: [(&str, Amf0Value); N]) -> Amf0Value {
    Amf0Value::Object(props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_ffmpeg_connect() {
        let mut b = BytesMut::new();
        encode(&Amf0Value::String("connect".into()), &mut b);
        encode(&Amf0Value::Number(1.0), &mut b);
        encode(
            &object([("app", Amf0Value::String("live".into())), ("tcUrl", Amf0Value::String("rtmp://h/live".into()))]),
            &mut b,
        );
        let vals = decode_all(&b).unwrap();
        assert_eq!(vals[0].as_str(), Some("connect"));
        assert_eq!(vals[2].get("app").and_then(Amf0Value::as_str), Some("live"));
    }

    #[test]
    fn rejects_truncation_and_unknown_markers() {
        assert_eq!(decode_all(&[0x00, 1, 2]), Err(AmfError::Truncated { offset: 1 }));
        assert_eq!(decode_all(&[0x11]), Err(AmfError::Marker { marker: 0x11, offset: 0 }));
        assert!(matches!(decode_all(&[0x02, 0xff, 0xff, b'a']), Err(AmfError::Truncated { .. })));
    }

    #[test]
    fn rejects_deep_nesting() {
        let mut b = vec![];
        for _ in 0..100 {
            b.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        }
        b.push(0x05);
        assert_eq!(decode_all(&b), Err(AmfError::TooDeep));
    }

    #[test]
    fn huge_array_count_does_not_allocate() {
        assert!(decode_all(&[0x0A, 0xff, 0xff, 0xff, 0xff, 0x05]).is_err());
    }

    fn arb_value() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            any::<f64>().prop_filter("NaN != NaN", |f| !f.is_nan()).prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            "[a-zA-Z0-9 ]{0,20}".prop_map(Amf0Value::String),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(("[a-z]{1,8}", inner.clone()), 0..4).prop_map(Amf0Value::Object),
                proptest::collection::vec(("[a-z]{1,8}", inner.clone()), 0..4).prop_map(Amf0Value::EcmaArray),
                proptest::collection::vec(inner, 0..4).prop_map(Amf0Value::StrictArray),
            ]
        })
    }

    proptest! {
        #[test]
        fn roundtrip(vals in proptest::collection::vec(arb_value(), 0..4)) {
            let mut b = BytesMut::new();
            for v in &vals {
                encode(v, &mut b);
            }
            prop_assert_eq!(decode_all(&b).unwrap(), vals);
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all(&data);
        }
    }
}
