//! The `net` protobuf package of go-livepeer's `lp_rpc.proto`, the messages a gateway
//! exchanges with an orchestrator on the transcoding path. Field numbers, types and enum
//! values follow spec/livepeer-transcode-protocol.md §2 exactly; `tests::wire_field_numbers`
//! checks the encoded tags.
//!
//! Written with prost's derive macros rather than generated at build time, so building needs
//! no `protoc`.
#![allow(missing_docs)] // field names and meanings are the spec's tables (§2.1–§2.13)

use std::collections::HashMap;

/// §2.1
#[derive(Clone, PartialEq, prost::Message)]
pub struct OrchestratorRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub address: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pub capabilities: Option<Capabilities>,
    #[prost(bool, tag = "4")]
    pub ignore_capacity_check: bool,
}

/// §2.2
#[derive(Clone, PartialEq, prost::Message)]
pub struct OrchestratorInfo {
    #[prost(string, tag = "1")]
    pub transcoder: String,
    #[prost(message, optional, tag = "2")]
    pub ticket_params: Option<TicketParams>,
    #[prost(message, optional, tag = "3")]
    pub price_info: Option<PriceInfo>,
    #[prost(bytes = "vec", tag = "4")]
    pub address: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub capabilities: Option<Capabilities>,
    #[prost(message, optional, tag = "6")]
    pub auth_token: Option<AuthToken>,
    #[prost(message, repeated, tag = "7")]
    pub hardware: Vec<HardwareInformation>,
    #[prost(message, repeated, tag = "32")]
    pub storage: Vec<OsInfo>,
    #[prost(message, repeated, tag = "33")]
    pub capabilities_prices: Vec<PriceInfo>,
    #[prost(string, repeated, tag = "34")]
    pub nodes: Vec<String>,
}

/// §2.3
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthToken {
    #[prost(bytes = "vec", tag = "1")]
    pub token: Vec<u8>,
    #[prost(string, tag = "2")]
    pub session_id: String,
    #[prost(int64, tag = "3")]
    pub expiration: i64,
}

/// §2.4 (numbers are minimal unsigned big-endian bytes)
#[derive(Clone, PartialEq, prost::Message)]
pub struct TicketParams {
    #[prost(bytes = "vec", tag = "1")]
    pub recipient: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub face_value: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub win_prob: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub recipient_rand_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub seed: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub expiration_block: Vec<u8>,
    #[prost(message, optional, tag = "7")]
    pub expiration_params: Option<TicketExpirationParams>,
}

/// §2.5
#[derive(Clone, PartialEq, prost::Message)]
pub struct TicketSenderParams {
    #[prost(uint32, tag = "1")]
    pub sender_nonce: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
}

/// §2.6
#[derive(Clone, PartialEq, prost::Message)]
pub struct TicketExpirationParams {
    #[prost(int64, tag = "1")]
    pub creation_round: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub creation_round_block_hash: Vec<u8>,
}

/// §2.7
#[derive(Clone, PartialEq, prost::Message)]
pub struct PriceInfo {
    #[prost(int64, tag = "1")]
    pub price_per_unit: i64,
    #[prost(int64, tag = "2")]
    pub pixels_per_unit: i64,
    #[prost(uint32, tag = "3")]
    pub capability: u32,
    #[prost(string, tag = "4")]
    pub constraint: String,
}

/// §2.8
#[derive(Clone, PartialEq, prost::Message)]
pub struct Capabilities {
    #[prost(uint64, repeated, tag = "1")]
    pub bitstring: Vec<u64>,
    #[prost(uint64, repeated, tag = "2")]
    pub mandatories: Vec<u64>,
    #[prost(map = "uint32, uint32", tag = "3")]
    pub capacities: HashMap<u32, u32>,
    #[prost(string, tag = "4")]
    pub version: String,
    #[prost(message, optional, tag = "5")]
    pub constraints: Option<capabilities::Constraints>,
}

/// Nested types of [`Capabilities`].
pub mod capabilities {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Constraints {
        #[prost(string, tag = "1")]
        pub min_version: String,
        #[prost(map = "uint32, message", tag = "2")]
        pub per_capability: HashMap<u32, CapabilityConstraints>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CapabilityConstraints {
        #[prost(map = "string, message", tag = "1")]
        pub models: HashMap<String, ModelConstraint>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelConstraint {
        #[prost(bool, tag = "1")]
        pub warm: bool,
        #[prost(uint32, tag = "2")]
        pub capacity: u32,
        #[prost(string, tag = "3")]
        pub runner_version: String,
        #[prost(uint32, tag = "4")]
        pub capacity_in_use: u32,
    }
}

/// §2.9, sent base64 in the `Livepeer-Segment` header.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SegData {
    #[prost(bytes = "vec", tag = "1")]
    pub manifest_id: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub seq: i64,
    #[prost(bytes = "vec", tag = "3")]
    pub hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub profiles: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub sig: Vec<u8>,
    #[prost(int32, tag = "6")]
    pub duration: i32,
    #[prost(message, optional, tag = "7")]
    pub capabilities: Option<Capabilities>,
    #[prost(message, optional, tag = "8")]
    pub auth_token: Option<AuthToken>,
    #[prost(bool, tag = "10")]
    pub calc_perceptual_hash: bool,
    #[prost(message, repeated, tag = "32")]
    pub storage: Vec<OsInfo>,
    #[prost(message, repeated, tag = "33")]
    pub full_profiles: Vec<VideoProfile>,
    #[prost(message, repeated, tag = "34")]
    pub full_profiles2: Vec<VideoProfile>,
    #[prost(message, repeated, tag = "35")]
    pub full_profiles3: Vec<VideoProfile>,
    #[prost(message, optional, tag = "37")]
    pub segment_parameters: Option<SegParameters>,
    #[prost(bool, tag = "38")]
    pub force_session_reinit: bool,
}

/// §2.9
#[derive(Clone, PartialEq, prost::Message)]
pub struct SegParameters {
    #[prost(uint64, tag = "1")]
    pub from: u64,
    #[prost(uint64, tag = "2")]
    pub to: u64,
}

/// §2.10
#[derive(Clone, PartialEq, prost::Message)]
pub struct VideoProfile {
    #[prost(string, tag = "16")]
    pub name: String,
    #[prost(int32, tag = "17")]
    pub width: i32,
    #[prost(int32, tag = "18")]
    pub height: i32,
    #[prost(int32, tag = "19")]
    pub bitrate: i32,
    #[prost(uint32, tag = "20")]
    pub fps: u32,
    #[prost(enumeration = "Format", tag = "21")]
    pub format: i32,
    #[prost(uint32, tag = "22")]
    pub fps_den: u32,
    #[prost(enumeration = "Profile", tag = "23")]
    pub profile: i32,
    #[prost(int32, tag = "24")]
    pub gop: i32,
    #[prost(enumeration = "VideoCodec", tag = "25")]
    pub encoder: i32,
    #[prost(int32, tag = "26")]
    pub color_depth: i32,
    #[prost(enumeration = "ChromaSubsampling", tag = "27")]
    pub chroma_format: i32,
    #[prost(uint32, tag = "28")]
    pub quality: u32,
}

/// `VideoProfile.Format`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Format {
    Mpegts = 0,
    Mp4 = 1,
}

/// `VideoProfile.Profile`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Profile {
    EncoderDefault = 0,
    H264Baseline = 1,
    H264Main = 2,
    H264High = 3,
    H264ConstrainedHigh = 4,
}

/// `VideoProfile.VideoCodec`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum VideoCodec {
    H264 = 0,
    H265 = 1,
    Vp8 = 2,
    Vp9 = 3,
}

/// `VideoProfile.ChromaSubsampling`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ChromaSubsampling {
    Chroma420 = 0,
    Chroma422 = 1,
    Chroma444 = 2,
}

/// §2.11, sent base64 in the `Livepeer-Payment` header.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payment {
    #[prost(message, optional, tag = "1")]
    pub ticket_params: Option<TicketParams>,
    #[prost(bytes = "vec", tag = "2")]
    pub sender: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pub expiration_params: Option<TicketExpirationParams>,
    #[prost(message, repeated, tag = "4")]
    pub ticket_sender_params: Vec<TicketSenderParams>,
    #[prost(message, optional, tag = "5")]
    pub expected_price: Option<PriceInfo>,
}

/// §2.12
#[derive(Clone, PartialEq, prost::Message)]
pub struct TranscodeResult {
    #[prost(int64, tag = "1")]
    pub seq: i64,
    #[prost(oneof = "transcode_result::Result", tags = "2, 3")]
    pub result: Option<transcode_result::Result>,
    #[prost(message, optional, tag = "16")]
    pub info: Option<OrchestratorInfo>,
}

/// The `result` oneof of [`TranscodeResult`].
pub mod transcode_result {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        #[prost(string, tag = "2")]
        Error(String),
        #[prost(message, tag = "3")]
        Data(super::TranscodeData),
    }
}

/// §2.12
#[derive(Clone, PartialEq, prost::Message)]
pub struct TranscodeData {
    #[prost(message, repeated, tag = "1")]
    pub segments: Vec<TranscodedSegmentData>,
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
}

/// §2.12
#[derive(Clone, PartialEq, prost::Message)]
pub struct TranscodedSegmentData {
    #[prost(string, tag = "1")]
    pub url: String,
    #[prost(int64, tag = "2")]
    pub pixels: i64,
    #[prost(string, tag = "3")]
    pub perceptual_hash_url: String,
}

/// §2.12, reply of `POST /payment`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PaymentResult {
    #[prost(message, optional, tag = "16")]
    pub info: Option<OrchestratorInfo>,
}

/// §2.13
#[derive(Clone, PartialEq, prost::Message)]
pub struct EndTranscodingSessionRequest {
    #[prost(message, optional, tag = "1")]
    pub auth_token: Option<AuthToken>,
}

/// §2.13
#[derive(Clone, PartialEq, prost::Message)]
pub struct EndTranscodingSessionResponse {}

/// §2.13
#[derive(Clone, PartialEq, prost::Message)]
pub struct PingPong {
    #[prost(bytes = "vec", tag = "1")]
    pub value: Vec<u8>,
}

/// §2.13 `OSInfo`
#[derive(Clone, PartialEq, prost::Message)]
pub struct OsInfo {
    #[prost(enumeration = "StorageType", tag = "1")]
    pub storage_type: i32,
    #[prost(message, optional, tag = "16")]
    pub s3info: Option<S3OsInfo>,
}

/// `OSInfo.StorageType`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum StorageType {
    Direct = 0,
    S3 = 1,
    Google = 2,
}

/// §2.13 `S3OSInfo`
#[derive(Clone, PartialEq, prost::Message)]
pub struct S3OsInfo {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(string, tag = "2")]
    pub key: String,
    #[prost(string, tag = "3")]
    pub policy: String,
    #[prost(string, tag = "4")]
    pub signature: String,
    #[prost(string, tag = "5")]
    pub credential: String,
    #[prost(string, tag = "6")]
    pub x_amz_date: String,
}

/// §2.13
#[derive(Clone, PartialEq, prost::Message)]
pub struct HardwareInformation {
    #[prost(string, tag = "1")]
    pub pipeline: String,
    #[prost(string, tag = "2")]
    pub model_id: String,
    #[prost(map = "string, message", tag = "3")]
    pub gpu_info: HashMap<String, GpuComputeInfo>,
}

/// §2.13 `GPUComputeInfo`
#[derive(Clone, PartialEq, prost::Message)]
pub struct GpuComputeInfo {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(uint32, tag = "4")]
    pub major: u32,
    #[prost(uint32, tag = "5")]
    pub minor: u32,
    #[prost(int64, tag = "6")]
    pub memory_free: i64,
    #[prost(int64, tag = "7")]
    pub memory_total: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// (field number, wire type) of every top-level field in an encoding, in order.
    fn fields(mut b: &[u8]) -> Vec<(u64, u8)> {
        let mut out = vec![];
        let varint = |b: &mut &[u8]| -> u64 {
            let mut v = 0u64;
            for i in 0.. {
                let byte = b[0];
                *b = &b[1..];
                v |= ((byte & 0x7f) as u64) << (7 * i);
                if byte & 0x80 == 0 {
                    break;
                }
            }
            v
        };
        while !b.is_empty() {
            let key = varint(&mut b);
            let (num, wt) = (key >> 3, (key & 7) as u8);
            match wt {
                0 => {
                    varint(&mut b);
                }
                2 => {
                    let n = varint(&mut b) as usize;
                    b = &b[n..];
                }
                1 => b = &b[8..],
                5 => b = &b[4..],
                _ => panic!("unexpected wire type {wt}"),
            }
            out.push((num, wt));
        }
        out
    }

    #[test]
    fn wire_field_numbers() {
        let seg = SegData {
            manifest_id: b"abc".to_vec(),
            seq: 7,
            hash: vec![1; 32],
            profiles: b"invalid".to_vec(),
            sig: vec![2; 65],
            duration: 2000,
            capabilities: Some(Capabilities { bitstring: vec![0x1003], ..Default::default() }),
            auth_token: Some(AuthToken { token: vec![3], session_id: "0a0b0c0d".into(), expiration: 1 }),
            calc_perceptual_hash: true,
            storage: vec![OsInfo::default()],
            full_profiles: vec![VideoProfile { name: "P240p30fps16x9".into(), ..Default::default() }],
            full_profiles2: vec![VideoProfile::default()],
            full_profiles3: vec![VideoProfile::default()],
            segment_parameters: Some(SegParameters { from: 1, to: 2 }),
            force_session_reinit: true,
        };
        let want: Vec<(u64, u8)> = vec![
            (1, 2),
            (2, 0),
            (3, 2),
            (4, 2),
            (5, 2),
            (6, 0),
            (7, 2),
            (8, 2),
            (10, 0),
            (32, 2),
            (33, 2),
            (34, 2),
            (35, 2),
            (37, 2),
            (38, 0),
        ];
        assert_eq!(fields(&seg.encode_to_vec()), want);

        let p = VideoProfile {
            name: "x".into(),
            width: 1,
            height: 1,
            bitrate: 1,
            fps: 1,
            format: Format::Mp4 as i32,
            fps_den: 1,
            profile: Profile::H264High as i32,
            gop: 1,
            encoder: VideoCodec::H265 as i32,
            color_depth: 1,
            chroma_format: ChromaSubsampling::Chroma444 as i32,
            quality: 1,
        };
        assert_eq!(fields(&p.encode_to_vec()).iter().map(|f| f.0).collect::<Vec<_>>(), (16..=28).collect::<Vec<_>>());

        let pay = Payment {
            ticket_params: Some(TicketParams { recipient: vec![1], ..Default::default() }),
            sender: vec![1; 20],
            expiration_params: Some(TicketExpirationParams { creation_round: 1, ..Default::default() }),
            ticket_sender_params: vec![TicketSenderParams { sender_nonce: 1, sig: vec![1] }],
            expected_price: Some(PriceInfo { price_per_unit: 1, pixels_per_unit: 1, ..Default::default() }),
        };
        assert_eq!(fields(&pay.encode_to_vec()), vec![(1, 2), (2, 2), (3, 2), (4, 2), (5, 2)]);

        let req = OrchestratorRequest {
            address: vec![0; 20],
            sig: vec![1],
            capabilities: Some(Capabilities::default()),
            ignore_capacity_check: true,
        };
        assert_eq!(fields(&req.encode_to_vec()), vec![(1, 2), (2, 2), (3, 2), (4, 0)]);

        // Capabilities: packed repeated uint64 bitstring (one length-delimited field).
        let caps = Capabilities {
            bitstring: vec![0x1003, 1],
            mandatories: vec![1],
            version: "v".into(),
            ..Default::default()
        };
        assert_eq!(fields(&caps.encode_to_vec()), vec![(1, 2), (2, 2), (4, 2)]);
    }

    #[test]
    fn transcode_result_oneof_round_trips() {
        let r = TranscodeResult {
            seq: 3,
            result: Some(transcode_result::Result::Data(TranscodeData {
                segments: vec![TranscodedSegmentData {
                    url: "https://o/x.ts".into(),
                    pixels: 99,
                    ..Default::default()
                }],
                sig: vec![9],
            })),
            info: Some(OrchestratorInfo { transcoder: "https://o:8935".into(), ..Default::default() }),
        };
        let b = r.encode_to_vec();
        assert_eq!(fields(&b), vec![(1, 0), (3, 2), (16, 2)]);
        assert_eq!(TranscodeResult::decode(&b[..]).unwrap(), r);
        let e = TranscodeResult {
            seq: 1,
            result: Some(transcode_result::Result::Error("OrchestratorBusy".into())),
            info: None,
        };
        assert_eq!(fields(&e.encode_to_vec()), vec![(1, 0), (2, 2)]);
    }
}
