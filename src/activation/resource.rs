//! The service name and the Kubernetes resource attributes an activated container gets,
//! by the OpenTelemetry Operator's convention, so its telemetry says where it comes from.
//!
//! `OTEL_SERVICE_NAME` is a plain entry (the app's own wins); `OTEL_RESOURCE_ATTRIBUTES`
//! is joined with `,` and carries only the keys the app's own value does not set. The pod's
//! name, uid and node are not known at admission: three downward-API entries carry them,
//! and the merge places those before the entry that refers to them.

use super::EnvEntry;
use super::env::PreparedEntry;
use super::expansion::literal;
use crate::write::Prepared;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The variable the OpenTelemetry SDKs read the service name from.
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// The variable the OpenTelemetry SDKs read resource attributes from.
pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// The pod annotation that names the service, first in the order.
pub const SERVICE_NAME_ANNOTATION: &str = "resource.opentelemetry.io/service.name";
/// The pod label that names the service when the annotation is absent.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The downward-API entries: variable, pod field, and the attribute that refers to it.
const DOWNWARD: [(&str, &str, &str); 3] = [
    (
        "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
        "spec.nodeName",
        "k8s.node.name",
    ),
    (
        "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
        "metadata.name",
        "k8s.pod.name",
    ),
    (
        "OTEL_RESOURCE_ATTRIBUTES_POD_UID",
        "metadata.uid",
        "k8s.pod.uid",
    ),
];

/// The variables this module writes: a recipe or `activation.env` may not set them
/// while `activation.resourceAttributes` is on.
pub const WRITTEN: [&str; 5] = [
    SERVICE_NAME,
    RESOURCE_ATTRIBUTES,
    DOWNWARD[0].0,
    DOWNWARD[1].0,
    DOWNWARD[2].0,
];

/// What the pod says about itself, read once per pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodResource {
    /// The service name from the pod (annotation, label, workload, generateName, name);
    /// `None`: each container's name.
    pub service_name: Option<String>,
    /// The pod's attributes (namespace, workloads), values percent-encoded once for
    /// all its containers ([`percent_encoded`]).
    pub attributes: Vec<(&'static str, String)>,
    /// Every attribute but the container's own, downward references included, as written
    /// in key order: the tail of the value of each container whose app sets no attributes
    /// (`k8s.container.name` sorts first), written once for all of them.
    tail: String,
}

/// Reads `pod`'s service name and attributes; `namespace` is the request's.
pub fn describe<'a>(pod: &'a Value, namespace: &'a str) -> PodResource {
    // `get`, not `pointer`: a JSON pointer is parsed, and copied per segment, at each call.
    // Each map looked up once.
    let metadata = pod.get("metadata");
    let labels = metadata.and_then(|m| m.get("labels"));
    let text = |map: Option<&'a Value>, key: &str| {
        map.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let namespace = Some(namespace)
        .filter(|n| !n.is_empty())
        .or_else(|| text(metadata, "namespace"));
    let workload = metadata
        .and_then(owner)
        .map(|(kind, name)| workload(kind, name, text(labels, "pod-template-hash").unwrap_or("")));
    // Sized once: the namespace and a workload's two names at most.
    let mut attributes: Vec<(&'static str, String)> = Vec::with_capacity(3);
    let workload_attributes = workload.iter().flat_map(|w| w.attributes.iter().flatten());
    for (key, value) in namespace
        .map(|n| ("k8s.namespace.name", n))
        .iter()
        .chain(workload_attributes)
    {
        attributes.push((key, percent_encoded(value).into_owned()));
    }
    let annotations = metadata.and_then(|m| m.get("annotations"));
    let service_name = text(annotations, SERVICE_NAME_ANNOTATION)
        .or_else(|| text(labels, NAME_LABEL))
        .or_else(|| workload.map(|w| w.service))
        .or_else(|| {
            text(metadata, "generateName")
                .map(|g| g.trim_end_matches('-'))
                .filter(|g| !g.is_empty())
        })
        .or_else(|| text(metadata, "name"))
        .map(str::to_string);
    let tail = written(&in_key_order(&attributes, None, &[]));
    PodResource {
        service_name,
        attributes,
        tail,
    }
}

/// The workload that owns the pod: the service it names and its attributes (at most
/// two), borrowed from the pod: only the encoded attributes are copied.
#[derive(Clone, Copy)]
struct Workload<'a> {
    service: &'a str,
    attributes: [Option<(&'static str, &'a str)>; 2],
}

/// The pod's controller owner (`controller: true`, else the first owner): kind and name.
fn owner(metadata: &Value) -> Option<(&str, &str)> {
    let owners = metadata.get("ownerReferences")?.as_array()?;
    let owner = owners
        .iter()
        .find(|o| o.get("controller") == Some(&Value::Bool(true)))
        .or_else(|| owners.first())?;
    let kind = owner.get("kind")?.as_str()?;
    let name = owner.get("name")?.as_str().filter(|n| !n.is_empty())?;
    Some((kind, name))
}

/// The workload behind an owner of `kind` and `name`; `hash` is the pod's
/// `pod-template-hash` label, which a Deployment's ReplicaSet appends to its name.
fn workload<'a>(kind: &str, name: &'a str, hash: &str) -> Workload<'a> {
    let own = |key: &'static str| Workload {
        service: name,
        attributes: [Some((key, name)), None],
    };
    // Both names, the workload's first: a Deployment's pod is also its ReplicaSet's.
    let parent = |key: &'static str, parent: &'a str, child_key: &'static str| Workload {
        service: parent,
        attributes: [Some((key, parent)), Some((child_key, name))],
    };
    match kind {
        "ReplicaSet" => match name
            .strip_suffix(hash)
            .and_then(|n| n.strip_suffix('-'))
            .filter(|n| !hash.is_empty() && !n.is_empty())
        {
            Some(deployment) => parent("k8s.deployment.name", deployment, "k8s.replicaset.name"),
            None => own("k8s.replicaset.name"),
        },
        "StatefulSet" => own("k8s.statefulset.name"),
        "DaemonSet" => own("k8s.daemonset.name"),
        // A CronJob names its Jobs `<name>-<digits>` (the scheduled time); the policy
        // cannot read the Job's own owner.
        "Job" => match name.rsplit_once('-').filter(|(cron, digits)| {
            !cron.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }) {
            Some((cronjob, _)) => parent("k8s.cronjob.name", cronjob, "k8s.job.name"),
            None => own("k8s.job.name"),
        },
        "Deployment" => own("k8s.deployment.name"),
        "CronJob" => own("k8s.cronjob.name"),
        _ => Workload {
            service: name,
            attributes: [None, None],
        },
    }
}

/// An attribute's value as written: percent-encoded text, or a reference to the
/// downward-API entry of this variable, written `$(<variable>)`.
#[derive(Clone, Copy)]
enum Item<'a> {
    Text(&'a str),
    Reference(&'static str),
}

impl Item<'_> {
    /// Whether the app's own value of the attribute is this one.
    fn is(self, app: &str) -> bool {
        match self {
            Item::Text(text) => text == app,
            Item::Reference(variable) => {
                app.strip_prefix("$(").and_then(|r| r.strip_suffix(')')) == Some(variable)
            }
        }
    }

    /// Its length as written.
    fn len(self) -> usize {
        match self {
            Item::Text(text) => text.len(),
            Item::Reference(variable) => variable.len() + 3,
        }
    }

    /// Appends `key=` and it to `out`, as written.
    fn write_to(self, out: &mut String, key: &str) {
        out.push_str(key);
        out.push('=');
        match self {
            Item::Text(text) => out.push_str(text),
            Item::Reference(variable) => {
                out.push_str("$(");
                out.push_str(variable);
                out.push(')');
            }
        }
    }
}

/// The downward-API entries, in [`DOWNWARD`]'s order: built once, when the settings
/// load, and referred to by every container's [`Named`].
pub fn downward() -> Vec<PreparedEntry> {
    DOWNWARD
        .iter()
        .map(|(variable, field, _)| {
            PreparedEntry::new(EnvEntry::ValueFrom {
                name: (*variable).into(),
                source: Prepared::new(field_ref(field)),
            })
        })
        .collect()
}

/// The entries resource attributes give one container, in order: the downward-API
/// entries its attributes refer to, then its service name and attributes.
#[derive(Debug, Default)]
pub struct Named<'d> {
    /// The downward-API entries referred to, from [`downward`], in its order (no list
    /// built per container).
    pub downward: [Option<&'d PreparedEntry>; DOWNWARD.len()],
    /// The service name and the attributes, built for the container (their JSON written
    /// only if they go in).
    pub own: Vec<PreparedEntry>,
}

impl Named<'_> {
    /// Every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = &PreparedEntry> {
        // `filter_map`, not `flatten`: it keeps an upper bound, which sizes the merge's lists.
        self.downward
            .iter()
            .filter_map(|entry| *entry)
            .chain(&self.own)
    }
}

/// The entries for `container` (after the recipe's and `activation.env`'s): the service
/// name where the app sets none, the attributes its own `OTEL_RESOURCE_ATTRIBUTES` does
/// not set otherwise, and those of the `downward` entries ([`downward`]) they refer to.
pub fn entries<'d>(
    pod: &PodResource,
    container: &Map<String, Value>,
    downward: &'d [PreparedEntry],
) -> Named<'d> {
    let name = container.get("name").and_then(Value::as_str).unwrap_or("");
    let app = app_attributes(container);
    let container_name = percent_encoded(name);
    let mut referred = [None; DOWNWARD.len()];
    let value = if app.is_empty() {
        // The usual container: every attribute, the pod's written once in `tail`.
        for (slot, entry) in referred.iter_mut().zip(downward) {
            *slot = Some(entry);
        }
        let mut value =
            String::with_capacity(CONTAINER.len() + container_name.len() + 2 + pod.tail.len());
        Item::Text(&container_name).write_to(&mut value, CONTAINER);
        value.push(',');
        value.push_str(&pod.tail);
        value
    } else {
        let own = Item::Text(&container_name);
        let attributes = in_key_order(&pod.attributes, Some(own), &app);
        for ((slot, (_, _, key)), entry) in referred.iter_mut().zip(&DOWNWARD).zip(downward) {
            if attributes.iter().any(|(k, _)| k == key) {
                *slot = Some(entry);
            }
        }
        written(&attributes)
    };
    let mut out: Vec<PreparedEntry> = Vec::with_capacity(2);
    // An app that names its service in its attributes keeps it: OTEL_SERVICE_NAME would win.
    if !app.iter().any(|(key, _)| *key == "service.name") {
        let service = pod.service_name.as_deref().unwrap_or(name);
        out.push(PreparedEntry::unwritten(EnvEntry::Value {
            name: SERVICE_NAME.into(),
            value: literal(service),
        }));
    }
    if !value.is_empty() {
        out.push(PreparedEntry::unwritten(EnvEntry::Join {
            name: RESOURCE_ATTRIBUTES.into(),
            value,
            separator: ",".into(),
        }));
    }
    Named {
        downward: referred,
        own: out,
    }
}

/// The key of the container's own attribute, first in key order.
const CONTAINER: &str = "k8s.container.name";

/// The attributes in key order: the container's own (`own`, when given), the pod's, and the
/// downward references, less each whose key the app sets (`app`) to another value. The app's
/// own key wins; one it sets to our very value stays ours: that is how a second run finds
/// its own output (and the value already holds ours).
fn in_key_order<'a>(
    pod: &'a [(&'static str, String)],
    own: Option<Item<'a>>,
    app: &[(&str, &str)],
) -> Vec<(&'static str, Item<'a>)> {
    // Sized up front: every push past a Vec's capacity is a reallocation. Values are
    // borrowed: the one string written from them is the only copy.
    let mut attributes = Vec::with_capacity(1 + pod.len() + DOWNWARD.len());
    let given = pod
        .iter()
        .map(|(key, value)| (*key, Item::Text(value)))
        .chain(
            DOWNWARD
                .iter()
                .map(|(variable, _, key)| (*key, Item::Reference(variable))),
        );
    for (key, value) in own.map(|own| (CONTAINER, own)).into_iter().chain(given) {
        if app.iter().all(|(k, v)| *k != key || value.is(v)) {
            // Kept in key order as they come: a handful of items, and a sort would be a
            // copy of the sort code of its own in the .wasm.
            let at = attributes.partition_point(|(known, _)| *known <= key);
            attributes.insert(at, (key, value));
        }
    }
    attributes
}

/// The attributes as the variable's value: `key=value` items joined by `,`, one string
/// written in place, no string per item.
fn written(attributes: &[(&str, Item)]) -> String {
    let len = attributes.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut value = String::with_capacity(len);
    for (key, item) in attributes {
        if !value.is_empty() {
            value.push(',');
        }
        item.write_to(&mut value, key);
    }
    value
}

/// The `EnvVarSource` of a pod field: `{"fieldRef": {"fieldPath": <field>}}`, built
/// directly (`json!` would run a serializer over `field`).
fn field_ref(field: &str) -> Value {
    let mut path = Map::new();
    path.insert("fieldPath".into(), Value::String(field.to_string()));
    let mut source = Map::new();
    source.insert("fieldRef".into(), Value::Object(path));
    Value::Object(source)
}

/// The `key=value` items of the app's own `OTEL_RESOURCE_ATTRIBUTES` (its last entry,
/// by value), keys trimmed.
fn app_attributes(container: &Map<String, Value>) -> Vec<(&str, &str)> {
    let value = container
        .get("env")
        .and_then(Value::as_array)
        .and_then(|env| {
            env.iter()
                .rev()
                .find(|v| v.get("name").and_then(Value::as_str) == Some(RESOURCE_ATTRIBUTES))
        })
        .and_then(|v| v.get("value"))
        .and_then(Value::as_str)
        .unwrap_or("");
    value
        .split(',')
        .filter_map(|item| item.split_once('=').map(|(key, value)| (key.trim(), value)))
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

/// `value` as an `OTEL_RESOURCE_ATTRIBUTES` value: the OpenTelemetry spec has every byte
/// outside the W3C Baggage value octets percent-encoded (and `%` itself, so that decoding
/// gives the value back), and the kubelet then reads every `$` as written. A value
/// that needs none of this (the usual name) is returned as it is.
fn percent_encoded(value: &str) -> Cow<'_, str> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // baggage-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E; `%` and `$` are escaped.
    let plain = |byte: u8| {
        matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
            && byte != b'%'
            && byte != b'$'
    };
    if value.bytes().all(plain) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte == b'$' {
            // Written `$$` here, as `literal` would: one pass and one string per value.
            out.push_str("$$");
        } else if plain(byte) {
            out.push(char::from(byte));
        } else {
            // `%XX` without a `format!` per byte.
            let hex =
                |nibble: u8| char::from(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'));
            out.push('%');
            out.push(hex(byte >> 4));
            out.push(hex(byte & 0xF));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
