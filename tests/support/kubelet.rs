//! A container's environment as the kubelet resolves it: `makeEnvironmentVariables`
//! (k8s.io/kubernetes pkg/kubelet/kubelet_pods.go) with the expansion of
//! third_party/forked/golang/expansion, ported byte for byte. The tests that check that
//! every value the policy writes resolves as it meant it read containers through this.

use serde_json::Value;
use std::collections::HashMap;

/// The pod fields the downward API gives in these tests, by `fieldPath`.
pub const FIELDS: [(&str, &str); 6] = [
    ("metadata.name", "checkout-7d9f8b6c4-x2x4z"),
    ("metadata.namespace", "shop"),
    ("metadata.uid", "0b9d6a44-1c4e-4c43-9b1e-3f8f8f7d2a10"),
    ("spec.nodeName", "node-1"),
    ("status.hostIP", "10.0.0.7"),
    ("status.podIP", "10.1.0.5"),
];

/// What a `valueFrom` gives: a downward-API field from [`FIELDS`], else a stand-in that
/// names the source (`<configMapKeyRef jvm/options>`); an optional source counts as present.
pub fn source_value(source: &Value) -> String {
    if let Some(path) = source
        .pointer("/fieldRef/fieldPath")
        .and_then(Value::as_str)
    {
        return FIELDS
            .iter()
            .find(|(p, _)| *p == path)
            .map_or_else(|| format!("<{path}>"), |(_, v)| v.to_string());
    }
    for kind in ["configMapKeyRef", "secretKeyRef", "resourceFieldRef"] {
        if let Some(selector) = source.get(kind) {
            let text = |k: &str| selector.get(k).and_then(Value::as_str).unwrap_or("");
            return format!(
                "<{kind} {}/{}{}>",
                text("name"),
                text("key"),
                text("resource")
            );
        }
    }
    format!("<{source}>")
}

/// The container's `env` resolved in order (`envFrom` data is not known here, so it
/// defines nothing): each name with its final value, in first-definition order.
pub fn resolve(container: &Value) -> Vec<(String, String)> {
    let mut defined: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let env = container.get("env").and_then(Value::as_array);
    for var in env.into_iter().flatten() {
        let Some(name) = var.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = var.get("value").and_then(Value::as_str).unwrap_or("");
        // The kubelet: a non-empty value is expanded, else the source is read.
        let resolved = match var.get("valueFrom").filter(|v| !v.is_null()) {
            Some(source) if value.is_empty() => source_value(source),
            _ => expand(value, &defined),
        };
        if defined.insert(name.to_string(), resolved).is_none() {
            order.push(name.to_string());
        }
    }
    order
        .into_iter()
        .map(|name| {
            let value = defined.remove(&name).unwrap_or_default();
            (name, value)
        })
        .collect()
}

/// The resolved value of `name`, if the container defines it.
pub fn value_of<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// `expansion.Expand` with `MappingFuncFor(defined)`: `$$` is `$`, `$(NAME)` is its value
/// or stays as written, an unclosed `$(` stays, `$` before any other byte stays with it.
pub fn expand(input: &str, defined: &HashMap<String, String>) -> String {
    expand_with(input, |name| defined.get(name).cloned())
}

/// The names `input` refers to, as the kubelet reads it.
pub fn references(input: &str) -> Vec<String> {
    let mut names = Vec::new();
    expand_with(input, |name| {
        names.push(name.to_string());
        None
    });
    names
}

/// `expansion.Expand`, byte for byte, with `mapping` giving a name's value (`None`: the
/// reference stays as written).
fn expand_with(input: &str, mut mapping: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest[1..].iter().position(|&b| b == b')') {
                    Some(at) => {
                        let name = String::from_utf8_lossy(&rest[1..1 + at]).into_owned();
                        match mapping(&name) {
                            Some(value) => out.extend_from_slice(value.as_bytes()),
                            None => out.extend_from_slice(format!("$({name})").as_bytes()),
                        }
                        at + 2
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                // Go's `string(input[0])` makes a rune of the byte: a non-ASCII byte
                // comes out re-encoded (the kubelet mangles `$ü`; so does this port).
                other => {
                    out.push(b'$');
                    out.extend_from_slice(char::from(other).to_string().as_bytes());
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `value` holds `ours` as whole items, as the runtimes read them: for a
/// whitespace `separator` split on whitespace, quotes around an item dropped, and
/// `-javaagent:<jar>=<options>` read as the jar; else split at `separator`.
pub fn holds_whole(value: &str, ours: &str, separator: &str) -> bool {
    let split = |text: &'_ str| -> Vec<String> {
        if !separator.trim().is_empty() {
            return text.split(separator).map(str::to_string).collect();
        }
        text.split_whitespace()
            .map(|item| {
                let item = item.trim_matches(|c| c == '"' || c == '\'');
                match item.strip_prefix("-javaagent:") {
                    Some(jar) => format!("-javaagent:{}", jar.split('=').next().unwrap_or("")),
                    None => item.to_string(),
                }
            })
            .collect()
    };
    let (items, wanted) = (split(value), split(ours));
    !wanted.is_empty() && items.windows(wanted.len()).any(|w| w == wanted.as_slice())
}
