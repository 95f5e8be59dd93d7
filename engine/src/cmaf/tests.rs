use super::*;
use bytes::Bytes;
use media::{AacConfig, H264Config, MediaTime, Timescale};

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80, 0x00, 0x00, 0x03,
    0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcb,
];

fn tracks() -> TrackInfo {
    let sps = vec![Bytes::from_static(SPS)];
    TrackInfo {
        video: Some(H264Config::from_parameter_sets(sps, vec![Bytes::from_static(&[0x68, 0xeb])], 4).unwrap()),
        audio: Some(AacConfig::from_audio_specific_config(&[0x11, 0x90]).unwrap()),
    }
}

fn video(i: i64) -> AccessUnit {
    let t = MediaTime::new(i * 3000, Timescale::MPEG);
    let key = i % 60 == 0;
    let v = vec![0, 0, 1, if key { 0x65 } else { 0x41 }, 0x88, 0x99];
    AccessUnit { track: TrackKind::Video, pts: t, dts: t, keyframe: key, data: Bytes::from(v).into() }
}

fn audio(i: i64) -> AccessUnit {
    let a = AacConfig::from_audio_specific_config(&[0x11, 0x90]).unwrap();
    let t = MediaTime::new(i * 1024, Timescale::new(48_000)).rescale(Timescale::MPEG);
    let mut v = a.adts_header(3).unwrap().to_vec();
    v.extend_from_slice(&[1, 2, 3]);
    AccessUnit { track: TrackKind::Audio, pts: t, dts: t, keyframe: true, data: Bytes::from(v).into() }
}

/// `secs` of 30 fps video and 48 kHz audio from media time 0, received from `unix` on.
fn publish(o: &mut CmafOutput, unix: f64, secs: f64) {
    o.handle_tracks(&tracks());
    let (mut v, mut a) = (0, 0);
    loop {
        let (tv, ta) = (v as f64 / 30.0, a as f64 * 1024.0 / 48_000.0);
        if tv >= secs && ta >= secs {
            break;
        }
        if tv <= ta {
            o.handle_access_unit(&video(v), unix + tv);
            v += 1;
        } else {
            o.handle_access_unit(&audio(a), unix + ta);
            a += 1;
        }
    }
}

#[test]
fn a_new_publisher_is_a_new_period_holding_only_its_own_segments() {
    let mut o = CmafOutput::new(CmafConfig::default());
    // The first publisher's last segments start at 6 s and are a few frames long.
    publish(&mut o, 1_780_000_000.0, 6.2);
    o.restart();
    // The second starts right after (its first segment within half a second of the
    // first publisher's last audio segment), timestamps from 0.
    publish(&mut o, 1_780_000_006.3, 6.0);
    let text = o.mpd("s/ll/", 1_780_000_012.0, None).unwrap();
    let m = dash_mpd_core::parse(&text).unwrap();
    assert_eq!(m.periods.len(), 2, "{text}");
    for (p, epoch) in m.periods.iter().zip(0u32..) {
        assert_eq!(p.adaptations.len(), 2, "video and audio in period {epoch}: {text}");
        for a in &p.adaptations {
            let r = &a.representations[0];
            let t = r.SegmentTemplate.as_ref().unwrap();
            let first = t.startNumber.unwrap();
            let n: u64 = t.SegmentTimeline.as_ref().unwrap().segments.iter().map(|s| 1 + s.r.unwrap_or(0) as u64).sum();
            // Every listed segment is this publisher's.
            let track = if a.contentType.as_deref() == Some("video") { &o.video } else { &o.audio };
            for msn in first..first + n {
                assert_eq!(track.segment(msn).unwrap().epoch, epoch, "{:?} {msn}: {text}", a.contentType);
            }
            // Period time 0 is the publisher's media time 0.
            assert!(t.presentationTimeOffset.unwrap() < 5000, "{text}");
        }
    }
    let second = m.periods[1].start.unwrap().as_secs_f64();
    assert!((second - 7.3).abs() < 0.01, "AST is a second before the first unit: {text}");
}

#[test]
fn a_missing_rendition_segment_is_a_gap_in_ll_hls_and_a_jump_in_dash() {
    let mut o = CmafOutput::new(CmafConfig::default());
    publish(&mut o, 1_780_000_000.0, 10.2);
    let two = MediaTime::new(180_000, Timescale::MPEG);
    let source = |n: u64| media::Segment {
        seq: n,
        start: MediaTime::new(n as i64 * 180_000, Timescale::MPEG),
        duration: two,
        discontinuity: false,
        independent: true,
        tracks: media::TrackSet { video: true, audio: true },
        data: Bytes::new(),
        digest: None,
    };
    let units = |n: u64| RenditionUnits {
        config: tracks().video.unwrap(),
        units: (0..60).map(|i| video(n as i64 * 60 + i)).collect(),
    };
    // Nothing is listed for a rendition before it has joined.
    o.handle_rendition_gap("P240p", &source(0));
    assert!(!o.has_track("P240p"));
    for n in 0..5 {
        if n == 2 {
            o.handle_rendition_gap("P240p", &source(n));
        } else {
            o.handle_rendition_segment("P240p", units(n), &source(n));
        }
    }
    let text = String::from_utf8(o.media_playlist("P240p").unwrap().to_vec()).unwrap();
    let pl = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs parses it");
    let uris: Vec<&str> = pl.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["P240p-0.m4s", "P240p-1.m4s", "P240p-gap2.m4s", "P240p-2.m4s", "P240p-3.m4s"], "{text}");
    assert!(pl.segments[2].unknown_tags.iter().any(|t| t.tag == "X-GAP"), "{text}");
    assert!((pl.segments[2].duration - 2.0).abs() < 1e-3);
    // Media sequence numbers count the gap; file numbers do not.
    assert!(o.has("P240p", 4, None) && !o.has("P240p", 5, None));
    assert!(o.segment("P240p", 3).is_some() && o.segment("P240p", 4).is_none());
    assert!(text.contains("PRELOAD-HINT:TYPE=PART,URI=\"P240p-4.0.m4s\""), "{text}");
    assert_eq!(o.part("P240p", 4, 0), PartState::Soon);
    // Every playlist reports on every other one of the multivariant.
    assert!(text.contains("#EXT-X-RENDITION-REPORT:URI=\"video.m3u8\""), "{text}");
    assert!(text.contains("#EXT-X-RENDITION-REPORT:URI=\"audio.m3u8\""), "{text}");
    assert!(!text.contains("URI=\"P240p.m3u8\""), "{text}");
    let video = String::from_utf8(o.media_playlist(VIDEO).unwrap().to_vec()).unwrap();
    assert!(video.contains("#EXT-X-RENDITION-REPORT:URI=\"P240p.m3u8\",LAST-MSN=4,LAST-PART="), "{video}");
    // DASH lists the three real segments by file number, its timeline jumping the gap.
    let mpd = o.mpd("s/ll/", 1_780_000_011.0, None).unwrap();
    let m = dash_mpd_core::parse(&mpd).unwrap();
    let r = m.periods[0].adaptations.iter().flat_map(|a| &a.representations).find(|r| r.id.as_deref() == Some("P240p"));
    let t = r.and_then(|r| r.SegmentTemplate.as_ref()).unwrap_or_else(|| panic!("{mpd}"));
    assert_eq!(t.startNumber, Some(0));
    let s = &t.SegmentTimeline.as_ref().unwrap().segments;
    let listed: u64 = s.iter().map(|s| 1 + s.r.unwrap_or(0) as u64).sum();
    assert_eq!(listed, 4, "{mpd}");
    assert!(s.iter().any(|s| s.t == Some(6 * 90_000)), "the segment after the gap restates its time: {mpd}");
}
