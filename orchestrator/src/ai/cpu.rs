//! CPU stand-ins for the AI runners, so the demo and the tests need no GPU. Each is
//! deterministic (the same request gives the same bytes) and does real media work with
//! ffmpeg child processes:
//!
//! * text-to-image: a PNG of the requested size, its colour drawn from the seed, with the
//!   prompt written on it;
//! * image-to-image: the input with its hue turned by `strength` × 360°;
//! * upscale: the input scaled ×4 with Lanczos (inputs above 1024×1024 are refused the way
//!   a runner refuses, as a `container returned 400`);
//! * image-to-video: 25 frames of the input fading in, H.264 in MP4;
//! * audio-to-text: a transcript naming the audio's decoded duration, in 5 s chunks;
//! * segment-anything-2: one mask (the box, or a disc around the first point);
//! * image-to-text: a caption with the image's size and mean colour;
//! * text-to-speech: a WAV tone whose pitch comes from the text and whose length from
//!   its size.
//!
//! The LLM echo model is in [`super::llm`].
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use transport::ai_types::{MasksResponse, TextChunk, TextResponse};

/// Longest an ffmpeg child may run.
pub const FFMPEG_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest input upscale takes (each side), pixels.
pub const MAX_UPSCALE_INPUT: u64 = 1024;

/// A pipeline failure; the text is what the orchestrator answers with (500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CpuError(pub String);

/// Runs `ffmpeg` with `args`, feeding `input` on stdin; returns stdout.
pub async fn ffmpeg(args: &[String], input: Option<Bytes>) -> Result<Bytes, CpuError> {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error"]);
    if input.is_none() {
        cmd.arg("-nostdin");
    }
    let mut child = cmd
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CpuError(format!("cannot run ffmpeg: {e}")))?;
    let stdin = child.stdin.take();
    let feed = async move {
        if let (Some(mut w), Some(data)) = (stdin, input) {
            // A decoder may stop reading early; that is not an error here.
            let _ = w.write_all(&data).await;
        }
    };
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (r1, r2, ()) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err), feed);
        r1.and(r2).map_err(|e| CpuError(format!("ffmpeg output: {e}")))?;
        let status = child.wait().await.map_err(|e| CpuError(format!("ffmpeg: {e}")))?;
        if !status.success() {
            let text = String::from_utf8_lossy(&err);
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            return Err(CpuError(format!("ffmpeg failed: {last}")));
        }
        Ok(Bytes::from(out))
    };
    tokio::time::timeout(FFMPEG_TIMEOUT, run).await.map_err(|_| CpuError("ffmpeg timed out".into()))?
}

/// A temporary file removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(ext: &str) -> Self {
        let n: [u8; 8] = crate::service::random();
        TempFile(std::env::temp_dir().join(format!("sluice-ai-{:016x}.{ext}", u64::from_le_bytes(n))))
    }
    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A seed from text (FNV-1a), for requests that give none.
pub fn seed_of(text: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    (h >> 33) as i64
}

/// Breaks `text` into lines of at most `width` characters, at spaces where possible.
fn wrap(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        for piece in word.chars().collect::<Vec<_>>().chunks(width.max(1)) {
            let piece: String = piece.iter().collect();
            if !line.is_empty() && line.chars().count() + 1 + piece.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&piece);
        }
    }
    lines.push(line);
    lines.join("\n")
}

/// text-to-image: a `width`×`height` PNG coloured by `seed` with `prompt` on it.
pub async fn text_to_image(prompt: &str, width: u32, height: u32, seed: i64) -> Result<Bytes, CpuError> {
    let colour = format!("0x{:06x}", (seed as u64).wrapping_mul(0x9e37_79b9) & 0x7f7f7f);
    let size = (height.min(width) / 16).clamp(8, 96);
    let text = TempFile::new("txt");
    std::fs::write(&text.0, wrap(prompt, (width / (size * 6 / 10).max(1)) as usize))
        .map_err(|e| CpuError(format!("temporary file: {e}")))?;
    let filter = format!(
        "drawtext=textfile='{}':expansion=none:fontsize={size}:fontcolor=white:x=(w-text_w)/2:y=(h-text_h)/2",
        text.path()
    );
    let args = [
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("color=c={colour}:s={width}x{height}"),
        "-vf".into(),
        filter,
        "-frames:v".into(),
        "1".into(),
        "-f".into(),
        "image2pipe".into(),
        "-c:v".into(),
        "png".into(),
        "pipe:1".into(),
    ];
    ffmpeg(&args, None).await
}

fn image_filter_args(filter: String) -> Vec<String> {
    ["-i", "pipe:0", "-vf", &filter, "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "pipe:1"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// image-to-image: the hue turned by `strength` × 360° (and by 37° more per extra image).
pub async fn image_to_image(image: Bytes, strength: f64, index: u32) -> Result<Bytes, CpuError> {
    let degrees = (strength.clamp(0.0, 1.0) * 360.0 + 37.0 * index as f64) % 360.0;
    ffmpeg(&image_filter_args(format!("hue=h={degrees:.1}")), Some(image)).await
}

/// upscale: ×4 with the Lanczos scaler.
pub async fn upscale(image: Bytes, width: u64, height: u64) -> Result<Bytes, CpuError> {
    if width > MAX_UPSCALE_INPUT || height > MAX_UPSCALE_INPUT {
        return Err(CpuError(format!(
            "upscale container returned 400: input {width}x{height} is larger than {MAX_UPSCALE_INPUT}x{MAX_UPSCALE_INPUT}"
        )));
    }
    ffmpeg(&image_filter_args("scale=iw*4:ih*4:flags=lanczos".into()), Some(image)).await
}

/// image-to-video: 25 frames at `fps` of the image scaled to `width`×`height` (rounded
/// down to even), fading in; H.264 in MP4.
pub async fn image_to_video(image: Bytes, width: u32, height: u32, fps: u32) -> Result<Bytes, CpuError> {
    let (w, h) = ((width.max(16) / 2) * 2, (height.max(16) / 2) * 2);
    let out = TempFile::new("mp4");
    let args: Vec<String> = [
        "-loop",
        "1",
        "-i",
        "pipe:0",
        "-vf",
        &format!("scale={w}:{h},format=yuv420p,fade=in:0:12"),
        "-frames:v",
        "25",
        "-r",
        &fps.clamp(1, 60).to_string(),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-movflags",
        "+faststart",
        "-y",
        &out.path(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ffmpeg(&args, Some(image)).await?;
    std::fs::read(&out.0).map(Bytes::from).map_err(|e| CpuError(format!("reading the video: {e}")))
}

/// Seconds of audio in `audio` (any format ffmpeg reads, raw PCM WAV included), found by
/// decoding it to 16 kHz mono. `None` when it holds no decodable audio.
pub async fn audio_seconds(audio: Bytes) -> Result<f64, CpuError> {
    let args: Vec<String> = ["-i", "pipe:0", "-vn", "-ac", "1", "-ar", "16000", "-f", "s16le", "pipe:1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let pcm = ffmpeg(&args, Some(audio)).await?;
    Ok(pcm.len() as f64 / 32_000.0)
}

/// audio-to-text: a transcript naming the duration, in chunks of at most 5 s.
pub fn transcript(seconds: f64) -> TextResponse {
    let mut chunks = Vec::new();
    let mut start = 0.0;
    let mut n = 1;
    while start < seconds {
        let end = (start + 5.0).min(seconds);
        chunks.push(TextChunk {
            text: format!(" Chunk {n}."),
            timestamp: vec![serde_json::json!(round2(start)), serde_json::json!(round2(end))],
        });
        start = end;
        n += 1;
    }
    let text = format!("Sluice transcript of {seconds:.2} seconds of audio.");
    TextResponse { text, chunks }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// segment-anything-2: one `height`×`width` mask of 0/1 — the box `[x0, y0, x1, y1]` if
/// given, else a disc around the first point, else around the centre.
pub fn masks(width: u64, height: u64, boxed: Option<[f64; 4]>, point: Option<[f64; 2]>) -> MasksResponse {
    let (w, h) = (width.min(4096) as usize, height.min(4096) as usize);
    let inside: Box<dyn Fn(usize, usize) -> bool> = match (boxed, point) {
        (Some([x0, y0, x1, y1]), _) => {
            Box::new(move |x, y| (x as f64) >= x0 && (x as f64) <= x1 && (y as f64) >= y0 && (y as f64) <= y1)
        }
        (None, p) => {
            let [cx, cy] = p.unwrap_or([w as f64 / 2.0, h as f64 / 2.0]);
            let r = (w.min(h) as f64 / 4.0).max(1.0);
            Box::new(move |x, y| (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2) <= r * r)
        }
    };
    let mut m = String::with_capacity(w * h * 2 + h * 3 + 4);
    m.push_str("[[");
    for y in 0..h {
        if y > 0 {
            m.push(',');
        }
        m.push('[');
        for x in 0..w {
            if x > 0 {
                m.push(',');
            }
            m.push(if inside(x, y) { '1' } else { '0' });
        }
        m.push(']');
    }
    m.push_str("]]");
    MasksResponse { masks: m, scores: "[0.95]".into(), logits: "[[[0.0]]]".into() }
}

/// image-to-text: the image's size and mean colour, and the prompt if any.
pub async fn caption(image: Bytes, width: u64, height: u64, prompt: &str) -> Result<String, CpuError> {
    let args: Vec<String> = [
        "-i",
        "pipe:0",
        "-vf",
        "scale=1:1:flags=area",
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "pipe:1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rgb = ffmpeg(&args, Some(image)).await?;
    let colour = match rgb.get(..3) {
        Some([r, g, b]) => format!("#{r:02x}{g:02x}{b:02x}"),
        _ => "an unknown colour".into(),
    };
    let mut text = format!("an image of {width}x{height} pixels, mostly {colour}");
    if !prompt.trim().is_empty() {
        text.push_str(&format!(" ({})", prompt.trim()));
    }
    Ok(text)
}

/// text-to-speech: a 16 kHz mono WAV tone, 70 ms per byte of text (0.5–60 s), pitched
/// by the text.
pub async fn speech(text: &str) -> Result<Bytes, CpuError> {
    let seconds = (text.len() as f64 * 0.07).clamp(0.5, 60.0);
    let pitch = 220 + seed_of(text) % 440;
    let out = TempFile::new("wav");
    let args: Vec<String> = [
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency={pitch}:duration={seconds:.2}:sample_rate=16000"),
        "-ac",
        "1",
        "-y",
        &out.path(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ffmpeg(&args, None).await?;
    std::fs::read(&out.0).map(Bytes::from).map_err(|e| CpuError(format!("reading the audio: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_and_seeds() {
        assert_eq!(wrap("a cat on a mat", 6), "a cat\non a\nmat");
        assert_eq!(wrap("abcdefgh", 3), "abc\ndef\ngh");
        assert_eq!(seed_of("a cat"), seed_of("a cat"));
        assert_ne!(seed_of("a cat"), seed_of("a dog"));
        assert!(seed_of("x") >= 0);
    }

    #[test]
    fn transcript_chunks_cover_the_audio() {
        let t = transcript(12.5);
        assert_eq!(t.chunks.len(), 3);
        assert_eq!(t.chunks[2].timestamp, vec![serde_json::json!(10.0), serde_json::json!(12.5)]);
        assert!(t.text.contains("12.50 seconds"));
    }

    #[test]
    fn mask_shapes() {
        let m = masks(4, 2, Some([1.0, 0.0, 2.0, 0.0]), None);
        assert_eq!(m.masks, "[[[0,1,1,0],[0,0,0,0]]]");
        let parsed: Vec<Vec<Vec<u8>>> = serde_json::from_str(&masks(5, 5, None, Some([0.0, 0.0])).masks).unwrap();
        assert_eq!(parsed[0][0][0], 1);
        assert_eq!(parsed[0][4][4], 0);
    }
}
