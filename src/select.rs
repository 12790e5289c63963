//! Which containers of a pod are instrumented.
//!
//! The pod's annotation (`containersAnnotation`) names them exactly; without it,
//! every app container is instrumented except the `ignoredContainers` sidecars.
//! Init and ephemeral containers are never selected.

use crate::message::{echo, listing};
use crate::settings::Settings;
use serde_json::Value;
use std::collections::HashSet;

/// Why an object cannot be read as a pod: the only reason a request is rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnreadablePod {
    /// The object is not a JSON object.
    #[error("the object is not a JSON object")]
    NotAnObject,
    /// `spec.containers` is missing or not an array.
    #[error("spec.containers is missing or not an array")]
    NoContainers,
    /// A container is not an object.
    #[error("spec.containers[{0}] is not an object")]
    ContainerNotAnObject(usize),
    /// A container has no string name.
    #[error("spec.containers[{0}].name is missing or not a string")]
    ContainerWithoutName(usize),
}

/// The containers to instrument, by index into `spec.containers`, and what the user should know.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Indices into `spec.containers`, in pod order.
    pub containers: Vec<usize>,
    /// Warnings for the admission response (e.g. unknown names in the annotation).
    pub warnings: Vec<String>,
}

/// Reads the names of `spec.containers`, or says why the object is not a pod.
///
/// This is the only check that rejects a request: everything past it is accepted.
pub fn container_names(pod: &Value) -> Result<Vec<&str>, UnreadablePod> {
    let containers = pod
        .as_object()
        .ok_or(UnreadablePod::NotAnObject)?
        .get("spec")
        .and_then(|spec| spec.get("containers"))
        .and_then(Value::as_array)
        .ok_or(UnreadablePod::NoContainers)?;
    containers
        .iter()
        .enumerate()
        .map(|(i, container)| {
            container
                .as_object()
                .ok_or(UnreadablePod::ContainerNotAnObject(i))?
                .get("name")
                .and_then(Value::as_str)
                .ok_or(UnreadablePod::ContainerWithoutName(i))
        })
        .collect()
}

/// Picks the instrumented containers of a pod whose container names are `names`.
pub fn instrumented_containers(pod: &Value, names: &[&str], settings: &Settings) -> Selection {
    // `get`, not `pointer`: a JSON pointer is split and each part copied at every call
    // (1% of `validate` with activation on).
    let annotation = pod
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(&settings.containers_annotation));
    match annotation {
        None => Selection {
            containers: (0..names.len())
                .filter(|&i| {
                    names
                        .get(i)
                        .is_some_and(|n| !settings.ignored_containers.contains(*n))
                })
                .collect(),
            warnings: Vec::new(),
        },
        Some(Value::String(list)) => {
            from_annotation(pod, list, names, &settings.containers_annotation)
        }
        Some(other) => Selection {
            containers: Vec::new(),
            warnings: vec![format!(
                "agent-mount: annotation {:?} must be a comma-separated string of container names, got {}; no container was instrumented: set it to a string such as \"app,worker\"",
                settings.containers_annotation,
                echo(other)
            )],
        },
    }
}

/// Selects exactly the containers the annotation lists, warning about names it cannot select.
fn from_annotation(pod: &Value, list: &str, names: &[&str], annotation: &str) -> Selection {
    let wanted: HashSet<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let present: HashSet<&str> = names.iter().copied().collect();
    let spec = pod.get("spec");
    let init_names: HashSet<&str> = ["initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|list| spec?.get(list)?.as_array())
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    // In annotation order, so the warning reads like the annotation.
    let mut seen = HashSet::new();
    let (mut other_lists, mut unknown) = (Vec::new(), Vec::new());
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if present.contains(name) || !seen.insert(name) {
            continue;
        }
        if init_names.contains(name) {
            other_lists.push(name);
        } else {
            unknown.push(name);
        }
    }
    let mut warnings = Vec::new();
    if !other_lists.is_empty() {
        warnings.push(format!(
            "agent-mount: annotation {annotation:?} names init or ephemeral containers ({}), which are never instrumented: list only entries of spec.containers",
            listing(&other_lists)
        ));
    }
    if !unknown.is_empty() {
        warnings.push(format!(
            "agent-mount: annotation {annotation:?} names containers that are not in the pod: {}; the pod's containers are {}: correct the names in the annotation",
            listing(&unknown),
            listing(names)
        ));
    }
    Selection {
        containers: (0..names.len())
            .filter(|&i| names.get(i).is_some_and(|n| wanted.contains(n)))
            .collect(),
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn pod(annotation: Option<Value>) -> Value {
        let mut pod = json!({"spec": {"containers": [
            {"name": "app"}, {"name": "istio-proxy"}, {"name": "worker"}
        ], "initContainers": [{"name": "setup"}]}});
        if let Some(a) = annotation {
            pod["metadata"] = json!({"annotations": {"agent-mount.io/containers": a}});
        }
        pod
    }

    #[rstest]
    #[case::default_skips_sidecars(None, vec![0, 2], 0)]
    #[case::annotation_is_exact(Some(json!("istio-proxy")), vec![1], 0)]
    #[case::annotation_trims_spaces(Some(json!(" app , worker ")), vec![0, 2], 0)]
    #[case::annotation_unknown_name_warns(Some(json!("app,ghost")), vec![0], 1)]
    #[case::annotation_empty_selects_none(Some(json!("")), vec![], 0)]
    #[case::annotation_init_container_not_selected(Some(json!("setup")), vec![], 1)]
    #[case::annotation_repeats_a_name(Some(json!("app,app")), vec![0], 0)]
    #[case::annotation_not_a_string(Some(json!(["app"])), vec![], 1)]
    fn selection(
        #[case] annotation: Option<Value>,
        #[case] expected: Vec<usize>,
        #[case] warnings: usize,
    ) {
        let pod = pod(annotation);
        let names = container_names(&pod).unwrap();
        let selection = instrumented_containers(&pod, &names, &Settings::default());
        assert_eq!(selection.containers, expected);
        assert_eq!(
            selection.warnings.len(),
            warnings,
            "{:?}",
            selection.warnings
        );
    }

    #[rstest]
    #[case::not_object(json!([1]), UnreadablePod::NotAnObject)]
    #[case::no_spec(json!({}), UnreadablePod::NoContainers)]
    #[case::null_spec(json!({"spec": null}), UnreadablePod::NoContainers)]
    #[case::null_containers(json!({"spec": {"containers": null}}), UnreadablePod::NoContainers)]
    #[case::null_container(json!({"spec": {"containers": [null]}}), UnreadablePod::ContainerNotAnObject(0))]
    #[case::containers_not_array(json!({"spec": {"containers": {}}}), UnreadablePod::NoContainers)]
    #[case::container_not_object(json!({"spec": {"containers": [{"name": "a"}, 1]}}), UnreadablePod::ContainerNotAnObject(1))]
    #[case::name_missing(json!({"spec": {"containers": [{"image": "x"}]}}), UnreadablePod::ContainerWithoutName(0))]
    fn unreadable_pods(#[case] pod: Value, #[case] expected: UnreadablePod) {
        assert_eq!(container_names(&pod), Err(expected));
    }

    /// DESIGN §2 "`null` in the pod is absent": null metadata or annotations select as without them.
    #[rstest]
    #[case::metadata(json!({"metadata": null}))]
    #[case::annotations(json!({"metadata": {"annotations": null}}))]
    #[case::init_containers(json!({"metadata": {"annotations": {"agent-mount.io/containers": "app,setup"}}, "initContainers": null}))]
    fn null_fields_are_absent(#[case] extra: Value) {
        let mut pod = pod(None);
        for (key, value) in extra.as_object().unwrap() {
            match key.as_str() {
                "initContainers" => pod["spec"][key] = value.clone(),
                _ => pod[key] = value.clone(),
            }
        }
        let names = container_names(&pod).unwrap();
        let selection = instrumented_containers(&pod, &names, &Settings::default());
        let expected = if extra.get("initContainers").is_some() {
            vec![0]
        } else {
            vec![0, 2]
        };
        assert_eq!(selection.containers, expected);
        assert!(
            selection
                .warnings
                .iter()
                .all(|w| !w.contains("init or ephemeral")),
            "{:?}",
            selection.warnings
        );
    }

    #[test]
    fn init_containers_named_by_the_annotation_are_explained() {
        let pod = pod(Some(json!("setup")));
        let names = container_names(&pod).unwrap();
        let selection = instrumented_containers(&pod, &names, &Settings::default());
        assert!(
            selection.warnings[0]
                .contains("init or ephemeral containers (\"setup\"), which are never instrumented"),
            "{:?}",
            selection.warnings
        );
    }

    #[test]
    fn warnings_list_at_most_ten_names_and_cut_long_values() {
        let containers: Vec<Value> = (0..5000)
            .map(|i| json!({"name": format!("c{i}")}))
            .collect();
        let long = "x".repeat(1_000_000);
        let annotation = format!("{long},ghost1,ghost2");
        let pod = json!({"metadata": {"annotations": {"agent-mount.io/containers": annotation}},
            "spec": {"containers": containers}});
        let names = container_names(&pod).unwrap();
        let selection = instrumented_containers(&pod, &names, &Settings::default());
        let warning = &selection.warnings[0];
        assert!(warning.len() < 1200, "{} bytes", warning.len());
        assert!(warning.contains("\"ghost1\", \"ghost2\""), "{warning}");
        assert!(warning.contains("and 4990 more"), "{warning}");
        assert!(warning.contains("correct the names"), "{warning}");
    }
}
