//! Test support: a fake kubelet that behaves like the real one, the plugin binary under
//! test as a child process ([`Plugin`], also the process under the CSI plugin of
//! `support/csi.rs`), and a small HTTP client for `/metrics`.
#![allow(dead_code)] // each test crate uses its own subset

use agent_mount_node::device_plugin::api::device_plugin_client::DevicePluginClient;
use agent_mount_node::device_plugin::api::registration_server::{Registration, RegistrationServer};
use agent_mount_node::device_plugin::api::{
    DevicePluginOptions, Empty, ListAndWatchResponse, RegisterRequest,
};
use agent_mount_node::uds;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

/// What the fake kubelet saw.
#[derive(Debug)]
pub enum Seen {
    /// A `Register` call, after the dial-back and `GetDevicePluginOptions` succeeded.
    Registered(RegisterRequest, DevicePluginOptions),
    /// A `ListAndWatch` update.
    List(ListAndWatchResponse),
    /// The plugin ended the `ListAndWatch` stream.
    StreamEnded,
}

struct Handler {
    dir: PathBuf,
    seen: mpsc::UnboundedSender<Seen>,
    streams: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

#[tonic::async_trait]
impl Registration for Handler {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        // Like the kubelet: dial the plugin back inside Register and ask for its options.
        let socket = self.dir.join(&request.endpoint);
        let channel = uds::connect(&socket)
            .await
            .map_err(|e| Status::unavailable(format!("dial back: {e}")))?;
        let mut client = DevicePluginClient::new(channel);
        let options = client
            .get_device_plugin_options(Empty {})
            .await?
            .into_inner();
        let _ = self.seen.send(Seen::Registered(request, options));
        // Then hold a ListAndWatch stream, forwarding every list.
        let seen = self.seen.clone();
        let stream = tokio::spawn(async move {
            let Ok(response) = client.list_and_watch(Empty {}).await else {
                return;
            };
            let mut stream = response.into_inner();
            while let Some(Ok(list)) = stream.next().await {
                let _ = seen.send(Seen::List(list));
            }
            let _ = seen.send(Seen::StreamEnded);
        });
        self.streams.lock().unwrap().push(stream);
        Ok(Response::new(Empty {}))
    }
}

/// A fake kubelet serving `Registration` on `<dir>/kubelet.sock`.
pub struct FakeKubelet {
    pub dir: PathBuf,
    seen: mpsc::UnboundedReceiver<Seen>,
    streams: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl FakeKubelet {
    /// Binds a new `kubelet.sock` (a new inode) and serves.
    pub fn start(dir: &Path) -> FakeKubelet {
        let (tx, seen) = mpsc::unbounded_channel();
        let streams = Arc::new(Mutex::new(Vec::new()));
        let handler = Handler {
            dir: dir.to_path_buf(),
            seen: tx,
            streams: streams.clone(),
        };
        let listener = UnixListener::bind(dir.join("kubelet.sock")).expect("bind kubelet.sock");
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(RegistrationServer::new(handler))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    let _ = stopped.changed().await;
                })
                .await;
        });
        FakeKubelet {
            dir: dir.to_path_buf(),
            seen,
            streams,
            stop,
            server,
        }
    }

    /// Closes the `ListAndWatch` streams without restarting.
    pub fn drop_streams(&self) {
        for stream in self.streams.lock().unwrap().drain(..) {
            stream.abort();
        }
    }

    /// Stops like a dying kubelet: the Registration server stops, then its client
    /// channels to the plugin close.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(1), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
        self.drop_streams();
    }

    /// A kubelet restart, as DESIGN §3a defines it: close all connections, wait 200 ms,
    /// delete every socket in the directory, create `kubelet.sock` anew.
    pub async fn restart(self) -> FakeKubelet {
        let dir = self.die().await;
        FakeKubelet::start(&dir)
    }

    /// The first three steps of a restart; returns the directory for the new kubelet.
    pub async fn die(self) -> PathBuf {
        let dir = self.dir.clone();
        self.stop().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.is_dir() {
                std::fs::remove_file(path).unwrap();
            }
        }
        dir
    }

    /// The next event, if one comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Seen> {
        tokio::time::timeout(within, self.seen.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for a `Register`, skipping lists; panics after `within`.
    pub async fn registered(&mut self, within: Duration) -> (RegisterRequest, DevicePluginOptions) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(Seen::Registered(request, options)) => return (request, options),
                Some(_) => continue,
                None => panic!("no Register within {within:?}"),
            }
        }
    }

    /// Counts `Register` calls during `window`.
    pub async fn registrations_during(&mut self, window: Duration) -> usize {
        let deadline = Instant::now() + window;
        let mut count = 0;
        while let Some(seen) = self
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            if matches!(seen, Seen::Registered(..)) {
                count += 1;
            }
        }
        count
    }

    /// Waits for a list whose devices all have `health` (or an empty list when `None`).
    pub async fn list_with(
        &mut self,
        health: Option<&str>,
        within: Duration,
    ) -> ListAndWatchResponse {
        let deadline = Instant::now() + within;
        loop {
            match self
                .next(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                Some(Seen::List(list)) => {
                    let matches = match health {
                        None => list.devices.is_empty(),
                        Some(h) => {
                            !list.devices.is_empty() && list.devices.iter().all(|d| d.health == h)
                        }
                    };
                    if matches {
                        return list;
                    }
                }
                Some(_) => continue,
                None => panic!("no list with health {health:?} within {within:?}"),
            }
        }
    }
}

/// Lays a version out as `agent-mount-node agents install` does (DESIGN §3c): the tree
/// under `<root>/versions/<name>/`, then `<root>/current` switched to the relative link
/// `versions/<name>` ([`point_current`]).
pub fn install_version(root: &Path, name: &str, files: &[(&str, &str)]) {
    let version = root.join("versions").join(name);
    for (file, content) in files {
        let path = version.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    point_current(root, format!("versions/{name}"));
}

/// Points `<root>/current` at `link` with one `rename(2)` of a new symlink over it, as an
/// install switches it; an empty directory there (a runtime made it for a missing
/// hostPath) is removed first, as the installer does.
pub fn point_current(root: &Path, link: impl AsRef<Path>) {
    let current = root.join("current");
    if current.is_dir() && !current.is_symlink() {
        std::fs::remove_dir(&current).unwrap();
    }
    let new = root.join(".current-new");
    let _ = std::fs::remove_file(&new);
    std::os::unix::fs::symlink(link, &new).unwrap();
    std::fs::rename(&new, &current).unwrap();
}

/// A temp directory laid out like a node: `plugins/` (the kubelet's) and `agents/java/…`.
pub struct Node {
    pub root: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("plugins")).unwrap();
        std::fs::create_dir_all(root.path().join("agents/java")).unwrap();
        std::fs::write(root.path().join("agents/java/javaagent.jar"), b"jar").unwrap();
        Node { root }
    }
    pub fn plugin_dir(&self) -> PathBuf {
        self.root.path().join("plugins")
    }
    pub fn agents(&self) -> PathBuf {
        self.root.path().join("agents")
    }
    pub fn socket(&self) -> PathBuf {
        self.plugin_dir().join("instrumentation.odigos.io_generic")
    }
}

/// The node binary under test: cargo builds it for node's own test crates, and for e2e/'s
/// as its `agent-mount-node-e2e` target (the same `main.rs`: cargo builds binaries only for
/// their own package's tests).
pub fn node_binary() -> &'static str {
    option_env!("CARGO_BIN_EXE_agent-mount-node")
        .or(option_env!("CARGO_BIN_EXE_agent-mount-node-e2e"))
        .expect("a test crate of node/ or e2e/")
}

/// A node binary run as a child process (either plugin, under any launcher); it is sent
/// SIGTERM when dropped, and its output is printed when the test failed.
pub struct Plugin {
    pub child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Plugin {
    /// The command that runs `agent-mount-node device-plugin` for `node` with extra flags.
    pub fn command(node: &Node, extra: &[&str]) -> Command {
        Plugin::command_with(node, &node.agents(), extra)
    }

    /// As [`Plugin::command`], with another `--host-path`.
    pub fn command_with(node: &Node, host_path: &Path, extra: &[&str]) -> Command {
        let mut command = Command::new(node_binary());
        command
            .arg("device-plugin")
            .arg("--plugin-dir")
            .arg(node.plugin_dir())
            .arg("--host-path")
            .arg(host_path)
            .args(["--container-path", "/var/odigos"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        command
    }

    /// Starts the plugin for `node` with extra flags.
    pub fn start(node: &Node, extra: &[&str]) -> Plugin {
        Plugin::spawn(Plugin::command(node, extra))
    }

    /// Runs `command`, collecting its stdout and stderr.
    pub fn spawn(mut command: Command) -> Plugin {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        let readers = pipes
            .into_iter()
            .map(|mut pipe| {
                let output = output.clone();
                // Read as it comes, so a chatty plugin never blocks on a full pipe.
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                        output
                            .lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buffer[..n]));
                    }
                })
            })
            .collect();
        Plugin {
            child,
            output,
            readers,
        }
    }

    /// Its pid (launchers such as `unshare` and `nsenter` exec in place, so it is the plugin's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the plugin wrote so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the plugin's output contains `text`; panics after `within`.
    pub async fn logged(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{text:?} not logged within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: kill(2) with a child's PID and a valid signal has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits for the process to exit, up to `within`.
    pub fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
            if self.wait(Duration::from_secs(3)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if std::thread::panicking() {
            // The pipes close when the process exits; then the readers have everything.
            for reader in self.readers.drain(..) {
                let _ = reader.join();
            }
            // The test failed: show what the plugin said (the harness prints it with the failure).
            eprintln!(
                "----- agent-mount-node output -----\n{}----- end of output -----",
                self.output()
            );
        }
    }
}

/// A port nobody listens on, as `127.0.0.1:<port>`.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

/// `GET path` over HTTP/1.1; the whole response, status line first.
pub async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

/// Waits until `path` exists.
pub async fn wait_for_file(path: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {within:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A node, a fake kubelet and the plugin started with `extra` flags, once registered.
pub async fn registered_plugin(extra: &[&str]) -> (Node, FakeKubelet, Plugin) {
    let node = Node::new();
    let mut kubelet = FakeKubelet::start(&node.plugin_dir());
    let plugin = Plugin::start(&node, extra);
    kubelet.registered(Duration::from_secs(10)).await;
    (node, kubelet, plugin)
}
