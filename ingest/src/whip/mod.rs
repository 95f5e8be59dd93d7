//! WHIP ingest (RFC 9725), the decisions without IO: [`sdp`] reads a publisher's offer
//! and chooses the codecs Sluice takes (H.264 packetization mode 1, Opus), refusing
//! others with the reason; [`session`] keeps the session resources (`Location`, `ETag`,
//! trickle `PATCH`, `DELETE`, connect and idle timeouts), for WHEP viewers too; [`ice`]
//! reads the configured STUN and TURN servers. The WebRTC media path (GStreamer
//! `webrtcbin`) and the HTTP routes build on these.
pub mod ice;
pub mod sdp;
pub mod session;
