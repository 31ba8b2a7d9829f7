//! Flow code in S3: `s3://<bucket>/<key>` URLs.

use aws_config::SdkConfig;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use stratus_store::storage::{Storage, StorageError, StorageFuture};

pub struct S3Storage {
    client: Client,
    bucket: String,
}

/// An S3 call's failure; transient when S3 was not reached or answered a server error.
fn error<E>(what: &str, e: SdkError<E, HttpResponse>) -> StorageError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => s.raw().status().as_u16() >= 500 || s.err().code() == Some("SlowDown"),
        _ => false,
    };
    let message = format!("S3 {what}: {}", DisplayErrorContext(e));
    if transient {
        StorageError::transient(message)
    } else {
        StorageError::new(message)
    }
}

/// `(bucket, key)` of an `s3://bucket/key` URL.
pub fn parse_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

impl S3Storage {
    pub fn new(config: &SdkConfig, bucket: &str) -> Self {
        // LocalStack (and any endpoint without per-bucket host names) needs path style.
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build();
        S3Storage {
            client: Client::from_conf(s3),
            bucket: bucket.to_string(),
        }
    }

    /// Creates the bucket unless it exists.
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                self.client
                    .create_bucket()
                    .bucket(&self.bucket)
                    .send()
                    .await
                    .map_err(|e| error("CreateBucket", e))?;
                Ok(())
            }
            Err(e) => Err(error("HeadBucket", e)),
        }
    }
}

impl Storage for S3Storage {
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> StorageFuture<'a, String> {
        Box::pin(async move {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| error("PutObject", e))?;
            Ok(format!("s3://{}/{key}", self.bucket))
        })
    }

    fn get<'a>(&'a self, url: &'a str) -> StorageFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let (bucket, key) =
                parse_url(url).ok_or_else(|| StorageError::new(format!("not an s3:// URL: {url}")))?;
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| error("GetObject", e))?;
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| StorageError::transient(format!("S3 GetObject {url}: {e}")))?;
            Ok(bytes.into_bytes().to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(parse_url("s3://b/flows/x.tar.gz"), Some(("b", "flows/x.tar.gz")));
        assert_eq!(parse_url("s3://b/"), None);
        assert_eq!(parse_url("file:///x"), None);
    }
}
