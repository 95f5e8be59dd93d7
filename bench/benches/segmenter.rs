//! TS muxing (throughput and time per access unit), the whole cutter, playlist
//! rendering, and the CMAF side: cutting access units into CMAF (against the TS muxer),
//! TS → CMAF for renditions, and LL-HLS playlist and DASH MPD rendering.

use bench::demo_clip;
use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ingest::flv::{FlvDemuxer, FlvFileReader};
use media::TrackKind;
use media::{AccessUnit, Payload, StreamEvent, TrackInfo};
use segmenter::cmaf::{CmafConfig, CmafCutter, CmafEvent, TrackConfig};
use segmenter::dash;
use segmenter::hls::{MediaPlaylistBuilder, PlaylistEntry};
use segmenter::llhls::{PartEntry, SegmentEntry, TrackPlaylist};
use segmenter::ts::demux::TsDemuxer;
use segmenter::ts::mux::{TsMuxer, TsTracks};
use segmenter::{Segmenter, SegmenterConfig};

fn access_units() -> (TrackInfo, Vec<AccessUnit>) {
    let mut d = FlvDemuxer::new();
    let mut out = vec![];
    for t in FlvFileReader::new(demo_clip()).unwrap() {
        let t = t.unwrap();
        d.handle_tag(t.tag_type, t.timestamp, &Payload::from(t.body), &mut out).unwrap();
    }
    let aus = out.into_iter().filter_map(|e| if let StreamEvent::Media(a) = e { Some(a) } else { None }).collect();
    (d.tracks(), aus)
}

fn ts_mux(c: &mut Criterion) {
    let (tracks, aus) = access_units();
    let bytes: usize = aus.iter().map(|a| a.data.len()).sum();
    let mut g = c.benchmark_group("ts_mux");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("mux_all_access_units", |b| {
        let mut out = BytesMut::with_capacity(bytes * 11 / 10);
        b.iter(|| {
            out.clear();
            let mut m = TsMuxer::new(TsTracks { video: true, audio: true });
            m.write_tables(&mut out);
            for au in &aus {
                m.write_access_unit(au, &mut out);
            }
            out.len()
        })
    });
    // Per access unit: one keyframe-sized and one audio-frame-sized unit.
    g.throughput(Throughput::Elements(1));
    for (name, au) in [
        (
            "video_keyframe",
            aus.iter().filter(|a| a.keyframe && a.track == media::TrackKind::Video).max_by_key(|a| a.data.len()),
        ),
        ("audio_frame", aus.iter().find(|a| a.track == media::TrackKind::Audio)),
    ] {
        let au = au.unwrap().clone();
        g.bench_with_input(BenchmarkId::new("per_access_unit", format!("{name}_{}B", au.data.len())), &au, |b, au| {
            let mut m = TsMuxer::new(TsTracks { video: true, audio: true });
            let mut out = BytesMut::with_capacity(1 << 20);
            b.iter(|| {
                if out.len() > (1 << 19) {
                    out.clear();
                }
                m.write_access_unit(au, &mut out)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("cutter");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("segment_demo_clip", |b| {
        b.iter(|| {
            let mut s = Segmenter::new(SegmenterConfig::default(), 0);
            s.handle_tracks(tracks.clone());
            let mut n = 0;
            for au in &aus {
                s.handle_access_unit(au);
                while s.poll_segment().is_some() {
                    n += 1;
                }
            }
            s.flush();
            n
        })
    });
    g.finish();
}

fn playlists(c: &mut Criterion) {
    let mut g = c.benchmark_group("playlist_render");
    for window in [6usize, 1000] {
        let mut p = MediaPlaylistBuilder::new(window, 2.0);
        for seq in 0..window as u64 + 10 {
            p.push(PlaylistEntry {
                seq,
                duration: 2.002,
                discontinuity: seq % 100 == 7,
                gap: false,
                independent: true,
            });
        }
        g.bench_function(BenchmarkId::new("media_playlist_segments", window), |b| {
            b.iter(|| p.render(|s| format!("source/{s}.ts")).len())
        });
    }
    g.finish();
}

/// Both CMAF cutters over `aus`, the audio cut where the video's segments and parts
/// start (as `engine::cmaf` drives them); returns the bytes of the parts.
fn cmaf_cut(tracks: &TrackInfo, aus: &[AccessUnit]) -> usize {
    let cfg = CmafConfig::default();
    let mut v = CmafCutter::new(TrackKind::Video, cfg, 0);
    let mut a = CmafCutter::new(TrackKind::Audio, cfg, 0);
    a.follow_video(true);
    v.handle_config(TrackConfig::Video(tracks.video.clone().unwrap()));
    a.handle_config(TrackConfig::Audio(tracks.audio.clone().unwrap()));
    let mut bytes = 0;
    let mut drain = |v: &mut CmafCutter, a: &mut CmafCutter| {
        while let Some(e) = v.poll_event() {
            a.follow_event(&e);
            if let CmafEvent::Part { data, .. } = e {
                bytes += data.len();
            }
        }
        while let Some(e) = a.poll_event() {
            if let CmafEvent::Part { data, .. } = e {
                bytes += data.len();
            }
        }
    };
    for au in aus {
        match au.track {
            TrackKind::Video => v.handle_access_unit(au),
            TrackKind::Audio => a.handle_access_unit(au),
        }
        drain(&mut v, &mut a);
    }
    v.flush();
    a.flush();
    drain(&mut v, &mut a);
    bytes
}

fn cmaf(c: &mut Criterion) {
    let (tracks, aus) = access_units();
    let bytes: usize = aus.iter().map(|a| a.data.len()).sum();
    let mut g = c.benchmark_group("cmaf");
    g.throughput(Throughput::Bytes(bytes as u64));
    // The same work as `ts_mux/mux_all_access_units`, into CMAF parts and segments.
    g.bench_function("cut_all_access_units", |b| b.iter(|| cmaf_cut(&tracks, &aus)));
    // A transcoded rendition's path: MPEG-TS bytes → access units → CMAF.
    let mut ts = BytesMut::new();
    let mut m = TsMuxer::new(TsTracks { video: true, audio: true });
    m.write_tables(&mut ts);
    for au in &aus {
        m.write_access_unit(au, &mut ts);
    }
    let ts = ts.freeze();
    g.bench_function("ts_to_cmaf", |b| {
        b.iter(|| {
            let mut d = TsDemuxer::new();
            d.push(&ts);
            d.flush();
            let mut units = Vec::with_capacity(aus.len());
            while let Some(Ok(au)) = d.poll() {
                units.push(au);
            }
            cmaf_cut(&tracks, &units)
        })
    });
    g.finish();

    // Rendering what players reload: an LL-HLS media playlist (8 segments of 6 parts,
    // the last open) and a live MPD with five representations of 8 segments.
    let mut g = c.benchmark_group("cmaf_render");
    let segments: Vec<SegmentEntry> = (0..8u64)
        .map(|msn| SegmentEntry {
            msn,
            file: msn,
            gap: false,
            duration: 2.0,
            parts: (0..if msn == 7 { 3 } else { 6 })
                .map(|p| PartEntry { duration: 0.333, independent: p == 0 })
                .collect(),
            complete: msn < 7,
            init: 0,
            discontinuity: false,
            program_date_time: Some(1.78e9 + msn as f64 * 2.0),
        })
        .collect();
    let reports = vec![("audio".to_owned(), 7, Some(2))];
    let pl = TrackPlaylist {
        name: "video",
        segments: &segments,
        discontinuity_sequence: 0,
        part_target: 0.334,
        ended: false,
        reports: &reports,
    };
    g.bench_function("ll_hls_media_playlist_8_segments", |b| b.iter(|| pl.render().len()));
    let rep = |id: &str, scale: u32, audio: bool| dash::Representation {
        id: id.into(),
        bandwidth: 1_000_000,
        codecs: if audio { "mp4a.40.2".into() } else { "avc1.64001f".into() },
        resolution: (!audio).then_some((1280, 720)),
        audio: audio.then_some((48_000, 2)),
        timescale: scale,
        initialization: format!("s/ll/{id}-init0.mp4"),
        media: format!("s/ll/{id}-$Number$.m4s"),
        timeline: (0..8u64)
            .map(|n| dash::TimelineEntry { number: n, start: n * 2 * scale as u64, duration: 2 * scale as u64 })
            .collect(),
    };
    let p = dash::Presentation {
        live: true,
        availability_start: 1.78e9,
        publish_time: 1.78e9 + 20.0,
        update_period: 0.668,
        time_shift_buffer: 14.0,
        min_buffer: 2.0,
        target_latency: 3.5,
        utc_timing: Some("//127.0.0.1:9935/utc".into()),
        periods: vec![dash::Period {
            id: "0".into(),
            start: 1.78e9 + 1.0,
            media_start: 0.0,
            sets: vec![
                dash::AdaptationSet {
                    content: dash::ContentType::Video,
                    representations: ["video", "P240p", "P360p", "P720p"]
                        .iter()
                        .map(|id| rep(id, 90_000, false))
                        .collect(),
                },
                dash::AdaptationSet {
                    content: dash::ContentType::Audio,
                    representations: vec![rep("audio", 48_000, true)],
                },
            ],
        }],
    };
    g.bench_function("dash_mpd_5_representations", |b| b.iter(|| dash::render(&p).map(|s| s.len())));
    g.finish();
}

criterion_group!(benches, ts_mux, playlists, cmaf);
criterion_main!(benches);
