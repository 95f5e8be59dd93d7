//! Trickle server conformance (spec `trickle-and-live-ai.md` §1.3–§1.7), against the
//! gateway's `/ai/trickle/` with plain HTTP/1.1 written by hand: every route, header and
//! status a real client relies on, including bodies that stream while the publisher is
//! still writing.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One whole request with an optional body (`Content-Length`), `Connection: close`.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    read_response(&mut s).await
}

async fn read_response(s: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await.expect("response in time").unwrap();
    parse_http(&raw)
}

/// A POST whose chunked body is written piece by piece.
struct Upload(TcpStream);

impl Upload {
    async fn start(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Upload {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut head =
            format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        Upload(s)
    }

    async fn send(&mut self, data: &[u8]) {
        self.0.write_all(format!("{:x}\r\n", data.len()).as_bytes()).await.unwrap();
        self.0.write_all(data).await.unwrap();
        self.0.write_all(b"\r\n").await.unwrap();
        self.0.flush().await.unwrap();
    }

    async fn finish(mut self) -> HttpResponse {
        self.0.write_all(b"0\r\n\r\n").await.unwrap();
        read_response(&mut self.0).await
    }

    /// The server's answer while the body is still open.
    async fn answer_before_end(mut self) -> HttpResponse {
        read_response(&mut self.0).await
    }
}

/// A GET read as it arrives.
struct Download {
    s: TcpStream,
    raw: Vec<u8>,
}

impl Download {
    async fn start(addr: SocketAddr, path: &str) -> Download {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        Download { s, raw: Vec::new() }
    }

    /// Reads until the body so far holds `want` bytes, or `wait` passes; returns what it has.
    async fn body_at_least(&mut self, want: usize, wait: Duration) -> Option<HttpResponse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.raw.windows(4).any(|w| w == b"\r\n\r\n") {
                let r = parse_http(&self.raw);
                if r.body.len() >= want {
                    return Some(r);
                }
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.s.read(&mut buf)).await {
                Ok(Ok(0)) | Err(_) => {
                    return self.raw.windows(4).any(|w| w == b"\r\n\r\n").then(|| parse_http(&self.raw));
                }
                Ok(Ok(n)) => self.raw.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => panic!("{e}"),
            }
        }
    }

    async fn finish(mut self) -> HttpResponse {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.s.read_to_end(&mut rest)).await.expect("in time").unwrap();
        self.raw.extend_from_slice(&rest);
        parse_http(&self.raw)
    }
}

async fn publish(addr: SocketAddr, ch: &str, seq: i64, body: &[u8]) -> HttpResponse {
    request(addr, "POST", &format!("/ai/trickle/{ch}/{seq}"), &[("Content-Type", "video/MP2T")], body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_are_created_by_their_owner_only_unless_auto_create() {
    let gw = gateway().await;
    let a = gw.http_addr;
    let r = request(a, "POST", "/ai/trickle/nobody", &[("Expect-Content", "video/MP2T")], b"").await;
    assert_eq!(r.status, 404, "HTTP creation is off by default");
    let r = publish(a, "nobody", 0, b"x").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(http_get(a, "/ai/trickle/nobody/0").await.status, 404);
    assert_eq!(http_get(a, "/ai/trickle/nobody/next").await.status, 404);
    assert_eq!(request(a, "DELETE", "/ai/trickle/nobody", &[], b"").await.status, 400);
    // The gateway itself creates channels.
    gw.trickle().create("owned", "application/json").unwrap();
    assert_eq!(publish(a, "owned", 0, b"{}").await.status, 200);
    let got = http_get(a, "/ai/trickle/owned/0").await;
    assert_eq!((got.status, got.body.as_slice()), (200, &b"{}"[..]));
    assert_eq!(got.header("content-type"), Some("application/json"), "the channel's MIME type, fixed at creation");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn segments_stream_while_written_and_preconnects_block_until_data() {
    let gw = gateway_with(|c| c.trickle.trickle_auto_create = true).await;
    let a = gw.http_addr;
    let r = request(a, "POST", "/ai/trickle/cam", &[("Expect-Content", "video/MP2T")], b"").await;
    assert_eq!(r.status, 200);
    let next = http_get(a, "/ai/trickle/cam/next").await;
    assert_eq!((next.status, next.text().as_str(), next.header("lp-trickle-latest")), (200, "0", Some("0")));
    // A subscriber preconnects to the next segment: no answer until the first byte.
    let mut sub = Download::start(a, "/ai/trickle/cam/-1").await;
    assert!(sub.body_at_least(1, Duration::from_millis(400)).await.is_none(), "answered before any data");
    let mut up = Upload::start(a, "/ai/trickle/cam/0", &[("Content-Type", "video/MP2T")]).await;
    up.send(b"hello ").await;
    let early = sub.body_at_least(6, Duration::from_secs(5)).await.expect("first bytes while the POST is open");
    assert_eq!(early.status, 200);
    assert_eq!(early.header("lp-trickle-seq"), Some("0"));
    assert_eq!(early.header("content-type"), Some("video/MP2T"));
    assert_eq!(early.body, b"hello ");
    up.send(b"world").await;
    let done = up.finish().await;
    assert_eq!((done.status, done.header("lp-trickle-seq")), (200, Some("0")));
    assert_eq!(sub.finish().await.body, b"hello world", "byte-equal, ended with the POST");
    // -2 is the current segment; the next index moved on at the first byte.
    assert_eq!(http_get(a, "/ai/trickle/cam/-2").await.body, b"hello world");
    assert_eq!(http_get(a, "/ai/trickle/cam/next").await.text(), "1");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ring_of_five_repeated_posts_reset_and_delete() {
    let gw = gateway_with(|c| c.trickle.trickle_auto_create = true).await;
    let a = gw.http_addr;
    for seq in 0..7 {
        assert_eq!(publish(a, "ring", seq, format!("seg{seq}").as_bytes()).await.status, 200);
    }
    // Segment 1 fell off the ring of five: 470 with the latest index to jump to.
    let old = http_get(a, "/ai/trickle/ring/1").await;
    assert_eq!(
        (old.status, old.header("lp-trickle-latest"), old.header("lp-trickle-seq")),
        (470, Some("7"), Some("1"))
    );
    let kept = http_get(a, "/ai/trickle/ring/2").await;
    assert_eq!((kept.status, kept.body.as_slice(), kept.header("lp-trickle-latest")), (200, &b"seg2"[..], Some("7")));
    assert_eq!(http_get(a, "/ai/trickle/ring/bad").await.status, 400);
    // Two POSTs to one seq: the second appends (as pytrickle relies on).
    publish(a, "ring", 7, b"ab").await;
    publish(a, "ring", 7, b"cd").await;
    assert_eq!(http_get(a, "/ai/trickle/ring/7").await.body, b"abcd");
    // A publisher abandons segment 8 mid-write and restarts at 10 with Lp-Trickle-Reset:
    // the reader stuck on 8 gets what was written, then the end.
    let mut stuck = Upload::start(a, "/ai/trickle/ring/8", &[]).await;
    stuck.send(b"partial").await;
    let mut reader = Download::start(a, "/ai/trickle/ring/8").await;
    assert_eq!(reader.body_at_least(7, Duration::from_secs(5)).await.expect("data").body, b"partial");
    let r = request(a, "POST", "/ai/trickle/ring/10", &[("Lp-Trickle-Reset", "1")], b"fresh").await;
    assert_eq!(r.status, 200);
    assert_eq!(reader.finish().await.body, b"partial", "the reset ended the abandoned segment");
    drop(stuck);
    // DELETE ends a blocked reader, which learns the channel is closed.
    let mut blocked = Download::start(a, "/ai/trickle/ring/-1").await;
    assert!(blocked.body_at_least(1, Duration::from_millis(300)).await.is_none());
    assert_eq!(request(a, "DELETE", "/ai/trickle/ring", &[], b"").await.status, 200);
    let end = blocked.finish().await;
    assert_eq!((end.status, end.header("lp-trickle-closed")), (200, Some("terminated")));
    assert_eq!(http_get(a, "/ai/trickle/ring/0").await.status, 404, "deleted");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_segments_delete_of_one_segment_and_idle_expiry() {
    let gw = gateway_with(|c| c.trickle.trickle_auto_create = true).await;
    let a = gw.http_addr;
    // An empty POST: 200, Connection: close, and the next index still moves on.
    let r = publish(a, "quiet", 0, b"").await;
    assert_eq!((r.status, r.header("connection"), r.header("lp-trickle-seq")), (200, Some("close"), Some("0")));
    assert_eq!(http_get(a, "/ai/trickle/quiet/next").await.text(), "1");
    // DELETE of one segment wakes its waiting reader with an empty body.
    let mut waiting = Download::start(a, "/ai/trickle/quiet/1").await;
    assert!(waiting.body_at_least(1, Duration::from_millis(300)).await.is_none());
    assert_eq!(request(a, "DELETE", "/ai/trickle/quiet/1", &[], b"").await.status, 200);
    let woke = waiting.finish().await;
    assert_eq!((woke.status, woke.body.len(), woke.header("lp-trickle-seq")), (200, 0, Some("1")));
    assert_eq!(request(a, "DELETE", "/ai/trickle/quiet/3", &[], b"").await.status, 400, "not in the ring");
    // The idle sweep closes channels without new segments.
    assert_eq!(gw.trickle().sweep(Duration::ZERO), vec!["quiet".to_owned()]);
    assert_eq!(http_get(a, "/ai/trickle/quiet/next").await.status, 404);
    assert_eq!(gw.trickle().channels(), 0);
    gw.shutdown().await;
}

/// `ffmpeg … -f mpegts - | sluice trickle publish URL -` into the gateway, and
/// `sluice trickle subscribe URL --out FILE` out of it: every frame arrives.
#[tokio::test(flavor = "multi_thread")]
async fn command_line_publish_and_subscribe_pipe_ffmpeg_through_a_channel() {
    let gw = gateway_with(|c| c.trickle.trickle_auto_create = true).await;
    let url = format!("http://{}/ai/trickle/pipe", gw.http_addr);
    gw.trickle().create("pipe", "video/MP2T").unwrap();
    let out = std::env::temp_dir().join(format!("sluice-trickle-{}.ts", std::process::id()));
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let sub = tokio::process::Command::new(sluice)
        .args(["trickle", "subscribe", &url, "--start", "-1", "--out"])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let clip = testdata("clip.flv");
    let script =
        format!("ffmpeg -v error -i {} -c copy -f mpegts - | {sluice} trickle publish {url} - --fast", clip.display());
    let pubd = tokio::process::Command::new("sh").args(["-c", &script]).output().await.unwrap();
    assert!(pubd.status.success(), "{}", String::from_utf8_lossy(&pubd.stderr));
    assert!(String::from_utf8_lossy(&pubd.stderr).contains("published"), "{}", String::from_utf8_lossy(&pubd.stderr));
    let subd =
        tokio::time::timeout(Duration::from_secs(20), sub.wait_with_output()).await.expect("subscriber ends").unwrap();
    assert!(subd.status.success(), "{}", String::from_utf8_lossy(&subd.stderr));
    let got = probe_packets(&out).await;
    let src = probe_packets(&clip).await;
    assert_eq!(got.iter().filter(|p| p.video).count(), src.iter().filter(|p| p.video).count(), "every video frame");
    assert_eq!(got.iter().filter(|p| !p.video).count(), src.iter().filter(|p| !p.video).count(), "every audio frame");
    let _ = std::fs::remove_file(&out);
    gw.shutdown().await;
}

/// `sluice trickle serve --tls`: a standalone server over TLS (self-signed, HTTP/2 by
/// ALPN), used by Sluice's publisher and subscriber, which accept it as go-livepeer does.
#[tokio::test(flavor = "multi_thread")]
async fn standalone_server_over_tls() {
    use tokio::io::AsyncBufReadExt;
    use transport::tls::CertPolicy;
    use transport::trickle_client::{TrickleClient, TricklePublisher, TrickleSubscriber};
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["trickle", "serve", "--addr", "127.0.0.1:0", "--auto-create", "--tls"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    let base = first.split_whitespace().nth(2).expect("the URL").replace("{channel}", "tls");
    assert!(base.starts_with("https://"), "{first}");
    let fingerprint = lines.next_line().await.unwrap().unwrap();
    let pin = fingerprint.strip_prefix("Certificate SHA-256: ").expect("the fingerprint line").to_owned();
    // The command-line subscriber refuses a server whose certificate is not the pinned one.
    let wrong = "00".repeat(32);
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["trickle", "subscribe", &base, "--cert-pin", &wrong, "--out", "/dev/null"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success(), "a wrong pin must fail");
    // The library client pins the printed fingerprint.
    let pinned = CertPolicy::Pinned(vec![transport::tls::parse_fingerprint(&pin).unwrap()]);
    let client = TrickleClient::new(pinned);
    let mut publisher = TricklePublisher::start(client.clone(), &base).await.unwrap();
    let mut sub = TrickleSubscriber::new(client, &base, -1);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(mut seg) = sub.next_segment().await.unwrap() {
            let mut body = Vec::new();
            while let Some(c) = seg.chunk().await.unwrap() {
                body.extend_from_slice(&c);
            }
            if !body.is_empty() {
                got.push(body);
            }
        }
        got
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..3u8 {
        let mut w = publisher.segment();
        // Empty writes must not reach the wire: h2 ends a connection after 100 empty DATA
        // frames, and with it every stream it carries (a live AI orchestrator's jobs).
        for _ in 0..60 {
            w.write(bytes::Bytes::new()).await.unwrap();
        }
        w.write(bytes::Bytes::from(vec![i; 70_000])).await.unwrap();
        w.write(bytes::Bytes::from(vec![i + 100; 30_000])).await.unwrap();
        w.finish().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher.close().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), reader).await.expect("subscriber ends").unwrap();
    assert_eq!(got.len(), 3);
    for (i, body) in got.iter().enumerate() {
        let mut want = vec![i as u8; 70_000];
        want.extend(vec![i as u8 + 100; 30_000]);
        assert!(*body == want, "segment {i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_posts_learn_of_delete_and_overwritten_preconnects_catch_up() {
    let gw = gateway().await;
    let a = gw.http_addr;
    gw.trickle().create("w", "video/MP2T").unwrap();
    // Creating a channel that exists is 200 even where HTTP creation is off.
    assert_eq!(request(a, "POST", "/ai/trickle/w", &[("Expect-Content", "video/MP2T")], b"").await.status, 200);
    // A preconnected POST, no byte sent yet: a DELETE answers it at once.
    let waiting = Upload::start(a, "/ai/trickle/w/-1", &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(request(a, "DELETE", "/ai/trickle/w", &[], b"").await.status, 200);
    let r = tokio::time::timeout(Duration::from_secs(5), waiting.answer_before_end()).await.expect("answered at once");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("lp-trickle-closed"), Some("terminated"));
    assert_eq!(r.header("connection"), Some("close"));
    // A reader preconnected on 0 whose slot a publisher takes for 5: an empty answer with
    // the latest index, and the channel still open (no Closed).
    gw.trickle().create("o", "video/MP2T").unwrap();
    let mut reader = Download::start(a, "/ai/trickle/o/-1").await;
    assert!(reader.body_at_least(1, Duration::from_millis(200)).await.is_none());
    assert_eq!(publish(a, "o", 5, b"five").await.status, 200);
    let r = reader.finish().await;
    // 5 if the reader was answered before 5's first byte, 6 after: either way past 0.
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert!(matches!(r.header("lp-trickle-latest"), Some("5" | "6")), "{:?}", r.header("lp-trickle-latest"));
    assert_eq!(r.header("lp-trickle-closed"), None, "the channel goes on");
    // Indexes past 2^53 are refused.
    assert_eq!(publish(a, "o", 1 << 53, b"x").await.status, 400);
    gw.shutdown().await;
}
