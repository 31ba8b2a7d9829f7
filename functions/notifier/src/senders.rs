//! Sending a notification through a block, as the block's `notify(body, subject)` does in
//! Prefect: webhooks of Slack, Microsoft Teams, Discord and Mattermost in the shapes those
//! services accept, and the custom webhook with its templated request.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::templating;

/// Why a notification was not sent, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub message: String,
    pub retry: bool,
}

impl SendError {
    fn permanent(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            retry: false,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// An HTTP request a block makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub params: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Payload,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn text(data: &Value, field: &str) -> Option<String> {
    match data.get(field)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn required(data: &Value, field: &str, block: &str) -> Result<String, SendError> {
    text(data, field).ok_or_else(|| SendError::permanent(format!("the {block} block has no {field}")))
}

fn post_json(url: String, body: Value) -> Request {
    Request {
        method: "POST".into(),
        url,
        params: Vec::new(),
        headers: Vec::new(),
        body: Payload::Json(body),
        timeout: DEFAULT_TIMEOUT,
    }
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The request a block of type `slug` with `data` (secrets included) makes to send
/// `body` under `subject`.
pub fn request(slug: &str, data: &Value, subject: &str, body: &str) -> Result<Request, SendError> {
    match slug {
        "slack-webhook" => Ok(post_json(
            required(data, "url", "Slack webhook")?,
            json!({"text": format!("*{subject}*\n{body}"), "mrkdwn": true}),
        )),
        "ms-teams-webhook" => Ok(post_json(
            required(data, "url", "Microsoft Teams webhook")?,
            json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": subject,
                "title": subject,
                "text": body,
            }),
        )),
        "discord-webhook" => {
            let id = required(data, "webhook_id", "Discord webhook")?;
            let token = required(data, "webhook_token", "Discord webhook")?;
            let mut payload = json!({
                "content": format!("**{subject}**\r\n{body}"),
                "tts": data.get("tts").and_then(Value::as_bool).unwrap_or(false),
            });
            if let Some(name) = text(data, "botname") {
                payload["username"] = Value::String(name);
            }
            if let Some(avatar) = text(data, "avatar_url") {
                payload["avatar_url"] = Value::String(avatar);
            }
            Ok(post_json(
                format!("https://discord.com/api/webhooks/{id}/{token}"),
                payload,
            ))
        }
        "mattermost-webhook" => {
            let host = required(data, "hostname", "Mattermost webhook")?;
            let token = required(data, "token", "Mattermost webhook")?;
            let port = text(data, "port").unwrap_or_else(|| "8065".into());
            let path = text(data, "path")
                .map(|p| format!("{}/", p.trim_matches('/')))
                .unwrap_or_default();
            let mut payload = json!({"text": format!("{subject}\n{body}")});
            if let Some(name) = text(data, "botname") {
                payload["username"] = Value::String(name);
            }
            let channels: Vec<Value> = data
                .get("channels")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(channel) = channels.first() {
                payload["channel"] = channel.clone();
            }
            Ok(post_json(
                format!("http://{host}:{port}/{path}hooks/{token}"),
                payload,
            ))
        }
        "custom-webhook" => custom_webhook(data, subject, body),
        other => Err(SendError::permanent(format!(
            "blocks of type {other:?} cannot send notifications from Stratus; use a Slack, Microsoft Teams, \
             Discord, Mattermost or custom webhook block"
        ))),
    }
}

/// Prefect's `CustomWebhookNotificationBlock`: every field may hold `{{subject}}`,
/// `{{body}}`, `{{name}}` and the names of its secrets.
fn custom_webhook(data: &Value, subject: &str, body: &str) -> Result<Request, SendError> {
    let mut values: Map<String, Value> = data
        .get("secrets")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    values.insert("subject".into(), Value::from(subject));
    values.insert("body".into(), Value::from(body));
    values.insert("name".into(), data.get("name").cloned().unwrap_or(Value::Null));
    let field = |name: &str| {
        data.get(name)
            .filter(|v| !v.is_null())
            .and_then(|v| templating::apply(v, &values))
    };
    let url = match field("url") {
        Some(Value::String(url)) if !url.is_empty() => url,
        _ => return Err(SendError::permanent("the custom webhook block has no URL")),
    };
    let method = match field("method") {
        Some(Value::String(m)) => m.to_uppercase(),
        _ => "POST".into(),
    };
    let mut headers = pairs(field("headers").as_ref());
    let cookies = pairs(field("cookies").as_ref());
    if !cookies.is_empty() {
        let cookie = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        headers.push(("cookie".into(), cookie));
    }
    let payload = match (field("json_data"), field("form_data")) {
        (Some(_), Some(_)) => {
            return Err(SendError::permanent(
                "the custom webhook block has both JSON Data and Form Data",
            ))
        }
        (Some(json), None) => Payload::Json(json),
        (None, Some(form)) => Payload::Form(pairs(Some(&form))),
        (None, None) => Payload::None,
    };
    let timeout = field("timeout")
        .and_then(|t| t.as_f64())
        .filter(|t| *t > 0.0 && t.is_finite())
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_TIMEOUT);
    Ok(Request {
        method,
        url,
        params: pairs(field("params").as_ref()),
        headers,
        body: payload,
        timeout,
    })
}

/// Sends a request; any answer but 2xx is an error. Network failures and 5xx/429 may be
/// retried; other 4xx will fail the same way again.
pub async fn send(http: &reqwest::Client, r: &Request) -> Result<(), SendError> {
    let method = reqwest::Method::from_bytes(r.method.as_bytes())
        .map_err(|_| SendError::permanent(format!("{:?} is not an HTTP method", r.method)))?;
    let mut builder = http
        .request(method, &r.url)
        .timeout(r.timeout)
        .header("user-agent", "Prefect Notifications");
    if !r.params.is_empty() {
        builder = builder.query(&r.params);
    }
    for (k, v) in &r.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder = match &r.body {
        Payload::None => builder,
        Payload::Json(v) => builder.json(v),
        Payload::Form(f) => builder
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(f)),
    };
    let answer = builder.send().await.map_err(|e| SendError {
        message: format!("could not reach {}: {e}", host_of(&r.url)),
        retry: !e.is_builder(),
    })?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    Err(SendError {
        message: format!("{} answered {status}", host_of(&r.url)),
        retry: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
    })
}

/// The host of a URL, for messages: webhook URLs carry their secrets in the path.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

fn form_encode(pairs: &[(String, String)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_get_the_shapes_their_services_read() {
        let slack = request(
            "slack-webhook",
            &json!({"url": "https://hooks.slack.com/x"}),
            "S",
            "B",
        )
        .unwrap();
        assert_eq!(slack.url, "https://hooks.slack.com/x");
        assert_eq!(
            slack.body,
            Payload::Json(json!({"text": "*S*\nB", "mrkdwn": true}))
        );
        let discord = request(
            "discord-webhook",
            &json!({"webhook_id": "1", "webhook_token": "t", "botname": "bot"}),
            "S",
            "B",
        )
        .unwrap();
        assert_eq!(discord.url, "https://discord.com/api/webhooks/1/t");
        let mm = request(
            "mattermost-webhook",
            &json!({"hostname": "mm", "token": "t", "port": 80}),
            "S",
            "B",
        )
        .unwrap();
        assert_eq!(mm.url, "http://mm:80/hooks/t");
        let err = request("twilio-sms", &json!({}), "S", "B").unwrap_err();
        assert!(!err.retry && err.message.contains("twilio-sms"));
        assert!(request("slack-webhook", &json!({}), "S", "B").is_err());
    }

    #[test]
    fn custom_webhooks_fill_every_field_from_subject_body_name_and_secrets() {
        let data = json!({
            "name": "ops",
            "url": "http://127.0.0.1:9/hook/{{token}}",
            "method": "put",
            "params": {"who": "{{name}}"},
            "json_data": {"title": "{{subject}}", "text": "{{body}}", "gone": "{{missing}}"},
            "form_data": null,
            "headers": {"Authorization": "Bearer {{token}}"},
            "cookies": {"session": "{{token}}"},
            "timeout": 3,
            "secrets": {"token": "s3cret"}
        });
        let r = request("custom-webhook", &data, "S", "B").unwrap();
        assert_eq!(r.method, "PUT");
        assert_eq!(r.url, "http://127.0.0.1:9/hook/s3cret");
        assert_eq!(r.params, vec![("who".to_string(), "ops".to_string())]);
        assert_eq!(r.body, Payload::Json(json!({"title": "S", "text": "B"})));
        assert!(r
            .headers
            .contains(&("Authorization".into(), "Bearer s3cret".into())));
        assert!(r.headers.contains(&("cookie".into(), "session=s3cret".into())));
        assert_eq!(r.timeout, Duration::from_secs(3));
        let form = json!({"url": "http://h/", "form_data": {"msg": "{{body}}"}});
        let r = request("custom-webhook", &form, "S", "a b&c").unwrap();
        assert_eq!(r.body, Payload::Form(vec![("msg".into(), "a b&c".into())]));
        assert_eq!(form_encode(&[("msg".into(), "a b&c".into())]), "msg=a+b%26c");
        assert_eq!(
            host_of("https://hooks.slack.com/services/T/B/secret"),
            "hooks.slack.com"
        );
    }
}
