//! Errors of the ingest protocols. Each names what went wrong with enough context to log a
//! clear reason when a publisher is disconnected.

use media::{CodecError, TrackKind};

use crate::rtmp::amf0::AmfError;

/// An RTMP peer broke the protocol; the connection is closed with this as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtmpError {
    /// C0 named a version other than 3.
    #[error("unsupported RTMP version {0} in handshake (only 3 is supported)")]
    Version(u8),
    /// Set Chunk Size of 0 or with the top bit set (§5.4.1 allows 1..=2^31-1).
    #[error("chunk size {0} out of range 1..=2147483647")]
    ChunkSize(u32),
    /// A type 1/2/3 chunk on a chunk stream with no earlier type 0 header.
    #[error("chunk stream {csid} continues a header it never sent")]
    NoPreviousHeader {
        /// Chunk stream id.
        csid: u32,
    },
    /// A new message header arrived before the previous message's declared length was read.
    #[error("message on chunk stream {csid} is longer than its header says (new header before it ended)")]
    InterruptedMessage {
        /// Chunk stream id.
        csid: u32,
    },
    /// More chunk streams in flight than [`crate::rtmp::chunk::MAX_CHUNK_STREAMS`].
    #[error("too many chunk streams in flight")]
    TooManyChunkStreams,
    /// More partial message bytes than [`crate::rtmp::chunk::MAX_BUFFERED`].
    #[error("too many bytes of unfinished messages buffered")]
    TooMuchBuffered,
    /// A command or data message was not valid AMF0.
    #[error("invalid AMF0 in {context}: {source}")]
    Amf {
        /// Which message.
        context: &'static str,
        /// What was wrong.
        source: AmfError,
    },
    /// A protocol message arrived out of order or malformed.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

/// An FLV audio or video tag could not be turned into access units.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    /// A video codec other than H.264 (FLV codec id).
    #[error("unsupported video codec id {0} (only H.264/AVC is supported)")]
    UnsupportedVideoCodec(u8),
    /// Enhanced RTMP video (HEVC, AV1, VP9 by FourCC).
    #[error("unsupported enhanced-RTMP video (FourCC {0:?})")]
    UnsupportedEnhancedVideo(String),
    /// An audio format other than AAC (FLV SoundFormat).
    #[error("unsupported audio format {0} (only AAC is supported)")]
    UnsupportedAudioCodec(u8),
    /// Coded frames arrived before the decoder configuration.
    #[error("{0:?} frames before a sequence header")]
    MissingSequenceHeader(TrackKind),
    /// A tag shorter than its fixed header.
    #[error("truncated {0} tag")]
    Truncated(&'static str),
    /// A NAL unit length prefix points past the end of the tag.
    #[error("NAL unit length {len} at offset {offset} runs past the end of a {tag_len}-byte tag")]
    NalOverrun {
        /// Declared NAL length.
        len: usize,
        /// Where its prefix starts.
        offset: usize,
        /// The tag's size.
        tag_len: usize,
    },
    /// The sequence header was not a valid codec configuration.
    #[error("bad {track:?} sequence header: {source}")]
    Codec {
        /// Which track.
        track: TrackKind,
        /// What was wrong.
        source: CodecError,
    },
    /// Not an FLV file (file reader only).
    #[error("not an FLV file: {0}")]
    File(&'static str),
}
