//! `sluice whip-publish`: a WHIP publisher without a browser (GStreamer `webrtcbin`
//! sending a test pattern and a tone; `webrtc_media::WhipClient`), for trying a WHIP
//! endpoint, tests through lossy links, and load tests (`--sessions N` sends one encoding
//! as N sessions). Each session is POSTed to the endpoint (RFC 9725 §4.2), answered,
//! run for the duration, then ended with `DELETE` on its `Location`.
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tracing::{info, warn};

/// What `whip-publish` was asked for.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// The WHIP endpoint, e.g. `http://127.0.0.1:9935/live/cam/whip`; `{n}` in it is
    /// replaced by each session's number (`/live/cam{n}/whip`: a stream each).
    pub url: String,
    /// Sent as `Authorization: Bearer …` (API keys).
    pub token: Option<String>,
    /// How long to publish.
    pub duration: Duration,
    /// The encoding and the number of sessions.
    pub media: webrtc_media::ClientConfig,
}

/// How a run went.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// Sessions answered with 201.
    pub answered: usize,
    /// Sessions whose connection came up.
    pub connected: usize,
    /// Sessions whose connection failed or closed before the end.
    pub failed: usize,
    /// `DELETE`s answered with 200.
    pub deleted: usize,
}

/// Why a run could not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The media pipeline.
    #[error(transparent)]
    Peer(#[from] webrtc_media::PeerError),
    /// The endpoint could not be reached.
    #[error("{url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The endpoint refused the offer.
    #[error("{url} answered {status}: {body}")]
    Refused {
        /// The URL.
        url: String,
        /// Its status.
        status: StatusCode,
        /// Its reason.
        body: String,
    },
}

async fn send(
    http: &transport::client::HttpClient,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, http::HeaderMap, String), String> {
    let r = tokio::time::timeout(Duration::from_secs(15), http.request(req))
        .await
        .map_err(|_| "no answer within 15 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = r.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned()))
}

/// Sessions started, answered and (most of them) connected: the publisher, the
/// sessions' resources, and the counts.
async fn connect(
    http: &transport::client::HttpClient,
    plan: &PublishPlan,
) -> Result<(webrtc_media::WhipClient, Vec<String>, PublishReport), PublishError> {
    let (client, offers) = webrtc_media::WhipClient::start(&plan.media).await?;
    let mut report = PublishReport::default();
    let mut locations = Vec::new();
    for (i, offer) in offers.into_iter().enumerate() {
        // Each session its own stream when the URL numbers them.
        let url = plan.url.replace("{n}", &i.to_string());
        let base: http::Uri =
            url.parse().map_err(|_| PublishError::Http { url: url.clone(), reason: "not a URL".into() })?;
        let mut req = Request::post(&url).header(header::CONTENT_TYPE, "application/sdp");
        if let Some(t) = &plan.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(offer)))
            .map_err(|e| PublishError::Http { url: url.clone(), reason: e.to_string() })?;
        let (status, headers, body) =
            send(http, req).await.map_err(|reason| PublishError::Http { url: url.clone(), reason })?;
        if status != StatusCode::CREATED {
            // A refusal ends a single session's run; in a load run, the others go on.
            if plan.media.sessions <= 1 {
                return Err(PublishError::Refused { url, status, body: body.trim().to_owned() });
            }
            warn!(session = i, %status, reason = body.trim(), "WHIP session refused");
            continue;
        }
        client.answer(i, &body).await?;
        report.answered += 1;
        if let Some(loc) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
            // The Location is relative to the endpoint.
            let abs = match loc.parse::<http::Uri>() {
                Ok(u) if u.scheme().is_some() => u.to_string(),
                _ => format!(
                    "{}://{}{loc}",
                    base.scheme_str().unwrap_or("http"),
                    base.authority().map_or("", |a| a.as_str())
                ),
            };
            locations.push(abs);
        }
    }
    report.connected = client.connected(Duration::from_secs(10)).await;
    Ok((client, locations, report))
}

/// Ends the sessions at `locations` with `DELETE`; how many were answered 200.
async fn end(http: &transport::client::HttpClient, plan: &PublishPlan, locations: Vec<String>) -> usize {
    let mut ended = 0;
    for loc in locations {
        let mut req = Request::delete(&loc);
        if let Some(t) = &plan.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Ok(req) = req.body(Full::new(Bytes::new()))
            && let Ok((StatusCode::OK, _, _)) = send(http, req).await
        {
            ended += 1;
        }
    }
    ended
}

/// Connection attempts of a single session (ICE or DTLS can fail on a lossy link).
const ATTEMPTS: usize = 3;

/// Publishes as `plan` says, reporting progress in the log every five seconds. A single
/// session that does not connect is ended and tried again, up to three times.
#[allow(clippy::disallowed_methods)] // IO shell: wall-clock progress
pub async fn publish(plan: &PublishPlan) -> Result<PublishReport, PublishError> {
    let http = transport::client::http_client(transport::tls::CertPolicy::default());
    let mut attempt = 1;
    let (client, locations, mut report) = loop {
        let (client, locations, report) = connect(&http, plan).await?;
        if report.connected > 0 || plan.media.sessions > 1 || attempt == ATTEMPTS {
            break (client, locations, report);
        }
        warn!(attempt, "the WHIP session did not connect; trying again");
        end(&http, plan, locations).await;
        drop(client);
        attempt += 1;
    };
    info!(answered = report.answered, connected = report.connected, "publishing");
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    while t0.elapsed() < plan.duration {
        let left = plan.duration.saturating_sub(t0.elapsed());
        tokio::select! {
            _ = tick.tick() => info!(elapsed_s = t0.elapsed().as_secs(), failed = client.failed(), "publishing"),
            _ = tokio::time::sleep(left) => {}
        }
    }
    report.failed = client.failed();
    report.deleted = end(&http, plan, locations).await;
    drop(client);
    Ok(report)
}
