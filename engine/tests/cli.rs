//! The `sluice` binary's offline commands and configuration errors.

mod common;

use common::*;
use tokio::process::Command;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_command_writes_a_vod_playlist_from_flv_and_ts() {
    let dir = std::env::temp_dir().join(format!("sluice-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The same clip as FLV and, remuxed by ffmpeg, as MPEG-TS.
    let flv = testdata("clip.flv");
    let ts = dir.join("clip.ts");
    run(
        Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&flv).args(["-c", "copy", "-f", "mpegts"]).arg(&ts),
        "remux",
    )
    .await;
    for input in [flv.clone(), ts] {
        let out = dir.join(input.extension().unwrap());
        let report = run(sluice().arg("segment").arg(&input).arg("--out").arg(&out), "sluice segment").await;
        assert!(report.contains("5 segments"), "{report}");
        let pl = std::fs::read_to_string(out.join("index.m3u8")).unwrap();
        assert!(pl.contains("#EXT-X-PLAYLIST-TYPE:VOD") && pl.contains("#EXT-X-ENDLIST"), "{pl}");
        let mut packets = vec![];
        for seg in pl.lines().filter(|l| l.ends_with(".ts")) {
            let p = out.join(seg);
            assert_decodes(&p).await;
            let pk = probe_packets(&p).await;
            assert!(pk.iter().find(|p| p.video).unwrap().key, "{seg} starts with a keyframe");
            packets.extend(pk);
        }
        let src = probe_packets(&flv).await;
        assert_eq!(packets.iter().filter(|p| p.video).count(), src.iter().filter(|p| p.video).count());
        assert_eq!(packets.iter().filter(|p| !p.video).count(), src.iter().filter(|p| !p.video).count());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_is_refused_with_a_reason() {
    let dir = std::env::temp_dir().join(format!("sluice-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "segment_durration = 2.0\n").unwrap();
    let out = sluice().arg("gateway").arg("--config").arg(&cfg).output().await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("segment_durration"), "{err}");
    let out = sluice().args(["gateway", "--segment-duration", "0"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("segment_duration"));
    // Environment variables are read too.
    let out = sluice().arg("gateway").env("SLUICE_SEGMENT_DURATION", "500").output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 0.1 and 60"));
}
