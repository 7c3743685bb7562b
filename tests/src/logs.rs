//! Reading the log API as `kubectl logs` does: a whole answer, or a
//! followed stream read until it shows what a test waits for.

use std::time::Duration;

use tokio::time::Instant;

use crate::rest::Api;

/// GETs `path`; panics when no answer comes.
async fn get(api: &Api, path: &str) -> reqwest::Response {
    api.request(reqwest::Method::GET, path)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// GETs a log path and answers its status and body as text.
pub async fn read_log(api: &Api, path: &str) -> (u16, String) {
    let response = get(api, path).await;
    let status = response.status().as_u16();
    let text = response.text().await.expect("a log body");
    (status, text)
}

/// A followed log, read chunk by chunk into `text`.
pub struct FollowedLog {
    response: reqwest::Response,
    /// Everything read so far.
    pub text: String,
}

impl FollowedLog {
    /// Opens `path` (which should ask for `follow=true`); panics unless it
    /// answers 200 with a streamed `text/plain` body.
    pub async fn open(api: &Api, path: &str) -> FollowedLog {
        let response = get(api, path).await;
        let status = response.status().as_u16();
        assert_eq!(status, 200, "GET {path}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        FollowedLog {
            response,
            text: String::new(),
        }
    }

    /// Reads until `check` holds for everything read, and panics with
    /// `what` and the text after `seconds` or when the stream ends first.
    pub async fn until(&mut self, seconds: u64, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while !check(&self.text) {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.text.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => panic!("{what}: the log ended first:\n{}", self.text),
                Ok(Err(error)) => panic!("{what}: {error}:\n{}", self.text),
                Err(_) => panic!("{what}: not within {seconds} s:\n{}", self.text),
            }
        }
    }
}
