//! The agents tree the tests start real agents from: `agents/build.py`'s Python and Node.js
//! agents, installed for real from PyPI and npm, and in `java/` a stand-in agent built with
//! `javac` from `e2e/java/` (Maven Central, where the real one comes from, is not reachable
//! from the test machines; the release workflow loads the real jar). Cached under
//! `target/agents-tree/<key>`, where the key is the SHA-256 of every input (the lock files,
//! the build script, the stand-in's sources), so a change to any of them builds it again.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// What the tree's build reads: a change to any of these is a new tree.
const INPUTS: [&str; 10] = [
    "agents/build.py",
    "agents/java.json",
    "agents/python/requirements.txt",
    "agents/python/sitecustomize.py",
    "agents/nodejs-community/package.json",
    "agents/nodejs-community/package-lock.json",
    "agents/nodejs-community/autoinstrumentation.js",
    "e2e/java/AgentStandIn.java",
    "e2e/java/App.java",
    "e2e/java/MANIFEST.MF",
];

/// How to get the JDK's tools.
const JDK: &str = "install a JDK 11 or newer (Debian: apt-get install default-jdk-headless)";

/// The tools the build runs, and how to get each.
const TOOLS: [(&str, &str); 5] = [
    (
        "python3",
        "install Python 3 with pip (Debian: apt-get install python3-pip)",
    ),
    (
        "npm",
        "install Node.js 18 or newer with npm (Debian: apt-get install nodejs npm)",
    ),
    ("javac", JDK),
    ("jar", JDK),
    ("java", JDK),
];

/// A built tree, and the Java app that the stand-in agent is loaded into.
#[derive(Clone, Debug)]
pub struct AgentsTree {
    /// The tree's root (`manifest.json`, `java/`, `python/`, `nodejs-community/`).
    pub root: PathBuf,
    /// The class path of the Java test app (`App`).
    pub java_app: PathBuf,
}

/// Why the tree could not be built.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TreeError {
    /// A tool the build runs is not installed.
    #[error("{tool} is not on PATH, and the agents tree needs it: {install}")]
    MissingTool {
        /// The command.
        tool: &'static str,
        /// How to install it.
        install: &'static str,
    },
    /// A step failed.
    #[error("{step} failed ({status}); its output is above")]
    Failed {
        /// The command, spelled out.
        step: String,
        /// Its exit status.
        status: String,
    },
    /// Reading the inputs or writing the cache failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        message: String,
    },
}

/// The workspace root, the parent of e2e/.
pub fn workspace_root() -> PathBuf {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR"));
    e2e.parent().unwrap_or(e2e).to_path_buf()
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> TreeError + '_ {
    move |e| TreeError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The cache key: SHA-256 over each input's path and contents.
fn key(root: &Path) -> Result<String, TreeError> {
    let mut digest = Sha256::new();
    for input in INPUTS {
        let path = root.join(input);
        let contents = std::fs::read(&path).map_err(io_error(&path))?;
        digest.update(input.as_bytes());
        digest.update((contents.len() as u64).to_le_bytes());
        digest.update(&contents);
    }
    Ok(hex::encode(digest.finalize()))
}

/// Whether `tool` is a command on PATH.
fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn run(command: &mut Command) -> Result<(), TreeError> {
    let status = command.status().map_err(|e| TreeError::Failed {
        step: format!("{command:?}"),
        status: e.to_string(),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(TreeError::Failed {
            step: format!("{command:?}"),
            status: status.to_string(),
        })
    }
}

fn build(root: &Path, cache: &Path) -> Result<AgentsTree, TreeError> {
    let tree = AgentsTree {
        root: cache.join("tree"),
        java_app: cache.join("java-app"),
    };
    if tree.root.join("manifest.json").is_file() && tree.java_app.join("App.class").is_file() {
        // The manifest, the layout and the modes, whether built now or before.
        run(Command::new("python3")
            .arg(root.join("agents/build.py"))
            .arg("check")
            .arg(&tree.root))?;
        return Ok(tree);
    }
    if let Some((tool, install)) = TOOLS.into_iter().find(|(tool, _)| !on_path(tool)) {
        return Err(TreeError::MissingTool { tool, install });
    }
    eprintln!(
        "e2e: building the agents tree into {} (PyPI and npm; a few minutes the first time)",
        cache.display()
    );
    // Trees of other inputs are stale: one tree is kept (about 42 MB).
    if let Some(trees) = cache.parent() {
        for entry in std::fs::read_dir(trees).into_iter().flatten().flatten() {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
        }
    }
    let agent_classes = cache.join("java-agent");
    for dir in [&agent_classes, &tree.java_app] {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let java = root.join("e2e/java");
    // Java 8 class files: the real agent supports Java 8, and so does its stand-in.
    run(Command::new("javac")
        .args(["--release", "8", "-d"])
        .arg(&agent_classes)
        .arg(java.join("AgentStandIn.java")))?;
    run(Command::new("javac")
        .args(["--release", "8", "-d"])
        .arg(&tree.java_app)
        .arg(java.join("App.java")))?;
    let jar = cache.join("agent-stand-in.jar");
    run(Command::new("jar")
        .arg("cfm")
        .arg(&jar)
        .arg(java.join("MANIFEST.MF"))
        .arg("-C")
        .arg(&agent_classes)
        .arg("AgentStandIn.class"))?;
    // build.py checks the tree it built, then the check above runs on every later use.
    run(Command::new("python3")
        .arg(root.join("agents/build.py"))
        .args(["build", "--out"])
        .arg(&tree.root)
        .arg("--java-stand-in")
        .arg(&jar))?;
    Ok(tree)
}

/// The tree for the current inputs, built once per key (cargo's target dir keeps it).
pub fn agents_tree() -> Result<AgentsTree, TreeError> {
    static TREE: OnceLock<Result<AgentsTree, TreeError>> = OnceLock::new();
    TREE.get_or_init(|| {
        let root = workspace_root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        build(&root, &target.join("agents-tree").join(key(&root)?))
    })
    .clone()
}
