//! Which containers of a pod are instrumented.
//!
//! The pod's annotation (`containersAnnotation`) names them exactly; without it,
//! every app container is instrumented except the `ignoredContainers` sidecars.
//! Init and ephemeral containers are never selected.

use crate::settings::Settings;
use serde_json::Value;

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
pub fn container_names(pod: &Value) -> Result<Vec<&str>, String> {
    let containers = pod
        .as_object()
        .ok_or("the object is not a JSON object")?
        .get("spec")
        .and_then(|spec| spec.get("containers"))
        .and_then(Value::as_array)
        .ok_or("spec.containers is missing or not an array")?;
    containers
        .iter()
        .enumerate()
        .map(|(i, container)| {
            container
                .as_object()
                .ok_or_else(|| format!("spec.containers[{i}] is not an object"))?
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("spec.containers[{i}].name is missing or not a string"))
        })
        .collect()
}

/// Picks the instrumented containers of a pod whose container names are `names`.
pub fn instrumented_containers(pod: &Value, names: &[&str], settings: &Settings) -> Selection {
    let annotation = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(&settings.containers_annotation));
    match annotation {
        None => Selection {
            containers: (0..names.len())
                .filter(|&i| !settings.ignored_containers.iter().any(|c| c == names[i]))
                .collect(),
            warnings: Vec::new(),
        },
        Some(Value::String(list)) => from_annotation(list, names, &settings.containers_annotation),
        Some(other) => Selection {
            containers: Vec::new(),
            warnings: vec![format!(
                "agent-mount: annotation {:?} must be a comma-separated string of container names, got {other}; no container was instrumented",
                settings.containers_annotation
            )],
        },
    }
}

/// Selects exactly the containers the annotation lists, warning about names the pod lacks.
fn from_annotation(list: &str, names: &[&str], annotation: &str) -> Selection {
    let wanted: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let unknown: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !names.contains(w))
        .collect();
    let warnings = if unknown.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "agent-mount: annotation {annotation:?} names containers that are not in the pod: {}; the pod's containers are: {}",
            unknown.join(", "),
            names.join(", ")
        )]
    };
    Selection {
        containers: (0..names.len())
            .filter(|&i| wanted.contains(&names[i]))
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
    #[case::not_object(json!([1]), "not a JSON object")]
    #[case::no_spec(json!({}), "spec.containers is missing")]
    #[case::containers_not_array(json!({"spec": {"containers": {}}}), "not an array")]
    #[case::container_not_object(json!({"spec": {"containers": [1]}}), "spec.containers[0] is not an object")]
    #[case::name_missing(json!({"spec": {"containers": [{"image": "x"}]}}), "spec.containers[0].name is missing")]
    fn unreadable_pods(#[case] pod: Value, #[case] expected: &str) {
        let err = container_names(&pod).unwrap_err();
        assert!(err.contains(expected), "{err}");
    }
}
