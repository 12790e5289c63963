//! One socket served for a plugin: bind it, serve gRPC routes on it, stop, and remove the
//! socket on shutdown if the file there is still the one we bound. Both plugins serve
//! every socket through [`Served`]; their keepers ([`crate::keeper`]) decide when.

use crate::keeper::FileId;
use crate::watch::file_id;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::Server;

/// How long a stopping server may take before it is aborted (open streams and connections
/// must not hang it).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a socket could not be served; logged, then retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve {}: {source}; check that the directory exists and is writable ({flags})", socket.display())]
pub struct ServeError {
    /// The socket.
    pub socket: PathBuf,
    /// The flags that choose the socket's place, for the message.
    pub flags: &'static str,
    /// What the OS said.
    #[source]
    pub source: std::io::Error,
}

/// A socket being served: the file we bound, its gRPC server task and the switch that stops it.
pub struct Served {
    socket: PathBuf,
    file: FileId,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Served {
    /// Binds `socket` (replacing a stale file) and serves the routes `routes` makes on it.
    /// `routes` gets the stop switch, which turns true when this server stops (streams that
    /// should end quietly watch it); `flags` names the flags that place the socket.
    pub fn start(
        socket: &Path,
        flags: &'static str,
        routes: impl FnOnce(watch::Receiver<bool>) -> Routes,
    ) -> Result<Self, ServeError> {
        let (listener, file) = crate::uds::bind(socket).map_err(|source| ServeError {
            socket: socket.to_path_buf(),
            flags,
            source,
        })?;
        let (stop, stopped) = watch::channel(false);
        let mut shutdown = stopped.clone();
        let server = Server::builder()
            .add_routes(routes(stopped))
            .serve_with_incoming_shutdown(crate::uds::incoming(listener), async move {
                let _ = shutdown.changed().await;
            });
        Ok(Served {
            socket: socket.to_path_buf(),
            file,
            stop,
            task: tokio::spawn(server),
        })
    }

    /// The file bound at the socket's path.
    pub fn file(&self) -> FileId {
        self.file
    }

    /// Stops serving a socket whose file is gone or replaced, in the background: a new
    /// server must not wait for the old one (an open connection can hold it up to
    /// [`STOP_TIMEOUT`]).
    pub fn retire(self) {
        tokio::spawn(self.stop());
    }

    /// Stops serving, then removes the socket if the file there is still the one we bound
    /// (someone else's file at that path is left alone).
    pub async fn stop_and_remove(self) {
        let ours = file_id(&self.socket) == Some(self.file);
        let socket = self.socket.clone();
        self.stop().await;
        if ours {
            let _ = std::fs::remove_file(&socket);
        }
    }

    /// Stops serving: the switch first (streams end), then the server, aborted after [`STOP_TIMEOUT`].
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!(socket = %self.socket.display(), "the gRPC server did not stop in time; aborting it");
            self.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gRPC health alone: the empty service name answers SERVING.
    fn health() -> Routes {
        Routes::new(tonic_health::server::health_reporter().1)
    }

    #[tokio::test]
    async fn serves_then_removes_its_own_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("plugin.sock");
        let served = Served::start(&socket, "--dir", |_| health()).unwrap();
        assert_eq!(file_id(&socket), Some(served.file()));
        crate::probe::check(&socket, Duration::from_secs(2))
            .await
            .unwrap();
        served.stop_and_remove().await;
        assert_eq!(file_id(&socket), None);
    }

    #[tokio::test]
    async fn leaves_someone_elses_file_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("plugin.sock");
        let served = Served::start(&socket, "--dir", |_| health()).unwrap();
        std::fs::remove_file(&socket).unwrap();
        std::fs::write(&socket, b"not ours").unwrap();
        served.stop_and_remove().await;
        assert_eq!(std::fs::read(&socket).unwrap(), b"not ours");
    }

    #[tokio::test]
    async fn the_stop_switch_reaches_the_routes() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("plugin.sock");
        let (seen, mut switch) = tokio::sync::oneshot::channel();
        let served = Served::start(&socket, "--dir", |stopped| {
            let _ = seen.send(stopped);
            health()
        })
        .unwrap();
        let mut stopped = (&mut switch).await.unwrap();
        assert!(!*stopped.borrow());
        served.retire();
        tokio::time::timeout(STOP_TIMEOUT, stopped.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(*stopped.borrow());
        assert!(file_id(&socket).is_some(), "retire leaves the file");
    }

    #[tokio::test]
    async fn a_missing_directory_is_a_serve_error_naming_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("missing").join("plugin.sock");
        let Err(err) = Served::start(&socket, "--plugin-dir", |_| health()) else {
            panic!("served into a missing directory")
        };
        assert_eq!(err.socket, socket);
        assert!(err.to_string().contains("(--plugin-dir)"), "{err}");
    }
}
