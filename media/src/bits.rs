//! An MSB-first bit reader over an RBSP (emulation prevention bytes already removed).

pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Ran past the end of the data.
#[derive(Debug)]
pub(crate) struct Eof;

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    pub(crate) fn bit(&mut self) -> Result<u32, Eof> {
        let byte = *self.data.get(self.pos / 8).ok_or(Eof)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(b as u32)
    }

    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, Eof> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    /// Unsigned Exp-Golomb (H.264 §9.1).
    pub(crate) fn ue(&mut self) -> Result<u32, Eof> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(Eof);
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + rest as u64).min(u32::MAX as u64) as u32)
    }

    /// Signed Exp-Golomb (H.264 §9.1.1).
    pub(crate) fn se(&mut self) -> Result<i32, Eof> {
        let k = self.ue()? as i64;
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) } as i32)
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`, H.264 §7.4.1).
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}
