//! RTMP message type ids and builders for the control and command messages a server sends.

use bytes::{BufMut, BytesMut};

use super::amf0::{self, Amf0Value};
use super::chunk::ChunkEncoder;

/// Set Chunk Size (§5.4.1).
pub const SET_CHUNK_SIZE: u8 = 1;
/// Abort Message (§5.4.2).
pub const ABORT: u8 = 2;
/// Acknowledgement (§5.4.3).
pub const ACK: u8 = 3;
/// User Control Message (§6.2 / §7.1.7).
pub const USER_CONTROL: u8 = 4;
/// Window Acknowledgement Size (§5.4.4).
pub const WINDOW_ACK_SIZE: u8 = 5;
/// Set Peer Bandwidth (§5.4.5).
pub const SET_PEER_BANDWIDTH: u8 = 6;
/// Audio data (an FLV audio tag body).
pub const AUDIO: u8 = 8;
/// Video data (an FLV video tag body).
pub const VIDEO: u8 = 9;
/// AMF3 data message (a zero byte, then AMF0 in practice).
pub const DATA_AMF3: u8 = 15;
/// AMF3 command message.
pub const COMMAND_AMF3: u8 = 17;
/// AMF0 data message (`@setDataFrame`, `onMetaData`).
pub const DATA_AMF0: u8 = 18;
/// AMF0 command message.
pub const COMMAND_AMF0: u8 = 20;

/// User control event: Stream Begin.
pub const UC_STREAM_BEGIN: u16 = 0;
/// User control event: Ping Request.
pub const UC_PING_REQUEST: u16 = 6;
/// User control event: Ping Response.
pub const UC_PING_RESPONSE: u16 = 7;

/// Chunk stream for protocol control messages (§5.4).
pub const CSID_CONTROL: u32 = 2;
/// Chunk stream for connection-level commands (the convention ffmpeg and librtmp use).
pub const CSID_COMMAND: u32 = 3;
/// Chunk stream for stream-level status messages.
pub const CSID_STATUS: u32 = 5;

/// Queues a protocol control message with a 4-byte body.
pub fn control_u32(enc: &ChunkEncoder, out: &mut BytesMut, type_id: u8, value: u32) {
    enc.write(out, CSID_CONTROL, 0, type_id, 0, &value.to_be_bytes());
}

/// Queues Set Peer Bandwidth.
pub fn set_peer_bandwidth(enc: &ChunkEncoder, out: &mut BytesMut, size: u32, limit: u8) {
    let mut b = [0u8; 5];
    b[..4].copy_from_slice(&size.to_be_bytes());
    b[4] = limit;
    enc.write(out, CSID_CONTROL, 0, SET_PEER_BANDWIDTH, 0, &b);
}

/// Queues a user control event with a 4-byte argument.
pub fn user_control(enc: &ChunkEncoder, out: &mut BytesMut, event: u16, arg: u32) {
    let mut b = BytesMut::with_capacity(6);
    b.put_u16(event);
    b.put_u32(arg);
    enc.write(out, CSID_CONTROL, 0, USER_CONTROL, 0, &b);
}

/// Queues an AMF0 command.
pub fn command(enc: &ChunkEncoder, out: &mut BytesMut, csid: u32, stream_id: u32, values: &[Amf0Value]) {
    let mut b = BytesMut::with_capacity(256);
    for v in values {
        amf0::encode(v, &mut b);
    }
    enc.write(out, csid, 0, COMMAND_AMF0, stream_id, &b);
}

/// Queues an `onStatus` for a message stream.
pub fn on_status(enc: &ChunkEncoder, out: &mut BytesMut, stream_id: u32, level: &str, code: &str, description: &str) {
    command(
        enc,
        out,
        CSID_STATUS,
        stream_id,
        &[
            Amf0Value::String("onStatus".into()),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            amf0::object([
                ("level", Amf0Value::String(level.into())),
                ("code", Amf0Value::String(code.into())),
                ("description", Amf0Value::String(description.into())),
            ]),
        ],
    );
}
