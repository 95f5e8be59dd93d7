//! The trickle server's request handling (`transport::trickle_http::router`, the routes the
//! gateway and the orchestrator mount) under arbitrary request sequences: any method, any
//! path (channel names, indexes, `next`, nonsense), `Lp-Trickle-Reset`, content types and
//! bodies. GETs run concurrently with the requests after them, so waiting readers are
//! woken, ended and abandoned. The clock is tokio's paused test clock, so a GET that would
//! wait for ever times out at once. Invariants: no panic; every answer is one of the
//! spec's statuses (or axum's 404/405 for other routes); the bounds hold.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use axum::body::Body;
use http::{Method, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use transport::trickle::Limits;
use transport::trickle_http::{TrickleHub, router};

#[derive(Arbitrary, Debug)]
enum Index {
    Num(i64),
    Small(u8),
    Next,
    Raw(String),
    None,
}

#[derive(Arbitrary, Debug)]
struct Req {
    method: u8,
    channel: u8,
    index: Index,
    reset: bool,
    mime: bool,
    body: Vec<u8>,
}

const LIMITS: Limits = Limits { max_channels: 4, max_segment_bytes: 4096, max_total_bytes: 16 * 1024 };

fn request(r: &Req) -> Option<Request<Body>> {
    let method = [Method::GET, Method::POST, Method::DELETE, Method::PUT][r.method as usize % 4].clone();
    let ch = format!("c{}", r.channel % 6);
    let path = match &r.index {
        Index::Num(n) => format!("/ai/trickle/{ch}/{n}"),
        Index::Small(n) => format!("/ai/trickle/{ch}/{}", *n as i64 % 8 - 2),
        Index::Next => format!("/ai/trickle/{ch}/next"),
        Index::Raw(s) => format!("/ai/trickle/{ch}/{s}"),
        Index::None => format!("/ai/trickle/{ch}"),
    };
    let mut b = Request::builder().method(method).uri(path);
    if r.reset {
        b = b.header("Lp-Trickle-Reset", "1");
    }
    if r.mime {
        b = b.header("Content-Type", "video/MP2T").header("Expect-Content", "video/MP2T");
    }
    b.body(Body::from(r.body.clone())).ok()
}

fn check(status: u16) {
    assert!(matches!(status, 200 | 400 | 404 | 405 | 413 | 470 | 500 | 503), "status {status}");
}

fuzz_target!(|reqs: Vec<Req>| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let hub = TrickleHub::new(LIMITS, true);
    let app = axum::Router::new().nest("/ai/trickle", router(hub.clone()));
    rt.block_on(async {
        for r in reqs.iter().take(64) {
            let Some(req) = request(r) else { continue };
            let get = req.method() == Method::GET;
            let call = {
                let app = app.clone();
                async move {
                    let resp = app.oneshot(req).await.unwrap();
                    check(resp.status().as_u16());
                    let _ = resp.into_body().collect().await;
                }
            };
            let timed = tokio::time::timeout(Duration::from_secs(30), call);
            if get {
                tokio::spawn(timed);
            } else {
                let _ = timed.await;
            }
            assert!(hub.channels() <= LIMITS.max_channels);
            assert!(hub.bytes() <= LIMITS.max_total_bytes);
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
});
