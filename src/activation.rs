//! Activation (opt-in): the environment variables that make a runtime load a mounted agent.
//!
//! The `activation` settings become an [`Activation`] at load: the recipes whose agent
//! directory is mounted, every value checked and `{dir}` already expanded, so admission
//! only looks names up. [`annotation`] picks a recipe for each instrumented container
//! and [`env`] merges it into the container's `env` without clobbering the app's own.

pub mod annotation;
pub mod env;
pub mod expansion;
pub mod resource;
pub mod source;

use crate::message::listing;
use crate::settings::check::{Rule, check};
use crate::settings::decode::{
    OPTIONAL_LIST, flag, list, mapping, mapping_fields, missing, object, required_text, text,
};
use crate::settings::errors::SettingsError;
use crate::write::{OwnJson, Prepared};
use agent_mount_common::syntax;
use annotation::Chosen;
use env::{EnvConflict, PreparedEntry};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// Default pod annotation that names the agent(s) to activate.
pub const DEFAULT_ANNOTATION: &str = "agent-mount.io/agents";
/// Stands for the agents' path inside the container in every value.
pub const DIR: &str = "{dir}";
/// Most recipes in `activation.agents`.
pub const MAX_AGENTS: usize = 32;
/// Most entries in one recipe's `env`, and in `activation.env`.
pub const MAX_ENV: usize = 32;
/// Most bytes of one recipe or `activation.env` value once `{dir}` expands (before `$$`).
pub const MAX_VALUE_BYTES: usize = 4096;

/// One built-in recipe: a single variable, joined into the app's own value.
struct BuiltIn {
    name: &'static str,
    directory: &'static str,
    variable: &'static str,
    value: &'static str,
    join: &'static str,
}

/// The built-in recipes, in Odigos's agent layout (docs/activation.md names the source of each).
const BUILT_IN: [BuiltIn; 4] = [
    BuiltIn {
        name: "java",
        directory: "java",
        variable: "JAVA_TOOL_OPTIONS",
        value: "-javaagent:{dir}/java/javaagent.jar",
        join: " ",
    },
    BuiltIn {
        name: "python",
        directory: "python",
        variable: "PYTHONPATH",
        value: "{dir}/python:{dir}/python/opentelemetry/instrumentation/auto_instrumentation",
        join: ":",
    },
    BuiltIn {
        name: "nodejs",
        directory: "nodejs-community",
        variable: "NODE_OPTIONS",
        value: "--require {dir}/nodejs-community/autoinstrumentation.js",
        join: " ",
    },
    BuiltIn {
        name: "loader",
        directory: "loader",
        variable: "LD_PRELOAD",
        value: "{dir}/loader/loader.so",
        join: " ",
    },
];

/// The `activation` block as given.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RawActivation {
    /// Pod annotation naming the agent(s) (default `agent-mount.io/agents`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
    /// virtual-device only: the agents' path inside containers (default `/var/odigos`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    /// Recipes by agent name, replacing the built-in recipe of the same name; `null`
    /// removes the built-in one.
    #[serde(
        serialize_with = "recipes_as_map",
        skip_serializing_if = "Option::is_none"
    )]
    pub agents: Option<RawRecipes>,
    /// Extra variables for every activated container, set only where absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<RawEnvVar>>,
    /// Whether activated containers get a service name and Kubernetes resource
    /// attributes (default `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_attributes: Option<bool>,
}

/// Recipes by agent name as given, in the mapping's order, each name once; `None` (`null`)
/// removes the built-in recipe. A list, not a map: read once, looked up a few times, and a
/// map type of its own would compile its own copy of the B-tree code into the .wasm.
pub type RawRecipes = Vec<(String, Option<RawRecipe>)>;

/// Writes the recipes as the mapping they were given as (`Serialize`).
fn recipes_as_map<S: Serializer>(
    recipes: &Option<RawRecipes>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match recipes {
        Some(recipes) => {
            serializer.collect_map(recipes.iter().map(|(name, recipe)| (name, recipe)))
        }
        None => serializer.serialize_none(),
    }
}

/// A recipe as given: the agent's sub-directory and the variables that load it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RawRecipe {
    /// The agent's sub-directory of the agents' path, e.g. `java`.
    pub directory: String,
    /// The variables to set or join.
    pub env: Vec<RawEnvVar>,
}

/// An env entry as given: `{name, value, join}`, `{name, value}` or `{name, valueFrom}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RawEnvVar {
    /// The variable's name.
    pub name: String,
    /// Its value; `{dir}` expands to the agents' path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Recipes only: the separator to append `value` after the app's own value with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    /// A Kubernetes `EnvVarSource`, set only where the container has no such variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<Value>,
}

impl RawActivation {
    /// The keys, for the unknown-key message.
    const KEYS: &[&str] = &[
        "annotation",
        "containerPath",
        "agents",
        "env",
        "resourceAttributes",
    ];

    /// Reads `activation` at `path` strictly: a mapping, every key optional.
    pub fn read(value: Value, path: &str) -> Result<RawActivation, SettingsError> {
        let mut raw = RawActivation::default();
        mapping_fields(
            value,
            path,
            "write `activation: {}` to turn activation on with the defaults, or remove the key",
            Self::KEYS,
            &mut |name, value, at| {
                match name {
                    "annotation" => raw.annotation = text(value, at)?,
                    "containerPath" => raw.container_path = text(value, at)?,
                    "agents" => raw.agents = Some(recipes(value, at)?),
                    "env" => raw.env = Some(env_vars(value, at, OPTIONAL_LIST)?),
                    "resourceAttributes" => raw.resource_attributes = flag(value, at)?,
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        Ok(raw)
    }
}

/// Reads `activation.agents` at `path`: recipes by agent name, `null` for none.
fn recipes(value: Value, path: &str) -> Result<RawRecipes, SettingsError> {
    let map = mapping(
        value,
        path,
        "write recipes by agent name, e.g. `agents: {loader: null}` to remove the built-in loader recipe, or remove the key for the built-in recipes",
    )?;
    // Loops, not `collect` into a `Result`: each such `collect` was an iterator adapter's
    // code of its own in the .wasm.
    let mut recipes = Vec::with_capacity(map.len());
    for (name, recipe) in map {
        let recipe = match recipe {
            Value::Null => None,
            given => Some(RawRecipe::read(given, &format!("{path}.{name}"))?),
        };
        recipes.push((name, recipe));
    }
    Ok(recipes)
}

/// Reads a list of env entries at `path`; `hint` completes the message for another shape.
fn env_vars(value: Value, path: &str, hint: &str) -> Result<Vec<RawEnvVar>, SettingsError> {
    // A loop: see `recipes`.
    let list = list(value, path, hint)?;
    let mut vars = Vec::with_capacity(list.len());
    for (i, entry) in list.into_iter().enumerate() {
        vars.push(RawEnvVar::read(entry, &format!("{path}[{i}]"))?);
    }
    Ok(vars)
}

impl RawRecipe {
    /// The keys, for the unknown-key message.
    const KEYS: &[&str] = &["directory", "env"];

    /// Reads a recipe at `path`: a mapping with both keys.
    fn read(value: Value, path: &str) -> Result<RawRecipe, SettingsError> {
        let (mut directory, mut env) = (None, None);
        mapping_fields(
            value,
            path,
            "write a recipe such as `java: {directory: java, env: [{name: JAVA_TOOL_OPTIONS, value: \"-javaagent:{dir}/java/javaagent.jar\", join: \" \"}]}`, or `java: null` to remove the built-in recipe",
            Self::KEYS,
            &mut |name, value, at| {
                match name {
                    "directory" => directory = Some(required_text(value, at)?),
                    "env" => env = Some(env_vars(value, at, "")?),
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        Ok(RawRecipe {
            directory: directory.ok_or_else(|| missing(path, "directory"))?,
            env: env.ok_or_else(|| missing(path, "env"))?,
        })
    }
}

impl RawEnvVar {
    /// The keys, for the unknown-key message.
    const KEYS: &[&str] = &["name", "value", "join", "valueFrom"];

    /// Reads an env entry at `path`: a mapping with a `name`.
    fn read(value: Value, path: &str) -> Result<RawEnvVar, SettingsError> {
        let mut name_given = None;
        let mut raw = RawEnvVar::default();
        mapping_fields(
            value,
            path,
            "write an entry such as `{name: OTEL_EXPORTER_OTLP_ENDPOINT, value: \"http://collector:4318\"}`",
            Self::KEYS,
            &mut |name, value, at| {
                match name {
                    "name" => name_given = Some(required_text(value, at)?),
                    "value" => raw.value = text(value, at)?,
                    "join" => raw.join = text(value, at)?,
                    "valueFrom" => raw.value_from = Some(object(value, at)?),
                    _ => return Ok(false),
                }
                Ok(true)
            },
        )?;
        raw.name = name_given.ok_or_else(|| missing(path, "name"))?;
        Ok(raw)
    }
}

/// A checked env entry, `{dir}` expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvEntry {
    /// Set where absent or empty, appended after `separator` to another value.
    Join {
        /// The variable.
        name: String,
        /// Our item.
        value: String,
        /// Between the app's value and ours.
        separator: String,
    },
    /// Set by value where absent.
    Value {
        /// The variable.
        name: String,
        /// The value.
        value: String,
    },
    /// Set from a source where absent.
    ValueFrom {
        /// The variable.
        name: String,
        /// The `EnvVarSource`, as the pod gets it, its JSON written once (issue 24).
        source: Prepared,
    },
}

impl EnvEntry {
    /// The variable's name.
    pub fn name(&self) -> &str {
        match self {
            EnvEntry::Join { name, .. }
            | EnvEntry::Value { name, .. }
            | EnvEntry::ValueFrom { name, .. } => name,
        }
    }
}

/// A checked recipe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipe {
    /// The agent's sub-directory.
    pub directory: String,
    /// The variables, in order, their JSON written.
    pub env: Vec<PreparedEntry>,
}

/// Recipes by agent name, sorted by name, each name once. A list scanned by name, not a
/// `BTreeMap`: at most [`MAX_AGENTS`], looked up a few times a pod, and the map's B-tree
/// code was 5 KB of the module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recipes(Vec<(String, Recipe)>);

impl Recipes {
    /// The recipe of agent `name`, with the name as stored.
    pub fn get_key_value(&self, name: &str) -> Option<(&String, &Recipe)> {
        self.iter().find(|(stored, _)| *stored == name)
    }

    /// The recipe of agent `name` (the policy needs the name too: tests only).
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&Recipe> {
        self.get_key_value(name).map(|(_, recipe)| recipe)
    }

    /// The agents' names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.iter().map(|(name, _)| name)
    }

    /// The recipes, in their names' order.
    pub fn values(&self) -> impl Iterator<Item = &Recipe> {
        self.iter().map(|(_, recipe)| recipe)
    }

    /// The names and recipes, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Recipe)> {
        self.0.iter().map(|(name, recipe)| (name, recipe))
    }

    /// Sets agent `name`'s recipe, replacing one of that name, keeping the names sorted.
    fn insert(&mut self, name: String, recipe: Recipe) {
        let at = self.0.partition_point(|(stored, _)| *stored < name);
        match self.0.get_mut(at) {
            Some(slot) if slot.0 == name => slot.1 = recipe,
            _ => self.0.insert(at, (name, recipe)),
        }
    }
}

/// The checked `activation` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    /// Pod annotation naming the agent(s).
    pub annotation: String,
    /// The available recipes by agent name: only those whose directory is mounted.
    pub agents: Recipes,
    /// Extra variables for every activated container, after the recipe's, their JSON written.
    pub env: Vec<PreparedEntry>,
    /// Whether activated containers get `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource_attributes: bool,
    /// The downward-API entries resource attributes refer to, built once here rather than
    /// for every container (empty when `resource_attributes` is off).
    downward: Vec<PreparedEntry>,
}

impl Activation {
    /// Checks `raw`, expands `{dir}` to `agents_path` and keeps the recipes whose directory
    /// is among `mounted` (`agentDirectories`; empty: the whole directory is mounted).
    ///
    /// `containerPath` is not read here: `Method::take` takes it under virtual-device,
    /// where it is `agents_path`, and refuses it under the other methods.
    pub fn from_raw(
        raw: RawActivation,
        agents_path: &str,
        mounted: &[String],
    ) -> Result<Activation, SettingsError> {
        let annotation = raw.annotation.unwrap_or_else(|| DEFAULT_ANNOTATION.into());
        check("activation.annotation", &annotation, syntax::qualified_name)?;
        let env = entries(
            "activation.env",
            raw.env.unwrap_or_default(),
            false,
            agents_path,
        )?;
        let given = raw.agents.unwrap_or_default();
        if given.len() > MAX_AGENTS {
            return Err(SettingsError::TooMany {
                key: "activation.agents",
                count: given.len(),
                max: MAX_AGENTS,
            });
        }
        let is_mounted = |dir: &str| mounted.is_empty() || mounted.iter().any(|m| m == dir);
        // Built-ins are constants (a test runs them through the checks below): no
        // checks and no raw copies at every admission.
        // Inserted one by one in place, not sorted: a sort would be a copy of its own in the
        // .wasm for four entries.
        let mut agents = Recipes::default();
        for built_in in BUILT_IN
            .iter()
            .filter(|b| !given.iter().any(|(name, _)| name == b.name) && is_mounted(b.directory))
        {
            agents.insert(built_in.name.to_string(), built_in.recipe(agents_path));
        }
        for (name, recipe) in given {
            let Some(recipe) = recipe else {
                // `null`: the built-in recipe of this name is removed (skipped above).
                continue;
            };
            let key = format!("activation.agents.{name}");
            check(&key, &name, syntax::dns_label)?;
            check_field(&key, ".directory", &recipe.directory, syntax::path_segment)?;
            if !is_mounted(&recipe.directory) {
                // A JVM whose -javaagent jar is missing does not start.
                return Err(SettingsError::invalid(
                    format!("{key}.directory"),
                    &recipe.directory,
                    format!(
                        "a mounted agent directory: one of agentDirectories ({}); add it there, or remove this recipe",
                        mounted.join(", ")
                    ),
                ));
            }
            if recipe.env.is_empty() {
                return Err(SettingsError::invalid(
                    format!("{key}.env"),
                    "[]",
                    "at least one variable, e.g. {name: JAVA_TOOL_OPTIONS, value: \"-javaagent:{dir}/java/javaagent.jar\", join: \" \"}",
                ));
            }
            let env = entries(&format!("{key}.env"), recipe.env, true, agents_path)?;
            agents.insert(
                name,
                Recipe {
                    directory: recipe.directory,
                    env,
                },
            );
        }
        let resource_attributes = raw.resource_attributes.unwrap_or(true);
        if resource_attributes {
            written_by_resource(&agents, &env)?;
        }
        Ok(Activation {
            annotation,
            agents,
            env,
            resource_attributes,
            downward: if resource_attributes {
                resource::downward()
            } else {
                Vec::new()
            },
        })
    }

    /// The entries to merge for `recipe`: its own, then `activation.env`.
    pub fn entries<'a>(&'a self, recipe: &'a Recipe) -> impl Iterator<Item = &'a PreparedEntry> {
        recipe.env.iter().chain(&self.env)
    }
}

/// What activation did to a pod.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Activated {
    /// Whether any container's `env` changed.
    pub changed: bool,
    /// Warnings for the admission response: one per cause for the whole pod.
    pub warnings: Vec<String>,
}

/// Merges each chosen container's recipe, then `activation.env`, then its service name
/// and resource attributes, into its `env`; the first conflict stops it, and the caller
/// then leaves the whole pod unchanged. `namespace` is the request's.
pub fn activate(
    pod: &mut Value,
    chosen: &[Chosen],
    activation: &Activation,
    namespace: &str,
    own_json: &mut OwnJson,
) -> Result<Activated, EnvConflict> {
    let mut out = Activated::default();
    let described = (activation.resource_attributes && !chosen.is_empty())
        .then(|| resource::describe(pod, namespace));
    let containers = pod
        .get_mut("spec")
        .and_then(|spec| spec.get_mut("containers"))
        .and_then(Value::as_array_mut);
    let Some(containers) = containers else {
        return Ok(out);
    };
    // Containers with envFrom, and the variables set there: one warning for all.
    let mut env_from: Vec<String> = Vec::new();
    let mut env_from_variables: Vec<String> = Vec::new();
    for choice in chosen {
        let container = containers
            .get_mut(choice.index)
            .and_then(Value::as_object_mut);
        let Some(container) = container else {
            continue;
        };
        let named = described
            .as_ref()
            .map(|pod| resource::entries(pod, container, &activation.downward))
            .unwrap_or_default();
        let merged = env::merge(
            container,
            activation.entries(choice.recipe).chain(named.iter()),
            own_json,
        )?;
        out.changed |= merged.changed;
        if merged.env_from {
            env_from.push(
                container
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
            );
            for name in merged.ours {
                if !env_from_variables.iter().any(|known| known == name) {
                    env_from_variables.push(name.to_string());
                }
            }
        }
    }
    if !env_from.is_empty() {
        let containers: Vec<&str> = env_from.iter().map(String::as_str).collect();
        let variables: Vec<&str> = env_from_variables.iter().map(String::as_str).collect();
        out.warnings.push(format!(
            "agent-mount: containers {} have envFrom, and agent-mount set {} in their env, which replaces a variable of the same name from envFrom: if a ConfigMap or Secret there sets one of them, move that setting into the pod's env (agent-mount then joins into it)",
            listing(&containers),
            listing(&variables)
        ));
    }
    Ok(out)
}

/// Refuses recipe and `activation.env` entries that set what `resourceAttributes` writes.
fn written_by_resource(agents: &Recipes, env: &[PreparedEntry]) -> Result<(), SettingsError> {
    let given = agents
        .iter()
        .map(|(name, recipe)| {
            (
                format!("activation.agents.{name}.env"),
                recipe.env.as_slice(),
            )
        })
        .chain(std::iter::once(("activation.env".to_string(), env)));
    for (key, entries) in given {
        for (i, entry) in entries.iter().enumerate() {
            if resource::WRITTEN.contains(&entry.name()) {
                return Err(SettingsError::invalid(
                    format!("{key}[{i}].name"),
                    entry.name(),
                    format!(
                        "a variable other than {}, which agent-mount sets itself while activation.resourceAttributes is on: remove this entry, or set activation.resourceAttributes: false",
                        resource::WRITTEN.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl BuiltIn {
    /// The checked recipe, `{dir}` expanded to `agents_path`.
    fn recipe(&self, agents_path: &str) -> Recipe {
        Recipe {
            directory: self.directory.into(),
            env: vec![PreparedEntry::new(EnvEntry::Join {
                name: self.variable.into(),
                value: expand(self.value, agents_path),
                separator: self.join.into(),
            })],
        }
    }
}

/// Checks a list of env entries: its length, each entry, and that no name repeats; each
/// checked entry's JSON is written here, once.
fn entries(
    key: &str,
    raw: Vec<RawEnvVar>,
    joins: bool,
    agents_path: &str,
) -> Result<Vec<PreparedEntry>, SettingsError> {
    if raw.len() > MAX_ENV {
        return Err(SettingsError::invalid(
            key,
            &format!("{} entries", raw.len()),
            format!("at most {MAX_ENV} entries"),
        ));
    }
    let mut out: Vec<PreparedEntry> = Vec::with_capacity(raw.len());
    for (i, var) in raw.into_iter().enumerate() {
        let key = format!("{key}[{i}]");
        // At most MAX_ENV entries: a scan of those checked so far, no set of copied names.
        if out.iter().any(|e| e.name() == var.name) {
            return Err(SettingsError::Duplicate {
                key: format!("{key}.name"),
                value: var.name,
            });
        }
        out.push(PreparedEntry::new(entry(&key, var, joins, agents_path)?));
    }
    Ok(out)
}

/// Checks one env entry; `joins` says whether `join` is allowed (recipes only).
fn entry(
    key: &str,
    raw: RawEnvVar,
    joins: bool,
    agents_path: &str,
) -> Result<EnvEntry, SettingsError> {
    check_field(key, ".name", &raw.name, syntax::env_var_name)?;
    if let Some(value) = &raw.value {
        check_length(&format!("{key}.value"), value, agents_path)?;
    }
    let name = raw.name;
    match (raw.value, raw.value_from, raw.join) {
        (Some(_), Some(_), _) => Err(refused(
            key,
            "",
            &name,
            "either value or valueFrom, not both",
        )),
        (None, None, _) => Err(refused(key, "", &name, "a value (or a valueFrom source)")),
        (_, _, Some(join)) if !joins => Err(refused(
            key,
            ".join",
            &join,
            "join only in a recipe's env (activation.agents.<name>.env); activation.env entries are set only where the container has no such variable",
        )),
        (None, Some(_), Some(join)) => Err(refused(
            key,
            ".join",
            &join,
            "join only with value: agent-mount cannot read a valueFrom source to join into",
        )),
        (Some(value), None, Some(separator)) => {
            if separator.is_empty() {
                return Err(refused(
                    key,
                    ".join",
                    "",
                    "a non-empty separator, such as \" \" or \":\"",
                ));
            }
            if value.is_empty() {
                return Err(refused(key, ".value", "", "a non-empty value to join"));
            }
            Ok(EnvEntry::Join {
                name,
                value: expand(&value, agents_path),
                separator,
            })
        }
        (Some(value), None, None) => Ok(EnvEntry::Value {
            name,
            value: expand(&value, agents_path),
        }),
        (None, Some(source), None) => Ok(EnvEntry::ValueFrom {
            name,
            source: Prepared::new(source::value_from(&source, &format!("{key}.valueFrom"))?),
        }),
    }
}

/// The error for `field` of `key` (`field` empty: `key` itself) holding `value`: one copy
/// of the message's building for every refusal of an entry, out of the checks' way.
#[cold]
#[inline(never)]
fn refused(key: &str, field: &str, value: &str, allowed: &str) -> SettingsError {
    SettingsError::invalid(format!("{key}{field}"), value, allowed)
}

/// [`check`] of `field` of `key`: the field's full key is written only for an error.
fn check_field(key: &str, field: &str, value: &str, rule: Rule) -> Result<(), SettingsError> {
    rule(value).map_err(|allowed| refused(key, field, value, &allowed))
}

/// `value` with `{dir}` replaced by the agents' path, each `$` of the path written `$$`:
/// the kubelet expands `$(NAME)` and `$$` in env values, the mount keeps the path as it is.
fn expand(value: &str, agents_path: &str) -> String {
    value.replace(DIR, &expansion::literal(agents_path))
}

/// Refuses a value longer than [`MAX_VALUE_BYTES`] once `{dir}` expands (before `$$`).
fn check_length(key: &str, value: &str, agents_path: &str) -> Result<(), SettingsError> {
    let dirs = value.matches(DIR).count();
    // Saturating: a value is far below usize::MAX, and the policy never panics.
    let len = value
        .len()
        .saturating_sub(dirs.saturating_mul(DIR.len()))
        .saturating_add(dirs.saturating_mul(agents_path.len()));
    if len <= MAX_VALUE_BYTES {
        return Ok(());
    }
    let start: String = value.chars().take(40).collect();
    Err(SettingsError::invalid(
        key,
        &format!("{start}… ({len} bytes once {DIR} expands)"),
        format!("at most {MAX_VALUE_BYTES} bytes once {DIR} expands to the agents' path"),
    ))
}

#[cfg(test)]
mod tests;
