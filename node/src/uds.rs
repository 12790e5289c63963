//! gRPC over unix sockets: the kubelet and the plugin talk through files in the plugin directory.

use crate::keeper::FileId;
use crate::watch::file_id;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint, Uri};

/// How long an accept loop pauses after a failed `accept` (e.g. `EMFILE`), so that a
/// process out of file descriptors does not spin while connections close; the metrics
/// listener uses it too.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds `socket`, replacing a stale file there; returns the listener and the file it made,
/// which the plugin's keeper compares later to notice a removed or replaced socket.
pub fn bind(socket: &Path) -> std::io::Result<(UnixListener, FileId)> {
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(socket)?;
    let file = file_id(socket).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the socket vanished right after bind",
        )
    })?;
    Ok((listener, file))
}

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

/// The connections of `listener`, for a tonic server. Tonic skips a failed `accept` (e.g.
/// `EMFILE`) and asks again at once, which spins while the process is out of descriptors;
/// this logs the error and pauses [`ACCEPT_BACKOFF`] first.
pub fn incoming(listener: UnixListener) -> impl Stream<Item = std::io::Result<UnixStream>> {
    UnixListenerStream::new(listener).then(|accepted| async move {
        if let Err(e) = &accepted {
            tracing::warn!(error = %e, retry_in = ?ACCEPT_BACKOFF, "cannot accept a connection; retrying");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
        }
        accepted
    })
}
