//! Policy settings: the strict parse of `spec.settings` into one typed value per mount method.
//!
//! Parsing has three steps. [`raw::RawSettings::read`] reads the keys, refusing unknown
//! keys and naming the key path of a type error ([`decode`]). [`Method::take`]
//! then moves the keys the chosen method uses out of the raw settings, so a key left
//! behind does not apply to that method ([`keys`]). Last, every value is checked
//! ([`check`]); errors ([`errors`]) name the key, the bad value and what is allowed.

pub mod check;
pub mod decode;
pub mod errors;
pub mod keys;
pub mod method;
pub mod raw;

use crate::activation::Activation;
use agent_mount_common::{DEFAULT_HOST_PATH, DEFAULT_RESOURCE_NAME, syntax};
use check::{check, check_list};
use errors::SettingsError;
use method::Method;
use raw::{
    DEFAULT_CONTAINERS_ANNOTATION, DEFAULT_IGNORED_CONTAINERS, MAX_IGNORED_CONTAINERS, RawSettings,
};
use serde_json::Value;
use std::borrow::Borrow;

/// The parsed policy settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The mount method and its settings.
    pub method: Method,
    /// Containers never instrumented unless the annotation names them.
    pub ignored_containers: ContainerNames,
    /// Pod annotation listing exactly the containers to instrument.
    pub containers_annotation: String,
    /// Activation, when the `activation` key is present.
    pub activation: Option<Activation>,
}

impl Default for Settings {
    /// The Odigos-compatible defaults, the same as parsing `{}`.
    fn default() -> Self {
        Settings {
            method: Method::VirtualDevice {
                resource_name: DEFAULT_RESOURCE_NAME.into(),
                container_path: DEFAULT_HOST_PATH.into(),
            },
            ignored_containers: ContainerNames::default_ignored(),
            containers_annotation: DEFAULT_CONTAINERS_ANNOTATION.into(),
            activation: None,
        }
    }
}

impl Settings {
    /// Turns raw settings into typed ones and checks every value.
    pub fn from_raw(mut raw: RawSettings) -> Result<Settings, SettingsError> {
        let kind = raw.mount_method.take().unwrap_or_default();
        let ignored = raw.ignored_containers.take();
        let containers_annotation = raw
            .containers_annotation
            .take()
            .unwrap_or_else(|| DEFAULT_CONTAINERS_ANNOTATION.into());
        let method = Method::take(kind, &mut raw)?;
        // Out before listing the keys left over, which serialises what remains in `raw`:
        // the activation block is read at every admission, its nested keys by name.
        let raw_activation = raw.activation.take();
        // The first in alphabetical order, as ever (the keys were read from a sorted map).
        let leftover = raw
            .set_keys()
            .into_iter()
            .filter(|key| !keys::COMMON_KEYS.contains(&key.as_str()))
            .min()
            .or_else(|| keys::nested_keys(raw_activation.as_ref()));
        if let Some(key) = leftover {
            return Err(keys::not_for_method(key, kind));
        }
        method.validate()?;
        let ignored_containers = match ignored {
            None => ContainerNames::default_ignored(),
            Some(list) => {
                check_list(
                    "ignoredContainers",
                    &list,
                    MAX_IGNORED_CONTAINERS,
                    syntax::dns_label,
                )?;
                ContainerNames(list)
            }
        };
        check(
            "containersAnnotation",
            &containers_annotation,
            syntax::qualified_name,
        )?;
        let mounted = method
            .mounts()
            .map_or(&[][..], |m| m.agent_directories.as_slice());
        if raw_activation.is_some() {
            // The path goes into the variables activation writes (`{dir}`).
            check(
                method.agents_path_key(),
                method.agents_path(),
                syntax::splits_no_variable,
            )?;
        }
        let activation = raw_activation
            .map(|a| Activation::from_raw(a, method.agents_path(), mounted))
            .transpose()?;
        if let Some(activation) = &activation
            && activation.annotation == containers_annotation
        {
            return Err(SettingsError::invalid(
                "activation.annotation",
                &activation.annotation,
                "a key other than containersAnnotation's: one annotation chooses the containers, the other the agents",
            ));
        }
        Ok(Settings {
            method,
            ignored_containers,
            containers_annotation,
            activation,
        })
    }
}

/// Container names, checked free of repeats, looked up by a scan: a few entries (at most
/// [`MAX_IGNORED_CONTAINERS`]), where a `BTreeSet` brought its own B-tree and sort code
/// into the .wasm (BENCHMARKS.md, issue 24).
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerNames(Vec<String>);

impl ContainerNames {
    /// [`DEFAULT_IGNORED_CONTAINERS`].
    fn default_ignored() -> ContainerNames {
        ContainerNames(DEFAULT_IGNORED_CONTAINERS.map(String::from).into())
    }

    /// Whether `name` is one of them; `BTreeSet::contains`'s signature, so callers read
    /// as they did.
    pub fn contains<Q>(&self, name: &Q) -> bool
    where
        String: Borrow<Q>,
        Q: PartialEq + ?Sized,
    {
        self.0.iter().any(|n| n.borrow() == name)
    }
}

/// Parses settings from JSON: the strict read, the method's keys, then every value.
pub fn parse(value: Value) -> Result<Settings, SettingsError> {
    match value {
        Value::Object(map) => Settings::from_raw(RawSettings::read(map)?),
        other => Err(SettingsError::NotAMapping(other.to_string())),
    }
}

#[cfg(test)]
mod tests;
