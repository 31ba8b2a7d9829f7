//! Sending a notification through a block, as the block's `notify(body, subject)` does in
//! Prefect: webhooks of Slack, Microsoft Teams, Discord and Mattermost in the shapes those
//! services accept, and the custom webhook with its templated request.

use std::net::{IpAddr, SocketAddr};
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
/// retried; other 4xx will fail the same way again. A block that refuses private URLs is
/// sent through [`public_only_client`], whatever client the caller has.
pub async fn send(http: &reqwest::Client, r: &Request) -> Result<(), SendError> {
    let http = if r.private_ok {
        http
    } else {
        refuse_private(&r.url).await?;
        public_only_client()?
    };
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
    let answer = builder.send().await.map_err(|e| {
        let private = is_private_refusal(&e);
        SendError {
            message: if private {
                format!(
                    "{} is refused: private URLs are not allowed by this block (allow_private_urls is false)",
                    host_of(&r.url)
                )
            } else {
                format!("could not reach {}: {e}", host_of(&r.url))
            },
            retry: !e.is_builder() && !private,
        }
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
/// loopback or link-local address. This gives the clear, permanent error; what enforces
/// it is [`public_only_client`], which checks the addresses it actually connects to (a
/// name may resolve differently a moment later).
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
    let addrs: Vec<IpAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(found) => found.map(|a| a.ip()).collect(),
        Err(_) => return refused("it could not be resolved"),
    };
    if addrs.iter().copied().any(is_private) {
        return refused("private URLs are not allowed by this block (allow_private_urls is false)");
    }
    Ok(())
}

/// Not a public unicast address: private, loopback, link-local, shared (CGNAT),
/// benchmarking, reserved, multicast, unspecified or broadcast. An IPv6 address that
/// carries an IPv4 one (`::ffff:127.0.0.1`, `::127.0.0.1`, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16`) counts as the address it carries.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = v6
                .to_ipv4_mapped()
                .or_else(|| (s[..6] == [0; 6]).then(|| v6.to_ipv4()).flatten())
                .or_else(|| (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| v4_of(s[6], s[7])))
                .or_else(|| (s[0] == 0x2002).then(|| v4_of(s[1], s[2])));
            if let Some(v4) = embedded {
                return is_private(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
        }
    }
}

fn v4_of(high: u16, low: u16) -> std::net::Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    std::net::Ipv4Addr::new(a, b, c, d)
}

/// Why the public-only client refuses a connection (found in a send error's sources).
#[derive(Debug)]
struct PrivateAddress(String);

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves only to private addresses", self.0)
    }
}

impl std::error::Error for PrivateAddress {}

fn is_private_refusal(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err.is::<PrivateAddress>() || err.to_string().contains("resolves only to private addresses") {
            return true;
        }
        source = err.source();
    }
    false
}

/// Resolves host names to their public addresses only: the connection is made to an
/// address this checked, so a name that resolves to a public address for the check and to
/// a private one a moment later (DNS rebinding) still cannot reach the private one.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(PrivateAddress(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether a redirect may be followed by a block that refuses private URLs: an address
/// in the URL is checked here (it is not resolved), a name by [`PublicOnly`].
fn redirect_allowed(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(v4)) => !is_private(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => !is_private(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => true,
        None => false,
    }
}

/// The client of blocks with `allow_private_urls` false: no proxy (a proxy would resolve
/// the name itself), names resolved by [`PublicOnly`], redirects checked. If it cannot be
/// built, nothing is sent (never through a client without these checks).
pub fn public_only_client() -> Result<&'static reqwest::Client, SendError> {
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(PublicOnly))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 10 {
                    attempt.error("too many redirects")
                } else if redirect_allowed(attempt.url()) {
                    attempt.follow()
                } else {
                    let host = attempt.url().host_str().unwrap_or_default().to_string();
                    attempt.error(PrivateAddress(host))
                }
            }))
            .build()
            .ok()
    });
    client.as_ref().ok_or_else(|| {
        SendError::permanent("the client that checks addresses could not be built".to_string())
    })
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
    fn addresses_that_carry_a_private_ipv4_address_are_private() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "0.1.2.3",
            "169.254.169.254",
            "fd00::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.215.14", "::ffff:93.184.215.14", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(!redirect_allowed(&url("http://[::ffff:127.0.0.1]:9/")));
        assert!(!redirect_allowed(&url("http://127.0.0.1/")));
        assert!(redirect_allowed(&url("https://hooks.example.com/x")));
    }

    /// A listener on loopback stands for a service of the network the notifier runs in.
    async fn loopback_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        (port, hits)
    }

    #[tokio::test]
    async fn a_block_that_refuses_private_urls_never_connects_to_one() {
        let (port, hits) = loopback_listener().await;
        let refusing = |url: String| Request {
            method: "POST".into(),
            url,
            params: vec![],
            headers: vec![],
            body: Payload::None,
            timeout: Duration::from_secs(5),
            private_ok: false,
        };
        let any_client = reqwest::Client::builder().no_proxy().build().unwrap();
        for url in [
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            format!("http://localhost:{port}/hook"),
            format!("http://127.0.0.1:{port}/hook"),
        ] {
            let err = send(&any_client, &refusing(url.clone())).await.unwrap_err();
            assert!(
                !err.retry && err.message.contains("private URLs are not allowed"),
                "{url}: {err}"
            );
        }
        // The check at connection time, without the early one: a name that resolves to a
        // private address (as a rebound name would by then) is not connected to.
        let err = public_only_client()
            .unwrap()
            .get(format!("http://localhost:{port}/hook"))
            .send()
            .await
            .unwrap_err();
        assert!(is_private_refusal(&err), "{err:?}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Allowed, the same listener is reached: it is the check that kept it out.
        let mut allowed = refusing(format!("http://127.0.0.1:{port}/hook"));
        allowed.private_ok = true;
        send(&any_client, &allowed).await.unwrap();
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
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
