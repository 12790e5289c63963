//! `--label-node key=value`: once `current` is complete, `install` sets that label on its
//! own Node through the API server with the pod's service-account token (DESIGN §3c), so
//! that host-path and csi-driver pods (whose `requiredNodeLabel` names it) land only on
//! nodes whose agents are in place.
//!
//! One JSON merge patch over HTTPS (rustls, the service account's CA), written by hand: a
//! Kubernetes client crate would bring k8s-openapi and a large build for one request.

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where a pod finds its service account's token and the cluster's CA.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long one connection, write or read may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read.
const MAX_RESPONSE: u64 = 1 << 20;

/// A label `key=value` for the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLabel {
    /// A qualified name.
    pub key: String,
    /// A label value.
    pub value: String,
}

/// Why the node could not be labelled.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// `--label-node` is not `key=value` with a valid key and value.
    #[error(
        "{value:?} is not a node label ({reason}); give key=value, e.g. agent-mount.io/agents=installed"
    )]
    Syntax {
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Not running in a pod: no API server address, token or CA.
    #[error(
        "cannot reach the API server: {0}; --label-node needs the pod's service account (automountServiceAccountToken) and KUBERNETES_SERVICE_HOST"
    )]
    NotInCluster(String),
    /// The connection or the TLS handshake failed.
    #[error("PATCH /api/v1/nodes/{node}: {source}")]
    Io {
        /// The node.
        node: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The API server said no.
    #[error(
        "PATCH /api/v1/nodes/{node}: the API server answered {status}: {body}; the service account needs get and patch on nodes"
    )]
    Refused {
        /// The node.
        node: String,
        /// The HTTP status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
}

/// Parses `key=value` (clap's value parser for `--label-node`).
pub fn parse_label(value: &str) -> Result<NodeLabel, LabelError> {
    let syntax = |reason: String| LabelError::Syntax {
        value: value.into(),
        reason,
    };
    let (key, label) = value
        .split_once('=')
        .ok_or_else(|| syntax("no '='".into()))?;
    agent_mount_common::syntax::qualified_name(key).map_err(|e| syntax(format!("key: {e}")))?;
    agent_mount_common::syntax::label_value(label).map_err(|e| syntax(format!("value: {e}")))?;
    Ok(NodeLabel {
        key: key.into(),
        value: label.into(),
    })
}

/// The API server and how to talk to it.
pub struct ApiServer {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The bearer token.
    pub token: String,
    /// TLS with the cluster's CA; `None` speaks plain HTTP (tests' fake API server only).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ApiServer {
    /// The API server as a pod sees it: `KUBERNETES_SERVICE_HOST`/`_PORT`, the mounted
    /// token, TLS verified against the mounted CA.
    pub fn in_cluster() -> Result<ApiServer, LabelError> {
        let missing = |what: String| LabelError::NotInCluster(what);
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .map_err(|_| missing("KUBERNETES_SERVICE_HOST is not set".into()))?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT")
            .unwrap_or_else(|_| "443".into())
            .parse()
            .map_err(|e| missing(format!("KUBERNETES_SERVICE_PORT: {e}")))?;
        let dir = Path::new(SERVICE_ACCOUNT);
        let token = std::fs::read_to_string(dir.join("token"))
            .map_err(|e| missing(format!("{}/token: {e}", dir.display())))?;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(dir.join("ca.crt"))
            .map_err(|e| missing(format!("{}/ca.crt: {e}", dir.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| missing(format!("{}/ca.crt: {e}", dir.display())))?;
            roots
                .add(cert)
                .map_err(|e| missing(format!("{}/ca.crt: {e}", dir.display())))?;
        }
        // ring, not aws-lc-rs: no cmake or assembler in the static musl build. Deprecated
        // for its lack of post-quantum key exchange, which one PATCH inside the cluster
        // does not need.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| missing(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ApiServer {
            host,
            port,
            token: token.trim().into(),
            tls: Some(Arc::new(config)),
        })
    }

    /// Sets `label` on the Node `node` (a JSON merge patch: other labels stay).
    pub fn label_node(&self, node: &str, label: &NodeLabel) -> Result<(), LabelError> {
        let io = |source: io::Error| LabelError::Io {
            node: node.into(),
            source,
        };
        let request = patch_request(&self.host, node, &self.token, label);
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).map_err(io)?;
        tcp.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        tcp.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        let response = match &self.tls {
            None => exchange(tcp, &request),
            Some(config) => {
                let name =
                    ServerName::try_from(self.host.clone()).map_err(|e| io(io::Error::other(e)))?;
                let connection = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| io(io::Error::other(e)))?;
                exchange(rustls::StreamOwned::new(connection, tcp), &request)
            }
        }
        .map_err(io)?;
        match status_of(&response) {
            Some(200..=299) => Ok(()),
            status => Err(LabelError::Refused {
                node: node.into(),
                status: status.unwrap_or(0),
                body: String::from_utf8_lossy(response.get(..400).unwrap_or(&response))
                    .into_owned(),
            }),
        }
    }
}

/// The HTTP/1.1 request that sets `label` on `node`.
pub fn patch_request(host: &str, node: &str, token: &str, label: &NodeLabel) -> Vec<u8> {
    let body = serde_json::json!({"metadata": {"labels": {&label.key: &label.value}}}).to_string();
    format!(
        "PATCH /api/v1/nodes/{node} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/merge-patch+json\r\nAccept: application/json\r\n\
         User-Agent: agent-mount-node\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Writes `request` and reads the answer until the server closes the connection.
fn exchange(mut stream: impl Read + Write, request: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut response = Vec::new();
    match stream.take(MAX_RESPONSE).read_to_end(&mut response) {
        // A server may close without TLS's close_notify once it has answered.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        result => {
            result?;
        }
    }
    Ok(response)
}

/// The status code of an HTTP/1.1 answer.
fn status_of(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let code = line.split(|b| *b == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A fake API server on loopback: answers one request with `status`, and hands the
    /// request back.
    fn fake_api_server(status: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Headers, then exactly Content-Length bytes of body.
            loop {
                let n = stream.read(&mut buffer).unwrap();
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= length || n == 0 {
                        break;
                    }
                }
            }
            let answer =
                format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
            stream.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (port, server)
    }

    fn server(port: u16) -> ApiServer {
        ApiServer {
            host: "127.0.0.1".into(),
            port,
            token: "t0ken".into(),
            tls: None,
        }
    }

    #[test]
    fn the_node_gets_its_label_with_one_merge_patch() {
        let (port, fake) = fake_api_server("200 OK");
        let label = parse_label("agent-mount.io/agents=installed").unwrap();
        server(port).label_node("node-a", &label).unwrap();
        let request = fake.join().unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("PATCH /api/v1/nodes/node-a HTTP/1.1"));
        let headers: Vec<&str> = lines.collect();
        for expected in [
            "Authorization: Bearer t0ken",
            "Content-Type: application/merge-patch+json",
            "Host: 127.0.0.1",
        ] {
            assert!(headers.contains(&expected), "{expected} in {headers:?}");
        }
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"metadata": {"labels": {"agent-mount.io/agents": "installed"}}})
        );
    }

    #[test]
    fn a_refusal_names_the_status_and_the_rbac_it_needs() {
        let (port, fake) = fake_api_server("403 Forbidden");
        let label = parse_label("a=b").unwrap();
        let error = server(port).label_node("node-a", &label).unwrap_err();
        fake.join().unwrap();
        assert!(
            matches!(error, LabelError::Refused { status: 403, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("patch on nodes"), "{error}");
    }

    #[test]
    fn labels_are_checked() {
        assert_eq!(
            parse_label("agent-mount.io/agents=").unwrap(),
            NodeLabel {
                key: "agent-mount.io/agents".into(),
                value: String::new()
            }
        );
        for bad in ["no-equals", "=v", "bad key=v", "k=bad value", "k=-v"] {
            assert!(
                matches!(parse_label(bad), Err(LabelError::Syntax { ref value, .. }) if value == bad),
                "{bad}"
            );
        }
    }
}
