//! The network side of the gateway ↔ orchestrator protocol: gRPC calls
//! (`GetOrchestrator`, `EndTranscodingSession`), segment submission and rendition
//! download (spec §1, §3.4, §4).
//!
//! One [`OrchestratorNet`] serves a whole gateway. Its HTTP client keeps one connection
//! pool per orchestrator (keyed by scheme and authority), negotiates HTTP/2 by ALPN and
//! falls back to HTTP/1.1; its gRPC client speaks HTTP/2 only, over TLS for `https://`
//! orchestrators and cleartext (h2c) for `http://` ones. Connections are kept and reused,
//! so a segment normally goes out on a warm connection with no handshake.
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::proto::orchestrator_client::OrchestratorClient;
use crate::proto::{
    AuthToken, EndTranscodingSessionRequest, OrchestratorInfo, OrchestratorRequest, TranscodeResult, transcode_result,
};
use crate::refusal::{Failure, FailureReason};
use crate::segment::{PAYMENT_HEADER, SEGMENT_CONTENT_TYPE, SEGMENT_HEADER, SegmentTimeouts};
use crate::tls::{CertPolicy, client_config};

/// TCP + TLS dial timeout (go-livepeer `HTTPDialTimeout`).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
pub use crate::segment::{DOWNLOAD_TIMEOUT, GRPC_TIMEOUT};
/// Largest response body accepted (go-livepeer's 300 000 000 bytes).
pub const MAX_BODY: usize = 300_000_000;
/// Idle pooled connections are closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) type Connector = HttpsConnector<HttpConnector>;

/// Something went wrong talking to an orchestrator.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The URL could not be parsed.
    #[error("invalid orchestrator URL {0:?}")]
    Url(String),
    /// No response arrived in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// Connecting or sending failed (the hyper error, with its causes, is the source).
    #[error("transport error: {}", error_chain(.0.as_ref()))]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The gRPC call returned an error status.
    #[error("gRPC {code:?}: {message}")]
    Grpc {
        /// gRPC status code.
        code: tonic::Code,
        /// The orchestrator's message.
        message: String,
        /// The status itself.
        #[source]
        status: Box<tonic::Status>,
    },
    /// The orchestrator answered with a non-200 status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// The trimmed body text.
        body: String,
    },
    /// The body could not be read or decoded.
    #[error("bad response body: {0}")]
    Body(String),
}

impl NetError {
    /// True when the orchestrator sent response headers, so a payment attached to the
    /// request counts as spent (§4.3, §5.6).
    pub fn response_received(&self) -> bool {
        matches!(self, NetError::Status { .. } | NetError::Body(_))
    }

    /// The failure this error is, in the link's vocabulary ([`crate::refusal`]).
    pub fn failure(&self) -> Failure {
        match self {
            NetError::Status { status, body } => crate::refusal::classify_http(status.as_u16(), body),
            NetError::Grpc { code, message, .. } => crate::refusal::classify_grpc(*code as i32, message),
            NetError::Timeout(_) => Failure::new(FailureReason::Timeout, self.to_string()),
            NetError::Body(_) => Failure::new(FailureReason::BadReply, self.to_string()),
            NetError::Transport(_) | NetError::Url(_) => Failure::new(FailureReason::Unreachable, self.to_string()),
        }
    }
}

/// The orchestrator's answer to one segment.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The decoded result (`data` or `error`).
    pub result: TranscodeResult,
    /// From sending the request to the response headers (upload + queueing).
    pub upload: Duration,
    /// From sending the request to the end of the body (upload + transcode).
    pub total: Duration,
    /// The HTTP version the exchange used.
    pub version: http::Version,
}

impl Submitted {
    /// The transcoded data, or the orchestrator's error string.
    pub fn outcome(&self) -> Result<&crate::proto::TranscodeData, String> {
        match &self.result.result {
            Some(transcode_result::Result::Data(d)) => Ok(d),
            Some(transcode_result::Result::Error(e)) => Err(e.clone()),
            None => Err("UnknownResponse".into()),
        }
    }
}

/// Clients toward orchestrators, shared by every stream of a gateway.
#[derive(Clone)]
pub struct OrchestratorNet {
    http: Client<Connector, Full<Bytes>>,
    grpc: Client<Connector, tonic::body::Body>,
}

impl std::fmt::Debug for OrchestratorNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrchestratorNet")
    }
}

/// An HTTP(S) client for tools (HTTP/1.1 and HTTP/2 by ALPN), with `Full` bodies.
pub type HttpClient = Client<Connector, Full<Bytes>>;

/// An [`HttpClient`] accepting server certificates under `policy`.
pub fn http_client(policy: CertPolicy) -> HttpClient {
    Client::builder(TokioExecutor::new()).build(connector(policy, true))
}

/// A connector offering HTTP/2 and, when `http1`, HTTP/1.1 by ALPN.
pub(crate) fn connector(policy: CertPolicy, http1: bool) -> Connector {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(DIAL_TIMEOUT));
    tcp.set_nodelay(true);
    // The builder sets the ALPN list from the enabled versions.
    let builder = HttpsConnectorBuilder::new().with_tls_config(client_config(policy, &[])).https_or_http();
    if http1 {
        builder.enable_http1().enable_http2().wrap_connector(tcp)
    } else {
        builder.enable_http2().wrap_connector(tcp)
    }
}

impl OrchestratorNet {
    /// Clients accepting orchestrator certificates under `policy`.
    pub fn new(policy: CertPolicy) -> Self {
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector(policy.clone(), true));
        let grpc = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .http2_only(true)
            .build(connector(policy, false));
        OrchestratorNet { http, grpc }
    }

    fn grpc_client(&self, uri: &str) -> Result<OrchestratorClient<Client<Connector, tonic::body::Body>>, NetError> {
        let origin: Uri = uri.parse().map_err(|_| NetError::Url(uri.to_owned()))?;
        if origin.authority().is_none() {
            return Err(NetError::Url(uri.to_owned()));
        }
        Ok(OrchestratorClient::with_origin(self.grpc.clone(), origin))
    }

    /// `GetOrchestrator` on the orchestrator at `uri` (`https://host:port`), within
    /// [`GRPC_TIMEOUT`].
    pub async fn get_orchestrator(&self, uri: &str, req: OrchestratorRequest) -> Result<OrchestratorInfo, NetError> {
        self.get_orchestrator_within(uri, req, GRPC_TIMEOUT).await
    }

    /// `GetOrchestrator` with a caller's deadline (a gateway opening a session while a
    /// segment waits gives it less than the discovery default).
    pub async fn get_orchestrator_within(
        &self,
        uri: &str,
        req: OrchestratorRequest,
        timeout: Duration,
    ) -> Result<OrchestratorInfo, NetError> {
        let mut c = self.grpc_client(uri)?;
        let call = c.get_orchestrator(req);
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(NetError::Timeout("GetOrchestrator")),
            Ok(Err(s)) => Err(grpc_error(s)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// `EndTranscodingSession` for the session named by `token`.
    pub async fn end_session(&self, uri: &str, token: AuthToken) -> Result<(), NetError> {
        let mut c = self.grpc_client(uri)?;
        let call = c.end_transcoding_session(EndTranscodingSessionRequest { auth_token: Some(token) });
        match tokio::time::timeout(GRPC_TIMEOUT, call).await {
            Err(_) => Err(NetError::Timeout("EndTranscodingSession")),
            Ok(Err(s)) => Err(grpc_error(s)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// `POST {transcoder}/segment` (§4.1) with the two credential headers and the segment
    /// bytes as the body (a handle, not a copy). Deadlines per §4.7: the response headers
    /// within `timeouts.upload`, the whole exchange within `timeouts.total`.
    #[allow(clippy::disallowed_methods)] // IO shell: measures the upload time it reports
    pub async fn submit(
        &self,
        transcoder: &str,
        segment_header: &str,
        payment_header: &str,
        body: Bytes,
        timeouts: SegmentTimeouts,
    ) -> Result<Submitted, NetError> {
        let url = format!("{transcoder}/segment");
        let req = Request::post(&url)
            .header(SEGMENT_HEADER, segment_header)
            .header(PAYMENT_HEADER, payment_header)
            .header(http::header::CONTENT_TYPE, SEGMENT_CONTENT_TYPE)
            .body(Full::new(body))
            .map_err(|_| NetError::Url(url.clone()))?;
        let start = Instant::now();
        let resp = match tokio::time::timeout(timeouts.upload, self.http.request(req)).await {
            Err(_) => return Err(NetError::Timeout("segment upload (header timeout)")),
            Ok(Err(e)) => return Err(NetError::Transport(Box::new(e))),
            Ok(Ok(r)) => r,
        };
        let upload = start.elapsed();
        let status = resp.status();
        let version = resp.version();
        let remaining = timeouts.total.saturating_sub(upload);
        let body = match tokio::time::timeout(remaining, Limited::new(resp.into_body(), MAX_BODY).collect()).await {
            Err(_) => return Err(NetError::Body("timed out reading the transcode result".into())),
            Ok(Err(e)) => return Err(NetError::Body(e.to_string())),
            Ok(Ok(b)) => b.to_bytes(),
        };
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned();
            return Err(NetError::Status { status, body: text });
        }
        let result = crate::segment::decode_result(&body).map_err(|f| NetError::Body(f.detail))?;
        Ok(Submitted { result, upload, total: start.elapsed(), version })
    }

    /// `POST url` with a JSON body (an orchestrator's operator endpoints, a webhook).
    /// Returns the status and body.
    pub async fn post_json(&self, url: &str, json: &str, timeout: Duration) -> Result<(StatusCode, Bytes), NetError> {
        self.post_json_with(url, json, &[], timeout).await
    }

    /// [`OrchestratorNet::post_json`] with extra request headers (name, value).
    pub async fn post_json_with(
        &self,
        url: &str,
        json: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), NetError> {
        let mut req = Request::post(url).header(http::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req =
            req.body(Full::new(Bytes::copy_from_slice(json.as_bytes()))).map_err(|_| NetError::Url(url.to_owned()))?;
        self.exchange(req, timeout, "POST").await
    }

    /// `POST {transcoder}/live-video-to-video` (live spec §2.2): starts a live job with the
    /// payment and credentials headers and `Authorization: Livepeer-AI-Worker-1.0`.
    /// Returns the reply on 200; any other status is [`NetError::Status`] with the body.
    pub async fn start_live(
        &self,
        transcoder: &str,
        segment_header: &str,
        payment_header: &str,
        request: &crate::live::StartRequest,
        timeout: Duration,
    ) -> Result<crate::live::StartReply, NetError> {
        let url = format!("{}/live-video-to-video", transcoder.trim_end_matches('/'));
        let json = serde_json::to_vec(request).map_err(|e| NetError::Body(e.to_string()))?;
        let req = Request::post(&url)
            .header(SEGMENT_HEADER, segment_header)
            .header(PAYMENT_HEADER, payment_header)
            .header(http::header::AUTHORIZATION, crate::live::AUTHORIZATION)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))
            .map_err(|_| NetError::Url(url.clone()))?;
        let (status, body) = self.exchange(req, timeout, "live job start").await?;
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned();
            return Err(NetError::Status { status, body: text });
        }
        let reply: crate::live::StartReply =
            serde_json::from_slice(&body).map_err(|e| NetError::Body(format!("live job reply: {e}")))?;
        Ok(reply.absolute(transcoder))
    }

    /// `POST {transcoder}/payment` with an empty body (live spec §2.4); returns the
    /// orchestrator's fresh `OrchestratorInfo` from its `PaymentResult`.
    pub async fn live_payment(
        &self,
        transcoder: &str,
        segment_header: &str,
        payment_header: &str,
        timeout: Duration,
    ) -> Result<Option<OrchestratorInfo>, NetError> {
        let url = format!("{}/payment", transcoder.trim_end_matches('/'));
        let req = Request::post(&url)
            .header(SEGMENT_HEADER, segment_header)
            .header(PAYMENT_HEADER, payment_header)
            .body(Full::new(Bytes::new()))
            .map_err(|_| NetError::Url(url.clone()))?;
        let (status, body) = self.exchange(req, timeout, "live payment").await?;
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned();
            return Err(NetError::Status { status, body: text });
        }
        let result = <crate::proto::PaymentResult as prost::Message>::decode(body.as_ref())
            .map_err(|e| NetError::Body(format!("PaymentResult: {e}")))?;
        Ok(result.info)
    }

    /// Sends `req` and returns the response once its headers arrive (within
    /// `header_timeout`); the body is the caller's to read, streamed (an AI job's result,
    /// an LLM's server-sent events). Errors are transport errors and timeouts only: any
    /// status is returned.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
        header_timeout: Duration,
    ) -> Result<http::Response<hyper::body::Incoming>, NetError> {
        match tokio::time::timeout(header_timeout, self.http.request(req)).await {
            Err(_) => Err(NetError::Timeout("response headers")),
            Ok(Err(e)) => Err(NetError::Transport(Box::new(e))),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Reads a response body of at most `limit` bytes within `timeout`.
    pub async fn read_body(body: hyper::body::Incoming, limit: usize, timeout: Duration) -> Result<Bytes, NetError> {
        match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
            Err(_) => Err(NetError::Timeout("response body")),
            Ok(Err(e)) => Err(NetError::Body(e.to_string())),
            Ok(Ok(b)) => Ok(b.to_bytes()),
        }
    }

    /// Sends `req` and reads at most 1 MiB of the answer, all within `timeout`.
    async fn exchange(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
        what: &'static str,
    ) -> Result<(StatusCode, Bytes), NetError> {
        let send = async {
            let resp = self.http.request(req).await.map_err(|e| NetError::Transport(Box::new(e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), 1 << 20)
                .collect()
                .await
                .map_err(|e| NetError::Body(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, send).await.unwrap_or(Err(NetError::Timeout(what)))
    }

    /// `GET url` for one rendition (§4.4): 200 only, at most [`MAX_BODY`] bytes.
    pub async fn download(&self, url: &str, timeout: Duration) -> Result<Bytes, NetError> {
        let uri: Uri = url.parse().map_err(|_| NetError::Url(url.to_owned()))?;
        let fetch = async {
            let resp = self.http.get(uri).await.map_err(|e| NetError::Transport(Box::new(e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| NetError::Body(e.to_string()))?
                .to_bytes();
            if status != StatusCode::OK {
                let body = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned();
                return Err(NetError::Status { status, body });
            }
            Ok(body)
        };
        tokio::time::timeout(timeout, fetch).await.unwrap_or(Err(NetError::Timeout("rendition download")))
    }
}

fn grpc_error(s: tonic::Status) -> NetError {
    NetError::Grpc { code: s.code(), message: s.message().to_owned(), status: Box::new(s) }
}

/// An error and its causes on one line.
fn error_chain(e: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
