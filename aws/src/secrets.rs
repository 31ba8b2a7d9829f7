//! The database URL of a deployed function comes from Secrets Manager, read once at cold
//! start: `STRATUS_DATABASE_SECRET_ARN` names the secret (the template passes its
//! parameter), so the URL and its password are never in the function's environment. The
//! secret holds the URL, or JSON with a `url`, or the JSON of an RDS-managed secret
//! (`username`, `password`, `host`, `port`, `dbname`). `STRATUS_DATABASE_HOST`, when set,
//! replaces the host (an RDS Proxy's endpoint, when the secret is the instance's).
//! Secrets Manager is reached where SQS is (`STRATUS_SQS_ENDPOINT`: AWS, or LocalStack).

use serde_json::Value;
use stratus_store::config::{AwsEndpoint, Settings};

pub const SECRET_ARN_VAR: &str = "STRATUS_DATABASE_SECRET_ARN";

pub const KEYS_SECRET_ARN_VAR: &str = "STRATUS_ENCRYPTION_KEYS_SECRET_ARN";

/// Sets `settings.encryption_keys` from the secret `STRATUS_ENCRYPTION_KEYS_SECRET_ARN`
/// names, when no keys are given outright.
pub async fn resolve_encryption_keys(settings: &mut Settings) -> Result<(), String> {
    let Some(arn) = std::env::var(KEYS_SECRET_ARN_VAR).ok().filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    if settings.encryption_keys.is_some() {
        return Ok(());
    }
    let endpoint = settings.sqs_endpoint.clone().unwrap_or(AwsEndpoint::Aws);
    let text = read_secret(&endpoint, &arn, "encryption keys").await?;
    let keyring = stratus_store::keyring::Keyring::parse(&text)
        .map_err(|e| format!("the encryption keys secret {arn} is not valid: {e}"))?;
    settings.encryption_keys = Some(std::sync::Arc::new(keyring));
    Ok(())
}

/// A secret's string value; errors name the secret, never its value.
async fn read_secret(endpoint: &AwsEndpoint, arn: &str, what: &str) -> Result<String, String> {
    let client = aws_sdk_secretsmanager::Client::new(&crate::sdk_config(endpoint).await);
    let secret = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            format!(
                "could not read the {what} secret {arn}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        })?;
    secret
        .secret_string()
        .map(str::to_string)
        .ok_or_else(|| format!("the {what} secret {arn} has no string value"))
}

/// Sets `settings.database_url` from the secret, when one is named and no URL is given.
pub async fn resolve_database_url(settings: &mut Settings) -> Result<(), String> {
    let Some(arn) = std::env::var(SECRET_ARN_VAR).ok().filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    if settings.database_url.is_some() {
        return Ok(());
    }
    let endpoint = settings.sqs_endpoint.clone().unwrap_or(AwsEndpoint::Aws);
    let text = read_secret(&endpoint, &arn, "database").await?;
    let mut url = database_url(&text).ok_or_else(|| {
        format!("the database secret {arn} is neither a postgres:// URL nor JSON with url or username, password and host")
    })?;
    if let Ok(host) = std::env::var("STRATUS_DATABASE_HOST") {
        if !host.is_empty() {
            url =
                with_host(&url, &host).ok_or("STRATUS_DATABASE_HOST cannot replace the secret URL's host")?;
        }
    }
    settings.database_url = Some(url);
    Ok(())
}

/// The URL a secret's value gives.
pub fn database_url(secret: &str) -> Option<String> {
    let secret = secret.trim();
    if secret.starts_with("postgres://") || secret.starts_with("postgresql://") {
        return Some(secret.to_string());
    }
    let v: Value = serde_json::from_str(secret).ok()?;
    if let Some(url) = v.get("url").and_then(Value::as_str) {
        return database_url(url);
    }
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    let port = match v.get("port") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "5432".to_string(),
    };
    let mut url = url::Url::parse("postgres://localhost").ok()?;
    url.set_host(Some(field("host")?)).ok()?;
    url.set_port(Some(port.parse().ok()?)).ok()?;
    url.set_username(field("username")?).ok()?;
    url.set_password(field("password")).ok()?;
    url.set_path(field("dbname").unwrap_or("postgres"));
    Some(url.to_string())
}

fn with_host(url: &str, host: &str) -> Option<String> {
    let mut u = url::Url::parse(url).ok()?;
    u.set_host(Some(host)).ok()?;
    Some(u.to_string())
}

/// Stores `value` as a secret named `name` (the emulated deploy does, as an operator would
/// before deploying: the database URL, the encryption keys); returns its ARN.
pub async fn put_secret(endpoint: &AwsEndpoint, name: &str, value: &str) -> Result<String, String> {
    let client = aws_sdk_secretsmanager::Client::new(&crate::sdk_config(endpoint).await);
    fn describe<E: std::error::Error + 'static>(name: &str, e: E) -> String {
        format!(
            "could not store secret {name}: {}",
            aws_sdk_secretsmanager::error::DisplayErrorContext(e)
        )
    }
    match client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
    {
        Ok(out) => out.arn.ok_or_else(|| "CreateSecret returned no ARN".to_string()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_exists_exception()) =>
        {
            client
                .put_secret_value()
                .secret_id(name)
                .secret_string(value)
                .send()
                .await
                .map_err(|e| describe(name, e))?
                .arn
                .ok_or_else(|| "PutSecretValue returned no ARN".to_string())
        }
        Err(e) => Err(describe(name, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_give_urls_in_each_form() {
        assert_eq!(
            database_url("postgres://u:p@h/db").as_deref(),
            Some("postgres://u:p@h/db")
        );
        assert_eq!(
            database_url(r#"{"url": "postgresql://u@h:6432/s"}"#).as_deref(),
            Some("postgresql://u@h:6432/s")
        );
        assert_eq!(
            database_url(r#"{"username": "stratus", "password": "p@ss/w:rd", "host": "db.internal", "port": 5432, "dbname": "stratus", "engine": "postgres"}"#)
                .as_deref(),
            Some("postgres://stratus:p%40ss%2Fw%3Ard@db.internal:5432/stratus")
        );
        assert_eq!(database_url("hunter2"), None);
        assert_eq!(
            with_host("postgres://u:p@db:5432/s", "proxy.example").as_deref(),
            Some("postgres://u:p@proxy.example:5432/s")
        );
    }
}
