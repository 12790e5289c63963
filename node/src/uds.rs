//! gRPC over unix sockets: the kubelet and the plugin talk through files in the plugin directory.

use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Opens a gRPC channel to the unix socket at `path`.
///
/// The URI is a placeholder; the connector ignores it. Its `:authority` is `localhost`,
/// as kubelets send from 1.26 on.
pub async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
}
