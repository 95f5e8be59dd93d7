//! CMAF files from real encoder output, checked by ffmpeg: ffmpeg encodes H.264 (with
//! B-frames, so composition offsets matter) and AAC into MPEG-TS; Sluice's TS demuxer and
//! CMAF cutters make a video and an audio track; ffmpeg then decodes each track's init
//! segment plus all its media segments without an error, with every frame and the
//! source's timestamps.

use std::path::Path;
use std::process::Command;

use media::{AccessUnit, TrackKind};
use segmenter::cmaf::{CmafConfig, CmafCutter, CmafEvent, TrackConfig};
use segmenter::ts::demux::TsDemuxer;

fn ffmpeg_here() -> bool {
    Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success())
}

fn probe(file: &Path, stream: &str, entries: &str) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries", entries, "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().trim_end_matches(',').to_owned()).collect()
}

#[test]
fn ffmpeg_decodes_what_the_cutters_write() {
    if !ffmpeg_here() {
        eprintln!("skipped: ffmpeg missing (scripts/setup.sh installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sluice-cmaf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ts = dir.join("in.ts");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=6"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=6:sample_rate=48000"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "96k", "-f", "mpegts"])
        .arg(&ts)
        .status()
        .unwrap();
    assert!(made.success());

    let mut demux = TsDemuxer::new();
    demux.push(&std::fs::read(&ts).unwrap());
    demux.flush();
    let units: Vec<AccessUnit> = std::iter::from_fn(|| demux.poll()).filter_map(Result::ok).collect();
    let tracks = segmenter::ts::track_info(&units, true, true).expect("configurations in band");
    let mut video = CmafCutter::new(TrackKind::Video, CmafConfig::default(), 0);
    let mut audio = CmafCutter::new(TrackKind::Audio, CmafConfig::default(), 0);
    video.handle_config(TrackConfig::Video(tracks.video.clone().unwrap()));
    audio.handle_config(TrackConfig::Audio(tracks.audio.unwrap()));
    audio.follow_video(true);
    let (mut vfile, mut afile) = (Vec::new(), Vec::new());
    let (mut vsegments, mut asegments) = (0, 0);
    let take = |c: &mut CmafCutter, file: &mut Vec<u8>, segments: &mut usize, other: Option<&mut CmafCutter>| {
        let mut other = other;
        while let Some(e) = c.poll_event() {
            match e {
                CmafEvent::Init { data, .. } => file.extend_from_slice(&data),
                CmafEvent::Part { data, .. } => file.extend_from_slice(&data.to_contiguous()),
                CmafEvent::SegmentEnd { .. } => *segments += 1,
                ref cut @ (CmafEvent::SegmentStart { .. } | CmafEvent::PartStart { .. }) => {
                    if let Some(o) = other.as_deref_mut() {
                        o.follow_event(cut);
                    }
                }
            }
        }
    };
    for u in &units {
        video.handle_access_unit(u);
        audio.handle_access_unit(u);
        take(&mut video, &mut vfile, &mut vsegments, Some(&mut audio));
        take(&mut audio, &mut afile, &mut asegments, None);
    }
    video.flush();
    audio.flush();
    take(&mut video, &mut vfile, &mut vsegments, None);
    take(&mut audio, &mut afile, &mut asegments, None);
    assert_eq!((vsegments, asegments), (3, 3), "2 s segments of 6 s, both tracks");

    let (vpath, apath) = (dir.join("video.mp4"), dir.join("audio.mp4"));
    std::fs::write(&vpath, &vfile).unwrap();
    std::fs::write(&apath, &afile).unwrap();
    for f in [&vpath, &apath] {
        let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(f).args(["-f", "null", "-"]).output().unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every video frame, with the source's presentation times (B-frames reordered).
    let source_pts = |kind: &str| -> Vec<f64> {
        let mut t: Vec<f64> = probe(&ts, kind, "packet=pts_time").iter().filter_map(|l| l.parse().ok()).collect();
        t.sort_by(f64::total_cmp);
        t
    };
    let mut got: Vec<f64> = probe(&vpath, "v:0", "packet=pts_time").iter().filter_map(|l| l.parse().ok()).collect();
    got.sort_by(f64::total_cmp);
    let want = source_pts("v:0");
    assert_eq!(got.len(), want.len(), "every video frame");
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 0.002, "video pts {g} against {w}");
    }
    let codec = probe(&vpath, "v:0", "stream=codec_name,width,height");
    assert_eq!(codec, ["h264,320,240"]);
    let audio_packets = probe(&apath, "a:0", "packet=pts_time").len();
    assert_eq!(audio_packets, source_pts("a:0").len(), "every AAC frame");
    assert_eq!(probe(&apath, "a:0", "stream=codec_name,sample_rate"), ["aac,48000"]);
    let _ = std::fs::remove_dir_all(&dir);
}
