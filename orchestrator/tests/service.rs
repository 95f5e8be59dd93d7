//! The orchestrator service over real sockets, driven by the gateway's own client:
//! TLS with a self-signed certificate, gRPC and HTTP on one port, statuses, rendition
//! storage, session teardown and (with GStreamer installed) real transcoding.
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{clip_segments, fixture_segments};

use bytes::Bytes;
use media::Segment;
use orchestrator::service::{OrchestratorConfig, start};
use orchestrator::transcode::{EchoTranscoder, GstTranscoder, Transcoder, demux};
use transport::capabilities::job_capabilities;
use transport::client::{NetError, OrchestratorNet};
use transport::profiles::{DEFAULT_TRANSCODING_OPTIONS, parse_transcoding_options};
use transport::proto::{OrchestratorRequest, VideoProfile};
use transport::segment::{SegmentRequest, SegmentTimeouts, payment_header, seg_data, segment_header};
use transport::tls::CertPolicy;

fn profiles() -> Vec<VideoProfile> {
    parse_transcoding_options(DEFAULT_TRANSCODING_OPTIONS).unwrap()
}

async fn session(
    net: &OrchestratorNet,
    uri: &str,
) -> (transport::proto::OrchestratorInfo, transport::proto::Capabilities) {
    let caps = job_capabilities(&profiles(), false, "");
    let info = net
        .get_orchestrator(
            uri,
            OrchestratorRequest { address: vec![0; 20], capabilities: Some(caps.clone()), ..Default::default() },
        )
        .await
        .expect("GetOrchestrator");
    (info, caps)
}

async fn submit(
    net: &OrchestratorNet,
    info: &transport::proto::OrchestratorInfo,
    caps: &transport::proto::Capabilities,
    seg: &Segment,
    body: Bytes,
) -> Result<transport::client::Submitted, NetError> {
    let profs = profiles();
    let sd = seg_data(
        &SegmentRequest {
            hash: None,
            manifest_id: "test",
            seq: seg.seq,
            data: &seg.data,
            duration_ms: (seg.duration.as_secs_f64() * 1000.0) as i32,
            profiles: &profs,
            capabilities: caps,
            auth_token: info.auth_token.as_ref(),
        },
        None,
    );
    net.submit(
        &info.transcoder,
        &segment_header(&sd),
        &payment_header(None),
        body,
        SegmentTimeouts::for_duration(Duration::from_secs(2), 1.0),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offchain_session_over_tls() {
    let o = start(OrchestratorConfig::new("127.0.0.1:0".parse().unwrap(), Arc::new(EchoTranscoder))).await.unwrap();
    assert!(o.service_uri.starts_with("https://127.0.0.1:"));
    let net = OrchestratorNet::new(CertPolicy::AcceptAny);
    let (info, caps) = session(&net, &o.service_uri).await;
    assert_eq!(info.transcoder, o.service_uri);
    let token = info.auth_token.clone().expect("auth token");
    assert_eq!(token.session_id.len(), 8);
    assert!(info.ticket_params.is_none() && info.price_info.is_none(), "off-chain orchestrators quote no tickets");

    let segs = clip_segments(2);
    let r = submit(&net, &info, &caps, &segs[0], segs[0].data.clone()).await.expect("segment accepted");
    assert_eq!(r.version, http::Version::HTTP_2, "segment submission negotiates HTTP/2");
    assert_eq!(r.result.seq, 0);
    let data = r.outcome().expect("transcoded");
    assert_eq!(data.segments.len(), 2);
    for (s, p) in data.segments.iter().zip(profiles()) {
        assert!(s.url.ends_with(&format!("/stream/{}/{}/0.ts", token.session_id, p.name)), "{}", s.url);
        assert!(s.pixels > 0);
        let got = net.download(&s.url, Duration::from_secs(4)).await.expect("rendition download");
        assert_eq!(got, segs[0].data, "echo renditions are the input");
    }
    // The reply's info keeps the session's token (§3.4 step 4).
    assert_eq!(r.result.info.as_ref().and_then(|i| i.auth_token.clone()), Some(token.clone()));

    // Body that does not match SegData.hash: 403 Forbidden.
    match submit(&net, &info, &caps, &segs[1], segs[0].data.clone()).await {
        Err(NetError::Status { status, body }) => {
            assert_eq!(status.as_u16(), 403);
            assert_eq!(body, "Forbidden");
        }
        other => panic!("expected 403, got {other:?}"),
    }
    // A forged token: 403.
    let mut forged = info.clone();
    forged.auth_token.as_mut().unwrap().token[0] ^= 1;
    match submit(&net, &forged, &caps, &segs[1], segs[1].data.clone()).await {
        Err(NetError::Status { status, body }) => {
            assert_eq!(status.as_u16(), 403);
            assert_eq!(body, "invalid auth token");
        }
        other => panic!("expected 403, got {other:?}"),
    }

    net.end_session(&o.service_uri, token).await.expect("EndTranscodingSession");
    let url = &data.segments[0].url;
    match net.download(url, Duration::from_secs(4)).await {
        Err(NetError::Status { status, .. }) => assert_eq!(status.as_u16(), 404, "ended session's renditions are gone"),
        other => panic!("expected 404, got {other:?}"),
    }
    o.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_pinning_and_cleartext() {
    let o = start(OrchestratorConfig::new("127.0.0.1:0".parse().unwrap(), Arc::new(EchoTranscoder))).await.unwrap();
    let fp = o.cert_fingerprint.expect("TLS orchestrator has a certificate");
    let pinned = OrchestratorNet::new(CertPolicy::Pinned(vec![fp]));
    session(&pinned, &o.service_uri).await;
    let wrong = OrchestratorNet::new(CertPolicy::Pinned(vec![[7; 32]]));
    let caps = job_capabilities(&profiles(), false, "");
    let err = wrong
        .get_orchestrator(&o.service_uri, OrchestratorRequest { capabilities: Some(caps), ..Default::default() })
        .await
        .expect_err("a certificate that is not pinned is refused");
    assert!(matches!(err, NetError::Grpc { .. } | NetError::Transport(_)), "{err:?}");
    o.shutdown().await;

    let mut cfg = OrchestratorConfig::new("127.0.0.1:0".parse().unwrap(), Arc::new(EchoTranscoder));
    cfg.tls = false;
    let o = start(cfg).await.unwrap();
    assert!(o.service_uri.starts_with("http://"));
    let net = OrchestratorNet::new(CertPolicy::AcceptAny);
    let (info, caps) = session(&net, &o.service_uri).await;
    let seg = &clip_segments(1)[0];
    let r = submit(&net, &info, &caps, seg, seg.data.clone()).await.expect("cleartext segment");
    assert!(r.outcome().is_ok());
    o.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_renditions_keep_source_timing() {
    if let Err(e) = GstTranscoder::check_installed() {
        panic!("GStreamer is required (scripts/setup.sh installs it): {e}");
    }
    let dir = std::env::temp_dir().join(format!("sluice-gst-test-{}", std::process::id()));
    let t = GstTranscoder::new(2, dir.clone());
    let seg = &clip_segments(2)[1];
    let out = t.transcode(seg.data.clone(), profiles()).await.expect("transcode");
    assert_eq!(out.len(), 2);
    let src = demux(&seg.data).unwrap();
    let src_video: Vec<_> = src.iter().filter(|a| a.track == media::TrackKind::Video).collect();
    let src_audio = src.iter().filter(|a| a.track == media::TrackKind::Audio).count();
    let first_src = src_video.iter().map(|a| a.pts).min().unwrap();
    for (r, p) in out.iter().zip(profiles()) {
        let aus = demux(&r.data).unwrap();
        let v: Vec<_> = aus.iter().filter(|a| a.track == media::TrackKind::Video).collect();
        assert_eq!(v.len(), src_video.len(), "{}: one output frame per input frame", p.name);
        assert_eq!(aus.iter().filter(|a| a.track == media::TrackKind::Audio).count(), src_audio);
        assert_eq!(v[0].pts, first_src, "{}: rendition starts at the source's first PTS", p.name);
        assert!(v[0].keyframe, "{}: rendition starts with a keyframe", p.name);
        assert_eq!(r.pixels, (p.width * p.height) as i64 * v.len() as i64);
        let nals = media::annexb_nal_units(&v[0].data.to_contiguous());
        let of_type = |t: u8| nals.iter().filter(|n| n[0] & 0x1f == t).cloned().collect::<Vec<_>>();
        let cfg = media::H264Config::from_parameter_sets(of_type(7), of_type(8), 4).expect("SPS parses");
        assert_eq!((cfg.dimensions.width, cfg.dimensions.height), (p.width as u32, p.height as u32));
    }
    assert!(!dir.join(format!("job-{}-0", std::process::id())).exists(), "scratch files are removed");
    let _ = std::fs::remove_dir_all(dir);
}

/// A 59.94 fps source comes out at the profiles' 30 fps (frames dropped, not re-timed
/// onto another clock), so renditions and the pixels billed match what the gateway
/// estimated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_frame_rate_sources_are_brought_down_to_the_profile_rate() {
    let dir = std::env::temp_dir().join(format!("sluice-gst-fps-{}", std::process::id()));
    let t = GstTranscoder::new(2, dir.clone());
    let seg = &fixture_segments("fps5994.flv", 1)[0];
    let src = demux(&seg.data).unwrap();
    let src_frames = src.iter().filter(|a| a.track == media::TrackKind::Video).count();
    let first_src = src.iter().filter(|a| a.track == media::TrackKind::Video).map(|a| a.pts).min().unwrap();
    let out = t.transcode(seg.data.clone(), profiles()).await.expect("transcode");
    for (r, p) in out.iter().zip(profiles()) {
        let v: Vec<_> = demux(&r.data).unwrap().into_iter().filter(|a| a.track == media::TrackKind::Video).collect();
        let want = src_frames as f64 * 30.0 / 59.94;
        assert!(
            (v.len() as f64 - want).abs() <= 2.0,
            "{}: {} frames from {src_frames} (want ~{want:.0})",
            p.name,
            v.len()
        );
        assert_eq!(v[0].pts, first_src, "{}: starts where the source starts", p.name);
        let gaps: Vec<f64> = v.windows(2).map(|w| (w[1].pts - w[0].pts).as_secs_f64()).collect();
        // 30 fps on average; frames are kept (not re-stamped), so the first few may sit
        // off the grid by a source frame.
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 1.0 / 30.0).abs() < 0.001, "{}: mean spacing {mean}: {gaps:?}", p.name);
        assert!(gaps.iter().all(|g| *g > 0.0 && *g < 0.051), "{}: {gaps:?}", p.name);
        assert_eq!(r.pixels, (p.width * p.height) as i64 * v.len() as i64);
    }
    let _ = std::fs::remove_dir_all(dir);
}
