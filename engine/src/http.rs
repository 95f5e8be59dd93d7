//! Playback over HTTP: HLS playlists and segments at go-livepeer's paths, and a player
//! page.
//!
//! | path | what |
//! |---|---|
//! | `GET /stream/{id}.m3u8` | master playlist |
//! | `GET /stream/{id}/{rendition}.m3u8` | media playlist |
//! | `GET /stream/{id}/{rendition}/{seq}.ts` | segment |
//! | `GET /` | page listing live streams |
//! | `GET /player/{id}` | hls.js player page |
//! | `GET /stream/{id}/ll.m3u8`, `/stream/{id}/ll/…` | Low-Latency HLS over CMAF: see [`crate::cmaf_http`] |
//! | `POST /live/video-to-video/{stream}/update` | new params for a live AI stream (a JSON object, ≤ 64 KiB): one control message; kept and sent on when no orchestrator is attached yet |
//! | `GET /live/video-to-video/{stream}/status` | the runner's last status event with `gateway_status` beside it |
//! | `POST /live/video-to-video/{stream}/start`, `…/{prefix}/{stream}/start` | media-server hook (MediaMTX `runOnReady`): pulls the stream and starts its live AI job; see [`crate::live::hook`] |
//!
//! Browsers and CDNs:
//! * every response carries `Access-Control-Allow-Origin: *` (and exposes the length and
//!   range headers), so players on other origins can read it; a CORS preflight (`OPTIONS`
//!   with `Access-Control-Request-Method`) on any path is answered `204` with the methods
//!   (`GET, HEAD, OPTIONS`) and the request headers asked for (e.g. `Range`);
//! * playlists and segments honour a single byte range (RFC 9110 §14): `206` with
//!   `Content-Range`, `416` with `Content-Range: bytes */LEN` when unsatisfiable, and
//!   `Accept-Ranges: bytes`; several ranges in one request get the whole body (`200`),
//!   which the RFC allows;
//! * `HEAD` answers as `GET` without a body; playlists are `application/vnd.apple.mpegurl`
//!   and may be cached for a second while live, segments `video/mp2t` for a minute.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::metrics::Metrics;
use crate::registry::Registry;

/// Live playlists change every segment: caches may hold them for a second at most.
const CACHE_LIVE_PLAYLIST: &str = "public, max-age=1";
/// A finished playlist changes only if its publisher comes back within the grace period.
const CACHE_ENDED_PLAYLIST: &str = "public, max-age=10";
/// A segment never changes while its stream exists. Sequence numbers restart when a
/// stream id is reused after removal, so the lifetime is bounded rather than "immutable".
const CACHE_SEGMENT: &str = "public, max-age=60";

const MIME_M3U8: &str = "application/vnd.apple.mpegurl";
const MIME_TS: &str = "video/mp2t";

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    web_dir: Option<PathBuf>,
}

/// The playback router.
pub fn router(
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    web_dir: Option<PathBuf>,
    keys: Arc<crate::ai::keys::KeyRing>,
) -> Router {
    let live = Router::new()
        .route("/live/video-to-video/{stream}/update", axum::routing::post(live_update))
        .route("/live/video-to-video/{stream}/status", get(live_status))
        .route("/live/video-to-video/{stream}/start", axum::routing::post(live_start))
        .route("/live/video-to-video/{prefix}/{stream}/start", axum::routing::post(live_start))
        .layer(axum::middleware::from_fn_with_state(keys, live_key));
    Router::new()
        .route("/", get(index))
        .route("/player/hls.min.js", get(|st| script(st, "hls.min.js")))
        .route("/player/dash.all.min.js", get(|st| script(st, "dash.all.min.js")))
        .route("/player/{id}", get(player))
        .route("/publish/{id}", get(publish_page))
        .route("/stream/{file}", get(master))
        .route("/stream/{id}/{file}", get(media_playlist))
        .route("/stream/{id}/{rendition}/{file}", get(segment))
        .merge(live)
        .merge(crate::cmaf_http::router(registry.clone()))
        .layer(axum::middleware::map_response(cors))
        .layer(axum::middleware::from_fn(preflight))
        .with_state(AppState { registry, metrics, web_dir })
}

/// With API keys on, the live AI endpoints need one (as jobs: rate and concurrency
/// limits apply while the request runs), except the media-server `/start` hook from a
/// loopback caller, which has no way to send one.
async fn live_key(
    State(keys): State<Arc<crate::ai::keys::KeyRing>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let loopback_hook = req.uri().path().ends_with("/start")
        && req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|c| c.0.ip().is_loopback())
        && req.headers().get(header::AUTHORIZATION).is_none();
    if loopback_hook {
        return next.run(req).await;
    }
    match keys.admit(req.headers(), crate::ai::keys::Scope::Jobs) {
        Ok(_permit) => next.run(req).await,
        Err(d) => crate::ai::routes::denied_response(&d),
    }
}

async fn cors(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "Content-Length, Content-Range, Accept-Ranges, Lp-Trickle-Seq, Lp-Trickle-Latest, Lp-Trickle-Closed",
        ),
    );
    res
}

/// Answers CORS preflights (and any other `OPTIONS`) before routing.
async fn preflight(req: Request, next: axum::middleware::Next) -> Response {
    if req.method() != Method::OPTIONS {
        return next.run(req).await;
    }
    let asked = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
    // Whatever headers the page wants to send (Range, say) are fine for reads.
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.unwrap_or(HeaderValue::from_static("Range")));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    res
}

fn not_found(st: &AppState) -> Response {
    Metrics::add(&st.metrics.http_not_found_total, 1);
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// A playlist or segment body, honouring a `Range` request header. Ranges are slices of
/// the stored `Bytes`, never copies.
fn body(mime: &'static str, cache: &'static str, data: Bytes, req: &HeaderMap) -> Response {
    let headers = [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, cache), (header::ACCEPT_RANGES, "bytes")];
    let len = data.len() as u64;
    match req.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|v| byte_range(v, len)) {
        Some(ByteRange::Satisfiable(a, b)) => {
            let range = format!("bytes {a}-{b}/{len}");
            let part = data.slice(a as usize..=b as usize);
            (StatusCode::PARTIAL_CONTENT, headers, [(header::CONTENT_RANGE, range)], part).into_response()
        }
        Some(ByteRange::Unsatisfiable) => {
            (StatusCode::RANGE_NOT_SATISFIABLE, headers, [(header::CONTENT_RANGE, format!("bytes */{len}"))])
                .into_response()
        }
        Some(ByteRange::Whole) | None => (headers, data).into_response(),
    }
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    /// Bytes `first..=last`, within the body.
    Satisfiable(u64, u64),
    /// A well-formed range that starts past the end.
    Unsatisfiable,
    /// Several ranges, another unit or a malformed value: the whole body is served
    /// (RFC 9110 §14.2 lets a server ignore such a Range).
    Whole,
}

/// Parses a `Range` value (RFC 9110 §14.1.2) for a body of `len` bytes: `bytes=A-B`,
/// `bytes=A-` or `bytes=-N` (the last N).
fn byte_range(value: &str, len: u64) -> ByteRange {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return ByteRange::Whole };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return ByteRange::Whole };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    match (num(a), b.trim().is_empty(), num(b)) {
        // bytes=-N: the last N bytes.
        (None, false, Some(n)) if a.trim().is_empty() => {
            if n == 0 || len == 0 {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Satisfiable(len.saturating_sub(n), len - 1)
            }
        }
        (Some(first), true, _) => {
            if first >= len {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Satisfiable(first, len - 1)
            }
        }
        (Some(first), false, Some(last)) if first <= last => {
            if first >= len {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Satisfiable(first, last.min(len - 1))
            }
        }
        _ => ByteRange::Whole,
    }
}

async fn master(State(st): State<AppState>, Path(file): Path<String>, req: HeaderMap) -> Response {
    if let Some(id) = file.strip_suffix(".mpd") {
        let host = req.get(header::HOST).and_then(|h| h.to_str().ok());
        return crate::cmaf_http::mpd(&st.registry, id, host).await;
    }
    let Some(id) = file.strip_suffix(".m3u8") else { return not_found(&st) };
    let Some(out) = st.registry.output(id) else { return not_found(&st) };
    let o = out.read().unwrap_or_else(|e| e.into_inner());
    body(MIME_M3U8, if o.is_ended() { CACHE_ENDED_PLAYLIST } else { CACHE_LIVE_PLAYLIST }, o.master(), &req)
}

async fn media_playlist(
    State(st): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    req: HeaderMap,
) -> Response {
    let Some(rendition) = file.strip_suffix(".m3u8") else { return not_found(&st) };
    let Some(out) = st.registry.output(&id) else { return not_found(&st) };
    let o = out.read().unwrap_or_else(|e| e.into_inner());
    match o.media(rendition) {
        Some(pl) => body(MIME_M3U8, if o.is_ended() { CACHE_ENDED_PLAYLIST } else { CACHE_LIVE_PLAYLIST }, pl, &req),
        None => not_found(&st),
    }
}

async fn segment(
    State(st): State<AppState>,
    Path((id, rendition, file)): Path<(String, String, String)>,
    req: HeaderMap,
) -> Response {
    let Some(seq) = file.strip_suffix(".ts").and_then(|s| s.parse::<u64>().ok()) else { return not_found(&st) };
    let Some(out) = st.registry.output(&id) else { return not_found(&st) };
    let data = out.read().unwrap_or_else(|e| e.into_inner()).segment(&rendition, seq);
    match data {
        Some(d) => body(MIME_TS, CACHE_SEGMENT, d, &req),
        None => not_found(&st),
    }
}

async fn index(State(st): State<AppState>) -> Html<String> {
    let mut rows = String::new();
    for s in st.registry.list() {
        let id = html_escape(&s.id);
        rows.push_str(&format!(
            "<li><a href=\"/player/{id}\">{id}</a> — {} segments, {:.0} s{}</li>\n",
            s.stats.segments,
            s.stats.duration_secs,
            if s.stats.live { ", live" } else { ", ended" }
        ));
    }
    if rows.is_empty() {
        rows.push_str("<li>No streams yet. Publish with <code>ffmpeg -re -i FILE -c copy -f flv rtmp://HOST:1935/live/NAME</code>.</li>");
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Sluice</title></head>\
         <body style=\"font-family:sans-serif\"><h1>Sluice streams</h1><ul>{rows}</ul></body></html>"
    ))
}

/// `GET /publish/{id}`: a page that publishes the camera and microphone with WHIP (`?auto`
/// starts at once).
async fn publish_page(Path(id): Path<String>) -> Html<String> {
    let id = html_escape(&id);
    Html(include_str!("publish_page.html").replace("{id}", &id))
}

async fn player(State(st): State<AppState>, Path(id): Path<String>) -> Html<String> {
    let id = html_escape(&id);
    // Renditions join the master once their first segment is in: wait for them (up to
    // 20 s) so the player starts with the full ladder.
    let expected = st.registry.variants_per_stream();
    // hls.js holds back three target durations by default; the target duration is the
    // longest a segment may be, so aim at three typical segments behind the live edge.
    let sync = 3.0 * st.registry.segment_duration();
    let max_latency = 2.0 * sync + st.registry.segment_duration();
    Html(format!(
        r#"<!doctype html>
<html><head><meta charset=utf-8><title>Sluice · {id}</title>
<style>body{{margin:0;background:#111;color:#ddd;font-family:sans-serif}}video{{width:100%;max-height:85vh;background:#000}}#s,#q{{padding:6px}}#q button{{margin-right:4px;background:#333;color:#ddd;border:1px solid #555;border-radius:3px}}#q button.on{{background:#2a6;color:#fff}}</style>
</head><body>
<video id=v controls autoplay muted playsinline></video>
<div id=q></div>
<div id=s>loading</div>
<div id=m style="padding:6px"><a href="?">HLS</a> · <a href="?ll">LL-HLS</a> · <a href="?dash">DASH</a> · <a href="?webrtc">WebRTC</a></div>
<script src="/player/hls.min.js"></script>
<script>{whep}</script>
<script>
// `?ll` plays Low-Latency HLS (CMAF parts) instead of the MPEG-TS playlists; `?dash`
// plays the DASH MPD (the same CMAF fragments) with dash.js; `?webrtc` plays WHEP.
const params = new URLSearchParams(location.search), ll = params.has("ll"), dash = params.has("dash"), webrtc = params.has("webrtc");
const src = dash ? "/stream/{id}.mpd" : ll ? "/stream/{id}/ll.m3u8" : "/stream/{id}.m3u8", expected = ll ? 1 : {expected}, v = document.getElementById("v"), s = document.getElementById("s"), q = document.getElementById("q");
// What the playback checks read: stalls after the start (ms each), and the live latency
// hls.js estimates, once a second.
window.sluiceStalls = []; window.sluiceLatency = []; window.sluiceParts = 0;
let waitingSince = null;
v.addEventListener("waiting", () => {{ if (window.sluiceStarted) waitingSince = performance.now(); }});
v.addEventListener("playing", () => {{
  if (waitingSince !== null) window.sluiceStalls.push(performance.now() - waitingSince);
  waitingSince = null; window.sluiceStarted = true;
}});
setInterval(() => {{
  const h = window.sluiceHls, d = window.sluiceDash;
  const l = h ? h.latency : d ? d.getCurrentLiveLatency() : NaN;
  if (l > 0 && !v.paused) window.sluiceLatency.push(l);
}}, 1000);
function status(t) {{ s.textContent = t; }}
async function waitForLadder() {{
  for (let i = 0; i < 40; i++) {{
    try {{
      const m = await (await fetch(src, {{ cache: "no-store" }})).text();
      const n = (m.match(/#EXT-X-STREAM-INF/g) || []).length;
      if (n >= expected) return;
      status("waiting for renditions: " + n + " of " + expected);
    }} catch (e) {{}}
    await new Promise(r => setTimeout(r, 500));
  }}
}}
function levelName(l) {{ return l.height ? l.height + "p" : Math.round(l.bitrate / 1000) + "k"; }}
function buttons(hls) {{
  q.innerHTML = "";
  const mk = (label, idx) => {{
    const b = document.createElement("button");
    b.textContent = label; b.onclick = () => {{ hls.currentLevel = idx; mark(hls); }};
    b.dataset.level = idx; q.appendChild(b);
  }};
  mk("auto", -1);
  hls.levels.forEach((l, i) => mk(levelName(l) + " · " + Math.round(l.bitrate / 1000) + " kb/s" + (l.url[0].includes("/source.m3u8") ? " (source)" : ""), i));
  mark(hls);
}}
function mark(hls) {{
  for (const b of q.children) b.className = (+b.dataset.level === (hls.autoLevelEnabled ? -1 : hls.currentLevel)) ? "on" : "";
}}
function startDash() {{
  const p = dashjs.MediaPlayer().create();
  window.sluiceDash = p;
  const ev = dashjs.MediaPlayer.events;
  p.updateSettings({{ streaming: {{ liveCatchup: {{ enabled: true }} }} }});
  p.on(ev.FRAGMENT_LOADING_COMPLETED, (e) => {{
    if (e.request && e.request.type === "MediaSegment") window.sluiceFragments = (window.sluiceFragments || 0) + 1;
    status("playing " + src + " · " + (e.request ? e.request.url.split("/").pop() : ""));
  }});
  p.on(ev.STREAM_INITIALIZED, () => {{
    const vs = p.getRepresentationsByType ? p.getRepresentationsByType("video") : [];
    window.sluiceLevels = vs.map(r => ({{ width: r.width, height: r.height, bitrate: r.bandwidth }}));
  }});
  p.on(ev.ERROR, (e) => {{ (window.sluiceHlsErrors ||= []).push(JSON.stringify(e.error || e)); }});
  p.initialize(v, src, true);
}}
async function start() {{
  if (webrtc) {{
    startWhep("{id}", v, status);
  }} else if (dash) {{
    if (window.dashjs) startDash(); else status("dash.js is not available");
  }} else if (window.Hls && Hls.isSupported()) {{
    await waitForLadder();
    const hls = new Hls(ll ? {{ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 }} : {{ liveSyncDuration: {sync}, liveMaxLatencyDuration: {max_latency} }});
    window.sluiceHls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {{
      window.sluiceLevels = d.levels.map(l => ({{ width: l.width, height: l.height, bitrate: l.bitrate }}));
      status("playing " + src + " · " + d.levels.length + " renditions"); buttons(hls); v.play().catch(() => {{}});
    }});
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {{ window.sluiceLevel = d.level; mark(hls); }});
    hls.on(Hls.Events.FRAG_LOADED, (_, d) => {{
      window.sluiceFragments = (window.sluiceFragments || 0) + 1;
      if (d.part) window.sluiceParts++;
      window.sluiceLevelsPlayed = Object.assign(window.sluiceLevelsPlayed || {{}}, {{ [d.frag.level]: true }});
      const l = hls.levels[d.frag.level];
      status("playing " + src + " · segment " + d.frag.sn + " · " + (l ? levelName(l) : "?"));
    }});
    hls.on(Hls.Events.ERROR, (_, d) => {{ (window.sluiceHlsErrors ||= []).push([d.details, d.response && d.response.code, d.frag && (d.frag.type + " " + d.frag.sn + "." + (d.part ? d.part.index : "")), d.sourceBufferName, d.error && String(d.error.message || d.error)].filter(x => x).join(" ")); if (d.fatal) {{ status("error: " + d.details + ", retrying"); setTimeout(() => hls.loadSource(src), 2000); }} }});
    hls.loadSource(src); hls.attachMedia(v);
  }} else if (v.canPlayType("application/vnd.apple.mpegurl")) {{
    v.src = src;
  }} else {{ status("this browser cannot play HLS"); }}
}}
if (dash) {{
  const sc = document.createElement("script");
  sc.src = "/player/dash.all.min.js"; sc.onload = start;
  sc.onerror = () => {{ sc.remove(); const c = document.createElement("script"); c.src = "https://cdn.jsdelivr.net/npm/dashjs@5/dist/modern/umd/dash.all.min.js"; c.onload = start; c.onerror = start; document.head.appendChild(c); }};
  document.head.appendChild(sc);
}} else if (window.Hls) start(); else {{
  const sc = document.createElement("script");
  sc.src = "https://cdn.jsdelivr.net/npm/hls.js@1/dist/hls.min.js"; sc.onload = start; sc.onerror = start;
  document.head.appendChild(sc);
}}
</script></body></html>"#,
        whep = include_str!("whep_player.js"),
    ))
}

/// A player script from `web_dir`: `name` itself, or where its npm package puts it
/// (`web_dir` is `web/node_modules` by default).
async fn script(State(st): State<AppState>, name: &'static str) -> Response {
    let Some(dir) = &st.web_dir else { return not_found(&st) };
    for path in [dir.join(name), dir.join("hls.js/dist").join(name), dir.join("dashjs/dist/modern/umd").join(name)] {
        if let Ok(js) = tokio::fs::read(&path).await {
            return ([(header::CONTENT_TYPE, "text/javascript"), (header::CACHE_CONTROL, "public, max-age=86400")], js)
                .into_response();
        }
    }
    not_found(&st)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(serde_json::json!({ "error": { "message": message.to_string() } }))).into_response()
}

/// `POST /live/video-to-video/{stream}/update`: 404 for a stream that is not live AI, 413
/// over 64 KiB, 400 unless a JSON object; else queued as one control message.
async fn live_update(State(s): State<AppState>, Path(stream): Path<String>, body: Bytes) -> Response {
    let Some(live) = s.registry.live(&stream) else {
        return json_error(StatusCode::NOT_FOUND, format!("no live AI stream {stream:?}"));
    };
    if body.len() > crate::live::MAX_UPDATE {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, format!("params over {} bytes", crate::live::MAX_UPDATE));
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(_)) => {
            live.update(body);
            StatusCode::OK.into_response()
        }
        Ok(_) => json_error(StatusCode::BAD_REQUEST, "params must be a JSON object"),
        Err(e) => json_error(StatusCode::BAD_REQUEST, format!("params are not JSON: {e}")),
    }
}

/// `POST /live/video-to-video/{stream}/start` (and with a `{prefix}`): the media-server
/// hook. The form may be multipart (as MediaMTX's `curl -F`) or URL-encoded.
async fn live_start(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Path(path): Path<std::collections::HashMap<String, String>>,
    req: Request,
) -> Response {
    use crate::live::{auth, hook, pull};
    let (stream, prefix) = (path.get("stream").cloned().unwrap_or_default(), path.get("prefix").cloned());
    // Who may call: the media server beside the gateway, never a web page (a browser
    // sends `Origin` with any cross-site POST, and every answer here allows any origin).
    if req.headers().contains_key(header::ORIGIN) {
        return json_error(StatusCode::FORBIDDEN, "the media-server hook does not take browser requests");
    }
    let allow_remote = s.registry.live_ai().is_some_and(|l| l.config().live_hook_allow_remote);
    if !peer.ip().is_loopback() && !allow_remote {
        return json_error(
            StatusCode::FORBIDDEN,
            "the media-server hook takes loopback callers only (--live-hook-allow-remote opens it)",
        );
    }
    let fields = match read_form(req).await {
        Ok(f) => f,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let mut start = match hook::parse_hook(&stream, &fields) {
        Ok(Some(h)) => h,
        Ok(None) => return StatusCode::OK.into_response(),
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(live) = s.registry.live_ai() else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "live AI needs orchestrators: start with --orch-addr");
    };
    // The stream's id is its name, exactly: the webhook is asked about the stream that
    // will exist, and a prefix only says where the media server has it.
    match crate::registry::stream_id_for("live", &stream) {
        Ok(id) if id == stream => {}
        _ => return json_error(StatusCode::BAD_REQUEST, "stream name must be 1-128 characters of A-Z a-z 0-9 _ - ."),
    }
    if s.registry.output(&stream).is_some() {
        return json_error(StatusCode::CONFLICT, format!("stream {stream:?} exists"));
    }
    let url = start.rtmp_url.clone().unwrap_or_else(|| hook::default_input(peer.ip(), prefix.as_deref(), &stream));
    if let Err(e) = hook::check_source(&url) {
        return json_error(StatusCode::BAD_REQUEST, e.to_string());
    }
    if let Err(e) = auth::admit(live, &stream, &mut start.request).await {
        tracing::warn!(stream_id = %stream, error = %e, "live AI stream refused");
        crate::metrics::Metrics::add(&s.metrics.live_auth_refused_total, 1);
        return json_error(StatusCode::FORBIDDEN, "Forbidden");
    }
    let app = "live";
    match pull::start(s.registry.clone(), app, &stream, &url, start.request, peer) {
        Ok(id) => {
            tracing::info!(stream_id = %id, source = start.source, source_id = %start.source_id, "media-server hook: pulling");
            let base = format!("/live/video-to-video/{id}");
            axum::Json(serde_json::json!({
                "stream_id": id,
                "status_url": format!("{base}/status"),
                "update_url": format!("{base}/update"),
                "hls_url": format!("/stream/{id}-out.m3u8"),
                "trickle_url": format!("/ai/trickle/{id}-out"),
            }))
            .into_response()
        }
        Err(pull::PullError::Refused(r)) if r.code.ends_with("BadName") => {
            json_error(StatusCode::BAD_REQUEST, r.reason)
        }
        Err(pull::PullError::Refused(r)) => json_error(StatusCode::SERVICE_UNAVAILABLE, r.reason),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A form's fields, multipart or URL-encoded; a field over [`crate::live::hook::MAX_FIELD`]
/// bytes is refused.
async fn read_form(req: Request) -> Result<std::collections::HashMap<String, String>, String> {
    use axum::extract::FromRequest;
    let max = crate::live::hook::MAX_FIELD;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let mut fields = std::collections::HashMap::new();
    if multipart {
        let mut form = axum::extract::Multipart::from_request(req, &()).await.map_err(|e| e.body_text())?;
        while let Some(field) = form.next_field().await.map_err(|e| e.body_text())? {
            let name = field.name().unwrap_or_default().to_owned();
            let value = field.text().await.map_err(|e| e.body_text())?;
            if value.len() > max {
                return Err(format!("form field {name:?} is over {max} bytes"));
            }
            fields.insert(name, value);
        }
    } else {
        let body = axum::body::to_bytes(req.into_body(), 4 * max).await.map_err(|e| format!("form body: {e}"))?;
        for (k, v) in form_urlencoded::parse(&body) {
            if v.len() > max {
                return Err(format!("form field {k:?} is over {max} bytes"));
            }
            fields.insert(k.into_owned(), v.into_owned());
        }
    }
    Ok(fields)
}

/// `GET /live/video-to-video/{stream}/status`.
async fn live_status(State(s): State<AppState>, Path(stream): Path<String>) -> Response {
    match s.registry.live(&stream) {
        Some(live) => axum::Json(live.status().to_json()).into_response(),
        None => json_error(StatusCode::NOT_FOUND, format!("no live AI stream {stream:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        use ByteRange::*;
        assert_eq!(byte_range("bytes=0-99", 1000), Satisfiable(0, 99));
        assert_eq!(byte_range("bytes=500-", 1000), Satisfiable(500, 999));
        assert_eq!(byte_range("bytes=-100", 1000), Satisfiable(900, 999));
        assert_eq!(byte_range("bytes=-5000", 1000), Satisfiable(0, 999), "suffix longer than the body");
        assert_eq!(byte_range("bytes=900-5000", 1000), Satisfiable(900, 999), "end clamped");
        assert_eq!(byte_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(byte_range("bytes=0-1,5-9", 1000), Whole, "several ranges: whole body");
        for odd in ["items=0-1", "bytes=9-1", "bytes=a-b", "bytes=", "bytes=-", "bytes=1-2-3"] {
            assert_eq!(byte_range(odd, 1000), Whole, "{odd}");
        }
    }
}
