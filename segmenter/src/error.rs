//! Segmenter errors.

/// A malformed part of a transport stream. The demuxer reports it and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsError {
    /// Bytes that were not packets were skipped.
    #[error("lost TS sync, skipped {skipped} bytes")]
    SyncLost {
        /// How many.
        skipped: usize,
    },
    /// An adaptation field longer than its packet.
    #[error("bad adaptation field on PID {pid:#x}")]
    AdaptationField {
        /// PID.
        pid: u16,
    },
    /// A PAT or PMT section with a bad length or CRC.
    #[error("bad PSI section (table {table_id:#x})")]
    Psi {
        /// table_id.
        table_id: u8,
    },
    /// A PES packet that could not be parsed.
    #[error("bad PES on PID {pid:#x}: {what}")]
    Pes {
        /// PID.
        pid: u16,
        /// Which part.
        what: &'static str,
    },
    /// A PES packet over [`crate::ts::demux::MAX_PES`].
    #[error("PES on PID {pid:#x} too long")]
    PesTooLong {
        /// PID.
        pid: u16,
    },
}
