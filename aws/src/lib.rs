//! The AWS side of Stratus's ports: the work pools' queues on SQS ([`sqs::SqsQueue`]) and
//! flow code in S3 ([`s3::S3Storage`]). Kept out of the store (`stratus-store`) because the SDK takes
//! minutes to build: only what talks to SQS or S3 links this crate.

pub mod s3;
pub mod schema;
pub mod secrets;
pub mod sqs;

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use deadpool_postgres::Pool;
use stratus_http::AppState;
use stratus_store::config::{AwsEndpoint, Settings};
use stratus_store::queue::postgres::PgQueue;
use stratus_store::queue::MessageQueue;
use stratus_store::storage::{LocalStorage, Storage};

/// The SDK configuration for `endpoint`: the default chain of region and credentials, with
/// LocalStack's conventions (region us-east-1, test credentials) when the endpoint is a URL
/// and the environment names none. Timeouts are short: a queue that does not answer must
/// not hold up an API request for long.
pub async fn sdk_config(endpoint: &AwsEndpoint) -> SdkConfig {
    sdk_config_in(endpoint, None).await
}

/// As [`sdk_config`], in `region` when given (an agent learns its queue's region from the
/// API).
pub async fn sdk_config_in(endpoint: &AwsEndpoint, region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(
            // rustls on ring (see the workspace's Cargo.toml), trusting the platform's roots
            // as the SDK's default client does.
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                // Long polls wait up to 20 s.
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(url) = endpoint.url() {
        loader = loader.endpoint_url(url);
        if region.is_none()
            && std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            loader = loader.region(Region::new("us-east-1"));
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() && std::env::var_os("AWS_PROFILE").is_none() {
            loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "localstack",
            ));
        }
    }
    loader.load().await
}

/// The queue the settings ask for: SQS when `STRATUS_SQS_ENDPOINT` is set, else Postgres.
pub async fn queue(settings: &Settings, db: &Pool) -> Arc<dyn MessageQueue> {
    match &settings.sqs_endpoint {
        Some(endpoint) => Arc::new(sqs::SqsQueue::new(
            &sdk_config(endpoint).await,
            &settings.queue_prefix,
        )),
        None => Arc::new(PgQueue::new(db.clone())),
    }
}

/// The composition root: the state of every entry point that serves or changes runs (the
/// local server, each Lambda function, the tests' app), with the queue its settings ask
/// for. Nothing else builds an `AppState`, so no two entry points can publish to
/// different queues.
pub async fn state(settings: Settings, db: Pool) -> Result<AppState, String> {
    let keyring = settings.keyring().map_err(|e| e.to_string())?;
    let queue = queue(&settings, &db).await;
    Ok(AppState::new(db, settings, queue, keyring))
}

/// The flow-code store the settings ask for: S3 when `STRATUS_S3_ENDPOINT` is set, else
/// the local storage folder.
pub async fn storage(settings: &Settings) -> Arc<dyn Storage> {
    match &settings.s3_endpoint {
        Some(endpoint) => Arc::new(s3::S3Storage::new(
            &sdk_config(endpoint).await,
            &settings.s3_bucket,
        )),
        None => Arc::new(LocalStorage::new(&settings.storage_dir)),
    }
}

/// Checks that the configured SQS and S3 answer, creating the bucket if it is missing.
/// The error names the variable and endpoint, and what to do.
pub async fn check(settings: &Settings) -> Result<(), String> {
    if let Some(endpoint) = &settings.sqs_endpoint {
        let q = sqs::SqsQueue::new(&sdk_config(endpoint).await, &settings.queue_prefix);
        q.check().await.map_err(|e| {
            format!(
                "STRATUS_SQS_ENDPOINT={endpoint} is configured but SQS does not answer there: {e}\n\
                 Start LocalStack (localstack/start), or unset STRATUS_SQS_ENDPOINT to serve the work pools' queues from Postgres."
            )
        })?;
    }
    if let Some(endpoint) = &settings.s3_endpoint {
        let s = s3::S3Storage::new(&sdk_config(endpoint).await, &settings.s3_bucket);
        s.ensure_bucket().await.map_err(|e| {
            format!(
                "STRATUS_S3_ENDPOINT={endpoint} is configured but bucket {} cannot be used there: {e}\n\
                 Start LocalStack (localstack/start), or unset STRATUS_S3_ENDPOINT to keep flow code in {}.",
                settings.s3_bucket,
                settings.storage_dir.display()
            )
        })?;
    }
    Ok(())
}

/// A Lambda function's state, from the environment, with the queues the settings ask for
/// (SQS on AWS): what every function that publishes or reads messages starts with.
/// Nothing here touches the database: the pool connects on the first request, and the
/// schema is the deploy's business ([`schema`]).
pub async fn lambda_state() -> Result<AppState, lambda_http::Error> {
    stratus_http::serve::init_tracing();
    let mut settings = Settings::from_env()?;
    secrets::resolve_database_url(&mut settings).await?;
    secrets::resolve_encryption_keys(&mut settings).await?;
    let url = settings.require_database_url()?.to_string();
    let pool = stratus_store::db::pool(&url, settings.pool_size)?;
    Ok(state(settings, pool).await?)
}

/// Runs a route family as a Lambda function behind API Gateway.
pub async fn lambda(routes: axum::Router<AppState>) -> Result<(), lambda_http::Error> {
    let state = lambda_state().await?;
    let app = stratus_http::serve::api(routes, state.clone());
    serve_function(app, &state).await
}

/// Serves `app` (a family's routes, or more) as the function's handler.
pub async fn serve_function(app: axum::Router, state: &AppState) -> Result<(), lambda_http::Error> {
    lambda_http::run(function_app(app, state.db.clone())).await
}

/// What a function adds to its routes: the schema check ([`schema`]), and each answer
/// naming the function (`x-stratus-function`, from `AWS_LAMBDA_FUNCTION_NAME`), so that a
/// deployment, and the emulated one, show which function served a route.
pub fn function_app(app: axum::Router, db: Pool) -> tower_http::normalize_path::NormalizePath<axum::Router> {
    let mut app = app.layer(axum::middleware::from_fn_with_state(
        (schema::SchemaCheck::default(), db),
        schema::gate,
    ));
    let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .and_then(|n| axum::http::HeaderValue::from_str(&n).ok());
    if let Some(name) = name {
        app = app.layer(axum::middleware::map_response(
            move |mut res: axum::response::Response| {
                let name = name.clone();
                async move {
                    res.headers_mut().insert("x-stratus-function", name);
                    res
                }
            },
        ));
    }
    stratus_http::serve::normalize(app)
}
