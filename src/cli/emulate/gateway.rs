//! The HTTP API in front of the functions: it selects the route as API Gateway does
//! ([`super::routes`]), hands the function a payload format 2.0 event, and turns the
//! function's answer back into HTTP. Its own answers are API Gateway's: 404 `Not Found`
//! for no route, 413 for a body over Lambda's 6 MB invocation limit, 500 when the function
//! fails, 503 when it times out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Map, Value};

use super::routes::RouteTable;
use super::runtime::{Instance, InvokeError, PAYLOAD_LIMIT};
use super::template::ACCOUNT;

/// HTTP API's own limit on a request body.
const BODY_LIMIT: usize = 10 * 1024 * 1024;

pub struct Gateway {
    pub routes: RouteTable,
    pub functions: Vec<Arc<Instance>>,
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

pub async fn handle(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = route(&gw, peer, request, &request_id).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("apigw-requestid", v);
    }
    response
}

async fn route(gw: &Gateway, peer: SocketAddr, request: Request, request_id: &str) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let Some(matched) = gw.routes.select(parts.method.as_str(), &path) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let function = &gw.functions[matched.function];
    let event = event(&EventParts {
        method: parts.method.as_str(),
        path: &path,
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        body: &body,
        peer,
        route_key: &matched.route_key,
        path_parameters: &matched.path_parameters,
        request_id,
    });
    if event.to_string().len() > PAYLOAD_LIMIT {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    }
    match function.invoke(&event).await {
        Ok(answer) => response(answer),
        Err(InvokeError::Timeout) => {
            tracing::warn!(function = %function.id, %path, "the function timed out");
            message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Err(e) => {
            tracing::warn!(function = %function.id, %path, error = ?e, "the function failed");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

pub struct EventParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub peer: SocketAddr,
    pub route_key: &'a str,
    pub path_parameters: &'a BTreeMap<String, String>,
    pub request_id: &'a str,
}

/// The payload format 2.0 event HTTP API sends a Lambda integration.
pub fn event(p: &EventParts) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in p.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        // Repeated headers arrive joined with commas.
        match headers.get_mut(name.as_str()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    let mut query = Map::new();
    for (k, v) in url::form_urlencoded::parse(p.query.as_bytes()) {
        match query.get_mut(k.as_ref()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&v);
            }
            _ => {
                query.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    let host = p
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let now = chrono::Utc::now();
    let (body, encoded) = body_field(p.headers, p.body);
    let mut event = json!({
        "version": "2.0",
        "routeKey": p.route_key,
        "rawPath": p.path,
        "rawQueryString": p.query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "stratus",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(host),
            "http": {
                "method": p.method,
                "path": p.path,
                "protocol": "HTTP/1.1",
                "sourceIp": p.peer.ip().to_string(),
                "userAgent": p.headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or_default(),
            },
            "requestId": p.request_id,
            "routeKey": p.route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": encoded,
    });
    if let Some(body) = body {
        event["body"] = Value::String(body);
    }
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !p.path_parameters.is_empty() {
        event["pathParameters"] = json!(p.path_parameters);
    }
    event
}

/// Text bodies go as they are; anything else base64-encoded, as HTTP API does.
fn body_field(headers: &HeaderMap, body: &Bytes) -> (Option<String>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let textual = content_type.is_empty()
        || content_type.starts_with("text/")
        || content_type.contains("json")
        || content_type.contains("xml")
        || content_type.starts_with("application/x-www-form-urlencoded");
    match std::str::from_utf8(body) {
        Ok(text) if textual => (Some(text.to_string()), false),
        _ => (Some(base64::engine::general_purpose::STANDARD.encode(body)), true),
    }
}

/// The function's answer as HTTP: a `statusCode` object as written, anything else as a
/// 200 JSON body (payload format 2.0 infers the answer).
pub fn response(answer: Value) -> Response {
    let Some(status) = answer.get("statusCode").and_then(Value::as_u64) else {
        return (StatusCode::OK, axum::Json(answer)).into_response();
    };
    let Ok(status) = StatusCode::from_u16(status as u16) else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let body = match answer.get("body").and_then(Value::as_str) {
        None => Vec::new(),
        Some(text) if answer.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) => {
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => bytes,
                Err(_) => return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
            }
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    let mut add = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    };
    let multi = answer.get("multiValueHeaders").and_then(Value::as_object);
    if let Some(single) = answer.get("headers").and_then(Value::as_object) {
        for (name, value) in single {
            let listed = multi.is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case(name)));
            if let (false, Some(v)) = (listed, value.as_str()) {
                add(name, v);
            }
        }
    }
    for (name, values) in multi.into_iter().flatten() {
        for v in values.as_array().into_iter().flatten().filter_map(Value::as_str) {
            add(name, v);
        }
    }
    for cookie in answer
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(c) = cookie.as_str() {
            add("set-cookie", c);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_is_payload_format_2() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:4200"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers.insert("cookie", HeaderValue::from_static("a=1; b=2"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let body = Bytes::from_static(br#"{"name":"f"}"#);
        let params = BTreeMap::from([("proxy".to_string(), String::new())]);
        let e = event(&EventParts {
            method: "POST",
            path: "/api/flows/",
            query: "x=1&x=2&y=%20",
            headers: &headers,
            body: &body,
            peer: "127.0.0.1:5000".parse().expect("addr"),
            route_key: "ANY /api/flows/{proxy+}",
            path_parameters: &params,
            request_id: "r",
        });
        assert_eq!(e["rawPath"], "/api/flows/");
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(e["queryStringParameters"], json!({"x": "1,2", "y": " "}));
        assert_eq!(e["body"], r#"{"name":"f"}"#);
        assert_eq!(e["isBase64Encoded"], false);
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        assert_eq!(e["pathParameters"]["proxy"], "");
    }

    #[test]
    fn binary_bodies_are_base64() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        let (body, encoded) = body_field(&headers, &Bytes::from_static(&[0, 255]));
        assert_eq!((body.as_deref(), encoded), (Some("AP8="), true));
    }

    #[test]
    fn answers_become_http() {
        let r = response(json!({
            "statusCode": 201,
            "headers": {"content-type": "application/json"},
            "cookies": ["s=1; HttpOnly"],
            "body": "e30=",
            "isBase64Encoded": true,
        }));
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["set-cookie"], "s=1; HttpOnly");
        let r = response(json!({"not": "proxy shaped"}));
        assert_eq!(r.status(), StatusCode::OK);
    }
}
