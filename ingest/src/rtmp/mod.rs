//! RTMP: handshake, chunk stream, AMF0 and the publishing session, all sans-IO.

pub mod amf0;
pub mod chunk;
pub mod handshake;
pub mod message;
pub mod session;
