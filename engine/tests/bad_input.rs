//! Publishers that send garbage are disconnected with a reason; other streams carry on.
//! A healthy ffmpeg stream publishes in real time throughout and must come out complete.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::*;
use ingest::publisher::{RtmpPublisher, RtmpUrl};
use ingest::rtmp::handshake::{HANDSHAKE_SIZE, client_c0c1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects and completes the handshake.
async fn handshaken(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&client_c0c1(3)).await.unwrap();
    let mut s0s1s2 = vec![0u8; 1 + 2 * HANDSHAKE_SIZE];
    s.read_exact(&mut s0s1s2).await.unwrap();
    s.write_all(&s0s1s2[1..1 + HANDSHAKE_SIZE]).await.unwrap();
    s
}

/// Sends `bytes` and expects the server to close the connection.
async fn expect_closed(mut s: TcpStream, bytes: &[u8], what: &str) {
    let _ = s.write_all(bytes).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut sink = [0u8; 4096];
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: connection still open");
}

/// A type-0 chunk header on `csid` for a message of `len` bytes of `type_id`.
fn header(csid: u8, len: u32, type_id: u8) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(csid);
    b.put_uint(0, 3);
    b.put_uint(len as u64, 3);
    b.put_u8(type_id);
    b.put_u32_le(0);
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_publishers_are_dropped_and_others_carry_on() {
    let gw = gateway().await;
    let src = testdata("short.flv");
    let good_url = rtmp_url(&gw, "good");
    let good = tokio::spawn(async move { ffmpeg_publish(&src, &good_url, true).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let addr = gw.rtmp_addr;

    // Wrong RTMP version in C0.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[6u8; 1537]).await.unwrap();
    expect_closed(s, &[], "bad handshake version").await;

    // Random bytes after the handshake.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x40).collect();
    expect_closed(handshaken(addr).await, &garbage, "garbage chunk stream").await;

    // Set Chunk Size 0, and one with the top bit set (the spec allows 1..=2^31-1).
    for size in [0u32, 1 << 31] {
        let mut m = header(2, 4, 1);
        m.put_u32(size);
        expect_closed(handshaken(addr).await, &m, "bad chunk size").await;
    }

    // A message longer than its header says: a new type-0 header on the same chunk stream
    // before the declared 300 bytes arrived.
    let mut m = header(4, 300, 9);
    m.put_bytes(0, 128);
    m.extend_from_slice(&header(4, 10, 9));
    expect_closed(handshaken(addr).await, &m, "interrupted message").await;

    // Invalid AMF0 in a command.
    let mut m = header(3, 4, 20);
    m.extend_from_slice(&[0x02, 0xff, 0xff, b'c']);
    expect_closed(handshaken(addr).await, &m, "invalid AMF").await;

    // A valid publish followed by a video codec Sluice does not take (Sorenson H.263), and
    // one followed by H.264 frames that never come with a usable sequence header (dropped
    // while one may still come; refused after ingest::flv::MAX_FRAMES_WITHOUT_OUTPUT).
    for (name, tag) in [("sorenson", vec![0x22u8, 0, 0, 0]), ("noheader", vec![0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0])]
    {
        let url = RtmpUrl::parse(&rtmp_url(&gw, name)).unwrap();
        let mut p = RtmpPublisher::connect(&url).await.unwrap();
        let mut failed = false;
        for i in 0..ingest::flv::MAX_FRAMES_WITHOUT_OUTPUT as u32 + 150 {
            if p.send_tag(9, i * 33, &tag).await.is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        assert!(failed, "{name}: publisher was not disconnected");
        let s = http_get(gw.cli_addr, &format!("/streams/{name}")).await.text();
        assert!(s.contains("\"live\": false"), "{name}: {s}");
    }

    // A name that cannot be a stream id is refused at publish.
    let url = RtmpUrl::parse(&format!("rtmp://{addr}/live/bad%20name")).unwrap();
    assert!(RtmpPublisher::connect(&url).await.is_err());

    good.await.unwrap();
    let c = fetch_and_check(&gw, "good").await;
    assert_same_packets(&testdata("short.flv"), &c.packets).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_limit_is_enforced() {
    let gw = gateway_with(|c| c.listen.max_streams = 1).await;
    let a = RtmpPublisher::connect(&RtmpUrl::parse(&rtmp_url(&gw, "a")).unwrap()).await.unwrap();
    let b = RtmpPublisher::connect(&RtmpUrl::parse(&rtmp_url(&gw, "b")).unwrap()).await;
    assert!(b.is_err(), "second stream refused");
    a.finish().await.unwrap();
    let m = http_get(gw.cli_addr, "/metrics").await.text();
    assert!(m.contains("sluice_publishes_rejected_total 1"), "{m}");
    gw.shutdown().await;
}
