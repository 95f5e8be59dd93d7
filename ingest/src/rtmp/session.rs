//! The server side of an RTMP publishing session, as a sans-IO state machine.
//!
//! # Driving it
//!
//! 1. Append bytes read from the socket to a `BytesMut` and call
//!    [`ServerSession::handle_input`]; it consumes what it can and leaves an incomplete
//!    header in the buffer.
//! 2. Drain [`ServerSession::poll_transmit`] and write the bytes to the socket.
//! 3. Drain [`ServerSession::poll_event`]. On [`SessionEvent::Publish`], decide and call
//!    [`ServerSession::accept_publish`] or [`ServerSession::reject_publish`], then drain
//!    `poll_transmit` again.
//!
//! An `Err` from `handle_input` is fatal: log it and close the connection.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use media::Payload;

use super::amf0::{self, Amf0Value};
use super::chunk::{ChunkDecoder, ChunkEncoder, RawMessage};
use super::handshake::ServerHandshake;
use super::message::*;
use crate::error::RtmpError;

/// Settings for a server session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Chunk size for what the server sends. 4096 is what ffmpeg, OBS and nginx-rtmp use.
    pub out_chunk_size: u32,
    /// Window Acknowledgement Size announced to the client (the common 2.5 MB).
    pub window_ack_size: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { out_chunk_size: 4096, window_ack_size: 2_500_000 }
    }
}

/// Something the session reports to its driver.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// `connect` was accepted.
    Connect {
        /// The application name (`live` in `rtmp://host/live/key`).
        app: String,
        /// The tcUrl the client sent, if any.
        tc_url: Option<String>,
    },
    /// The client asks to publish; answer with `accept_publish` or `reject_publish`.
    Publish {
        /// Application from `connect`.
        app: String,
        /// The stream name (stream key), as sent, query string included.
        name: String,
    },
    /// `@setDataFrame` / `onMetaData`.
    Metadata(Amf0Value),
    /// An FLV audio tag body.
    Audio {
        /// Milliseconds, 32-bit.
        timestamp: u32,
        /// The tag body.
        payload: Payload,
    },
    /// An FLV video tag body.
    Video {
        /// Milliseconds, 32-bit.
        timestamp: u32,
        /// The tag body.
        payload: Payload,
    },
    /// The client stopped publishing (`FCUnpublish`, `deleteStream`, `closeStream`).
    Unpublish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    Connecting,
    Connected,
    PublishRequested,
    Publishing,
    Ended,
}

/// A server-side RTMP session. See the module docs for the drive contract.
pub struct ServerSession {
    config: SessionConfig,
    handshake: ServerHandshake,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: BytesMut,
    events: VecDeque<SessionEvent>,
    phase: Phase,
    app: String,
    publish_stream_id: u32,
    next_stream_id: u32,
    bytes_in: u64,
    last_ack: u64,
    ack_window: u32,
}

impl ServerSession {
    /// A new session. `epoch_ms` and `seed` feed the handshake (see [`ServerHandshake`]).
    pub fn new(config: SessionConfig, epoch_ms: u32, seed: u64) -> Self {
        let ack_window = config.window_ack_size;
        ServerSession {
            config,
            handshake: ServerHandshake::new(epoch_ms, seed),
            decoder: ChunkDecoder::new(),
            encoder: ChunkEncoder::default(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            phase: Phase::Handshake,
            app: String::new(),
            publish_stream_id: 0,
            next_stream_id: 1,
            bytes_in: 0,
            last_ack: 0,
            ack_window,
        }
    }

    /// True while the client is publishing (after `accept_publish`, before unpublish).
    pub fn is_publishing(&self) -> bool {
        self.phase == Phase::Publishing
    }

    /// Feeds received bytes. See the module docs.
    pub fn handle_input(&mut self, buf: &mut BytesMut) -> Result<(), RtmpError> {
        let before = buf.len();
        let r = self.process(buf);
        self.bytes_in += (before - buf.len()) as u64;
        if self.phase != Phase::Handshake && self.bytes_in - self.last_ack >= self.ack_window as u64 {
            // §5.4.3: the sequence number is the byte count so far, mod 2^32.
            self.last_ack = self.bytes_in;
            control_u32(&self.encoder, &mut self.out, ACK, self.bytes_in as u32);
        }
        r
    }

    fn process(&mut self, buf: &mut BytesMut) -> Result<(), RtmpError> {
        if self.phase == Phase::Handshake {
            if !self.handshake.handle(buf, &mut self.out)? {
                return Ok(());
            }
            self.phase = Phase::Connecting;
        }
        while let Some(msg) = self.decoder.decode(buf)? {
            self.handle_message(msg)?;
        }
        Ok(())
    }

    /// Bytes to write to the peer, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Accepts the pending publish request.
    pub fn accept_publish(&mut self) {
        if self.phase != Phase::PublishRequested {
            return;
        }
        self.phase = Phase::Publishing;
        let sid = self.publish_stream_id;
        user_control(&self.encoder, &mut self.out, UC_STREAM_BEGIN, sid);
        on_status(&self.encoder, &mut self.out, sid, "status", "NetStream.Publish.Start", "Start publishing");
    }

    /// Rejects the pending publish request with a NetStream status `code`
    /// (e.g. `NetStream.Publish.BadName`). The driver closes the connection afterwards.
    pub fn reject_publish(&mut self, code: &str, description: &str) {
        let sid = self.publish_stream_id;
        on_status(&self.encoder, &mut self.out, sid, "error", code, description);
        self.phase = Phase::Ended;
    }

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), RtmpError> {
        match msg.type_id {
            SET_CHUNK_SIZE => {
                let b = msg.payload.to_contiguous();
                let v = b.get(..4).ok_or(RtmpError::Protocol("short Set Chunk Size"))?;
                let size = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                // The top bit must be zero (§5.4.1); it is kept as part of the value so a
                // set top bit is refused by the range check rather than silently masked.
                self.decoder.set_chunk_size(size)?;
            }
            ABORT => {
                let b = msg.payload.to_contiguous();
                let v = b.get(..4).ok_or(RtmpError::Protocol("short Abort"))?;
                self.decoder.abort(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
            }
            WINDOW_ACK_SIZE => {
                let b = msg.payload.to_contiguous();
                if let Some(v) = b.get(..4) {
                    let w = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                    // Acknowledge at the window the peer asked for; never more often than
                    // every 4 KiB, whatever it asks.
                    self.ack_window = w.max(4096);
                }
            }
            USER_CONTROL => {
                let b = msg.payload.to_contiguous();
                if b.len() >= 6 && u16::from_be_bytes([b[0], b[1]]) == UC_PING_REQUEST {
                    let t = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
                    user_control(&self.encoder, &mut self.out, UC_PING_RESPONSE, t);
                }
            }
            ACK | SET_PEER_BANDWIDTH => {}
            AUDIO | VIDEO => {
                // Media may follow `publish` before the answer reaches the client (a client
                // need not wait for onStatus); it is queued behind the Publish event and the
                // driver accepts or rejects before using it. Media outside a publish is not ours.
                if !matches!(self.phase, Phase::PublishRequested | Phase::Publishing) {
                    return Ok(());
                }
                let (timestamp, payload) = (msg.timestamp, msg.payload);
                self.events.push_back(if msg.type_id == AUDIO {
                    SessionEvent::Audio { timestamp, payload }
                } else {
                    SessionEvent::Video { timestamp, payload }
                });
            }
            DATA_AMF0 | DATA_AMF3 => {
                let body = msg.payload.to_contiguous();
                let body = if msg.type_id == DATA_AMF3 { body.get(1..).unwrap_or_default() } else { &body[..] };
                self.handle_data(body)?;
            }
            COMMAND_AMF0 | COMMAND_AMF3 => {
                let body = msg.payload.to_contiguous();
                let body = if msg.type_id == COMMAND_AMF3 { body.get(1..).unwrap_or_default() } else { &body[..] };
                let vals = amf0::decode_all(body).map_err(|source| RtmpError::Amf { context: "command", source })?;
                self.handle_command(msg.stream_id, vals)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_data(&mut self, body: &[u8]) -> Result<(), RtmpError> {
        let vals = amf0::decode_all(body).map_err(|source| RtmpError::Amf { context: "data message", source })?;
        let mut it = vals.into_iter();
        let mut first = it.next();
        if first.as_ref().and_then(Amf0Value::as_str) == Some("@setDataFrame") {
            first = it.next();
        }
        if first.as_ref().and_then(Amf0Value::as_str) == Some("onMetaData")
            && let Some(meta) = it.next()
            && self.phase == Phase::Publishing
        {
            self.events.push_back(SessionEvent::Metadata(meta));
        }
        Ok(())
    }

    fn handle_command(&mut self, stream_id: u32, vals: Vec<Amf0Value>) -> Result<(), RtmpError> {
        let name = vals.first().and_then(Amf0Value::as_str).ok_or(RtmpError::Protocol("command without a name"))?;
        let txn = vals.get(1).and_then(Amf0Value::as_f64).unwrap_or(0.0);
        match name {
            "connect" => {
                if self.phase != Phase::Connecting {
                    return Err(RtmpError::Protocol("second connect"));
                }
                let obj = vals.get(2);
                self.app = obj.and_then(|o| o.get("app")).and_then(Amf0Value::as_str).unwrap_or_default().to_owned();
                let tc_url = obj.and_then(|o| o.get("tcUrl")).and_then(Amf0Value::as_str).map(str::to_owned);
                let encoding = obj.and_then(|o| o.get("objectEncoding")).and_then(Amf0Value::as_f64).unwrap_or(0.0);
                control_u32(&self.encoder, &mut self.out, WINDOW_ACK_SIZE, self.config.window_ack_size);
                set_peer_bandwidth(&self.encoder, &mut self.out, self.config.window_ack_size, 2);
                control_u32(&self.encoder, &mut self.out, SET_CHUNK_SIZE, self.config.out_chunk_size);
                self.encoder.set_chunk_size(self.config.out_chunk_size);
                command(
                    &self.encoder,
                    &mut self.out,
                    CSID_COMMAND,
                    0,
                    &[
                        Amf0Value::String("_result".into()),
                        Amf0Value::Number(txn),
                        amf0::object([
                            ("fmsVer", Amf0Value::String("FMS/3,0,1,123".into())),
                            ("capabilities", Amf0Value::Number(31.0)),
                        ]),
                        amf0::object([
                            ("level", Amf0Value::String("status".into())),
                            ("code", Amf0Value::String("NetConnection.Connect.Success".into())),
                            ("description", Amf0Value::String("Connection succeeded.".into())),
                            ("objectEncoding", Amf0Value::Number(encoding)),
                        ]),
                    ],
                );
                self.phase = Phase::Connected;
                self.events.push_back(SessionEvent::Connect { app: self.app.clone(), tc_url });
            }
            "releaseStream" | "FCPublish" => {
                self.require_connected()?;
                if txn != 0.0 {
                    self.result(txn, Amf0Value::Undefined);
                }
            }
            "createStream" => {
                self.require_connected()?;
                let sid = self.next_stream_id;
                self.next_stream_id += 1;
                self.result(txn, Amf0Value::Number(sid as f64));
            }
            "publish" => {
                self.require_connected()?;
                if self.phase != Phase::Connected {
                    return Err(RtmpError::Protocol("publish while already publishing"));
                }
                let name = vals.get(3).and_then(Amf0Value::as_str).unwrap_or_default().to_owned();
                self.publish_stream_id = stream_id;
                self.phase = Phase::PublishRequested;
                self.events.push_back(SessionEvent::Publish { app: self.app.clone(), name });
            }
            "FCUnpublish" | "deleteStream" | "closeStream" => {
                if self.phase == Phase::Publishing {
                    self.phase = Phase::Ended;
                    self.events.push_back(SessionEvent::Unpublish);
                }
            }
            "play" => {
                // Sluice takes streams in over RTMP; playback is HLS/DASH.
                on_status(
                    &self.encoder,
                    &mut self.out,
                    stream_id,
                    "error",
                    "NetStream.Play.Failed",
                    "RTMP playback is not supported; use HLS",
                );
            }
            _ => {
                if txn != 0.0 {
                    command(
                        &self.encoder,
                        &mut self.out,
                        CSID_COMMAND,
                        0,
                        &[Amf0Value::String("_error".into()), Amf0Value::Number(txn), Amf0Value::Null, Amf0Value::Null],
                    );
                }
            }
        }
        Ok(())
    }

    fn require_connected(&self) -> Result<(), RtmpError> {
        match self.phase {
            Phase::Handshake | Phase::Connecting => Err(RtmpError::Protocol("command before connect")),
            _ => Ok(()),
        }
    }

    fn result(&mut self, txn: f64, value: Amf0Value) {
        command(
            &self.encoder,
            &mut self.out,
            CSID_COMMAND,
            0,
            &[Amf0Value::String("_result".into()), Amf0Value::Number(txn), Amf0Value::Null, value],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::handshake::{HANDSHAKE_SIZE, client_c0c1};

    fn cmd(enc: &ChunkEncoder, out: &mut BytesMut, sid: u32, vals: &[Amf0Value]) {
        command(enc, out, CSID_COMMAND, sid, vals);
    }

    /// A client that sends everything at once, media included, without waiting for answers.
    #[test]
    fn pipelined_publish_keeps_media_in_order() {
        let enc = ChunkEncoder::default();
        let mut wire = client_c0c1(1);
        wire.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
        let s = |x: &str| Amf0Value::String(x.into());
        cmd(&enc, &mut wire, 0, &[s("connect"), Amf0Value::Number(1.0), amf0::object([("app", s("live"))])]);
        cmd(&enc, &mut wire, 0, &[s("createStream"), Amf0Value::Number(2.0), Amf0Value::Null]);
        cmd(&enc, &mut wire, 1, &[s("publish"), Amf0Value::Number(3.0), Amf0Value::Null, s("key"), s("live")]);
        enc.write(&mut wire, 6, 0, VIDEO, 1, &[0x17, 0, 0, 0, 0]);
        let mut session = ServerSession::new(SessionConfig::default(), 0, 1);
        session.handle_input(&mut wire).unwrap();
        let events: Vec<_> = std::iter::from_fn(|| session.poll_event()).collect();
        assert!(matches!(events[0], SessionEvent::Connect { .. }));
        assert!(matches!(&events[1], SessionEvent::Publish { name, .. } if name == "key"));
        assert!(matches!(events[2], SessionEvent::Video { .. }));
        session.accept_publish();
        assert!(session.is_publishing());
        let out = session.poll_transmit().unwrap();
        assert!(out.windows(23).any(|w| w == b"NetStream.Publish.Start"));
    }

    #[test]
    fn media_without_publish_is_ignored_and_commands_need_connect() {
        let enc = ChunkEncoder::default();
        let mut wire = client_c0c1(1);
        wire.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
        enc.write(&mut wire, 6, 0, VIDEO, 1, &[0x17, 0, 0, 0, 0]);
        let mut session = ServerSession::new(SessionConfig::default(), 0, 1);
        session.handle_input(&mut wire).unwrap();
        assert!(session.poll_event().is_none());
        let s = |x: &str| Amf0Value::String(x.into());
        cmd(&enc, &mut wire, 1, &[s("publish"), Amf0Value::Number(3.0), Amf0Value::Null, s("key")]);
        assert!(matches!(session.handle_input(&mut wire), Err(RtmpError::Protocol(_))));
    }
}
