//! An RTMP publishing client: the demo's and the tests' encoder stand-in, and the load
//! generator's publisher. It sends FLV tag bodies it is given; pacing and looping are the
//! caller's.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

use crate::error::RtmpError;
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder};
use crate::rtmp::handshake::{HANDSHAKE_SIZE, client_c0c1};
use crate::rtmp::message::*;

/// Chunk size the publisher announces (what ffmpeg and OBS use).
const PUBLISH_CHUNK_SIZE: u32 = 4096;
const CSID_VIDEO: u32 = 6;
const CSID_AUDIO: u32 = 7;
const CSID_DATA: u32 = 4;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server broke the protocol.
    #[error("{0}")]
    Rtmp(#[from] RtmpError),
    /// The server refused `connect` or `publish`.
    #[error("server refused: {0}")]
    Refused(String),
    /// No answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The URL is not `rtmp://host[:port]/app/name`.
    #[error("bad RTMP URL: {0}")]
    Url(String),
}

/// The parts of an `rtmp://host[:port]/app/name` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// `host:port` (port defaults to 1935).
    pub addr: String,
    /// Application.
    pub app: String,
    /// Stream name.
    pub name: String,
}

impl RtmpUrl {
    /// Parses an RTMP URL.
    pub fn parse(url: &str) -> Result<Self, PublishError> {
        let rest = url.strip_prefix("rtmp://").ok_or_else(|| PublishError::Url(url.into()))?;
        let (host, path) = rest.split_once('/').ok_or_else(|| PublishError::Url(url.into()))?;
        let addr = if host.contains(':') { host.to_owned() } else { format!("{host}:1935") };
        let (app, name) = match path.split_once('/') {
            Some((a, n)) => (a.to_owned(), n.to_owned()),
            None => (String::new(), path.to_owned()),
        };
        if name.is_empty() {
            return Err(PublishError::Url(url.into()));
        }
        Ok(RtmpUrl { addr, app, name })
    }
}

/// A connected, publishing RTMP client.
pub struct RtmpPublisher {
    writer: OwnedWriteHalf,
    encoder: ChunkEncoder,
    stream_id: u32,
    out: BytesMut,
    drain: tokio::task::JoinHandle<()>,
}

impl RtmpPublisher {
    /// Connects, handshakes and publishes `url`'s stream name.
    pub async fn connect(url: &RtmpUrl) -> Result<Self, PublishError> {
        tokio::time::timeout(Duration::from_secs(10), Self::connect_inner(url))
            .await
            .map_err(|_| PublishError::Timeout("publish to start"))?
    }

    async fn connect_inner(url: &RtmpUrl) -> Result<Self, PublishError> {
        let mut sock = TcpStream::connect(&url.addr).await?;
        sock.set_nodelay(true)?;
        sock.write_all(&client_c0c1(crate::random_seed())).await?;
        let mut s = vec![0u8; 1 + 2 * HANDSHAKE_SIZE];
        sock.read_exact(&mut s).await?;
        if s[0] != 3 {
            return Err(RtmpError::Version(s[0]).into());
        }
        sock.write_all(&s[1..1 + HANDSHAKE_SIZE]).await?; // C2 echoes S1
        let mut encoder = ChunkEncoder::default();
        let mut out = BytesMut::new();
        control_u32(&encoder, &mut out, SET_CHUNK_SIZE, PUBLISH_CHUNK_SIZE);
        encoder.set_chunk_size(PUBLISH_CHUNK_SIZE);
        let tc_url = format!("rtmp://{}/{}", url.addr, url.app);
        command(
            &encoder,
            &mut out,
            CSID_COMMAND,
            0,
            &[
                Amf0Value::String("connect".into()),
                Amf0Value::Number(1.0),
                amf0::object([
                    ("app", Amf0Value::String(url.app.clone())),
                    ("type", Amf0Value::String("nonprivate".into())),
                    ("flashVer", Amf0Value::String("FMLE/3.0 (compatible; sluice)".into())),
                    ("tcUrl", Amf0Value::String(tc_url)),
                ]),
            ],
        );
        sock.write_all(&out.split()).await?;
        let mut rd = Reader { decoder: ChunkDecoder::new(), buf: BytesMut::new() };
        rd.wait_result(&mut sock, 1.0).await?;
        let name = Amf0Value::String(url.name.clone());
        for (i, cmd) in ["releaseStream", "FCPublish"].into_iter().enumerate() {
            let vals =
                [Amf0Value::String(cmd.into()), Amf0Value::Number(2.0 + i as f64), Amf0Value::Null, name.clone()];
            command(&encoder, &mut out, CSID_COMMAND, 0, &vals);
        }
        command(
            &encoder,
            &mut out,
            CSID_COMMAND,
            0,
            &[Amf0Value::String("createStream".into()), Amf0Value::Number(4.0), Amf0Value::Null],
        );
        sock.write_all(&out.split()).await?;
        let stream_id = rd.wait_result(&mut sock, 4.0).await?.as_f64().unwrap_or(1.0) as u32;
        let vals = [
            Amf0Value::String("publish".into()),
            Amf0Value::Number(5.0),
            Amf0Value::Null,
            name,
            Amf0Value::String("live".into()),
        ];
        command(&encoder, &mut out, CSID_STATUS, stream_id, &vals);
        sock.write_all(&out.split()).await?;
        rd.wait_publish_start(&mut sock).await?;
        let (mut read_half, writer) = sock.into_split();
        // Keep reading (acks, pings) so the server's writes never block.
        let drain = tokio::spawn(async move {
            let mut sink = vec![0u8; 4096];
            while matches!(read_half.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        Ok(RtmpPublisher { writer, encoder, stream_id, out, drain })
    }

    /// Announces a new outgoing chunk size (Set Chunk Size, §5.4.1): any legal value,
    /// 1 to 2^31-1, as some publishers send. Messages are then chunked at that size (at
    /// most 16 MiB, more than any message holds).
    pub async fn set_chunk_size(&mut self, size: u32) -> Result<(), PublishError> {
        control_u32(&self.encoder, &mut self.out, SET_CHUNK_SIZE, size);
        self.encoder.set_chunk_size(size);
        self.writer.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Sends one FLV tag body (audio 8, video 9, script 18) with timestamp `ts_ms`.
    pub async fn send_tag(&mut self, tag_type: u8, ts_ms: u32, body: &[u8]) -> Result<(), PublishError> {
        let csid = match tag_type {
            AUDIO => CSID_AUDIO,
            VIDEO => CSID_VIDEO,
            _ => CSID_DATA,
        };
        self.encoder.write(&mut self.out, csid, ts_ms, tag_type, self.stream_id, body);
        self.writer.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Unpublishes and closes the connection.
    pub async fn finish(mut self) -> Result<(), PublishError> {
        let name = Amf0Value::Null;
        command(
            &self.encoder,
            &mut self.out,
            CSID_COMMAND,
            0,
            &[Amf0Value::String("FCUnpublish".into()), Amf0Value::Number(6.0), Amf0Value::Null, name],
        );
        let sid = Amf0Value::Number(self.stream_id as f64);
        command(
            &self.encoder,
            &mut self.out,
            CSID_COMMAND,
            0,
            &[Amf0Value::String("deleteStream".into()), Amf0Value::Number(7.0), Amf0Value::Null, sid],
        );
        self.writer.write_all(&self.out).await?;
        self.writer.shutdown().await?;
        self.drain.abort();
        Ok(())
    }
}

struct Reader {
    decoder: ChunkDecoder,
    buf: BytesMut,
}

impl Reader {
    async fn next_command(&mut self, sock: &mut TcpStream) -> Result<Vec<Amf0Value>, PublishError> {
        loop {
            while let Some(msg) = self.decoder.decode(&mut self.buf)? {
                let body = msg.payload.to_contiguous();
                match msg.type_id {
                    SET_CHUNK_SIZE if body.len() >= 4 => {
                        self.decoder.set_chunk_size((&body[..]).get_u32())?;
                    }
                    COMMAND_AMF0 => {
                        return amf0::decode_all(&body)
                            .map_err(|source| RtmpError::Amf { context: "command", source }.into());
                    }
                    _ => {}
                }
            }
            if sock.read_buf(&mut self.buf).await? == 0 {
                return Err(PublishError::Refused("connection closed".into()));
            }
        }
    }

    async fn wait_result(&mut self, sock: &mut TcpStream, txn: f64) -> Result<Amf0Value, PublishError> {
        loop {
            let vals = self.next_command(sock).await?;
            let name = vals.first().and_then(Amf0Value::as_str).unwrap_or_default();
            if vals.get(1).and_then(Amf0Value::as_f64) != Some(txn) {
                continue;
            }
            return match name {
                "_result" => Ok(vals.into_iter().nth(3).unwrap_or(Amf0Value::Null)),
                _ => Err(PublishError::Refused(format!("{vals:?}"))),
            };
        }
    }

    async fn wait_publish_start(&mut self, sock: &mut TcpStream) -> Result<(), PublishError> {
        loop {
            let vals = self.next_command(sock).await?;
            if vals.first().and_then(Amf0Value::as_str) != Some("onStatus") {
                continue;
            }
            let info = vals.get(3);
            let code = info.and_then(|i| i.get("code")).and_then(Amf0Value::as_str).unwrap_or_default();
            if code == "NetStream.Publish.Start" {
                return Ok(());
            }
            let desc = info.and_then(|i| i.get("description")).and_then(Amf0Value::as_str).unwrap_or_default();
            return Err(PublishError::Refused(format!("{code}: {desc}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/live/abc").unwrap();
        assert_eq!((u.addr.as_str(), u.app.as_str(), u.name.as_str()), ("127.0.0.1:1936", "live", "abc"));
        let u = RtmpUrl::parse("rtmp://example/abc").unwrap();
        assert_eq!((u.addr.as_str(), u.app.as_str(), u.name.as_str()), ("example:1935", "", "abc"));
        assert!(RtmpUrl::parse("http://x/y").is_err());
    }
}
