//! A container's effective environment, resolved as the kubelet does it
//! (`makeEnvironmentVariables`): `envFrom` first, then `env` in order, each `value`
//! with its `$(VAR)` references expanded against what is defined so far.

use serde_json::Value;
use std::collections::BTreeMap;

/// What the kubelet reads from the cluster while resolving: ConfigMaps, Secrets, pod fields.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// ConfigMap data by name.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret data (decoded) by name.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Pod field values by `fieldPath` (e.g. `status.hostIP`) or resource (e.g. `limits.cpu`).
    pub fields: BTreeMap<String, String>,
}

impl Cluster {
    /// The data of the ConfigMap or Secret `name`, by the `configMapRef`/`configMapKeyRef` style key.
    fn data(&self, kind: &str, name: &str) -> Option<&BTreeMap<String, String>> {
        match kind {
            "configMapRef" | "configMapKeyRef" => self.config_maps.get(name),
            _ => self.secrets.get(name),
        }
    }
}

/// The container's environment: every variable and its final value.
///
/// Fails as the kubelet fails to start the container: a non-optional ConfigMap, Secret
/// or key that is missing, or a field the cluster does not know.
pub fn effective_env(
    container: &Value,
    cluster: &Cluster,
) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    let list = |key: &str| {
        container
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for source in list("envFrom") {
        let prefix = text(&source, "prefix");
        let optional = source_optional(&source);
        let (kind, reference) = ["configMapRef", "secretRef"]
            .iter()
            .find_map(|k| source.get(*k).map(|r| (*k, r)))
            .ok_or_else(|| {
                format!("envFrom entry {source} has neither configMapRef nor secretRef")
            })?;
        let name = text(reference, "name");
        match cluster.data(kind, name) {
            Some(data) => {
                for (key, value) in data {
                    env.insert(format!("{prefix}{key}"), value.clone());
                }
            }
            None if optional || reference.get("optional") == Some(&Value::Bool(true)) => {}
            None => return Err(format!("envFrom: {kind} {name:?} not found")),
        }
    }
    for var in list("env") {
        let name = var
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("env entry {var} has no name"))?;
        let value = text(&var, "value");
        let resolved = match var.get("valueFrom") {
            // An empty value with a source is read from the source, as the kubelet does.
            Some(source) if value.is_empty() && !source.is_null() => {
                match value_from(source, cluster)? {
                    Some(value) => value,
                    None => continue,
                }
            }
            _ => expand(value, &env),
        };
        env.insert(name.to_string(), resolved);
    }
    Ok(env)
}

/// The string under `key`, or empty.
fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn source_optional(source: &Value) -> bool {
    source.get("optional") == Some(&Value::Bool(true))
}

/// Reads one `valueFrom`; `None` for an optional source that is missing (no variable).
fn value_from(source: &Value, cluster: &Cluster) -> Result<Option<String>, String> {
    for kind in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(selector) = source.get(kind) {
            let (name, key) = (text(selector, "name"), text(selector, "key"));
            let found = cluster.data(kind, name).and_then(|data| data.get(key));
            return match found {
                Some(value) => Ok(Some(value.clone())),
                None if source_optional(selector) => Ok(None),
                None => Err(format!("valueFrom: {kind} {name:?} key {key:?} not found")),
            };
        }
    }
    let field = source
        .pointer("/fieldRef/fieldPath")
        .or_else(|| source.pointer("/resourceFieldRef/resource"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("valueFrom {source}: no source the kubelet knows"))?;
    cluster
        .fields
        .get(field)
        .cloned()
        .map(Some)
        .ok_or_else(|| format!("valueFrom: field {field:?} unknown to this cluster"))
}

/// Expands `$(VAR)` from `defined` exactly as the kubelet does (k8s.io/kubernetes
/// third_party/forked/golang/expansion): `$$` is a literal `$`; an undefined reference, an
/// unclosed `$(` or any other `$` stays as written, with the byte after it.
pub fn expand(input: &str, defined: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(rest.get(..at).unwrap_or_default());
        let after = rest.get(at + 1..).unwrap_or_default();
        if let Some(escaped) = after.strip_prefix('$') {
            out.push('$');
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix('(') {
            match reference.split_once(')') {
                Some((name, tail)) => {
                    match defined.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = tail;
                }
                None => {
                    out.push_str("$(");
                    rest = reference;
                }
            }
        } else if let Some(next) = after.chars().next() {
            // `$` takes the next byte with it. Go's `string(input[0])` makes a rune of that
            // byte, so the kubelet re-encodes a non-ASCII one (`$ü` becomes `$Ã` and a stray
            // byte, written here as U+FFFD).
            out.push('$');
            if next.is_ascii() {
                out.push(next);
            } else {
                let first = after.as_bytes().first().copied().unwrap_or_default();
                out.push(char::from(first));
                for _ in 1..next.len_utf8() {
                    out.push('\u{fffd}');
                }
            }
            rest = after.get(next.len_utf8()..).unwrap_or_default();
        } else {
            // A `$` at the very end is itself.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defined(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_the_kubelet() {
        let vars = defined(&[("HOST_IP", "10.0.0.7"), ("EMPTY", "")]);
        let cases = [
            ("http://$(HOST_IP):4317", "http://10.0.0.7:4317"),
            ("$(HOST_IP)$(HOST_IP)", "10.0.0.710.0.0.7"),
            ("$$(HOST_IP)", "$(HOST_IP)"),
            ("$$$(HOST_IP)", "$10.0.0.7"),
            ("$(MISSING)", "$(MISSING)"),
            ("a$(EMPTY)b", "ab"),
            ("$(HOST_IP", "$(HOST_IP"),
            ("cost: 5$", "cost: 5$"),
            ("$x$", "$x$"),
            ("$", "$"),
            ("", ""),
            ("ü$(HOST_IP)ü", "ü10.0.0.7ü"),
            ("$ü", "$\u{c3}\u{fffd}"),
            ("$x$(HOST_IP)", "$x10.0.0.7"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, &vars), expected, "{input}");
        }
    }

    #[test]
    fn env_from_first_then_env_in_order() {
        let cluster = Cluster {
            config_maps: BTreeMap::from([(
                "app".to_string(),
                defined(&[("JAVA_TOOL_OPTIONS", "-Xmx1g"), ("MODE", "prod")]),
            )]),
            secrets: BTreeMap::from([("otel".to_string(), defined(&[("token", "s3cr3t")]))]),
            fields: defined(&[("status.hostIP", "10.0.0.7")]),
        };
        let container = json!({"name": "app",
        "envFrom": [{"configMapRef": {"name": "app"}}, {"prefix": "X_", "secretRef": {"name": "otel"}},
                    {"configMapRef": {"name": "absent", "optional": true}}],
        "env": [
            {"name": "ENDPOINT", "value": "http://$(HOST_IP):4317"},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "ENDPOINT2", "value": "http://$(HOST_IP):4317 $(MODE)"},
            {"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:/a.jar"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "otel", "key": "token"}}},
            {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}}
        ]});
        let env = effective_env(&container, &cluster).unwrap();
        assert_eq!(
            env,
            defined(&[
                ("ENDPOINT", "http://$(HOST_IP):4317"),
                ("ENDPOINT2", "http://10.0.0.7:4317 prod"),
                ("HOST_IP", "10.0.0.7"),
                ("JAVA_TOOL_OPTIONS", "-javaagent:/a.jar"),
                ("MODE", "prod"),
                ("TOKEN", "s3cr3t"),
                ("X_token", "s3cr3t"),
            ])
        );
    }

    #[test]
    fn missing_sources_fail_like_the_kubelet() {
        let cluster = Cluster::default();
        for container in [
            json!({"envFrom": [{"configMapRef": {"name": "app"}}]}),
            json!({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
            json!({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}),
        ] {
            assert!(effective_env(&container, &cluster).is_err(), "{container}");
        }
    }
}
