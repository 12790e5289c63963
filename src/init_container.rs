//! The `k8s-init-container` method's copy init container: its settings, their checks, and
//! the container it inserts.
//!
//! Everything the policy inserts from these settings is checked at load as the API
//! server would check it, so a setting can never make every instrumented pod invalid.

use crate::settings::check::check;
use crate::settings::decode::{deserialize_at, typed_without_unknown_keys};
use crate::settings::errors::SettingsError;
use crate::settings::raw::{DEFAULT_SOURCE_PATH, RawInitContainer};
use agent_mount_common::{quantity, syntax};
use k8s_openapi::api::core::v1::{
    Capabilities, ResourceRequirements, SeccompProfile, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

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
/// agent tree needed 144Mi when the copied pages could not be reclaimed (README).
pub const DEFAULT_MEMORY: &str = "256Mi";
/// Resources the copy container may set.
const RESOURCE_NAMES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
/// Highest user and group ID Kubernetes accepts.
const MAX_ID: i64 = 2_147_483_647;
/// The profile types of `seccompProfile` and `appArmorProfile`.
const PROFILE_TYPES: [&str; 3] = ["RuntimeDefault", "Localhost", "Unconfined"];

/// The copy init container's settings, with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct CopyContainer {
    /// Image holding the agents.
    pub image: String,
    /// Directory of the agents inside the image.
    pub source_path: String,
    /// The init container's name.
    pub name: String,
    /// Resources as given, replacing the defaults.
    pub resources: Option<Value>,
    /// Fields merged over the hardened default securityContext.
    pub security_context: Option<Value>,
    /// `sizeLimit` of the emptyDir.
    pub size_limit: Option<String>,
}

impl CopyContainer {
    /// Applies the defaults; `None` when the required image is missing.
    pub fn from_raw(raw: RawInitContainer, volume_name: &str) -> Option<CopyContainer> {
        Some(CopyContainer {
            image: raw.image?,
            source_path: raw
                .source_path
                .unwrap_or_else(|| DEFAULT_SOURCE_PATH.into()),
            name: raw.name.unwrap_or_else(|| format!("{volume_name}-init")),
            resources: raw.resources,
            security_context: raw.security_context,
            size_limit: raw.size_limit,
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
        if let Some(resources) = &self.resources {
            validate_resources(resources)?;
        }
        if let Some(overrides) = &self.security_context {
            typed_without_unknown_keys::<SecurityContext>(
                overrides,
                "initContainer.securityContext",
            )?;
        }
        let merged: SecurityContext = deserialize_at(
            self.security_context_json()?,
            "initContainer.securityContext",
        )?;
        validate_security_context(&merged)
    }

    /// The script's command: `sh -c <script> <name> <source> <target> [dir...]`.
    pub fn command(&self, agent_directories: &[String]) -> Vec<String> {
        let mut command = vec![
            "sh".to_string(),
            "-c".to_string(),
            COPY_SCRIPT.to_string(),
            COPY_SCRIPT_NAME.to_string(),
            self.source_path.clone(),
            COPY_TARGET.to_string(),
        ];
        command.extend(agent_directories.iter().cloned());
        command
    }

    /// The hardened default securityContext with the settings' fields merged over it.
    fn security_context_json(&self) -> Result<Value, SettingsError> {
        let mut security = to_json(&default_security_context())?;
        if let Some(overrides) = &self.security_context {
            merge(&mut security, overrides);
        }
        Ok(security)
    }

    /// The init container that copies the agents from the image into `volume_name`,
    /// with no request or limit of its own for the `budgeted` resources (those the pod
    /// names in its pod-level `spec.resources`, whose budget then covers the copy).
    ///
    /// Assembled from typed parts rather than a typed `Container`, whose serialiser
    /// covers probes, lifecycle hooks and every other container field.
    pub fn container(
        &self,
        volume_name: &str,
        agent_directories: &[String],
        budgeted: &BTreeSet<String>,
    ) -> Result<Map<String, Value>, SettingsError> {
        let mut resources = match &self.resources {
            Some(resources) => resources.clone(),
            None => to_json(&default_resources())?,
        };
        if let Some(resources) = resources.as_object_mut() {
            leave_out(resources, budgeted);
        }
        let target = VolumeMount {
            name: volume_name.to_string(),
            mount_path: COPY_TARGET.to_string(),
            ..VolumeMount::default()
        };
        let mut container = Map::new();
        container.insert("name".into(), json!(self.name));
        container.insert("image".into(), json!(self.image));
        container.insert("command".into(), json!(self.command(agent_directories)));
        if resources.as_object().is_none_or(|r| !r.is_empty()) {
            container.insert("resources".into(), resources);
        }
        container.insert("securityContext".into(), self.security_context_json()?);
        container.insert("volumeMounts".into(), json!([to_json(&target)?]));
        Ok(container)
    }
}

/// Serialises a k8s-openapi value we insert; these types always serialise.
fn to_json<T: Serialize>(value: &T) -> Result<Value, SettingsError> {
    serde_json::to_value(value).map_err(|e| SettingsError::Malformed {
        key: "initContainer".into(),
        message: format!("internal error serialising the copy container: {e}"),
    })
}

/// The hardened default securityContext of the copy container; it passes PSA `restricted`.
fn default_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_non_root: Some(true),
        run_as_user: Some(COPY_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// The default resources of the copy container, as requests and limits.
fn default_resources() -> ResourceRequirements {
    let amounts = BTreeMap::from([
        ("cpu".to_string(), Quantity(DEFAULT_CPU.into())),
        ("memory".to_string(), Quantity(DEFAULT_MEMORY.into())),
    ]);
    ResourceRequirements {
        limits: Some(amounts.clone()),
        requests: Some(amounts),
        ..ResourceRequirements::default()
    }
}

/// Removes the `budgeted` resources from requests and limits, and a list left empty.
fn leave_out(resources: &mut Map<String, Value>, budgeted: &BTreeSet<String>) {
    for field in ["requests", "limits"] {
        if let Some(list) = resources.get_mut(field).and_then(Value::as_object_mut) {
            list.retain(|name, _| !budgeted.contains(name));
            if list.is_empty() {
                resources.remove(field);
            }
        }
    }
}

/// Merges `overrides` into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, value) => *base = value.clone(),
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
    let typed: ResourceRequirements = typed_without_unknown_keys(value, key)?;
    if let Some(claims) = &typed.claims {
        let names: Vec<&str> = claims.iter().map(|c| c.name.as_str()).collect();
        return Err(SettingsError::invalid(
            format!("{key}.claims"),
            &names.join(","),
            "resource claims are not allowed: the copy container cannot rely on claims the pod would have to declare",
        ));
    }
    let mut amounts: BTreeMap<(&str, &str), i128> = BTreeMap::new();
    for (field, list) in [("limits", &typed.limits), ("requests", &typed.requests)] {
        for (name, Quantity(amount)) in list.iter().flatten() {
            let entry = format!("{key}.{field}.{name}");
            if !RESOURCE_NAMES.contains(&name.as_str()) {
                return Err(SettingsError::invalid(
                    entry,
                    name,
                    format!("expected one of: {}", RESOURCE_NAMES.join(", ")),
                ));
            }
            amounts.insert((field, name), non_negative_quantity(&entry, amount)?);
        }
    }
    for (name, Quantity(request)) in typed.requests.iter().flatten() {
        let (Some(wanted), Some(limit)) = (
            amounts.get(&("requests", name.as_str())),
            amounts.get(&("limits", name.as_str())),
        ) else {
            continue;
        };
        if wanted > limit {
            let limit_text = typed
                .limits
                .as_ref()
                .and_then(|l| l.get(name))
                .map_or("", |q| q.0.as_str());
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

/// The merged securityContext as the API server and the kubelet check it.
fn validate_security_context(context: &SecurityContext) -> Result<(), SettingsError> {
    let key = "initContainer.securityContext";
    for (field, id) in [
        ("runAsUser", context.run_as_user),
        ("runAsGroup", context.run_as_group),
    ] {
        if let Some(id) = id.filter(|id| !(0..=MAX_ID).contains(id)) {
            return Err(SettingsError::invalid(
                format!("{key}.{field}"),
                &id.to_string(),
                format!("expected an ID from 0 to {MAX_ID}"),
            ));
        }
    }
    if context.run_as_non_root == Some(true) && context.run_as_user == Some(0) {
        return Err(SettingsError::invalid(
            format!("{key}.runAsUser"),
            "0",
            "runAsNonRoot is true, so the kubelet would refuse to start a container running as root: choose a non-zero user or set runAsNonRoot: false",
        ));
    }
    if let Some(profile) = &context.seccomp_profile {
        validate_profile(
            &format!("{key}.seccompProfile"),
            &profile.type_,
            profile.localhost_profile.as_deref(),
        )?;
    }
    if let Some(profile) = &context.app_armor_profile {
        validate_profile(
            &format!("{key}.appArmorProfile"),
            &profile.type_,
            profile.localhost_profile.as_deref(),
        )?;
    }
    if let Some(options) = &context.windows_options {
        return Err(SettingsError::invalid(
            format!("{key}.windowsOptions"),
            &serde_json::to_string(options).unwrap_or_default(),
            "not allowed: the copy container is a Linux container (the API server refuses windowsOptions in a Linux pod, and agent-mount leaves Windows pods unchanged)",
        ));
    }
    if let Some(mount) = context.proc_mount.as_deref().filter(|m| *m != "Default") {
        return Err(SettingsError::invalid(
            format!("{key}.procMount"),
            mount,
            "expected Default (Unmasked needs the pod's hostUsers: false, which the policy cannot ensure)",
        ));
    }
    if context.allow_privilege_escalation == Some(false) {
        if context.privileged == Some(true) {
            return Err(SettingsError::invalid(
                format!("{key}.privileged"),
                "true",
                "not allowed while allowPrivilegeEscalation is false (the API server refuses the pair); the copy needs no privileges",
            ));
        }
        let adds = context.capabilities.as_ref().and_then(|c| c.add.as_ref());
        if let Some(cap) = adds
            .into_iter()
            .flatten()
            .find(|c| matches!(c.as_str(), "SYS_ADMIN" | "CAP_SYS_ADMIN"))
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
