//! Publishing an FLV file over RTMP (`sluice publish`, and the demo's built-in encoder).

use std::time::Duration;

use bytes::Bytes;
use ingest::flv::{FlvFileReader, FlvTag, TAG_SCRIPT, TAG_VIDEO};
use ingest::publisher::{RtmpPublisher, RtmpUrl};
use tokio::time::Instant;

/// Why a file could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishFileError {
    /// The file is not FLV.
    #[error("not a usable FLV file: {0}")]
    Flv(#[from] ingest::FlvError),
    /// Connecting or sending failed.
    #[error("publishing to {addr}: {source}")]
    Rtmp {
        /// The server.
        addr: String,
        /// Why.
        #[source]
        source: ingest::publisher::PublishError,
    },
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Pace tags by their timestamps, as a live encoder would.
    pub realtime: bool,
    /// How many times to send the file (None: forever). Timestamps keep rising across
    /// loops, so the stream is one continuous timeline.
    pub loops: Option<u64>,
}

/// Reads the tags of an FLV file.
pub fn read_flv(data: Bytes) -> Result<Vec<FlvTag>, PublishFileError> {
    Ok(FlvFileReader::new(data)?.collect::<Result<Vec<_>, _>>()?)
}

/// Duration of a tag list: last timestamp plus one video frame interval.
pub fn clip_duration_ms(tags: &[FlvTag]) -> u32 {
    let video: Vec<u32> = tags.iter().filter(|t| t.tag_type == TAG_VIDEO).map(|t| t.timestamp).collect();
    let frame = match video.as_slice() {
        [.., a, b] if b > a => b - a,
        _ => 33,
    };
    tags.iter().map(|t| t.timestamp).max().unwrap_or(0) + frame
}

/// Publishes `tags` to `url`. Returns the number of tags sent.
pub async fn publish_tags(tags: &[FlvTag], url: &RtmpUrl, opts: &PublishOptions) -> Result<u64, PublishFileError> {
    let rtmp = |source| PublishFileError::Rtmp { addr: url.addr.clone(), source };
    let mut publisher = RtmpPublisher::connect(url).await.map_err(rtmp)?;
    let clip = clip_duration_ms(tags);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut round = 0u64;
    while opts.loops.is_none_or(|n| round < n) {
        let offset = round as u32 * clip;
        for tag in tags {
            if round > 0 && tag.tag_type == TAG_SCRIPT {
                continue;
            }
            let ts = tag.timestamp.wrapping_add(offset);
            if opts.realtime {
                tokio::time::sleep_until(started + Duration::from_millis(ts as u64)).await;
            }
            publisher.send_tag(tag.tag_type, ts, &tag.body).await.map_err(rtmp)?;
            sent += 1;
        }
        round += 1;
    }
    publisher.finish().await.map_err(rtmp)?;
    Ok(sent)
}
