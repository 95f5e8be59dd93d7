//! TS muxing (throughput and time per access unit), the whole cutter, and playlist
//! rendering.

use bench::demo_clip;
use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ingest::flv::{FlvDemuxer, FlvFileReader};
use media::{AccessUnit, Payload, StreamEvent, TrackInfo};
use segmenter::hls::{MediaPlaylistBuilder, PlaylistEntry};
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

criterion_group!(benches, ts_mux, playlists);
criterion_main!(benches);
