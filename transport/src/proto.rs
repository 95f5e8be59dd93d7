//! The `net` protobuf package of go-livepeer's `lp_rpc.proto`: the messages a gateway
//! exchanges with an orchestrator on the transcoding path, and the `net.Orchestrator`
//! gRPC service. Generated at build time from `proto/lp_rpc.proto`, which follows
//! spec/livepeer-transcode-protocol.md §2 table by table; `tests::wire_field_numbers`
//! checks the encoded tags against the spec.
#![allow(missing_docs, unreachable_pub, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/net.rs"));

pub use video_profile::{ChromaSubsampling, Format, Profile, VideoCodec};

/// The (field number, wire type) of every top-level field of an encoded message, in
/// order; `None` if the bytes are not a well-formed message. For checking what is on the
/// wire against the spec's field tables, and for looking at captures.
pub fn top_level_fields(mut b: &[u8]) -> Option<Vec<(u64, u8)>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= ((byte & 0x7f) as u64) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let wt = (key & 7) as u8;
        let skip = match wt {
            0 => {
                varint(&mut b)?;
                0
            }
            1 => 8,
            2 => usize::try_from(varint(&mut b)?).ok()?,
            5 => 4,
            _ => return None,
        };
        b = b.get(skip..)?;
        out.push((key >> 3, wt));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn fields(b: &[u8]) -> Vec<(u64, u8)> {
        top_level_fields(b).expect("well-formed")
    }

    #[test]
    fn field_walker_refuses_malformed_messages() {
        assert_eq!(top_level_fields(&[]), Some(vec![]));
        assert_eq!(top_level_fields(&[0x08, 0x96, 0x01]), Some(vec![(1, 0)]));
        assert_eq!(top_level_fields(&[0x0a, 0x05, 1, 2]), None, "length past the end");
        assert_eq!(top_level_fields(&[0x0b]), None, "wire type 3 (groups) is not used");
        assert_eq!(top_level_fields(&[0x08, 0xff]), None, "truncated varint");
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
