//! Live video-to-video on the local orchestrator, end to end over its own trickle
//! channels: a job is started with plain `POST /live-video-to-video` (off-chain
//! credentials from `GetOrchestrator`), ffmpeg-made 512x512 30 fps H.264 + AAC is
//! published into `{mid}` in real time, and `{mid}-out` is read back and checked with
//! ffmpeg's own decoder: every frame is the negated input (mean luma), timestamps are the
//! input's, audio is carried through, a control message switches the effect, status
//! events arrive, and the job's channels close when the input ends. Refusals: unknown
//! model, bad credentials, capacity.
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::{MediaTime, Timescale};
use orchestrator::service::{OrchestratorConfig, start};
use orchestrator::transcode::EchoTranscoder;
use segmenter::ts::demux::TsDemuxer;
use segmenter::{Segmenter, SegmenterConfig};
use transport::client::{NetError, OrchestratorNet};
use transport::live::{StartRequest, job_capabilities, offchain_seg_data};
use transport::proto::{OrchestratorInfo, OrchestratorRequest};
use transport::segment::{payment_header, segment_header};
use transport::tls::CertPolicy;
use transport::trickle_client::{TrickleClient, TricklePublisher, TrickleSubscriber};

fn have(tool: &str, flag: &str) -> bool {
    Command::new(tool).arg(flag).output().is_ok_and(|o| o.status.success())
}

/// `secs` of 512x512 30 fps H.264 (1 s GOP, no B-frames) and AAC in MPEG-TS. The picture
/// is darkened (mean luma about 60) so that its negative (about 195) cannot pass for it.
fn input_ts(secs: u32) -> Bytes {
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size=512x512:rate=30:duration={secs},lutyuv=y=val*0.45"),
        ])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={secs}")])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "mpegts", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Bytes::from(out.stdout)
}

/// The input cut as a gateway cuts it for live AI: at keyframes, 1 s apart.
fn segments(ts: &Bytes) -> Vec<media::Segment> {
    let mut demux = TsDemuxer::new();
    demux.push(ts);
    demux.flush();
    let aus: Vec<_> = std::iter::from_fn(|| demux.poll()).map(|r| r.expect("demuxes")).collect();
    let tracks = segmenter::ts::track_info(&aus, true, true).expect("configurations");
    let mut seg = Segmenter::new(SegmenterConfig::with_target(MediaTime::new(1, Timescale::new(1))), 0);
    seg.handle_tracks(tracks);
    for au in &aus {
        seg.handle_access_unit(au);
    }
    seg.flush();
    std::iter::from_fn(|| seg.poll_segment()).collect()
}

/// Per video frame of `ts`: (pts in 90 kHz ticks, mean luma), by ffmpeg's decoder.
fn frame_luma(ts: &[u8], name: &str) -> Vec<(i64, f64)> {
    let path = std::env::temp_dir().join(format!("sluice-live-{}-{name}.ts", std::process::id()));
    std::fs::write(&path, ts).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("movie={},signalstats", path.display()))
        .args(["-show_entries", "frame=pts:frame_tags=lavfi.signalstats.YAVG", "-of", "csv=p=0"])
        .output()
        .expect("ffprobe runs");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split(',');
            Some((it.next()?.trim().parse().ok()?, it.next()?.trim().parse().ok()?))
        })
        .collect()
}

fn audio_streams(ts: &[u8]) -> usize {
    let mut d = TsDemuxer::new();
    d.push(ts);
    d.flush();
    std::iter::from_fn(|| d.poll()).filter(|r| matches!(r, Ok(a) if a.track == media::TrackKind::Audio)).count()
}

async fn orchestrator(
    capacity: usize,
) -> (orchestrator::service::OrchestratorHandle, OrchestratorNet, OrchestratorInfo) {
    let mut cfg = OrchestratorConfig::new("127.0.0.1:0".parse().unwrap(), std::sync::Arc::new(EchoTranscoder));
    cfg.live_capacity = capacity;
    let o = start(cfg).await.expect("orchestrator starts");
    let net = OrchestratorNet::new(CertPolicy::AcceptAny);
    let info = net
        .get_orchestrator(
            &o.service_uri,
            OrchestratorRequest {
                address: vec![0; 20],
                capabilities: Some(job_capabilities("negate")),
                ..Default::default()
            },
        )
        .await
        .expect("GetOrchestrator with live capabilities");
    (o, net, info)
}

fn request(model: &str) -> StartRequest {
    StartRequest {
        model_id: model.into(),
        params: serde_json::json!({}),
        gateway_request_id: "req-1".into(),
        stream_id: "cam".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negate_job_processes_frames_switches_effect_and_closes() {
    if !have("ffmpeg", "-version") || !have("gst-inspect-1.0", "--version") {
        eprintln!("skipped: ffmpeg or GStreamer missing (scripts/setup.sh installs them)");
        return;
    }
    let (o, net, info) = orchestrator(2).await;
    let caps = info.capabilities.clone().expect("capabilities");
    assert_eq!(transport::live::offers(&caps, "negate"), Some(true), "warm negate advertised");
    let seg_h = segment_header(&offchain_seg_data(info.auth_token.as_ref()));
    let reply = net
        .start_live(&info.transcoder, &seg_h, &payment_header(None), &request("negate"), Duration::from_secs(5))
        .await
        .expect("job starts");
    assert!(reply.publish_url.ends_with(&format!("/ai/trickle/{}", reply.manifest_id)));
    assert!(reply.subscribe_url.ends_with("-out") && reply.control_url.ends_with("-control"));

    let client = TrickleClient::new(CertPolicy::AcceptAny);
    // Read the output and the events while the input goes in.
    let out_url = reply.subscribe_url.clone();
    let out_client = client.clone();
    let output = tokio::spawn(async move {
        let mut sub = TrickleSubscriber::new(out_client, &out_url, -2);
        let mut segs: Vec<(Instant, Vec<u8>)> = Vec::new();
        while let Ok(Some(mut s)) = sub.next_segment().await {
            let mut body = Vec::new();
            while let Ok(Some(c)) = s.chunk().await {
                body.extend_from_slice(&c);
            }
            if !body.is_empty() {
                segs.push((Instant::now(), body));
            }
        }
        segs
    });
    let events_url = reply.events_url.clone();
    let ev_client = client.clone();
    let events = tokio::spawn(async move {
        let mut sub = TrickleSubscriber::new(ev_client, &events_url, -2);
        let mut got = Vec::new();
        while let Ok(Some(mut s)) = sub.next_segment().await {
            let mut body = Vec::new();
            while let Ok(Some(c)) = s.chunk().await {
                body.extend_from_slice(&c);
            }
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                got.push(v);
            }
        }
        got
    });

    let input = input_ts(8);
    let segs = segments(&input);
    let mut publisher = TricklePublisher::start(client.clone(), &reply.publish_url).await.expect("input channel");
    let mut control = TricklePublisher::start(client.clone(), &reply.control_url).await.expect("control channel");
    let started = Instant::now();
    let mut switched_at = None;
    let mut played = 0.0;
    for s in &segs {
        // Real time: a segment goes out when its media time has come.
        let due = started + Duration::from_secs_f64(played);
        tokio::time::sleep_until(due.into()).await;
        played += s.duration.as_secs_f64();
        let mut w = publisher.segment();
        w.write(s.data.clone()).await.unwrap();
        w.finish().await.unwrap();
        if played >= 5.0 && switched_at.is_none() {
            let mut c = control.segment();
            c.write(Bytes::from_static(br#"{"effect":"noop"}"#)).await.unwrap();
            c.finish().await.unwrap();
            switched_at = Some(s.start + s.duration);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    publisher.close().await.unwrap();
    let _ = control.close().await;
    let out = tokio::time::timeout(Duration::from_secs(10), output).await.expect("output ends with the job").unwrap();
    let events = tokio::time::timeout(Duration::from_secs(10), events).await.expect("events end").unwrap();

    // Pixels: before the switch every frame is the input's negative, after it the input.
    let all_out: Vec<u8> = out.iter().flat_map(|(_, b)| b.clone()).collect();
    let luma_in: std::collections::HashMap<i64, f64> = frame_luma(&input, "in").into_iter().collect();
    let luma_out = frame_luma(&all_out, "out");
    assert!(luma_out.len() >= 200, "{} frames came back of 240", luma_out.len());
    let switch = switched_at.expect("switched").rescale(Timescale::MPEG).ticks();
    let (mut negated, mut plain) = (0, 0);
    for (pts, y) in &luma_out {
        let y_in = *luma_in.get(pts).unwrap_or_else(|| panic!("output pts {pts} is an input pts"));
        assert!(y_in < 100.0, "the input is dark: {y_in}");
        if (y + y_in - 255.0).abs() < 4.0 {
            negated += 1;
            assert!(*pts < switch + 90_000, "negated frame at {pts} a second after the switch at {switch}");
        } else if (y - y_in).abs() < 4.0 {
            plain += 1;
            // The control message goes out when the segment ending at `switch` has been
            // sent, which the runner may still be decoding (up to a segment or two).
            assert!(*pts >= switch - 2 * 90_000, "plain frame at {pts} long before the switch at {switch}");
        } else {
            panic!("frame at {pts}: luma {y} from input {y_in} is neither negated nor unchanged");
        }
    }
    assert!(negated > 100 && plain > 30, "{negated} negated, {plain} plain");
    // ffmpeg packs several AAC frames in a PES; each PES comes back.
    let (audio_in, audio_out) = (audio_streams(&input), audio_streams(&all_out));
    assert!(audio_in > 10 && audio_out + 2 >= audio_in, "input audio carried through: {audio_out} of {audio_in} PES");
    // Status events: the runner's state and what it was last told.
    let status = events.iter().rev().find(|e| e["event"]["type"] == "status").expect("a status event");
    assert_eq!(status["event"]["state"], "OFFLINE", "the last word of a runner whose input ended");
    assert!(events.iter().any(|e| e["event"]["state"] == "ONLINE"), "ONLINE while it ran");
    assert_eq!(status["event"]["pipeline"], "negate");
    assert_eq!(status["event"]["inference_status"]["last_params"]["effect"], "noop");
    // The job ended with its input: its channels are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while o.trickle.channels() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(o.trickle.channels(), 0, "the job's four channels closed");
    o.shutdown().await;
}

#[tokio::test]
async fn refusals_unknown_model_bad_credentials_capacity() {
    let (o, net, info) = orchestrator(1).await;
    let seg_h = segment_header(&offchain_seg_data(info.auth_token.as_ref()));
    let status = |r: Result<transport::live::StartReply, NetError>| match r {
        Err(NetError::Status { status, body }) => (status.as_u16(), body),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let t = Duration::from_secs(5);
    let (code, body) = status(net.start_live(&info.transcoder, &seg_h, "", &request("streamdiffusion"), t).await);
    assert_eq!(code, 400);
    assert!(body.contains("streamdiffusion"), "{body}");
    let mut forged = info.auth_token.clone().unwrap();
    forged.token[0] ^= 1;
    let bad = segment_header(&offchain_seg_data(Some(&forged)));
    assert_eq!(status(net.start_live(&info.transcoder, &bad, "", &request("noop"), t).await).0, 403);
    assert_eq!(status(net.start_live(&info.transcoder, "%%%", "", &request("noop"), t).await).0, 403);
    assert_eq!(status(net.start_live(&info.transcoder, &seg_h, "!!", &request("noop"), t).await).0, 402);
    // Capacity 1: the second job is refused with go-livepeer's words.
    net.start_live(&info.transcoder, &seg_h, "", &request("noop"), t).await.expect("first job");
    let (code, body) = status(net.start_live(&info.transcoder, &seg_h, "", &request("noop"), t).await);
    assert_eq!((code, body.contains("insufficient capacity")), (503, true), "{body}");
    // Payments are accepted off-chain and answered with fresh OrchestratorInfo.
    let info2 = net.live_payment(&info.transcoder, &seg_h, "", t).await.expect("payment").expect("info");
    assert_eq!(info2.transcoder, info.transcoder);
    o.shutdown().await;
}
