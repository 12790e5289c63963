//! The waPC host: loads the policy and calls it as the Kubewarden policy server does.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use wapc::{WapcHost, WasiParams};
use wasmtime_provider::WasmtimeEngineProviderBuilder;

/// The policy's answer to `validate`, as the policy server reads it (Kubewarden's
/// `ValidationResponse`; read here without the SDK, so the host does not build the
/// policy's Kubernetes types).
#[derive(Debug, Deserialize)]
pub struct ValidationResponse {
    /// Whether the request is accepted.
    pub accepted: bool,
    /// Why it is rejected.
    pub message: Option<String>,
    /// The HTTP code of a rejection.
    pub code: Option<u16>,
    /// The mutated object, when the policy changed it.
    pub mutated_object: Option<Value>,
    /// Annotations for the API server's audit log.
    pub audit_annotations: Option<BTreeMap<String, String>>,
    /// Warnings for the client.
    pub warnings: Option<Vec<String>>,
}

/// The policy's answer to `validate_settings`.
#[derive(Debug, Deserialize)]
pub struct SettingsValidationResponse {
    /// Whether the settings are valid.
    pub valid: bool,
    /// Why not.
    pub message: Option<String>,
}

/// A loaded policy module.
pub struct PolicyHost {
    host: WapcHost,
}

/// The outcome of `validate`: the policy's response and the patch the policy server would send.
#[derive(Debug)]
pub struct Evaluation {
    /// The policy's answer.
    pub response: ValidationResponse,
    /// `json_patch::diff(object, mutated_object)`, empty when nothing changed.
    pub patch: json_patch::Patch,
}

/// Answers the policy's host calls. The SDK's logger calls `kubewarden/tracing/log`,
/// and a failed host call would fail the evaluation, so it gets a success.
fn host_call(
    _id: u64,
    binding: &str,
    namespace: &str,
    operation: &str,
    _payload: &[u8],
) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
    match (binding, namespace, operation) {
        ("kubewarden", "tracing", "log") => Ok(Vec::new()),
        _ => Err(format!(
            "host capability {binding}/{namespace}/{operation} is not offered by this runner"
        )
        .into()),
    }
}

impl PolicyHost {
    /// Loads a policy module from a file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Loads a policy module from its bytes, with WASI (the SDK's module imports it).
    ///
    /// Compiled code is cached in `<target>/wasmtime-cache`, keyed by the module's bytes
    /// and wasmtime's version and settings, so each build of the policy is compiled once,
    /// not once per process or test thread.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let cache = crate::build::target_dir().join("wasmtime-cache");
        let engine = WasmtimeEngineProviderBuilder::new()
            .module_bytes(bytes)
            .wasi_params(WasiParams::default())
            .enable_cache(Some(&cache))
            .build()
            .map_err(|e| format!("cannot compile the policy module: {e}"))?;
        let host = WapcHost::new(Box::new(engine), Some(Box::new(host_call)))
            .map_err(|e| format!("cannot start the waPC host: {e}"))?;
        Ok(PolicyHost { host })
    }

    /// Calls a waPC function with raw bytes.
    pub fn call(&self, operation: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        self.host
            .call(operation, payload)
            .map_err(|e| format!("the policy's {operation} failed: {e}"))
    }

    fn call_json<T: DeserializeOwned>(&self, operation: &str, payload: &[u8]) -> Result<T, String> {
        let answer = self.call(operation, payload)?;
        serde_json::from_slice(&answer).map_err(|e| {
            format!(
                "the policy's {operation} answered something unexpected ({e}): {}",
                String::from_utf8_lossy(&answer)
            )
        })
    }

    /// `protocol_version`, called with an empty payload as the policy server does.
    pub fn protocol_version(&self) -> Result<String, String> {
        self.call_json("protocol_version", b"")
    }

    /// `validate_settings` with the raw settings object.
    pub fn validate_settings(
        &self,
        settings: &Value,
    ) -> Result<SettingsValidationResponse, String> {
        let payload = serde_json::to_vec(settings).map_err(|e| e.to_string())?;
        self.call_json("validate_settings", &payload)
    }

    /// `validate` with `{"request": …, "settings": …}`, and the resulting JSON patch.
    pub fn validate(&self, request: &Value, settings: &Value) -> Result<Evaluation, String> {
        let payload = serde_json::to_vec(&json!({ "request": request, "settings": settings }))
            .map_err(|e| e.to_string())?;
        let response: ValidationResponse = self.call_json("validate", &payload)?;
        let patch = match (&response.mutated_object, request.get("object")) {
            (Some(mutated), Some(original)) => json_patch::diff(original, mutated),
            _ => json_patch::Patch(Vec::new()),
        };
        Ok(Evaluation { response, patch })
    }
}

/// Runs `f` with this thread's host of the built policy (a waPC host is not `Sync`);
/// the `.wasm` is built, or found up to date, once per process. A policy that cannot be
/// built or loaded is the error of every call.
pub fn with_built_policy<T>(f: impl FnOnce(&PolicyHost) -> Result<T, String>) -> Result<T, String> {
    thread_local! {
        static HOST: Result<PolicyHost, String> = crate::build::ensure_built()
            .and_then(|wasm| PolicyHost::load(&wasm));
    }
    HOST.with(|host| host.as_ref().map_err(Clone::clone).and_then(f))
}
