//! The `sluice` binary's offline commands and configuration errors.

mod common;

use std::collections::{BTreeMap, BTreeSet};

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
    for text in ["[segmenting]\nsegment_durration = 2.0\n", "segment_duration = 2.0\n", "[segmentin]\nx = 1\n"] {
        std::fs::write(&cfg, text).unwrap();
        let out = sluice().arg("gateway").arg("--config").arg(&cfg).output().await.unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid config file") && err.contains("unknown"), "{text}: {err}");
    }
    let out = sluice().args(["gateway", "--segment-duration", "0"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("segment_duration"));
    // Environment variables are read too.
    let out = sluice().arg("gateway").env("SLUICE_SEGMENT_DURATION", "500").output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 0.1 and 60"));
    // The orchestrator's file is checked the same way.
    std::fs::write(&cfg, "[listen]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let out = sluice().arg("orchestrator").arg("--config").arg(&cfg).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
}

/// Runs `sluice gateway` with `args` and `env` on ephemeral ports: true when it is still
/// serving a second later (its settings were accepted).
async fn gateway_starts(args: &[&str], env: &[(&str, &str)]) -> bool {
    let mut cmd = sluice();
    cmd.args(["gateway", "--rtmp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--cli-addr", "127.0.0.1:0"]);
    cmd.args(args).envs(env.iter().copied()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill().await;
    running
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_then_environment_then_file_then_defaults() {
    let dir = std::env::temp_dir().join(format!("sluice-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("sluice.toml");
    // The file alone is out of range…
    std::fs::write(&cfg, "[segmenting]\nsegment_duration = 500.0\n").unwrap();
    let file = cfg.to_str().unwrap();
    assert!(!gateway_starts(&["--config", file], &[]).await, "the file is read");
    // …a flag or a variable overrides it…
    assert!(gateway_starts(&["--config", file, "--segment-duration", "2"], &[]).await, "a flag beats the file");
    assert!(gateway_starts(&["--config", file], &[("SLUICE_SEGMENT_DURATION", "2")]).await, "env beats the file");
    // …and a flag beats a variable.
    assert!(
        gateway_starts(&["--segment-duration", "2"], &[("SLUICE_SEGMENT_DURATION", "500")]).await,
        "a flag beats the environment"
    );
    // A flag left at its default does not undo what the file says.
    std::fs::write(&cfg, "[segmenting]\nsegment_duration = 4.0\nmax_segment_duration = 3.0\n").unwrap();
    assert!(!gateway_starts(&["--config", file], &[]).await, "segment_duration 4 from the file is kept");
}

/// The flags, variables and defaults `sluice COMMAND --help` lists: flag → (env, default).
async fn help_flags(command: &str) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let out = sluice().args([command, "--help"]).output().await.unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("--").or_else(|| t.strip_prefix("-h, --")) {
            let name = rest.split([' ', '<']).next().unwrap().to_owned();
            current = Some(format!("--{name}"));
            flags.insert(format!("--{name}"), (None, None));
        } else if let Some(c) = &current {
            let entry = flags.get_mut(c).unwrap();
            // `[env: NAME=value]`, or `[env: NAME]` when the value is hidden (secrets).
            if let Some(env) = t.strip_prefix("[env: ").and_then(|e| e.split(['=', ']']).next()) {
                entry.0 = Some(env.to_owned());
            }
            if let Some(d) = t.strip_prefix("[default: ").and_then(|d| d.strip_suffix(']')) {
                entry.1 = Some(d.to_owned());
            }
        }
    }
    flags.remove("--help");
    flags
}

/// The README table under `heading`: flag → (env, TOML key, default cell).
fn readme_table(heading: &str) -> BTreeMap<String, (String, String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find(heading).unwrap_or_else(|| panic!("README has no {heading}"));
    let mut rows = BTreeMap::new();
    for line in readme[start..].lines().skip(1).take_while(|l| !l.starts_with("### ") && !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 6 || !cells[1].starts_with("`--") {
            continue;
        }
        let unquote = |c: &str| c.trim_matches('`').to_owned();
        let flag = unquote(cells[1]).split(' ').next().unwrap().to_owned();
        rows.insert(flag, (unquote(cells[2]), unquote(cells[3]), cells[4].to_owned()));
    }
    rows
}

/// Every key of a configuration serialised with its defaults, as `section.key`.
fn toml_keys(v: serde_json::Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (section, fields) in v.as_object().unwrap() {
        for key in fields.as_object().unwrap().keys() {
            keys.insert(format!("{section}.{key}"));
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_flag_tables_match_help() {
    for (command, heading, keys) in [
        (
            "gateway",
            "### Gateway flags and config file",
            toml_keys(serde_json::to_value(engine::GatewayConfig::default()).unwrap()),
        ),
        (
            "orchestrator",
            "### Orchestrator flags and config file",
            toml_keys(serde_json::to_value(engine::orch_config::OrchestratorSettings::default()).unwrap()),
        ),
    ] {
        let help = help_flags(command).await;
        let table = readme_table(heading);
        let (h, t): (BTreeSet<_>, BTreeSet<_>) = (help.keys().collect(), table.keys().collect());
        assert_eq!(h, t, "{command}: flags in --help vs the README table");
        let mut documented = BTreeSet::new();
        for (flag, (env, default)) in &help {
            let (t_env, t_key, t_default) = &table[flag];
            assert_eq!(env.as_deref(), Some(t_env.as_str()), "{command} {flag}: env");
            if t_key != "—" {
                assert!(keys.contains(t_key), "{command} {flag}: README key {t_key} is not a config key");
                documented.insert(t_key.clone());
            }
            // A plain literal default in the README must be the one --help shows.
            let literal = t_default.starts_with('`') && t_default.ends_with('`') && t_default.matches('`').count() == 2;
            if let (true, Some(d)) = (literal, default) {
                assert_eq!(t_default.trim_matches('`'), d, "{command} {flag}: default");
            }
        }
        assert_eq!(documented, keys, "{command}: every config key has a row");
    }
}
