//! The gateway's store of AI result files (AI spec §1.7.2): each request's files under
//! `/stream/{request}/{file}` on the HTTP port, kept for the configured time, so clients
//! never need to reach an orchestrator.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// `N` bytes from the OS random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the OS random source works");
    b
}

/// A fresh request id: 32 hex characters (128 random bits), so result URLs cannot be
/// guessed (go-livepeer uses 8; clients treat it as opaque).
pub fn request_id() -> String {
    random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Most bytes the store holds; past it the oldest requests' files go first.
pub const MAX_STORE_BYTES: usize = 1 << 30;

#[derive(Debug, Clone)]
struct File {
    name: String,
    content_type: String,
    data: Bytes,
}

/// Result files by request id.
#[derive(Debug)]
pub struct ResultStore {
    ttl: Duration,
    files: Mutex<HashMap<String, (Instant, Vec<File>)>>,
    bytes: std::sync::atomic::AtomicUsize,
}

impl ResultStore {
    /// A store keeping files for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        ResultStore { ttl, files: Mutex::default(), bytes: Default::default() }
    }

    /// How long files are kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Vec<File>)>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `data` as `name` of `request`; returns its URL path.
    #[allow(clippy::disallowed_methods)] // IO shell: stamps the file for expiry
    pub fn put(&self, request: &str, name: &str, content_type: &str, data: Bytes) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut files = self.lock();
        let size = data.len();
        let entry = files.entry(request.to_owned()).or_insert_with(|| (Instant::now(), Vec::new()));
        let before: usize = entry.1.iter().filter(|f| f.name == name).map(|f| f.data.len()).sum();
        entry.1.retain(|f| f.name != name);
        entry.1.push(File { name: name.to_owned(), content_type: content_type.to_owned(), data });
        let mut total = self.bytes.load(Relaxed) + size - before;
        // Over the cap: the oldest other requests go.
        while total > MAX_STORE_BYTES {
            let oldest =
                files.iter().filter(|(k, _)| *k != request).min_by_key(|(_, (t, _))| *t).map(|(k, _)| k.clone());
            let Some(k) = oldest else { break };
            if let Some((_, f)) = files.remove(&k) {
                total -= f.iter().map(|f| f.data.len()).sum::<usize>();
            }
        }
        self.bytes.store(total, Relaxed);
        format!("/stream/{request}/{name}")
    }

    /// A stored file and its content type.
    pub fn get(&self, request: &str, name: &str) -> Option<(String, Bytes)> {
        let files = self.lock();
        let f = files.get(request)?.1.iter().find(|f| f.name == name)?;
        Some((f.content_type.clone(), f.data.clone()))
    }

    /// Drops requests older than the TTL; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut files = self.lock();
        let before = files.len();
        files.retain(|_, (t, _)| now.saturating_duration_since(*t) < self.ttl);
        let total = files.values().flat_map(|(_, f)| f.iter().map(|f| f.data.len())).sum();
        self.bytes.store(total, std::sync::atomic::Ordering::Relaxed);
        before - files.len()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Serves `GET /stream/{request}/{file}` from the store ahead of the playback routes,
/// which share the path shape.
pub async fn serve_layer(State(store): State<Arc<ResultStore>>, req: Request, next: Next) -> Response {
    if req.method() == http::Method::GET || req.method() == http::Method::HEAD {
        let mut parts = req.uri().path().strip_prefix("/stream/").unwrap_or("").split('/');
        if let (Some(id), Some(file), None) = (parts.next(), parts.next(), parts.next())
            && let Some((ct, data)) = store.get(id, file)
        {
            return ([(header::CONTENT_TYPE, ct), (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into())], data)
                .into_response();
        }
    }
    next.run(req).await
}

/// The file extension for a MIME type of a result.
pub fn extension(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or("").trim() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/mpeg" => "mp3",
        "video/mp4" => "mp4",
        _ => "bin",
    }
}

/// The MIME type for a file name's extension.
pub fn mime_of(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // one real instant as the epoch
mod tests {
    use super::*;

    #[test]
    fn put_get_expire() {
        let s = ResultStore::new(Duration::from_secs(10));
        assert_eq!(s.put("abcd1234", "0.png", "image/png", Bytes::from_static(b"x")), "/stream/abcd1234/0.png");
        assert_eq!(s.get("abcd1234", "0.png"), Some(("image/png".into(), Bytes::from_static(b"x"))));
        assert_eq!(s.get("abcd1234", "1.png"), None);
        assert_eq!(s.expire(Instant::now()), 0);
        assert_eq!(s.expire(Instant::now() + Duration::from_secs(11)), 1);
        assert_eq!(s.get("abcd1234", "0.png"), None);
        assert_eq!(request_id().len(), 32);
        assert_eq!(s.bytes(), 0);
        s.put("a", "x", "image/png", Bytes::from_static(b"abc"));
        s.put("a", "x", "image/png", Bytes::from_static(b"ab"));
        assert_eq!(s.bytes(), 2, "a file replaced is counted once");
        assert_eq!(extension("image/jpeg"), "jpg");
        assert_eq!(mime_of("a.wav"), "audio/wav");
    }
}
