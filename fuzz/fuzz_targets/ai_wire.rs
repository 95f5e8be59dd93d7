//! What gateways, clients and workers send into the AI paths, fed arbitrary bytes: the
//! BYOC job header (`transport::byoc::decode_job`) and identity header, Go durations,
//! go-livepeer's price lists (`MaxPrices::parse`) and `-aiModels` short form, an
//! orchestrator's error text (`AiFailure::classify`), LLM stream bytes split into lines
//! and parsed as chunks, and the orchestrator's multipart reader and image header probe
//! (`orchestrator::ai::read_form`, `image_size`). The first byte picks the parser.
//! Invariants: no panic; a decoded job re-encodes to a header that decodes to the same
//! job; a classified failure is soft unless it is `Other`; line splitting loses no bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transport::ai::{AiFailure, MaxPrices, parse_ai_models};
use transport::ai_types::{LineSplitter, LlmResponse};
use transport::byoc::{SenderAddress, decode_job, encode_job, parse_go_duration};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match which % 6 {
        0 => {
            if let Ok(job) = decode_job(Some(&text)) {
                let again = decode_job(Some(&encode_job(&job.request))).expect("a re-encoded job decodes");
                assert_eq!(again, job);
            }
            let _ = SenderAddress::decode(&text);
        }
        1 => {
            if let Some(s) = parse_go_duration(&text) {
                assert!(s >= 0.0 || s.is_nan());
            }
            let _ = parse_ai_models(&text);
        }
        2 => {
            if let Ok(m) = MaxPrices::parse(&text, None, 1) {
                let _ = m.ceiling([(27, "m"), (33, "default")]);
            }
        }
        3 => {
            let f = AiFailure::classify(&text);
            assert_eq!(f.is_soft(), f != AiFailure::Other);
        }
        4 => {
            // Fed in two pieces split at an arbitrary point; every complete line comes out.
            let cut = rest.first().map_or(0, |b| *b as usize % (rest.len() + 1));
            let mut s = LineSplitter::default();
            let mut lines = Vec::new();
            for piece in [&rest[..cut], &rest[cut..]] {
                match s.push(piece) {
                    Ok(l) => lines.extend(l),
                    Err(_) => return,
                }
            }
            assert_eq!(lines.len(), rest.iter().filter(|&&b| b == b'\n').count());
            for l in lines {
                if let Some(json) = l.strip_prefix("data:") {
                    if let Ok(c) = serde_json::from_str::<LlmResponse>(json.trim_start()) {
                        let _ = c.finished();
                    }
                }
            }
        }
        _ => {
            let _ = orchestrator::ai::image_size(rest);
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("multipart/form-data; boundary=XyZ"));
            let _ = rt.block_on(orchestrator::ai::read_form(&headers, bytes::Bytes::copy_from_slice(rest), "image"));
        }
    }
});
