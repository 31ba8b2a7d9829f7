//! The agent's (and `stratus deploy`'s) client for the Stratus API.

use std::time::Duration;

use serde_json::Value;

/// An API call that failed: the status (None when the server was not reached) and why.
#[derive(Debug)]
pub struct CallError {
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl CallError {
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// The API root, e.g. `http://127.0.0.1:4200/api`.
    pub base: String,
}

impl Api {
    /// A client of the API at `base`, sending `PREFECT_API_KEY` (when set) as the stock
    /// client does: `Authorization: Bearer <key>`.
    pub fn new(base: &str) -> Result<Self, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = std::env::var("PREFECT_API_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
        {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
                .map_err(|_| "PREFECT_API_KEY holds characters a header cannot carry".to_string())?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            // Long polls on the Postgres-backed queue wait 20 s.
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| CallError {
            status: None,
            message: format!("{url}: {e}"),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(CallError {
                status: Some(status.as_u16()),
                message: text,
            });
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| CallError {
            status: Some(status.as_u16()),
            message: format!("{url}: not JSON: {e}"),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CallError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }
}

/// A path segment, percent-encoded (pool and queue names may hold anything).
pub use stratus_store::url::percent_encode as segment;

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_encoded() {
        assert_eq!(super::segment("my pool/1"), "my%20pool%2F1");
        assert_eq!(super::segment("default-agent-pool"), "default-agent-pool");
    }
}
