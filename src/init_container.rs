//! The `k8s-init-container` method's copy init container: its settings, their checks, and
//! the container it inserts.
//!
//! Everything the policy inserts from these settings is checked at load as the API
//! server would check it, so a setting can never make every instrumented pod invalid.

use crate::settings::check::check;
use crate::settings::errors::SettingsError;
use crate::settings::raw::{DEFAULT_SOURCE_PATH, RawInitContainer};
use agent_mount_common::{quantity, syntax};
use schema::{RESOURCE_REQUIREMENTS, SECURITY_CONTEXT, check_object};
use serde_json::{Map, Value, json};

pub mod schema;

/// The copy script of the init container; it takes its paths as arguments: `src dst [dir...]`.
pub const COPY_SCRIPT: &str = r#"set -e; src=$1; dst=$2; shift 2; if [ $# -eq 0 ]; then cp -R "$src"/. "$dst"/; else for d in "$@"; do mkdir -p "$dst/$d"; cp -R "$src/$d"/. "$dst/$d"/; done; fi"#;
/// `$0` of the copy script, shown by `ps` and in error messages.
pub const COPY_SCRIPT_NAME: &str = "agent-mount-copy";
/// Where the init container mounts the emptyDir it fills.
pub const COPY_TARGET: &str = "/agent-mount-target";
/// Non-root user of the init container; numeric, because the kubelet refuses
/// `runAsNonRoot` for images whose user is unset, root or a name.
pub const COPY_USER: i64 = 65532;
/// Default CPU of the copy container, as request and limit.
pub const DEFAULT_CPU: &str = "100m";
/// Default memory of the copy container, as request and limit: a 100 MiB, 10,000-file
/// agent tree needed 144Mi when the copied pages could not be reclaimed (docs/init-container.md).
pub const DEFAULT_MEMORY: &str = "256Mi";
/// Resources the copy container may set.
const RESOURCE_NAMES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
/// Highest user and group ID Kubernetes accepts.
const MAX_ID: i64 = 2_147_483_647;
/// The profile types of `seccompProfile` and `appArmorProfile`.
const PROFILE_TYPES: [&str; 3] = ["RuntimeDefault", "Localhost", "Unconfined"];

/// The copy init container's settings, with defaults applied, and the container they make.
#[derive(Clone, Debug, PartialEq)]
pub struct CopyContainer {
    /// Image holding the agents.
    pub image: String,
    /// Directory of the agents inside the image.
    pub source_path: String,
    /// The init container's name.
    pub name: String,
    /// `sizeLimit` of the emptyDir.
    pub size_limit: Option<String>,
    /// The container as inserted, built once at load: `resources` as given (or the
    /// defaults), the settings' securityContext merged over the hardened default.
    container: Map<String, Value>,
}

impl CopyContainer {
    /// Applies the defaults and builds the container that copies the `agent_directories`
    /// into the volume `volume_name`; `None` when the required image is missing.
    pub fn from_raw(
        raw: RawInitContainer,
        volume_name: &str,
        agent_directories: &[String],
    ) -> Option<CopyContainer> {
        let image = raw.image?;
        let source_path = raw
            .source_path
            .unwrap_or_else(|| DEFAULT_SOURCE_PATH.into());
        let name = raw.name.unwrap_or_else(|| format!("{volume_name}-init"));
        let mut security_context = default_security_context();
        if let Some(overrides) = raw.security_context {
            merge(&mut security_context, overrides);
        }
        let mut container = Map::new();
        container.insert("name".into(), json!(name));
        container.insert("image".into(), json!(image));
        container.insert(
            "command".into(),
            json!(command(&source_path, agent_directories)),
        );
        let mut resources = raw.resources.unwrap_or_else(default_resources);
        if let Value::Object(lists) = &mut resources {
            // Empty lists go once, here: a pod without a budget then takes a plain copy.
            leave_out(lists, &[]);
        }
        if resources.as_object().is_none_or(|lists| !lists.is_empty()) {
            container.insert("resources".into(), resources);
        }
        container.insert("securityContext".into(), security_context);
        container.insert(
            "volumeMounts".into(),
            json!([{"mountPath": COPY_TARGET, "name": volume_name}]),
        );
        Some(CopyContainer {
            image,
            source_path,
            name,
            size_limit: raw.size_limit,
            container,
        })
    }

    /// Checks every value as the API server would check the container built from it.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check("initContainer.image", &self.image, syntax::image)?;
        check(
            "initContainer.sourcePath",
            &self.source_path,
            syntax::absolute_path,
        )?;
        check("initContainer.name", &self.name, syntax::dns_label)?;
        if let Some(limit) = &self.size_limit {
            non_negative_quantity("initContainer.sizeLimit", limit)?;
        }
        if let Some(resources) = self.container.get("resources") {
            validate_resources(resources)?;
        }
        // The merged securityContext holds every key the settings gave, at the same path.
        let security_context = self
            .container
            .get("securityContext")
            .unwrap_or(&Value::Null);
        check_object(
            security_context,
            SECURITY_CONTEXT,
            "initContainer.securityContext",
        )?;
        validate_security_context(security_context)
    }

    /// The script's command: `sh -c <script> <name> <source> <target> [dir...]`.
    pub fn command(&self, agent_directories: &[String]) -> Vec<String> {
        command(&self.source_path, agent_directories)
    }

    /// The init container for a pod, with no request or limit of its own for the
    /// `budgeted` resources (those the pod names in its pod-level `spec.resources`, whose
    /// budget then covers the copy).
    pub fn container(&self, budgeted: &[&str]) -> Map<String, Value> {
        let mut container = self.container.clone();
        if budgeted.is_empty() {
            // Empty lists were left out at load.
            return container;
        }
        if let Some(Value::Object(resources)) = container.get_mut("resources") {
            leave_out(resources, budgeted);
            if resources.is_empty() {
                container.remove("resources");
            }
        }
        container
    }
}

/// The script's command: `sh -c <script> <name> <source> <target> [dir...]`.
fn command(source_path: &str, agent_directories: &[String]) -> Vec<String> {
    let mut command = vec![
        "sh".to_string(),
        "-c".to_string(),
        COPY_SCRIPT.to_string(),
        COPY_SCRIPT_NAME.to_string(),
        source_path.to_string(),
        COPY_TARGET.to_string(),
    ];
    command.extend(agent_directories.iter().cloned());
    command
}

/// The hardened default securityContext of the copy container; it passes PSA `restricted`.
fn default_security_context() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": COPY_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The default resources of the copy container, as requests and limits.
fn default_resources() -> Value {
    let amounts = json!({"cpu": DEFAULT_CPU, "memory": DEFAULT_MEMORY});
    json!({"limits": amounts, "requests": amounts})
}

/// Removes the `budgeted` resources from requests and limits, and a list left empty.
fn leave_out(resources: &mut Map<String, Value>, budgeted: &[&str]) {
    for field in ["requests", "limits"] {
        if let Some(list) = resources.get_mut(field).and_then(Value::as_object_mut) {
            // By key, not `retain`: `retain` is B-tree code of its own in the .wasm (2.4 KB).
            for name in budgeted {
                list.remove(*name);
            }
            if list.is_empty() {
                resources.remove(field);
            }
        }
    }
}

/// Merges `overrides` into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            // Not the entry API: its insertion is a B-tree instance of its own, which no
            // code of the policy uses (BENCHMARKS.md, "Policy: size, step by step").
            for (key, value) in overrides {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, value) => *base = value,
    }
}

/// A quantity by the Kubernetes grammar, 0 or more; returns it in nano-units.
fn non_negative_quantity(key: &str, value: &str) -> Result<i128, SettingsError> {
    match quantity::parse(value) {
        Ok(nanos) if nanos >= 0 => Ok(nanos),
        Ok(_) => Err(SettingsError::invalid(
            key,
            value,
            "expected a quantity of 0 or more",
        )),
        Err(e) => Err(SettingsError::invalid(
            key,
            value,
            format!("expected a Kubernetes quantity such as 64Mi, 1Gi, 500m or 1e3 ({e})"),
        )),
    }
}

/// Resources as the API server checks them: known names, valid quantities, requests ≤ limits.
fn validate_resources(value: &Value) -> Result<(), SettingsError> {
    let key = "initContainer.resources";
    check_object(value, RESOURCE_REQUIREMENTS, key)?;
    if let Some(claims) = value.get("claims").and_then(Value::as_array) {
        let names: Vec<&str> = claims
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect();
        return Err(SettingsError::invalid(
            format!("{key}.claims"),
            &names.join(","),
            "resource claims are not allowed: the copy container cannot rely on claims the pod would have to declare",
        ));
    }
    // The schema let through only strings and numbers; a number is its decimal text.
    let amounts_of = |field: &str| -> Vec<(&String, String)> {
        value
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, amount)| {
                let text = amount
                    .as_str()
                    .map_or_else(|| amount.to_string(), str::to_string);
                (name, text)
            })
            .collect()
    };
    let (limits, requests) = (amounts_of("limits"), amounts_of("requests"));
    // Six amounts at most (three names, two lists): a list, no map.
    let mut parsed: Vec<(&str, &str, i128)> = Vec::with_capacity(limits.len() + requests.len());
    for (field, list) in [("limits", &limits), ("requests", &requests)] {
        for (name, amount) in list {
            let entry = format!("{key}.{field}.{name}");
            if !RESOURCE_NAMES.contains(&name.as_str()) {
                return Err(SettingsError::invalid(
                    entry,
                    name,
                    format!("expected one of: {}", RESOURCE_NAMES.join(", ")),
                ));
            }
            parsed.push((field, name, non_negative_quantity(&entry, amount)?));
        }
    }
    for (name, request) in &requests {
        let amount = |list: &str| {
            parsed
                .iter()
                .find(|&&(field, n, _)| field == list && n == name.as_str())
                .map(|&(_, _, nanos)| nanos)
        };
        let (Some(wanted), Some(limit)) = (amount("requests"), amount("limits")) else {
            continue;
        };
        if wanted > limit {
            let limit_text = limits
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, text)| text.as_str());
            return Err(SettingsError::invalid(
                format!("{key}.requests.{name}"),
                request,
                format!("expected at most the limit {limit_text}: requests must not exceed limits"),
            ));
        }
    }
    Ok(())
}

/// A profile (`seccompProfile`, `appArmorProfile`): a known type, and a localhost profile exactly with `Localhost`.
fn validate_profile(key: &str, type_: &str, localhost: Option<&str>) -> Result<(), SettingsError> {
    if !PROFILE_TYPES.contains(&type_) {
        return Err(SettingsError::invalid(
            format!("{key}.type"),
            type_,
            format!("expected one of: {}", PROFILE_TYPES.join(", ")),
        ));
    }
    match (type_ == "Localhost", localhost.filter(|p| !p.is_empty())) {
        (true, None) => Err(SettingsError::invalid(
            format!("{key}.localhostProfile"),
            "",
            "required when type is Localhost: the profile's path on the node",
        )),
        (false, Some(profile)) => Err(SettingsError::invalid(
            format!("{key}.localhostProfile"),
            profile,
            "allowed only when type is Localhost",
        )),
        _ => Ok(()),
    }
}

/// The merged securityContext as the API server and the kubelet check it; its shape is
/// already checked, so a field of another type than its own cannot occur here.
fn validate_security_context(context: &Value) -> Result<(), SettingsError> {
    let key = "initContainer.securityContext";
    let flag = |field: &str| context.get(field).and_then(Value::as_bool);
    let id = |field: &str| context.get(field).and_then(Value::as_i64);
    for field in ["runAsUser", "runAsGroup"] {
        if let Some(id) = id(field).filter(|id| !(0..=MAX_ID).contains(id)) {
            return Err(SettingsError::invalid(
                format!("{key}.{field}"),
                &id.to_string(),
                format!("expected an ID from 0 to {MAX_ID}"),
            ));
        }
    }
    if flag("runAsNonRoot") == Some(true) && id("runAsUser") == Some(0) {
        return Err(SettingsError::invalid(
            format!("{key}.runAsUser"),
            "0",
            "runAsNonRoot is true, so the kubelet would refuse to start a container running as root: choose a non-zero user or set runAsNonRoot: false",
        ));
    }
    for field in ["seccompProfile", "appArmorProfile"] {
        if let Some(profile) = context.get(field).filter(|p| !p.is_null()) {
            let text = |k: &str| profile.get(k).and_then(Value::as_str);
            validate_profile(
                &format!("{key}.{field}"),
                text("type").unwrap_or_default(),
                text("localhostProfile"),
            )?;
        }
    }
    if let Some(options) = context.get("windowsOptions").filter(|o| !o.is_null()) {
        return Err(SettingsError::invalid(
            format!("{key}.windowsOptions"),
            &options.to_string(),
            "not allowed: the copy container is a Linux container (the API server refuses windowsOptions in a Linux pod, and agent-mount leaves Windows pods unchanged)",
        ));
    }
    let proc_mount = context.get("procMount").and_then(Value::as_str);
    if let Some(mount) = proc_mount.filter(|m| *m != "Default") {
        return Err(SettingsError::invalid(
            format!("{key}.procMount"),
            mount,
            "expected Default (Unmasked needs the pod's hostUsers: false, which the policy cannot ensure)",
        ));
    }
    if flag("allowPrivilegeEscalation") == Some(false) {
        if flag("privileged") == Some(true) {
            return Err(SettingsError::invalid(
                format!("{key}.privileged"),
                "true",
                "not allowed while allowPrivilegeEscalation is false (the API server refuses the pair); the copy needs no privileges",
            ));
        }
        let adds = context
            .pointer("/capabilities/add")
            .and_then(Value::as_array);
        if let Some(cap) = adds
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|c| matches!(*c, "SYS_ADMIN" | "CAP_SYS_ADMIN"))
        {
            return Err(SettingsError::invalid(
                format!("{key}.capabilities.add"),
                cap,
                "not allowed while allowPrivilegeEscalation is false (the API server refuses the pair)",
            ));
        }
    }
    Ok(())
}
