//! MPEG-2 transport stream (ISO/IEC 13818-1) muxing and demuxing.

mod crc;
pub mod demux;
pub mod mux;

/// Size of a transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// Sync byte that starts every packet.
pub const SYNC: u8 = 0x47;
/// PID of the program association table.
pub const PID_PAT: u16 = 0x0000;
/// PID Sluice uses for the program map table (ffmpeg's choice too).
pub const PID_PMT: u16 = 0x1000;
/// PID of the video elementary stream.
pub const PID_VIDEO: u16 = 0x0100;
/// PID of the audio elementary stream.
pub const PID_AUDIO: u16 = 0x0101;
/// stream_type for H.264 (Table 2-34).
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// stream_type for AAC in ADTS.
pub const STREAM_TYPE_AAC: u8 = 0x0f;
/// Timestamps are 33 bits of a 90 kHz clock.
pub const TIMESTAMP_MASK: i64 = (1 << 33) - 1;
