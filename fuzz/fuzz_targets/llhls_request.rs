//! What an LL-HLS or DASH player puts in a request: the fragment file name
//! (`segmenter::llhls::parse_file_name`) and the playlist query with the blocking-reload
//! directives (`segmenter::llhls::parse_blocking_query`), both fed arbitrary text.
//! Invariants: no panic; a parsed file name renders back to exactly the same text; a
//! parsed directive renders back to a query that parses to the same directive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use segmenter::llhls::{FileName, init_uri, parse_blocking_query, parse_file_name, part_uri, segment_uri};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(f) = parse_file_name(text) {
        let back = match f {
            FileName::Init(name, n) => init_uri(name, n),
            FileName::Segment(name, msn) => segment_uri(name, msn),
            FileName::Part(name, msn, part) => part_uri(name, msn, part),
        };
        assert_eq!(back, text, "{f:?}");
    }
    if let Ok(Some(b)) = parse_blocking_query(text) {
        let q = match b.part {
            Some(p) => format!("_HLS_msn={}&_HLS_part={p}", b.msn),
            None => format!("_HLS_msn={}", b.msn),
        };
        assert_eq!(parse_blocking_query(&q), Ok(Some(b)));
    }
});
