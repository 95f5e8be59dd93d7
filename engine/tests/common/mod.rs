//! Helpers for the gateway's end-to-end tests: a gateway on loopback, real publishers
//! (ffmpeg, GStreamer, Sluice's own), a minimal HTTP client, and ffprobe-based checks.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use engine::{Gateway, GatewayConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

/// Whether `tool flag` runs and succeeds (a tool the test needs is installed).
pub fn have(tool: &str, flag: &str) -> bool {
    std::process::Command::new(tool).arg(flag).output().is_ok_and(|o| o.status.success())
}

/// ffmpeg publishing `secs` of a 640x360 30 fps test pattern (x264, 2 s GOPs) and a
/// 48 kHz AAC tone to `url` in real time; killed when dropped.
pub fn publish_test_pattern(url: &str, secs: u32) -> tokio::process::Child {
    Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=640x360:rate=30:duration={secs}"))
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:sample_rate=48000:duration={secs}")])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "60", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-f", "flv", url])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg starts")
}

/// Writes `body` to a temporary `.mp4` file and decodes it with ffmpeg; the decoder's
/// complaints, or an empty string.
pub fn ffmpeg_decode_errors(name: &str, body: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("sluice-{name}-{}.mp4", std::process::id()));
    std::fs::write(&path, body).unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    if out.status.success() {
        String::from_utf8_lossy(&out.stderr).into_owned()
    } else {
        format!("ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr))
    }
}

/// A gateway whose player page serves the npm-installed hls.js and dash.js, for browser
/// tests; `None` (the test skips, saying why) if ffmpeg or node is missing.
pub async fn player_gateway() -> Option<Gateway> {
    if !have("ffmpeg", "-version") || !have("node", "--version") {
        eprintln!("skipped: ffmpeg or node missing (scripts/setup.sh installs them)");
        return None;
    }
    let web_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(engine::DEFAULT_WEB_DIR);
    Some(gateway_with(|c| c.listen.web_dir = Some(web_dir)).await)
}

/// An LL-HLS media playlist's preload hint: the part's URI, segment number and index.
pub fn preload_hint(playlist: &str) -> (String, u64, u32) {
    let hint = playlist.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT")).expect("a preload hint");
    let uri = hint.split("URI=\"").nth(1).unwrap().trim_end_matches('"').to_owned();
    match segmenter::llhls::parse_file_name(&uri) {
        Some(segmenter::llhls::FileName::Part(_, msn, part)) => (uri, msn, part),
        other => panic!("the hint names a part: {other:?} in {hint}"),
    }
}

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(name)
}

/// The tags of an FLV fixture.
pub fn fixture_tags(name: &str) -> Vec<ingest::flv::FlvTag> {
    engine::publish::read_flv(bytes::Bytes::from(std::fs::read(testdata(name)).unwrap())).unwrap()
}

/// Sluice's own publisher, connected and publishing as stream `id`.
pub async fn own_publisher(gw: &Gateway, id: &str) -> ingest::publisher::RtmpPublisher {
    let url = ingest::publisher::RtmpUrl::parse(&rtmp_url(gw, id)).unwrap();
    ingest::publisher::RtmpPublisher::connect(&url).await.unwrap()
}

/// A gateway on ephemeral loopback ports that lists every segment (window 0).
pub async fn gateway() -> Gateway {
    gateway_with(|_| {}).await
}

pub async fn gateway_with(f: impl FnOnce(&mut GatewayConfig)) -> Gateway {
    let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    let any = "127.0.0.1:0".parse().unwrap();
    let mut c = GatewayConfig::default();
    c.listen.rtmp_addr = any;
    c.listen.http_addr = any;
    c.listen.cli_addr = any;
    c.segmenting.playlist_window = 0;
    f(&mut c);
    Gateway::start(c).await.expect("gateway starts")
}

/// The Python of the virtualenv `scripts/setup.sh` makes for Livepeer's Python clients
/// (`$SLUICE_PYENV`, else `~/.cache/sluice/pyenv`).
pub fn python() -> PathBuf {
    std::env::var_os("SLUICE_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/sluice/pyenv"))
        .join("bin/python")
}

/// `sluice signer` on an ephemeral loopback port with a key file holding `hex`: its URL
/// and the child (killed when dropped).
pub async fn start_signer(name: &str, hex: &str) -> (String, tokio::process::Child) {
    use tokio::io::AsyncBufReadExt;
    let key = key_file(name, hex);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--log", "warn", "signer", "--addr", "127.0.0.1:0", "--eth-key-file"])
        .arg(&key)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sluice signer starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the signer prints its URL")
        .unwrap()
        .expect("signer output");
    (first.split_whitespace().nth(1).expect("Signer: URL").to_owned(), child)
}

/// Plays `/player/{id}` of `gw` in headless Chromium (`web/test/player.mjs`, with
/// `extra` arguments) and returns what the page saw: hls.js loaded, fragments,
/// currentTime, video size, errors.
pub async fn play_in_chromium(gw: &Gateway, id: &str, extra: &[&str]) -> serde_json::Value {
    play_page_in_chromium(gw, id, "", extra).await
}

/// [`play_in_chromium`] with a query on the player page's URL (`?ll` for LL-HLS).
pub async fn play_page_in_chromium(gw: &Gateway, id: &str, query: &str, extra: &[&str]) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shot = std::env::temp_dir().join(format!("sluice-player-{id}.png"));
    let out = run(
        Command::new("node")
            .arg(root.join("web/test/player.mjs"))
            .arg(format!("http://{}/player/{id}{query}", gw.http_addr))
            .arg(&shot)
            .args(extra),
        "headless Chromium playback",
    )
    .await;
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no result from the browser:\n{out}"));
    serde_json::from_str(line).unwrap()
}

pub fn rtmp_url(gw: &Gateway, name: &str) -> String {
    format!("rtmp://{}/live/{name}", gw.rtmp_addr)
}

/// Runs a command to completion, failing the test with its stderr if it fails.
pub async fn run(cmd: &mut Command, what: &str) -> String {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.stdin(Stdio::null()).output())
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed ({}):\n{stderr}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

/// Publishes a file with ffmpeg (`-c copy -f flv`), as fast as it reads unless `realtime`.
pub async fn ffmpeg_publish(file: &Path, url: &str, realtime: bool) {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if realtime {
        c.arg("-re");
    }
    c.arg("-i").arg(file).args(["-c", "copy", "-f", "flv", url]);
    run(&mut c, "ffmpeg publish").await;
}

/// ffmpeg publishing `file` in real time, `1 + loops` times over, as a child to wait for.
pub fn ffmpeg_publish_looped(file: &Path, url: &str, loops: u32) -> tokio::process::Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", &loops.to_string(), "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg starts")
}

/// Publishes an FLV file with a GStreamer RTMP sink (paced by the pipeline clock):
/// `rtmp2sink` (GStreamer's own RTMP stack) or `rtmpsink` (librtmp, the stack OBS uses).
pub async fn gst_publish(file: &Path, url: &str, sink: &str) {
    let location = if sink == "rtmpsink" { format!("\"{url} live=1\"") } else { url.to_owned() };
    let pipeline = format!(
        "filesrc location={} ! flvdemux name=d d.video ! queue ! h264parse ! flvmux name=m streamable=true ! \
         {sink} location={location} d.audio ! queue ! aacparse ! m.",
        file.display()
    );
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!("exec gst-launch-1.0 -q {pipeline}"));
    run(&mut c, "gst-launch rtmp2sink").await;
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 GET (Connection: close).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> HttpResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect http");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    parse_http(&raw)
}

/// A minimal HTTP/1.1 request (Connection: close) with extra headers and a body.
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect http");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    parse_http(&raw)
}

/// Parses an HTTP/1.1 response (a chunked body as far as it has arrived).
pub fn parse_http(raw: &[u8]) -> HttpResponse {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("http header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    HttpResponse { status, headers, body }
}

/// Decodes as much of a chunked body as has arrived.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let Ok(n) = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap_or("x").trim(), 16) else { break };
        if n == 0 || b.len() < nl + 2 + n {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[(nl + 4 + n).min(b.len())..];
    }
    out
}

/// Polls until stream `id`'s playlist is ended (publisher gone), or panics after 20 s.
pub async fn wait_ended(gw: &Gateway, id: &str) -> m3u8_rs::MediaPlaylist {
    for _ in 0..200 {
        let r = http_get(gw.http_addr, &format!("/stream/{id}/source.m3u8")).await;
        if r.status == 200 {
            let pl = media_playlist(&r.body);
            if pl.end_list {
                return pl;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream {id} never ended");
}

/// Polls until the gateway has cut at least one segment of stream `id`, or panics after 2 s:
/// what a publisher wrote is then known to have reached the gateway.
pub async fn wait_for_segment(gw: &Gateway, id: &str) {
    for _ in 0..200 {
        let s = http_get(gw.cli_addr, &format!("/streams/{id}")).await.text();
        if s.contains("\"segments\":") && !s.contains("\"segments\": 0") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no segment of {id} arrived");
}

pub fn media_playlist(body: &[u8]) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(body) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!("not a media playlist: {other:?}\n{}", String::from_utf8_lossy(body)),
    }
}

/// One packet as ffprobe reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub video: bool,
    pub pts: f64,
    pub dts: f64,
    pub key: bool,
}

/// Packets of a media file, in file order.
pub async fn probe_packets(file: &Path) -> Vec<Packet> {
    let out = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "packet=codec_type,pts_time,dts_time,flags", "-of", "csv=p=0"])
            .arg(file),
        "ffprobe packets",
    )
    .await;
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
            Packet {
                video: f[0] == "video",
                pts: num(f[1]),
                dts: num(f[2]),
                key: f.get(3).is_some_and(|x| x.contains('K')),
            }
        })
        .collect()
}

/// The first video stream's `entries` (ffprobe `-show_entries stream=...`), as one CSV
/// line without the trailing comma a TS program listing adds.
async fn probe_video(file: &Path, entries: &str) -> String {
    let out = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries", entries, "-of", "csv=p=0"])
            .arg(file),
        "ffprobe",
    )
    .await;
    // A TS lists its streams under the program too: the first line is enough.
    out.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().trim_end_matches(',').to_owned()
}

/// Video width and height of a file.
pub async fn probe_size(file: &Path) -> (u32, u32) {
    let line = probe_video(file, "stream=width,height").await;
    let mut it = line.split(',').map(|x| x.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// Decodes a file fully; panics with ffmpeg's complaints if there are any. The encoder time
/// base is set to 90 kHz so that ffmpeg's null muxer does not round millisecond timestamps
/// onto the same 1/fps tick and complain about its own rounding.
pub async fn assert_decodes(file: &Path) {
    let out = run(
        Command::new("ffmpeg").args(["-v", "error", "-nostdin", "-i"]).arg(file).args([
            "-enc_time_base:v",
            "1:90000",
            "-f",
            "null",
            "-",
        ]),
        "ffmpeg decode",
    )
    .await;
    assert!(out.trim().is_empty(), "{} does not decode cleanly:\n{out}", file.display());
}

/// What a check of a finished stream found.
#[derive(Debug)]
pub struct StreamCheck {
    pub playlist: m3u8_rs::MediaPlaylist,
    pub dir: PathBuf,
    pub segments: Vec<PathBuf>,
    /// Packets of every segment, concatenated.
    pub packets: Vec<Packet>,
    /// Sum of EXTINF durations.
    pub duration: f64,
}

/// Fetches a finished stream's master and media playlists and every segment over HTTP,
/// and checks what must hold for any stream: headers, every segment decodes, every segment
/// with video starts with a keyframe.
pub async fn fetch_and_check(gw: &Gateway, id: &str) -> StreamCheck {
    let master = http_get(gw.http_addr, &format!("/stream/{id}.m3u8")).await;
    assert_eq!(master.status, 200);
    assert_eq!(master.header("content-type"), Some("application/vnd.apple.mpegurl"));
    assert_eq!(master.header("access-control-allow-origin"), Some("*"));
    assert!(master.text().contains(&format!("{id}/source.m3u8")), "{}", master.text());
    let playlist = wait_ended(gw, id).await;
    let dir = std::env::temp_dir().join(format!("sluice-test-{id}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut segments = vec![];
    let mut packets = vec![];
    let mut duration = 0.0;
    for s in &playlist.segments {
        duration += s.duration as f64;
        let r = http_get(gw.http_addr, &format!("/stream/{id}/{}", s.uri)).await;
        assert_eq!(r.status, 200, "segment {} of {id}", s.uri);
        assert_eq!(r.header("content-type"), Some("video/mp2t"));
        let path = dir.join(s.uri.replace('/', "_"));
        std::fs::write(&path, &r.body).unwrap();
        assert_decodes(&path).await;
        let p = probe_packets(&path).await;
        if let Some(first_video) = p.iter().find(|p| p.video) {
            assert!(first_video.key, "segment {} of {id} does not start with a keyframe", s.uri);
        }
        packets.extend(p);
        segments.push(path);
    }
    StreamCheck { playlist, dir, segments, packets, duration }
}

/// Checks that `got` holds exactly the source file's packets (same count and timestamps per
/// track, to the millisecond), i.e. nothing was lost, duplicated or retimed.
pub async fn assert_same_packets(source: &Path, got: &[Packet]) {
    let src = probe_packets(source).await;
    for video in [true, false] {
        let mut a: Vec<f64> = src.iter().filter(|p| p.video == video).map(|p| p.pts).collect();
        let mut b: Vec<f64> = got.iter().filter(|p| p.video == video).map(|p| p.pts).collect();
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        assert_eq!(a.len(), b.len(), "{} packet count differs from the source", if video { "video" } else { "audio" });
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 0.0015, "timestamp {y} differs from source {x}");
        }
    }
}

/// Source span: from the earliest packet to the end of the last video frame.
pub async fn source_span(source: &Path) -> (f64, f64) {
    let p = probe_packets(source).await;
    let v: Vec<f64> = p.iter().filter(|p| p.video).map(|p| p.pts).collect();
    let frame = if v.len() > 1 {
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() - 1] - s[s.len() - 2]
    } else {
        0.0
    };
    let start = p.iter().map(|p| p.pts).fold(f64::INFINITY, f64::min);
    let end = v.iter().copied().fold(f64::NEG_INFINITY, f64::max) + frame;
    (end - start, frame)
}

/// `sluice orchestrator` in its own process on an ephemeral loopback port; killed on drop.
/// Its stderr goes to a file ([`OrchestratorProcess::log`]).
pub struct OrchestratorProcess {
    pub child: tokio::process::Child,
    /// Its service URI, e.g. `https://127.0.0.1:40123`.
    pub uri: String,
    pub log_path: PathBuf,
}

impl OrchestratorProcess {
    pub async fn start(args: &[&str]) -> OrchestratorProcess {
        Self::start_on("127.0.0.1:0", args).await
    }

    /// A priced orchestrator on Arbitrum One signing with the key in `key_file`, plus `extra`
    /// flags (e.g. `--transcoder echo --price-per-unit 100`).
    pub async fn start_paid(key_file: &Path, extra: &[&str]) -> OrchestratorProcess {
        let mut args = vec!["--network", "arbitrum-one-mainnet", "--eth-key-file", key_file.to_str().unwrap()];
        args.extend_from_slice(extra);
        Self::start(&args).await
    }

    pub async fn start_on(listen: &str, args: &[&str]) -> OrchestratorProcess {
        use tokio::io::AsyncBufReadExt;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let log_path = std::env::temp_dir().join(format!(
            "sluice-orch-{}-{}.log",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let log = std::fs::File::create(&log_path).expect("orchestrator log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--log", "warn", "orchestrator", "--listen", listen])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("sluice orchestrator starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("orchestrator prints its URI")
            .unwrap()
            .expect("orchestrator output");
        let uri = first.split_whitespace().nth(1).expect("Orchestrator: URI").to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        OrchestratorProcess { child, uri, log_path }
    }

    /// What the orchestrator logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `POST /fault` (the orchestrator must run with `--allow-faults`).
    pub async fn fault(&self, json: &str) {
        let net = transport::client::OrchestratorNet::new(transport::tls::CertPolicy::AcceptAny);
        let (status, body) =
            net.post_json(&format!("{}/fault", self.uri), json, Duration::from_secs(4)).await.expect("POST /fault");
        assert_eq!(status.as_u16(), 204, "{}", String::from_utf8_lossy(&body));
    }

    /// The orchestrator's `/status` counters.
    pub async fn status(&self) -> serde_json::Value {
        let net = transport::client::OrchestratorNet::new(transport::tls::CertPolicy::AcceptAny);
        let body = net.download(&format!("{}/status", self.uri), Duration::from_secs(4)).await.expect("status");
        serde_json::from_slice(&body).expect("status is JSON")
    }
}

/// Polls `path` on the gateway's HTTP port until `ready` accepts the body, or panics.
pub async fn poll_http(gw: &Gateway, path: &str, secs: u64, ready: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let r = http_get(gw.http_addr, path).await;
        let text = r.text();
        if r.status == 200 && ready(&text) {
            return text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} not ready after {secs} s; last body:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The duration ffprobe reports for a file.
pub async fn probe_duration(file: &Path) -> f64 {
    let out = run(
        Command::new("ffprobe").args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"]).arg(file),
        "ffprobe duration",
    )
    .await;
    out.trim().parse().unwrap_or_else(|_| panic!("ffprobe duration of {}: {out}", file.display()))
}

/// Video codec name of a file.
pub async fn probe_codec(file: &Path) -> String {
    probe_video(file, "stream=codec_name").await
}

/// A file holding `hex` (a private key) for a test process, one file per call: tests
/// run concurrently and must never read a file another is writing.
/// The test orchestrators' Ethereum key (hex).
pub const ORCH_KEY: &str = "8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f";
/// The test gateways' Ethereum key (hex).
pub const GATEWAY_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

pub fn key_file(name: &str, hex: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("sluice-{name}-{}-{n}.key", std::process::id()));
    std::fs::write(&p, format!("{hex}\n")).unwrap();
    p
}
