//! An OTLP/HTTP trace receiver: what the agents export, as resources with their spans.
//!
//! It decodes `ExportTraceServiceRequest` from protobuf (`application/x-protobuf`, the
//! Python and Node.js SDKs) through a hand-written subset of the OpenTelemetry protos, and
//! from JSON (`application/json`, the Java stand-in). Metrics and logs are answered and dropped.

use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prost::Message;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One exported resource: its attributes (string values; others as their JSON text) and span names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exported {
    /// The resource's attributes.
    pub resource: BTreeMap<String, String>,
    /// The names of its spans.
    pub spans: Vec<String>,
}

/// The subset of `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest` read here.
#[derive(Clone, PartialEq, Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct Resource {
    #[prost(message, repeated, tag = "1")]
    attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<Span>,
}

#[derive(Clone, PartialEq, Message)]
struct Span {
    #[prost(string, tag = "5")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct KeyValue {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<AnyValue>,
}

/// `AnyValue`'s string case; the other cases are ignored (an attribute then reads as "").
#[derive(Clone, PartialEq, Message)]
struct AnyValue {
    #[prost(string, optional, tag = "1")]
    string_value: Option<String>,
}

/// Why a request body was not an export request.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not protobuf of the expected shape.
    #[error("not an ExportTraceServiceRequest in protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Not JSON.
    #[error("not an ExportTraceServiceRequest in JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The resources of an export request in protobuf.
pub fn decode_protobuf(body: &[u8]) -> Result<Vec<Exported>, DecodeError> {
    let request = ExportTraceServiceRequest::decode(body)?;
    Ok(request
        .resource_spans
        .into_iter()
        .map(|rs| Exported {
            resource: rs
                .resource
                .unwrap_or_default()
                .attributes
                .into_iter()
                .map(|kv| {
                    let value = kv.value.and_then(|v| v.string_value).unwrap_or_default();
                    (kv.key, value)
                })
                .collect(),
            spans: rs
                .scope_spans
                .into_iter()
                .flat_map(|s| s.spans)
                .map(|s| s.name)
                .collect(),
        })
        .collect())
}

/// The resources of an export request in OTLP/JSON.
pub fn decode_json(body: &[u8]) -> Result<Vec<Exported>, DecodeError> {
    let request: Value = serde_json::from_slice(body)?;
    let list = |value: &Value, key: &str| {
        value
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    Ok(list(&request, "resourceSpans")
        .iter()
        .map(|rs| Exported {
            resource: list(rs.get("resource").unwrap_or(&Value::Null), "attributes")
                .iter()
                .map(|kv| {
                    let key = kv.get("key").and_then(Value::as_str).unwrap_or_default();
                    let value = kv
                        .pointer("/value/stringValue")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    (key.to_string(), value.to_string())
                })
                .collect(),
            spans: list(rs, "scopeSpans")
                .iter()
                .flat_map(|s| list(s, "spans"))
                .map(|s| {
                    s.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                })
                .collect(),
        })
        .collect())
}

/// A running receiver on 127.0.0.1, on its own thread and runtime (the processes it hears
/// from are waited for synchronously).
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Exported>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// Starts listening on a free port.
    pub fn start() -> std::io::Result<Receiver> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (thread_seen, thread_errors) = (seen.clone(), errors.clone());
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((stream, _)) = listener.accept().await {
                    let (seen, errors) = (thread_seen.clone(), thread_errors.clone());
                    let handler = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (seen, errors) = (seen.clone(), errors.clone());
                        async move { Ok::<_, hyper::Error>(receive(request, &seen, &errors).await) }
                    });
                    tokio::spawn(
                        http1::Builder::new().serve_connection(TokioIo::new(stream), handler),
                    );
                }
            });
        });
        Ok(Receiver { addr, seen, errors })
    }

    /// Every resource received so far.
    pub fn exported(&self) -> Vec<Exported> {
        self.seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }

    /// The trace requests that could not be decoded, each with its reason.
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .map(|errors| errors.clone())
            .unwrap_or_default()
    }
}

async fn receive(
    request: Request<hyper::body::Incoming>,
    seen: &Mutex<Vec<Exported>>,
    errors: &Mutex<Vec<String>>,
) -> Response<String> {
    let path = request.uri().path().to_string();
    let json = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            );
        }
    };
    if path != "/v1/traces" {
        return answer(StatusCode::OK, String::new());
    }
    let decoded = if json {
        decode_json(&body)
    } else {
        decode_protobuf(&body)
    };
    match decoded {
        Ok(resources) => {
            if let Ok(mut seen) = seen.lock() {
                seen.extend(resources);
            }
            answer(StatusCode::OK, String::new())
        }
        Err(e) => {
            if let Ok(mut errors) = errors.lock() {
                errors.push(e.to_string());
            }
            answer(StatusCode::BAD_REQUEST, e.to_string())
        }
    }
}

fn answer(code: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ExportTraceServiceRequest {
        let attribute = |key: &str, value: &str| KeyValue {
            key: key.to_string(),
            value: Some(AnyValue {
                string_value: Some(value.to_string()),
            }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        attribute("service.name", "checkout"),
                        attribute("k8s.pod.uid", "u-1"),
                    ],
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "GET".to_string(),
                    }],
                }],
            }],
        }
    }

    fn expected() -> Vec<Exported> {
        vec![Exported {
            resource: [("service.name", "checkout"), ("k8s.pod.uid", "u-1")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            spans: vec!["GET".to_string()],
        }]
    }

    #[test]
    fn protobuf_and_json_requests_read_the_same() {
        assert_eq!(
            decode_protobuf(&request().encode_to_vec()).unwrap(),
            expected()
        );
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"checkout"}},
            {"key":"k8s.pod.uid","value":{"stringValue":"u-1"}}]},
            "scopeSpans":[{"scope":{"name":"s"},"spans":[{"name":"GET","kind":1}]}]}]}"#;
        assert_eq!(decode_json(json.as_bytes()).unwrap(), expected());
    }

    #[test]
    fn a_body_that_is_not_a_request_is_an_error() {
        assert!(decode_protobuf(b"\xff\xff\xff").is_err());
        assert!(decode_json(b"not json").is_err());
    }

    #[test]
    fn the_receiver_keeps_what_it_is_sent() {
        let receiver = Receiver::start().unwrap();
        let body = request().encode_to_vec();
        let mut stream = std::net::TcpStream::connect(receiver.addr).unwrap();
        use std::io::{Read, Write};
        write!(
            stream,
            "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(&body).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(receiver.exported(), expected());
    }
}
