//! Media time: ticks plus the timescale they count in.

use std::cmp::Ordering;
use std::fmt;

/// Ticks per second of a [`MediaTime`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timescale(u32);

impl Timescale {
    /// MPEG-TS / RTP video clock (ISO/IEC 13818-1 §2.4.2: 90 kHz).
    pub const MPEG: Timescale = Timescale(90_000);
    /// RTMP and FLV timestamps are milliseconds.
    pub const MILLIS: Timescale = Timescale(1_000);
    /// Microseconds, used for wall-clock durations.
    pub const MICROS: Timescale = Timescale(1_000_000);

    /// A timescale of `hz` ticks per second. Zero is bumped to one: a zero timescale
    /// would make every conversion divide by zero.
    pub const fn new(hz: u32) -> Self {
        Timescale(if hz == 0 { 1 } else { hz })
    }

    /// Ticks per second.
    pub const fn hz(self) -> u32 {
        self.0
    }
}

/// A point in media time (or a duration) in ticks of a [`Timescale`].
///
/// Comparisons between values of different timescales are exact (cross multiplication),
/// so a 90 kHz and a 1 kHz time can be compared without rounding.
#[derive(Clone, Copy)]
pub struct MediaTime {
    ticks: i64,
    scale: Timescale,
}

impl MediaTime {
    /// `ticks` counted in `scale`.
    pub const fn new(ticks: i64, scale: Timescale) -> Self {
        MediaTime { ticks, scale }
    }

    /// Zero in the given timescale.
    pub const fn zero(scale: Timescale) -> Self {
        MediaTime { ticks: 0, scale }
    }

    /// A time from seconds, rounded to the nearest tick.
    pub fn from_secs_f64(secs: f64, scale: Timescale) -> Self {
        MediaTime::new((secs * scale.hz() as f64).round() as i64, scale)
    }

    /// The raw tick count.
    pub const fn ticks(self) -> i64 {
        self.ticks
    }

    /// The timescale.
    pub const fn timescale(self) -> Timescale {
        self.scale
    }

    /// Converts to another timescale, rounding to the nearest tick (half away from zero).
    #[inline]
    pub fn rescale(self, to: Timescale) -> MediaTime {
        if to == self.scale {
            return self;
        }
        // In 64 bits while the product fits (any time under about 3 years at 90 kHz), else
        // in 128: the same rounding either way, the 64-bit division being the fast one.
        let den = self.scale.hz() as i64;
        let half = den / 2;
        if let Some(num) = self.ticks.checked_mul(to.hz() as i64)
            && let Some(q) = if num >= 0 { num.checked_add(half) } else { num.checked_sub(half) }
        {
            return MediaTime::new(q / den, to);
        }
        let num = self.ticks as i128 * to.hz() as i128;
        let (den, half) = (den as i128, half as i128);
        let q = if num >= 0 { (num + half) / den } else { (num - half) / den };
        MediaTime::new(q.clamp(i64::MIN as i128, i64::MAX as i128) as i64, to)
    }

    /// Seconds as a float, for display and playlist durations.
    pub fn as_secs_f64(self) -> f64 {
        self.ticks as f64 / self.scale.hz() as f64
    }
}

/// `a + b` is expressed in `a`'s timescale (saturating).
impl std::ops::Add for MediaTime {
    type Output = MediaTime;
    fn add(self, other: MediaTime) -> MediaTime {
        let o = other.rescale(self.scale);
        MediaTime::new(self.ticks.saturating_add(o.ticks), self.scale)
    }
}

/// `a - b` is expressed in `a`'s timescale (saturating).
impl std::ops::Sub for MediaTime {
    type Output = MediaTime;
    fn sub(self, other: MediaTime) -> MediaTime {
        let o = other.rescale(self.scale);
        MediaTime::new(self.ticks.saturating_sub(o.ticks), self.scale)
    }
}

impl PartialEq for MediaTime {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for MediaTime {}

impl PartialOrd for MediaTime {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MediaTime {
    fn cmp(&self, other: &Self) -> Ordering {
        let a = self.ticks as i128 * other.scale.hz() as i128;
        let b = other.ticks as i128 * self.scale.hz() as i128;
        a.cmp(&b)
    }
}

impl fmt::Debug for MediaTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ticks, self.scale.hz())
    }
}

impl fmt::Display for MediaTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rescale_rounds_to_nearest() {
        let t = MediaTime::new(1, Timescale::MILLIS);
        assert_eq!(t.rescale(Timescale::MPEG).ticks(), 90);
        let t = MediaTime::new(3003, Timescale::MPEG);
        assert_eq!(t.rescale(Timescale::MILLIS).ticks(), 33);
        let t = MediaTime::new(-3003, Timescale::MPEG);
        assert_eq!(t.rescale(Timescale::MILLIS).ticks(), -33);
    }

    #[test]
    fn compares_across_timescales() {
        let a = MediaTime::new(1000, Timescale::MILLIS);
        let b = MediaTime::new(90_000, Timescale::MPEG);
        assert_eq!(a, b);
        assert!(MediaTime::new(1001, Timescale::MILLIS) > b);
    }

    proptest! {
        #[test]
        fn millis_roundtrip_through_mpeg(ms in -1_000_000_000i64..1_000_000_000) {
            let t = MediaTime::new(ms, Timescale::MILLIS);
            prop_assert_eq!(t.rescale(Timescale::MPEG).rescale(Timescale::MILLIS).ticks(), ms);
        }

        /// The 64-bit path rounds as the exact 128-bit computation does, and huge times
        /// (past the 64-bit product) clamp instead of wrapping.
        #[test]
        fn rescale_matches_exact_rounding(
            ticks in prop_oneof![-10_000_000_000i64..10_000_000_000, any::<i64>()],
            from in 1u32..200_000,
            to in 1u32..200_000,
        ) {
            let num = ticks as i128 * to as i128;
            let (den, half) = (from as i128, from as i128 / 2);
            let exact = if num >= 0 { (num + half) / den } else { (num - half) / den };
            let want = exact.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
            prop_assert_eq!(MediaTime::new(ticks, Timescale::new(from)).rescale(Timescale::new(to)).ticks(), want);
        }
    }
}
