//! Builds the policy `.wasm` (and the bench's floor module) when missing or stale,
//! installing the wasm target if needed, and shrinks it with wasm-opt
//! (`scripts/optimize-wasm.sh`, which the release's build calls too): the tests, demo and
//! bench load the module the release ships.
//!
//! Cargo's own fingerprints decide whether to rebuild (a no-op build takes a fraction of
//! a second); the script remakes the optimised module only when it is older than cargo's
//! or than the script itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The rustc target the policy is built for.
pub const WASM_TARGET: &str = "wasm32-wasip1";
/// The cargo profile with the size settings.
pub const WASM_PROFILE: &str = "policy";
/// The policy crate.
const POLICY_PACKAGE: &str = "agent-mount";
/// The bench's roundtrip floor module (floor/), built like the policy.
pub const FLOOR_PACKAGE: &str = "agent-mount-floor";

/// The workspace root (the policy crate), the parent of runner/.
pub fn workspace_root() -> PathBuf {
    let runner = Path::new(env!("CARGO_MANIFEST_DIR"));
    runner.parent().unwrap_or(runner).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, or the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The script that shrinks a module, run after cargo's build.
const OPTIMIZE_SCRIPT: &str = "scripts/optimize-wasm.sh";

/// Where [`ensure_built`] puts the optimised policy: what the release ships.
pub fn wasm_path() -> PathBuf {
    optimized_path(&package_wasm_path(POLICY_PACKAGE))
}

/// Where cargo's build with the `policy` profile for wasm32-wasip1 puts a package's module:
/// cargo writes `-` in the name as `_`.
fn package_wasm_path(package: &str) -> PathBuf {
    target_dir()
        .join(WASM_TARGET)
        .join(WASM_PROFILE)
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// The optimised module beside cargo's: `agent_mount.wasm` -> `agent_mount.opt.wasm`.
fn optimized_path(raw: &Path) -> PathBuf {
    raw.with_extension("opt.wasm")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs a command, returning its stderr as the error when it fails.
fn run(mut command: Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot start {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Installs the wasm target when rustc's sysroot lacks it (rustup does not, with RUSTUP_AUTO_INSTALL=0).
fn ensure_target_installed() -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run rustc to find its sysroot: {e}"))?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .is_dir()
    {
        return Ok(());
    }
    eprintln!("runner: installing the {WASM_TARGET} target (rustup target add {WASM_TARGET})");
    let mut rustup = Command::new("rustup");
    rustup
        .args(["target", "add", WASM_TARGET])
        .current_dir(workspace_root());
    run(rustup, "rustup target add")
}

/// Shrinks `raw` with the optimisation script, which does nothing when its output is
/// up to date.
fn optimize(raw: &Path) -> Result<PathBuf, String> {
    let optimized = optimized_path(raw);
    let mut command = Command::new("bash");
    command
        .arg(workspace_root().join(OPTIMIZE_SCRIPT))
        .args([raw, &optimized])
        .current_dir(workspace_root());
    run(command, &format!("optimising {}", raw.display()))?;
    Ok(optimized)
}

/// Builds a workspace package's `.wasm` with the policy's target and profile, optimised
/// as the release's is.
///
/// `cargo rustc --crate-type cdylib`, not `cargo build`: the policy crate is also an rlib
/// (its tests and the runner link it natively), and cargo passes no `-C lto` to a crate
/// that builds an rlib, so `cargo build` ignores the profile's `lto = true`; built alone,
/// the cdylib is linked with LTO (issue 24: 412 KB against 382 KB, and faster).
pub fn build_module(package: &str) -> Result<PathBuf, String> {
    ensure_target_installed()?;
    let mut command = cargo();
    command
        .args(["rustc", "--locked", "--quiet", "-p", package])
        .args(["--profile", WASM_PROFILE, "--target", WASM_TARGET])
        .args(["--lib", "--crate-type", "cdylib"])
        .current_dir(workspace_root());
    run(command, &format!("building the {package} .wasm"))?;
    let path = package_wasm_path(package);
    if path.is_file() {
        optimize(&path)
    } else {
        Err(format!(
            "the build succeeded but {} is missing",
            path.display()
        ))
    }
}

/// Builds the policy once per process (cargo skips the work when it is up to date) and returns its path.
pub fn ensure_built() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| build_module(POLICY_PACKAGE)).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn modified(path: &Path) -> SystemTime {
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    /// The module a build returns is wasm-opt's, smaller than cargo's; it is kept while
    /// up to date and remade once cargo's module is newer.
    #[test]
    fn the_optimised_module_is_remade_only_when_cargos_is_newer() {
        let optimized = build_module(FLOOR_PACKAGE).unwrap();
        let raw = package_wasm_path(FLOOR_PACKAGE);
        assert_eq!(optimized, optimized_path(&raw));
        let size = |path: &Path| std::fs::metadata(path).unwrap().len();
        assert!(
            size(&optimized) < size(&raw),
            "{optimized:?} is not smaller"
        );
        let made = modified(&optimized);
        build_module(FLOOR_PACKAGE).unwrap();
        assert_eq!(modified(&optimized), made, "remade while up to date");
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
        std::fs::File::options()
            .write(true)
            .open(&optimized)
            .unwrap()
            .set_modified(old)
            .unwrap();
        build_module(FLOOR_PACKAGE).unwrap();
        assert!(modified(&optimized) > old, "not remade when stale");
    }
}
