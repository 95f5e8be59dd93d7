//! The trickle protocol's channel state, without IO (spec `trickle-and-live-ai.md` §1):
//! named channels of numbered segments kept in a ring of [`RING`], whose bytes can be read
//! while they are still being written.
//!
//! A [`TrickleServer`] holds every channel and the memory bounds. An HTTP shell calls:
//! * [`TrickleServer::create`] for `POST {ch}`, [`TrickleServer::delete`] for `DELETE {ch}`,
//!   [`TrickleServer::close_segment`] for `DELETE {ch}/{seq}`, [`TrickleServer::next`] for
//!   `GET {ch}/next`;
//! * [`TrickleServer::open_write`], then [`TrickleServer::write`] per body chunk and
//!   [`TrickleServer::finish_write`] at the end of a `POST {ch}/{seq}`;
//! * [`TrickleServer::open_read`] once per `GET {ch}/{seq}`, then [`TrickleServer::read`]
//!   from an offset until it reports the end; [`ReadStep::Pending`] means "wait for the
//!   channel's next change" (the shell wakes readers whenever a call reports one);
//! * [`TrickleServer::expire_idle`] from a timer.
//!
//! Time comes in as `now`; bytes are `Bytes` handles, never copied here.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Segments kept per channel (go-livepeer `maxSegmentsPerStream`).
pub const RING: usize = 5;
/// A channel with no new segment for this long is closed (go-livepeer default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// `Lp-Trickle-Seq`: the index the server used.
pub const SEQ_HEADER: &str = "Lp-Trickle-Seq";
/// `Lp-Trickle-Latest`: the server's next write index.
pub const LATEST_HEADER: &str = "Lp-Trickle-Latest";
/// `Lp-Trickle-Closed: terminated`: the channel is closed.
pub const CLOSED_HEADER: &str = "Lp-Trickle-Closed";
/// The value of [`CLOSED_HEADER`].
pub const CLOSED_VALUE: &str = "terminated";
/// `Lp-Trickle-Reset`: a publisher restarted; older segments are closed.
pub const RESET_HEADER: &str = "Lp-Trickle-Reset";
/// `Expect-Content`: the MIME type of a channel being created.
pub const EXPECT_CONTENT_HEADER: &str = "Expect-Content";
/// Status for a segment that is not (or no longer) in the ring of an open channel.
pub const STATUS_NOT_PRESENT: u16 = 470;

/// Highest index accepted (2^53): clients keep indexes in signed 64-bit integers and
/// floats, and `seq + 1` must not overflow anywhere.
pub const MAX_SEQ: u64 = 1 << 53;

/// Memory and count bounds of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Channels at once.
    pub max_channels: usize,
    /// Bytes in one segment.
    pub max_segment_bytes: usize,
    /// Bytes held by all channels together.
    pub max_total_bytes: usize,
}

impl Default for Limits {
    /// 1,000 channels; 32 MiB per segment (a 2 s segment at 100 Mb/s); 1 GiB in all.
    fn default() -> Self {
        Limits { max_channels: 1000, max_segment_bytes: 32 << 20, max_total_bytes: 1 << 30 }
    }
}

/// A refused trickle request, with the HTTP status the Go server answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrickleError {
    /// No such channel (404).
    #[error("channel not found")]
    NoChannel,
    /// Channel creation is not allowed here, or the channel limit is reached (404 / 503).
    #[error("channel cannot be created: {0}")]
    CannotCreate(&'static str),
    /// A DELETE of a segment the slot does not hold (400).
    #[error("invalid segment")]
    BadSegment,
    /// A segment would exceed the per-segment bound (413).
    #[error("segment larger than {0} bytes")]
    SegmentTooLarge(usize),
    /// The server's memory bound is reached (503).
    #[error("trickle server memory limit reached")]
    Full,
}

impl TrickleError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            TrickleError::NoChannel => 404,
            TrickleError::CannotCreate(_) => 404,
            TrickleError::BadSegment => 400,
            TrickleError::SegmentTooLarge(_) => 413,
            TrickleError::Full => 503,
        }
    }
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    chunks: Vec<Bytes>,
    /// Where each chunk ends (cumulative), so a read from an offset finds its chunk by
    /// binary search rather than walking the segment.
    ends: Vec<usize>,
    len: usize,
    closed: bool,
}

#[derive(Debug)]
struct Channel {
    mime: String,
    ring: [Option<Segment>; RING],
    next_write: u64,
    closed: bool,
    last_write: Instant,
    bytes: usize,
}

impl Channel {
    fn slot(seq: u64) -> usize {
        (seq % RING as u64) as usize
    }

    fn holds(&self, seq: u64) -> bool {
        self.ring[Self::slot(seq)].as_ref().is_some_and(|s| s.seq == seq)
    }

    /// Puts an empty segment `seq` in its slot, closing whatever was there.
    fn fresh(&mut self, seq: u64) -> usize {
        let slot = Self::slot(seq);
        let freed = self.ring[slot].take().map_or(0, |s| s.len);
        self.bytes -= freed;
        self.ring[slot] = Some(Segment { seq, chunks: Vec::new(), ends: Vec::new(), len: 0, closed: false });
        freed
    }

    /// `-1` is the next write, `-2` the current one (the last started, or 0).
    fn resolve(&self, seq: i64) -> Option<u64> {
        match seq {
            -1 => Some(self.next_write),
            -2 => Some(self.next_write.saturating_sub(1)),
            s if s >= 0 => Some(s as u64),
            _ => None,
        }
    }
}

/// Where a GET stands after [`TrickleServer::open_read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStart {
    /// Segment `seq` exists (or was created to wait on): read it from offset 0.
    /// `latest` is set when the segment is not the head (`Lp-Trickle-Latest`).
    Segment {
        /// The resolved index.
        seq: u64,
        /// The channel's MIME type.
        mime: String,
        /// The next write index, when `seq` is behind it.
        latest: Option<u64>,
        /// This GET made the segment (a preconnect), taking the ring slot of an older one
        /// whose readers must learn that it is gone.
        fresh: bool,
    },
    /// Not in the ring (too old or too far ahead): 470, or 200 + closed when the channel
    /// is closed.
    Missing {
        /// The requested (resolved) index.
        seq: u64,
        /// The next write index.
        latest: u64,
        /// The channel is closed.
        closed: bool,
    },
}

/// One step of reading a segment from an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStep {
    /// The bytes from the offset to the end of the chunk that holds it (a handle, no
    /// copy); read again from `offset + len` for the rest.
    Data(Bytes),
    /// Nothing new yet: wait for the channel to change.
    Pending,
    /// The segment is complete and everything was read; `closed` when the channel is.
    End {
        /// The channel is closed.
        closed: bool,
        /// The next write index.
        latest: u64,
    },
    /// The segment was overwritten or the channel deleted while being read: the body
    /// ends here, truncated.
    Gone,
}

/// How a POST ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteEnd {
    /// The index written.
    pub seq: u64,
    /// Bytes the segment holds.
    pub len: usize,
    /// The channel is closed (for `Lp-Trickle-Closed`).
    pub closed: bool,
}

/// Every channel of one trickle server, and its bounds.
#[derive(Debug)]
pub struct TrickleServer {
    channels: HashMap<String, Channel>,
    /// Deleted channels, closed, kept for [`DELETED_GRACE`] so that readers in the middle
    /// of a segment still get the rest of it (as a Go reader holding the segment does);
    /// to everything else they are gone.
    deleted: HashMap<String, (Channel, Instant)>,
    limits: Limits,
    auto_create: bool,
    total_bytes: usize,
}

/// How long a deleted channel's segments stay readable by the readers already on them.
pub const DELETED_GRACE: Duration = Duration::from_secs(5);

impl TrickleServer {
    /// A server with `limits`; with `auto_create` a POST to an unknown channel creates it
    /// (go-livepeer's orchestrator has it off).
    pub fn new(limits: Limits, auto_create: bool) -> Self {
        TrickleServer { channels: HashMap::new(), deleted: HashMap::new(), limits, auto_create, total_bytes: 0 }
    }

    /// True when a POST may create an unknown channel.
    pub fn auto_create(&self) -> bool {
        self.auto_create
    }

    /// Channels held.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// True when no channel exists.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Segments and bytes channel `name` holds.
    pub fn held(&self, name: &str) -> Option<(usize, usize)> {
        self.channels
            .get(name)
            .or_else(|| self.deleted.get(name).map(|(c, _)| c))
            .map(|c| (c.ring.iter().flatten().count(), c.bytes))
    }

    /// Bytes held by every channel.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Creates channel `name` with MIME type `mime` (200 if it already exists).
    pub fn create(&mut self, name: &str, mime: &str, now: Instant) -> Result<(), TrickleError> {
        if self.channels.contains_key(name) {
            return Ok(());
        }
        // A channel made again under a deleted one's name starts afresh.
        if let Some((old, _)) = self.deleted.remove(name) {
            self.total_bytes -= old.bytes;
        }
        if self.channels.len() >= self.limits.max_channels {
            return Err(TrickleError::CannotCreate("channel limit reached"));
        }
        self.channels.insert(
            name.to_owned(),
            Channel {
                mime: mime.to_owned(),
                ring: Default::default(),
                next_write: 0,
                closed: false,
                last_write: now,
                bytes: 0,
            },
        );
        Ok(())
    }

    /// Closes and removes channel `name`: readers see their segments end.
    /// Deletes channel `name` at `now`: it is gone for every new request (404), its
    /// segments end (waiting readers get the end with `closed`), and for [`DELETED_GRACE`]
    /// the segments it holds stay readable: the rest of one being read, and any of them
    /// asked for anew (a subscriber a segment behind the DELETE).
    pub fn delete(&mut self, name: &str, now: Instant) -> Result<(), TrickleError> {
        let mut ch = self.channels.remove(name).ok_or(TrickleError::NoChannel)?;
        ch.closed = true;
        for s in ch.ring.iter_mut().flatten() {
            s.closed = true;
        }
        if let Some((old, _)) = self.deleted.insert(name.to_owned(), (ch, now)) {
            self.total_bytes -= old.bytes;
        }
        Ok(())
    }

    /// Closes segment `seq` of `name` (wakes readers waiting on a dropped segment).
    pub fn close_segment(&mut self, name: &str, seq: u64) -> Result<(), TrickleError> {
        let ch = self.channels.get_mut(name).ok_or(TrickleError::NoChannel)?;
        match ch.ring[Channel::slot(seq)].as_mut() {
            Some(s) if s.seq == seq => {
                s.closed = true;
                Ok(())
            }
            _ => Err(TrickleError::BadSegment),
        }
    }

    /// The state of segment `seq` of `name`: `None` when the channel is gone; else whether
    /// the slot still holds it, and if so whether it is closed and how long it is.
    pub fn segment_state(&self, name: &str, seq: u64) -> Option<Option<(bool, usize)>> {
        let ch = self.channels.get(name)?;
        Some(ch.ring[Channel::slot(seq)].as_ref().filter(|s| s.seq == seq).map(|s| (s.closed, s.len)))
    }

    /// True when channel `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        self.channels.contains_key(name)
    }

    /// Where a reader whose segment was overwritten catches up: the next write index, or
    /// the newest segment in the ring if a publisher has opened one that has no byte yet
    /// (it is what the reader should follow); and whether the channel is closed.
    pub fn catch_up(&self, name: &str) -> Result<(u64, bool), TrickleError> {
        let ch = self.channels.get(name).ok_or(TrickleError::NoChannel)?;
        let newest = ch.ring.iter().flatten().map(|s| s.seq).max().unwrap_or(0);
        Ok((ch.next_write.max(newest), ch.closed))
    }

    /// `GET {ch}/next`: the next write index and whether the channel is closed.
    pub fn next(&self, name: &str) -> Result<(u64, bool), TrickleError> {
        let ch = self.channels.get(name).ok_or(TrickleError::NoChannel)?;
        Ok((ch.next_write, ch.closed))
    }

    /// Starts `POST {ch}/{seq}`: resolves `-1`, reuses the slot if it holds `seq` (a
    /// repeated POST appends), else puts a new segment there. With `reset`, every
    /// segment below `seq` is closed first. Creates the channel when auto-creation is on.
    pub fn open_write(
        &mut self,
        name: &str,
        seq: i64,
        reset: bool,
        mime: &str,
        now: Instant,
    ) -> Result<u64, TrickleError> {
        if !self.channels.contains_key(name) {
            if !self.auto_create {
                return Err(TrickleError::NoChannel);
            }
            self.create(name, mime, now)?;
        }
        let ch = self.channels.get_mut(name).ok_or(TrickleError::NoChannel)?;
        let seq = ch.resolve(seq).filter(|&s| seq >= -1 && s < MAX_SEQ).ok_or(TrickleError::BadSegment)?;
        if reset {
            for s in ch.ring.iter_mut().flatten() {
                if s.seq < seq {
                    s.closed = true;
                }
            }
        }
        match ch.ring[Channel::slot(seq)].as_mut() {
            // A repeated POST to the same index appends to it (pytrickle sends a segment
            // as several POSTs when it writes with no pause), reopening it if it ended.
            Some(s) if s.seq == seq => s.closed = false,
            _ => {
                let freed = ch.fresh(seq);
                self.total_bytes -= freed;
            }
        }
        Ok(seq)
    }

    /// Appends a body chunk to segment `seq` of `name`. The first byte makes `seq + 1` the
    /// next write index. A segment overwritten meanwhile takes nothing (`Ok(false)`).
    pub fn write(&mut self, name: &str, seq: u64, chunk: Bytes, now: Instant) -> Result<bool, TrickleError> {
        if chunk.is_empty() {
            return Ok(true);
        }
        if self.total_bytes + chunk.len() > self.limits.max_total_bytes {
            return Err(TrickleError::Full);
        }
        let max = self.limits.max_segment_bytes;
        let ch = self.channels.get_mut(name).ok_or(TrickleError::NoChannel)?;
        let Some(s) = ch.ring[Channel::slot(seq)].as_mut().filter(|s| s.seq == seq && !s.closed) else {
            return Ok(false);
        };
        if s.len + chunk.len() > max {
            s.closed = true;
            return Err(TrickleError::SegmentTooLarge(max));
        }
        if s.len == 0 {
            ch.next_write = seq + 1;
            ch.last_write = now;
        }
        s.len += chunk.len();
        ch.bytes += chunk.len();
        self.total_bytes += chunk.len();
        s.ends.push(s.len);
        s.chunks.push(chunk);
        Ok(true)
    }

    /// Ends `POST {ch}/{seq}`: the segment closes. An empty segment still moves the next
    /// write index past it (how a waiting preconnect learns the channel ended).
    pub fn finish_write(&mut self, name: &str, seq: u64) -> Result<WriteEnd, TrickleError> {
        let ch = self.channels.get_mut(name).ok_or(TrickleError::NoChannel)?;
        let mut len = 0;
        if let Some(s) = ch.ring[Channel::slot(seq)].as_mut().filter(|s| s.seq == seq) {
            s.closed = true;
            len = s.len;
        }
        if len == 0 {
            ch.next_write = ch.next_write.max(seq + 1);
        }
        Ok(WriteEnd { seq, len, closed: ch.closed })
    }

    /// Starts `GET {ch}/{seq}`: resolves `-1`/`-2`; creates an empty segment to wait on
    /// when `seq` is the next write (a preconnect).
    pub fn open_read(&mut self, name: &str, seq: i64) -> Result<ReadStart, TrickleError> {
        let Some(ch) = self.channels.get_mut(name) else {
            // A deleted channel's segments stay readable for its grace by new requests
            // too: a subscriber one segment behind the publisher's DELETE still reads the
            // end of the stream. Nothing new is waited on.
            let (ch, _) = self.deleted.get(name).ok_or(TrickleError::NoChannel)?;
            let requested = ch.resolve(seq).filter(|&s| ch.holds(s)).ok_or(TrickleError::NoChannel)?;
            let latest = (requested != ch.next_write).then_some(ch.next_write);
            return Ok(ReadStart::Segment { seq: requested, mime: ch.mime.clone(), latest, fresh: false });
        };
        let requested = ch.resolve(seq).filter(|&s| s < MAX_SEQ).ok_or(TrickleError::BadSegment)?;
        let latest = ch.next_write;
        let fresh = !ch.holds(requested);
        if fresh {
            let preconnect = requested == latest || (latest == 0 && requested == 1);
            if preconnect && !ch.closed {
                let freed = ch.fresh(requested);
                self.total_bytes -= freed;
            } else {
                return Ok(ReadStart::Missing { seq: requested, latest, closed: ch.closed });
            }
        }
        let latest = (requested != latest).then_some(latest);
        Ok(ReadStart::Segment { seq: requested, mime: ch.mime.clone(), latest, fresh })
    }

    /// Reads segment `seq` of `name` from byte `offset`.
    pub fn read(&self, name: &str, seq: u64, offset: usize) -> ReadStep {
        let Some(ch) = self.channels.get(name).or_else(|| self.deleted.get(name).map(|(c, _)| c)) else {
            return ReadStep::Gone;
        };
        let Some(s) = ch.ring[Channel::slot(seq)].as_ref().filter(|s| s.seq == seq) else { return ReadStep::Gone };
        if offset < s.len {
            let i = s.ends.partition_point(|&end| end <= offset);
            let start = s.ends[i] - s.chunks[i].len();
            return ReadStep::Data(if offset == start {
                s.chunks[i].clone()
            } else {
                s.chunks[i].slice(offset - start..)
            });
        }
        if s.closed || ch.closed {
            ReadStep::End { closed: ch.closed, latest: ch.next_write }
        } else {
            ReadStep::Pending
        }
    }

    /// Closes channels with no new segment for `timeout` (names starting with `_` are
    /// kept); returns their names.
    pub fn expire_idle(&mut self, now: Instant, timeout: Duration) -> Vec<String> {
        let gone: Vec<String> = self
            .channels
            .iter()
            .filter(|(name, ch)| !name.starts_with('_') && now.saturating_duration_since(ch.last_write) >= timeout)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            let _ = self.delete(name, now);
        }
        self.purge_deleted(now);
        gone
    }

    /// Frees deleted channels whose grace has passed.
    pub fn purge_deleted(&mut self, now: Instant) {
        let total = &mut self.total_bytes;
        self.deleted.retain(|_, (ch, at)| {
            let keep = now.saturating_duration_since(*at) < DELETED_GRACE;
            if !keep {
                *total -= ch.bytes;
            }
            keep
        });
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one real instant as their epoch
mod tests {
    use super::*;

    fn server() -> (TrickleServer, Instant) {
        let mut s = TrickleServer::new(Limits::default(), false);
        let t0 = Instant::now();
        s.create("ch", "video/MP2T", t0).unwrap();
        (s, t0)
    }

    fn publish(s: &mut TrickleServer, seq: i64, body: &'static [u8], t: Instant) -> u64 {
        let seq = s.open_write("ch", seq, false, "", t).unwrap();
        s.write("ch", seq, Bytes::from_static(body), t).unwrap();
        s.finish_write("ch", seq).unwrap();
        seq
    }

    #[test]
    fn unknown_channels_and_auto_create() {
        let (mut s, t0) = server();
        assert_eq!(s.open_write("nope", 0, false, "", t0), Err(TrickleError::NoChannel));
        assert_eq!(s.open_read("nope", 0), Err(TrickleError::NoChannel));
        assert_eq!(TrickleError::NoChannel.status(), 404);
        let mut auto = TrickleServer::new(Limits::default(), true);
        assert_eq!(auto.open_write("new", -1, false, "application/json", t0), Ok(0));
        assert!(matches!(auto.open_read("new", 0), Ok(ReadStart::Segment { mime, .. }) if mime == "application/json"));
    }

    #[test]
    fn preconnected_reader_waits_then_streams_as_written() {
        let (mut s, t0) = server();
        // A GET on the next write blocks (Pending) until the first byte.
        let ReadStart::Segment { seq, latest, .. } = s.open_read("ch", -1).unwrap() else { panic!() };
        assert_eq!((seq, latest), (0, None));
        assert_eq!(s.read("ch", 0, 0), ReadStep::Pending);
        let w = s.open_write("ch", 0, false, "", t0).unwrap();
        s.write("ch", w, Bytes::from_static(b"abc"), t0).unwrap();
        assert_eq!(s.read("ch", 0, 0), ReadStep::Data(Bytes::from_static(b"abc")));
        assert_eq!(s.read("ch", 0, 3), ReadStep::Pending, "still being written");
        s.write("ch", w, Bytes::from_static(b"de"), t0).unwrap();
        assert_eq!(s.read("ch", 0, 1), ReadStep::Data(Bytes::from_static(b"bc")), "to the end of the chunk");
        assert_eq!(s.read("ch", 0, 3), ReadStep::Data(Bytes::from_static(b"de")));
        assert_eq!(s.next("ch").unwrap(), (1, false), "first byte moved the next write");
        s.finish_write("ch", w).unwrap();
        assert_eq!(s.read("ch", 0, 5), ReadStep::End { closed: false, latest: 1 });
    }

    #[test]
    fn ring_of_five_then_470_with_latest() {
        let (mut s, t0) = server();
        for i in 0..7 {
            publish(&mut s, i, b"x", t0);
        }
        assert_eq!(s.open_read("ch", 1).unwrap(), ReadStart::Missing { seq: 1, latest: 7, closed: false });
        assert!(matches!(s.open_read("ch", 2).unwrap(), ReadStart::Segment { seq: 2, latest: Some(7), .. }));
        assert!(matches!(s.open_read("ch", -2).unwrap(), ReadStart::Segment { seq: 6, .. }));
        assert!(matches!(s.open_read("ch", 9).unwrap(), ReadStart::Missing { seq: 9, .. }), "too far ahead");
        assert_eq!(s.total_bytes(), 5, "evicted segments free their bytes");
    }

    #[test]
    fn repeated_posts_to_one_seq_append() {
        let (mut s, t0) = server();
        let a = s.open_write("ch", 0, false, "", t0).unwrap();
        s.write("ch", a, Bytes::from_static(b"ab"), t0).unwrap();
        s.finish_write("ch", a).unwrap();
        let b = s.open_write("ch", 0, false, "", t0).unwrap();
        assert_eq!(a, b);
        // The Go server appends to the segment the slot still holds.
        assert!(s.write("ch", b, Bytes::from_static(b"cd"), t0).unwrap());
        s.finish_write("ch", b).unwrap();
        let (ReadStep::Data(a), ReadStep::Data(b)) = (s.read("ch", 0, 0), s.read("ch", 0, 2)) else { panic!() };
        assert_eq!([a, b].concat(), b"abcd".to_vec(), "the second POST appended");
        assert_eq!(s.read("ch", 0, 4), ReadStep::End { closed: false, latest: 1 });
    }

    #[test]
    fn reset_closes_older_segments_and_delete_ends_readers() {
        let (mut s, t0) = server();
        let w = s.open_write("ch", 0, false, "", t0).unwrap();
        s.write("ch", w, Bytes::from_static(b"a"), t0).unwrap();
        // A publisher restarts at 3 with Lp-Trickle-Reset: segment 0 (abandoned) closes.
        s.open_write("ch", 3, true, "", t0).unwrap();
        assert_eq!(s.total_bytes(), 1);
        assert_eq!(s.read("ch", 0, 1), ReadStep::End { closed: false, latest: 1 });
        // DELETE: a blocked reader's segment is gone.
        s.open_read("ch", -1).unwrap();
        s.delete("ch", t0).unwrap();
        assert!(matches!(s.read("ch", 1, 0), ReadStep::End { closed: true, .. }), "a waiting reader ends, closed");
        assert_eq!(s.delete("ch", t0), Err(TrickleError::NoChannel));
        assert!(
            matches!(s.open_read("ch", 0), Ok(ReadStart::Segment { seq: 0, fresh: false, .. })),
            "a held segment is still served to a new request"
        );
        assert_eq!(s.read("ch", 0, 0), ReadStep::Data(Bytes::from_static(b"a")));
        assert_eq!(s.open_read("ch", 7), Err(TrickleError::NoChannel), "nothing new is waited on");
        // The waited-on segment 1 is held, empty and closed: a new reader of it ends at once.
        assert!(matches!(s.open_read("ch", -1), Ok(ReadStart::Segment { seq: 1, .. })));
        assert!(matches!(s.read("ch", 1, 0), ReadStep::End { closed: true, .. }));
        s.purge_deleted(t0 + DELETED_GRACE);
        assert_eq!(s.read("ch", 1, 0), ReadStep::Gone);
        assert_eq!(s.total_bytes(), 0);
    }

    #[test]
    fn an_overwritten_reader_catches_up_to_the_segment_that_took_its_slot() {
        let (mut s, t0) = server();
        assert!(matches!(s.open_read("ch", -1), Ok(ReadStart::Segment { seq: 0, .. })));
        // A publisher opens 5 (slot 0) and has not written yet: the reader of 0 is told 5.
        let w = s.open_write("ch", 5, false, "", t0).unwrap();
        assert_eq!(s.read("ch", 0, 0), ReadStep::Gone);
        assert_eq!(s.catch_up("ch").unwrap(), (5, false));
        s.write("ch", w, Bytes::from_static(b"x"), t0).unwrap();
        assert_eq!(s.catch_up("ch").unwrap(), (6, false), "once 5 has bytes, the next write");
    }

    #[test]
    fn a_reader_in_the_middle_of_a_segment_gets_the_rest_after_a_delete() {
        let (mut s, t0) = server();
        let w = s.open_write("ch", 0, false, "", t0).unwrap();
        s.write("ch", w, Bytes::from_static(b"abc"), t0).unwrap();
        s.write("ch", w, Bytes::from_static(b"de"), t0).unwrap();
        assert_eq!(s.read("ch", 0, 0), ReadStep::Data(Bytes::from_static(b"abc")));
        // The publisher finishes and deletes the channel before the reader is done.
        s.finish_write("ch", w).unwrap();
        s.delete("ch", t0).unwrap();
        assert_eq!(s.read("ch", 0, 3), ReadStep::Data(Bytes::from_static(b"de")), "the last bytes are not lost");
        assert_eq!(s.read("ch", 0, 5), ReadStep::End { closed: true, latest: 1 });
        // A channel made again under the name starts afresh.
        s.create("ch", "video/MP2T", t0).unwrap();
        assert_eq!(s.read("ch", 0, 0), ReadStep::Gone);
        assert_eq!(s.total_bytes(), 0);
    }

    #[test]
    fn empty_post_advances_and_idle_channels_expire() {
        let (mut s, t0) = server();
        let w = s.open_write("ch", -1, false, "", t0).unwrap();
        let end = s.finish_write("ch", w).unwrap();
        assert_eq!((end.seq, end.len), (0, 0));
        assert_eq!(s.next("ch").unwrap().0, 1);
        s.create("_changes", "application/json", t0).unwrap();
        assert!(s.expire_idle(t0 + IDLE_TIMEOUT - Duration::from_secs(1), IDLE_TIMEOUT).is_empty());
        assert_eq!(s.expire_idle(t0 + IDLE_TIMEOUT, IDLE_TIMEOUT), vec!["ch".to_owned()]);
        assert_eq!(s.len(), 1, "names starting with _ are kept");
    }

    #[test]
    fn bounds_per_segment_and_in_total() {
        let limits = Limits { max_channels: 2, max_segment_bytes: 4, max_total_bytes: 6 };
        let mut s = TrickleServer::new(limits, true);
        let t0 = Instant::now();
        let a = s.open_write("a", 0, false, "", t0).unwrap();
        assert_eq!(s.write("a", a, Bytes::from_static(b"12345"), t0), Err(TrickleError::SegmentTooLarge(4)));
        let b = s.open_write("b", 0, false, "", t0).unwrap();
        s.write("b", b, Bytes::from_static(b"1234"), t0).unwrap();
        let a1 = s.open_write("a", 1, false, "", t0).unwrap();
        s.write("a", a1, Bytes::from_static(b"12"), t0).unwrap();
        assert_eq!(s.write("a", a1, Bytes::from_static(b"1"), t0), Err(TrickleError::Full));
        assert_eq!(s.open_write("c", 0, false, "", t0), Err(TrickleError::CannotCreate("channel limit reached")));
    }
}
