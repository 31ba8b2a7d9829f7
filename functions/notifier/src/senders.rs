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
    /// False when the block refuses private addresses (`allow_private_urls`).
    pub private_ok: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a send may take, whatever a custom webhook asks: the notifier's Lambda
/// has 25 s for a send and its bookkeeping.
const MAX_TIMEOUT: Duration = Duration::from_secs(15);

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
        private_ok: true,
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

/// Slack's mrkdwn needs these escaped (a state message like `<class 'ValueError'>` would
/// otherwise be read as a link).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Apprise's colour for an info notification, which Prefect's notifications are.
const INFO_COLOR: &str = "#3AA3E3";
/// Apprise's name for the sender, as Prefect sets it.
const APP_ID: &str = "Prefect Notifications";

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The requests a block of type `slug` with `data` (secrets included) makes to send
/// `body` under `subject`, in the shapes Apprise (which Prefect's blocks use) sends.
pub fn request(slug: &str, data: &Value, subject: &str, body: &str) -> Result<Vec<Request>, SendError> {
    let private_ok = data
        .get("allow_private_urls")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let one = |mut r: Request| {
        r.private_ok = private_ok;
        Ok(vec![r])
    };
    match slug {
        "slack-webhook" => one(post_json(
            required(data, "url", "Slack webhook")?,
            json!({
                "username": APP_ID,
                "mrkdwn": true,
                "attachments": [{
                    "title": slack_escape(subject),
                    "text": slack_escape(body),
                    "color": INFO_COLOR,
                    "footer": APP_ID,
                }],
            }),
        )),
        // Power Automate (Workflows), which Prefect 2.20's block takes: an Adaptive Card.
        "ms-teams-webhook" => {
            let wrap = data.get("wrap").and_then(Value::as_bool).unwrap_or(true);
            one(post_json(
                required(data, "url", "Microsoft Teams webhook")?,
                json!({
                    "type": "message",
                    "attachments": [{
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": null,
                        "content": {
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard",
                            "version": "1.4",
                            "body": [
                                {"type": "TextBlock", "text": subject, "style": "heading", "weight": "Bolder", "size": "Large", "id": "title"},
                                {"type": "TextBlock", "text": body, "style": "default", "wrap": wrap, "id": "body"},
                            ],
                            "msteams": {"width": "full"},
                        },
                    }],
                }),
            ))
        }
        "discord-webhook" => {
            let id = required(data, "webhook_id", "Discord webhook")?;
            let token = required(data, "webhook_token", "Discord webhook")?;
            let mut payload = json!({
                "username": text(data, "botname").unwrap_or_else(|| APP_ID.into()),
                "tts": data.get("tts").and_then(Value::as_bool).unwrap_or(false),
                "wait": true,
                "embeds": [{
                    "title": truncate(subject, 256),
                    "description": truncate(body, 4096),
                    "color": 0x3AA3E3,
                }],
            });
            if data.get("avatar").and_then(Value::as_bool).unwrap_or(false) {
                if let Some(avatar) = text(data, "avatar_url") {
                    payload["avatar_url"] = Value::String(avatar);
                }
            }
            one(post_json(
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
            let url = format!("http://{host}:{port}/{path}hooks/{token}");
            let payload = json!({
                "text": format!("{subject}\r\n{body}"),
                "username": text(data, "botname").unwrap_or_else(|| APP_ID.into()),
            });
            let channels: Vec<String> = data
                .get("channels")
                .and_then(Value::as_array)
                .map(|c| c.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            if channels.is_empty() {
                return Ok(vec![post_json(url, payload)]);
            }
            // One post per channel, as Apprise sends them.
            Ok(channels
                .iter()
                .map(|channel| {
                    let mut p = payload.clone();
                    p["channel"] = Value::String(channel.trim_start_matches('#').to_string());
                    post_json(url.clone(), p)
                })
                .collect())
        }
        "custom-webhook" => Ok(vec![custom_webhook(data, subject, body)?]),
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
    // Prefect's block refuses to load with a placeholder it has no value for.
    for name in ["url", "params", "form_data", "json_data", "headers", "cookies"] {
        if let Some(unknown) = data
            .get(name)
            .and_then(|v| templating::unknown_placeholder(v, &values))
        {
            return Err(SendError::permanent(format!(
                "the custom webhook block's {name} uses {{{{{unknown}}}}}, which is neither subject, body, name nor one of its secrets"
            )));
        }
    }
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
        .unwrap_or(DEFAULT_TIMEOUT)
        .min(MAX_TIMEOUT);
    Ok(Request {
        method,
        url,
        params: pairs(field("params").as_ref()),
        headers,
        body: payload,
        timeout,
        private_ok: true,
    })
}

/// Sends a request; any answer but 2xx is an error. Network failures and 5xx/429 may be
/// retried; other 4xx will fail the same way again.
pub async fn send(http: &reqwest::Client, r: &Request) -> Result<(), SendError> {
    if !r.private_ok {
        refuse_private(&r.url).await?;
    }
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
        Payload::Form(f) => builder.form(f),
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

/// Prefect's `validate_restricted_url`: the host must not be (or resolve to) a private,
/// loopback or link-local address.
async fn refuse_private(url: &str) -> Result<(), SendError> {
    let refused = |why: &str| {
        Err(SendError::permanent(format!(
            "{} is refused: {why}",
            host_of(url)
        )))
    };
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return refused("not a valid URL");
    };
    let Some(host) = parsed.host_str().map(|h| h.trim_matches(['[', ']']).to_string()) else {
        return refused("not a valid URL");
    };
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<std::net::IpAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(found) => found.map(|a| a.ip()).collect(),
        Err(_) => return refused("it could not be resolved"),
    };
    let private = |ip: &std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    if addrs.iter().any(private) {
        return refused("private URLs are not allowed by this block (allow_private_urls is false)");
    }
    Ok(())
}

/// The host of a URL, for messages: webhook URLs carry their secrets in the path.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_get_the_shapes_their_services_read() {
        let [slack] = request(
            "slack-webhook",
            &json!({"url": "https://hooks.slack.com/x"}),
            "S",
            "a <b> & c",
        )
        .unwrap()
        .try_into()
        .unwrap();
        assert_eq!(slack.url, "https://hooks.slack.com/x");
        let Payload::Json(payload) = &slack.body else {
            panic!()
        };
        assert_eq!(payload["attachments"][0]["title"], "S");
        assert_eq!(payload["attachments"][0]["text"], "a &lt;b&gt; &amp; c");
        let [teams] = request(
            "ms-teams-webhook",
            &json!({"url": "https://x.logic.azure.com/workflows/1"}),
            "S",
            "B",
        )
        .unwrap()
        .try_into()
        .unwrap();
        let Payload::Json(card) = &teams.body else {
            panic!()
        };
        assert_eq!(
            card["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["attachments"][0]["content"]["body"][1]["text"], "B");
        let [discord] = request(
            "discord-webhook",
            &json!({"webhook_id": "1", "webhook_token": "t", "botname": "bot", "avatar": false, "avatar_url": "http://a"}),
            "S",
            &"x".repeat(5000),
        )
        .unwrap()
        .try_into()
        .unwrap();
        assert_eq!(discord.url, "https://discord.com/api/webhooks/1/t");
        let Payload::Json(d) = &discord.body else { panic!() };
        assert_eq!(
            d["embeds"][0]["description"].as_str().unwrap().chars().count(),
            4096
        );
        assert!(d.get("avatar_url").is_none());
        let mm = request(
            "mattermost-webhook",
            &json!({"hostname": "mm", "token": "t", "port": 80, "channels": ["ops", "#dev"]}),
            "S",
            "B",
        )
        .unwrap();
        assert_eq!(mm.len(), 2, "one post per channel");
        assert_eq!(mm[0].url, "http://mm:80/hooks/t");
        let Payload::Json(m) = &mm[1].body else { panic!() };
        assert_eq!(
            (m["channel"].as_str(), m["username"].as_str()),
            (Some("dev"), Some(APP_ID))
        );
        let err = request("twilio-sms", &json!({}), "S", "B").unwrap_err();
        assert!(!err.retry && err.message.contains("twilio-sms"));
        assert!(request("slack-webhook", &json!({}), "S", "B").is_err());
        let private = request(
            "slack-webhook",
            &json!({"url": "http://10.0.0.1/x", "allow_private_urls": false}),
            "S",
            "B",
        )
        .unwrap();
        assert!(!private[0].private_ok);
    }

    #[test]
    fn every_block_type_said_to_send_can() {
        let data = json!({"url": "http://h/", "webhook_id": "1", "webhook_token": "t", "hostname": "h", "token": "t"});
        for slug in stratus_store::notifications::SENDING_BLOCK_TYPES {
            assert!(request(slug, &data, "S", "B").is_ok(), "{slug}");
        }
    }

    #[tokio::test]
    async fn private_addresses_are_refused_when_the_block_says_so() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://10.1.2.3/x",
            "http://[::1]:9/x",
            "http://localhost:9/x",
        ] {
            let err = refuse_private(url).await.unwrap_err();
            assert!(
                !err.retry && err.message.contains("private URLs are not allowed"),
                "{url}: {err}"
            );
        }
        assert!(refuse_private("http://93.184.215.14/x").await.is_ok());
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
        let err = request("custom-webhook", &data, "S", "B").unwrap_err();
        assert!(err.message.contains("{{missing}}") && !err.retry, "{err}");
        let mut data = data;
        data["json_data"]["gone"] = json!("{{ token }}");
        data["timeout"] = json!(600);
        let [r] = request("custom-webhook", &data, "S", "B")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(r.method, "PUT");
        assert_eq!(r.url, "http://127.0.0.1:9/hook/s3cret");
        assert_eq!(r.params, vec![("who".to_string(), "ops".to_string())]);
        assert_eq!(
            r.body,
            Payload::Json(json!({"title": "S", "text": "B", "gone": "s3cret"}))
        );
        assert!(r
            .headers
            .contains(&("Authorization".into(), "Bearer s3cret".into())));
        assert!(r.headers.contains(&("cookie".into(), "session=s3cret".into())));
        assert_eq!(r.timeout, MAX_TIMEOUT, "capped");
        let form = json!({"url": "http://h/", "form_data": {"msg": "{{body}}"}});
        let [r] = request("custom-webhook", &form, "S", "a b&c")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(r.body, Payload::Form(vec![("msg".into(), "a b&c".into())]));
        assert_eq!(
            host_of("https://hooks.slack.com/services/T/B/secret"),
            "hooks.slack.com"
        );
    }
}
