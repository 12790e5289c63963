//! Which agent each instrumented container activates: the pod's activation annotation.
//!
//! The annotation holds one agent name for every instrumented container (`java`) or
//! `container=agent` pairs (`checkout=java, worker=python`). Whatever it names that
//! cannot be activated gives a warning, and that container is mounted only.

use super::{Activation, Recipe};
use crate::message::{echo, listing, shorten};
use serde_json::Value;
use std::collections::HashSet;

/// One container to activate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chosen<'a> {
    /// Index into `spec.containers`.
    pub index: usize,
    /// The agent's name.
    pub agent: &'a str,
    /// Its recipe.
    pub recipe: &'a Recipe,
}

/// The containers to activate, with their recipe, and what the user should know.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Choice<'a> {
    /// The containers, in pod order.
    pub containers: Vec<Chosen<'a>>,
    /// Warnings for the admission response.
    pub warnings: Vec<String>,
}

/// Reads the annotation of `pod` (whose container names are `names`) and picks a recipe
/// for each of the `instrumented` containers (sorted indices) it names.
pub fn choose<'a>(
    pod: &Value,
    names: &[&str],
    instrumented: &[usize],
    activation: &'a Activation,
) -> Choice<'a> {
    let key = &activation.annotation;
    let value = pod
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(key));
    let text = match value {
        None => return Choice::default(),
        Some(Value::String(text)) => text.trim(),
        Some(other) => {
            return Choice {
                containers: Vec::new(),
                warnings: vec![format!(
                    "agent-mount: annotation {key:?} must be a string, one agent name (e.g. \"java\") or container=agent pairs (e.g. \"app=java,worker=python\"), got {}; no container was activated",
                    echo(other)
                )],
            };
        }
    };
    if text.is_empty() {
        return Choice::default();
    }
    let instrumented_names: Vec<(usize, &str)> = instrumented
        .iter()
        .filter_map(|&i| names.get(i).map(|n| (i, *n)))
        .collect();
    if !text.contains('=') {
        return one_agent(text, &instrumented_names, activation);
    }
    pairs(text, &instrumented_names, activation)
}

/// The agents a warning offers.
fn available(activation: &Activation) -> String {
    let names: Vec<&str> = activation.agents.keys().map(String::as_str).collect();
    if names.is_empty() {
        "none (no recipe's directory is mounted)".into()
    } else {
        names.join(", ")
    }
}

/// `java`: the one agent for every instrumented container.
fn one_agent<'a>(
    agent: &str,
    instrumented: &[(usize, &str)],
    activation: &'a Activation,
) -> Choice<'a> {
    match activation.agents.get_key_value(agent) {
        Some((agent, recipe)) => Choice {
            containers: instrumented
                .iter()
                .map(|&(index, _)| Chosen {
                    index,
                    agent,
                    recipe,
                })
                .collect(),
            warnings: Vec::new(),
        },
        None => {
            let containers: Vec<&str> = instrumented.iter().map(|&(_, n)| n).collect();
            Choice {
                containers: Vec::new(),
                warnings: vec![format!(
                    "agent-mount: annotation {:?} names agent {:?}, which is not available (available: {}); containers {} are mounted but not activated: correct the name, or give its recipe in activation.agents with a mounted directory",
                    activation.annotation,
                    shorten(agent),
                    available(activation),
                    listing(&containers)
                )],
            }
        }
    }
}

/// Up to this many names, a set of names is a list scanned: most pods name a few
/// containers, and hashing each name cost more than the scan (1% of `validate` with
/// activation on).
const SCANNED: usize = 16;

/// A set of names: a list while it holds at most [`SCANNED`], hashed beyond, so that an
/// annotation of thousands of names is not scanned for each (the type `select` builds).
enum Names<'a> {
    Few(Vec<&'a str>),
    Many(HashSet<&'a str>),
}

impl Default for Names<'_> {
    fn default() -> Self {
        Names::Few(Vec::new())
    }
}

impl<'a> Names<'a> {
    /// Adds `name`; whether it was not there yet.
    fn insert(&mut self, name: &'a str) -> bool {
        match self {
            Names::Few(names) if names.contains(&name) => false,
            Names::Few(names) if names.len() < SCANNED => {
                names.push(name);
                true
            }
            Names::Few(names) => {
                let mut set: HashSet<&str> = names.drain(..).collect();
                set.insert(name);
                *self = Names::Many(set);
                true
            }
            Names::Many(set) => set.insert(name),
        }
    }

    /// Whether `name` is there.
    fn contains(&self, name: &str) -> bool {
        match self {
            Names::Few(names) => names.contains(&name),
            Names::Many(set) => set.contains(name),
        }
    }
}

/// `checkout=java,worker=python`: an agent per named container.
fn pairs<'a>(text: &str, instrumented: &[(usize, &str)], activation: &'a Activation) -> Choice<'a> {
    // A set of names (a map would be hash-map code of its own in the .wasm); a named
    // container's index is then found by a scan of the instrumented ones, at most once per
    // container (`seen` is asked first).
    let mut instrumented_names = Names::default();
    for &(_, name) in instrumented {
        instrumented_names.insert(name);
    }
    let mut chosen: Vec<Chosen<'a>> = Vec::new();
    let mut seen = Names::default();
    let (mut malformed, mut twice, mut not_instrumented, mut unknown) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((container, agent)) = item
            .split_once('=')
            .map(|(c, a)| (c.trim(), a.trim()))
            .filter(|(c, a)| !c.is_empty() && !a.is_empty())
        else {
            malformed.push(item);
            continue;
        };
        if !seen.insert(container) {
            twice.push(container);
            continue;
        }
        let found = instrumented_names
            .contains(container)
            .then(|| instrumented.iter().find(|&&(_, name)| name == container))
            .flatten();
        let Some(&(index, _)) = found else {
            not_instrumented.push(container);
            continue;
        };
        match activation.agents.get_key_value(agent) {
            // In pod order as they come: each container once (the `seen` check), and no
            // sort, whose code would be a copy of its own in the .wasm.
            Some((agent, recipe)) => chosen.insert(
                chosen.partition_point(|c| c.index < index),
                Chosen {
                    index,
                    agent,
                    recipe,
                },
            ),
            None => unknown.push(item),
        }
    }
    let key = &activation.annotation;
    let mut warnings = Vec::new();
    if !malformed.is_empty() {
        warnings.push(format!(
            "agent-mount: annotation {key:?} has items that are not container=agent pairs: {}; they were ignored: write each as container=agent",
            listing(&malformed)
        ));
    }
    if !twice.is_empty() {
        warnings.push(format!(
            "agent-mount: annotation {key:?} names containers {} more than once; the first pair of each counts: keep one pair per container",
            listing(&twice)
        ));
    }
    if !not_instrumented.is_empty() {
        let names: Vec<&str> = instrumented.iter().map(|&(_, n)| n).collect();
        warnings.push(format!(
            "agent-mount: annotation {key:?} names containers that are not instrumented: {}; the instrumented containers are {}: correct the names",
            listing(&not_instrumented),
            listing(&names)
        ));
    }
    if !unknown.is_empty() {
        warnings.push(format!(
            "agent-mount: annotation {key:?} names agents that are not available: {} (available: {}); those containers are mounted but not activated: correct the names, or give their recipes in activation.agents with a mounted directory",
            listing(&unknown),
            available(activation)
        ));
    }
    Choice {
        containers: chosen,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::{Activation, RawActivation};
    use rstest::rstest;
    use serde_json::json;

    fn activation() -> Activation {
        Activation::from_raw(RawActivation::default(), "/var/odigos", &[]).unwrap()
    }

    /// The set of names answers the same, a list or hashed: each name new once, a repeat
    /// found on either side of the switch.
    #[test]
    fn names_are_a_set_few_or_many() {
        let names: Vec<String> = (0..SCANNED * 3).map(|i| format!("c{i}")).collect();
        let mut set = Names::default();
        for (i, name) in names.iter().enumerate() {
            assert!(set.insert(name), "{name} is new");
            assert_eq!(matches!(set, Names::Few(_)), i < SCANNED, "after {name}");
            assert!(
                names[..=i]
                    .iter()
                    .all(|n| !set.insert(n) && set.contains(n))
            );
            assert!(!set.contains("other"));
        }
    }

    /// A pod with containers app, worker, sidecar; app and worker instrumented.
    fn chosen(annotation: Value) -> (Vec<(usize, String)>, Vec<String>) {
        let pod = json!({"metadata": {"annotations": {"agent-mount.io/agents": annotation}},
            "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}, {"name": "worker"}]}});
        let activation = activation();
        let choice = choose(&pod, &["app", "sidecar", "worker"], &[0, 2], &activation);
        let agents = choice
            .containers
            .iter()
            .map(|c| (c.index, c.recipe.directory.clone()))
            .collect();
        (agents, choice.warnings)
    }

    fn dirs(list: &[(usize, &str)]) -> Vec<(usize, String)> {
        list.iter().map(|&(i, d)| (i, d.to_string())).collect()
    }

    #[rstest]
    #[case::one_agent_for_all(json!("java"), &[(0, "java"), (2, "java")], &[])]
    #[case::spaces_ignored(json!("  python "), &[(0, "python"), (2, "python")], &[])]
    #[case::pairs(json!("app=java, worker = nodejs"), &[(0, "java"), (2, "nodejs-community")], &[])]
    #[case::pair_for_one(json!("worker=loader"), &[(2, "loader")], &[])]
    #[case::pairs_in_pod_order(json!("worker=nodejs, app=java"), &[(0, "java"), (2, "nodejs-community")], &[])]
    #[case::empty(json!(""), &[], &[])]
    #[case::unknown_agent(json!("ruby"), &[], &["names agent \"ruby\", which is not available (available: java, loader, nodejs, python); containers \"app\", \"worker\" are mounted but not activated"])]
    #[case::unknown_agent_in_pair(json!("app=ruby,worker=java"), &[(2, "java")], &["names agents that are not available: \"app=ruby\" (available: java, loader, nodejs, python)"])]
    #[case::named_twice_first_counts(json!("app=java,app=python"), &[(0, "java")], &["names containers \"app\" more than once; the first pair of each counts"])]
    #[case::not_instrumented(json!("sidecar=java,ghost=java,app=java"), &[(0, "java")], &["names containers that are not instrumented: \"sidecar\", \"ghost\"; the instrumented containers are \"app\", \"worker\""])]
    #[case::malformed(json!("app=java,worker,=python,x="), &[(0, "java")], &["not container=agent pairs: \"worker\", \"=python\", \"x=\""])]
    #[case::not_a_string(json!(["java"]), &[], &["must be a string"])]
    fn annotation_forms(
        #[case] annotation: Value,
        #[case] expected: &[(usize, &str)],
        #[case] warnings: &[&str],
    ) {
        let (agents, found) = chosen(annotation);
        assert_eq!(agents, dirs(expected));
        assert_eq!(found.len(), warnings.len(), "{found:?}");
        for (found, wanted) in found.iter().zip(warnings) {
            assert!(
                found.contains(wanted),
                "{found:?} should contain {wanted:?}"
            );
        }
    }

    #[test]
    fn no_annotation_activates_nothing_silently() {
        let pod = json!({"spec": {"containers": [{"name": "app"}]}});
        let activation = activation();
        assert_eq!(choose(&pod, &["app"], &[0], &activation), Choice::default());
    }

    #[test]
    fn only_mounted_agents_are_offered() {
        let pod = json!({"metadata": {"annotations": {"agent-mount.io/agents": "python"}},
            "spec": {"containers": [{"name": "app"}]}});
        let activation =
            Activation::from_raw(RawActivation::default(), "/var/odigos", &["java".into()])
                .unwrap();
        let choice = choose(&pod, &["app"], &[0], &activation);
        assert!(choice.containers.is_empty());
        assert!(
            choice.warnings[0].contains("(available: java)"),
            "{:?}",
            choice.warnings
        );
    }

    #[test]
    fn long_annotations_give_short_warnings() {
        let names: Vec<String> = (0..5000).map(|i| format!("c{i}=java")).collect();
        let long = format!("{}=java,{}", "x".repeat(100_000), names.join(","));
        let pod = json!({"metadata": {"annotations": {"agent-mount.io/agents": long}},
            "spec": {"containers": [{"name": "app"}]}});
        let activation = activation();
        let choice = choose(&pod, &["app"], &[0], &activation);
        assert_eq!(choice.warnings.len(), 1);
        assert!(
            choice.warnings[0].len() < 1500,
            "{}",
            choice.warnings[0].len()
        );
        assert!(
            choice.warnings[0].contains("and 4991 more"),
            "{}",
            choice.warnings[0]
        );
    }
}
