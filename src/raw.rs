//! The pod as the policy reads it: what it reads and may change as a `Value`, the rest
//! kept as the raw JSON it came in and written back byte for byte.
//!
//! A pod request is mostly `metadata.managedFields`, `status` and fields the policy never
//! looks at. Building them into a `Value` and serialising them again was most of the cost
//! of `validate` (issue 24). [`Pod`] reads the object once: `metadata` and `spec` into
//! [`Pod::value`] but the keys of [`METADATA_NEVER_READ`] and [`SPEC_NEVER_READ`], and in
//! each entry of the three container lists all but [`CONTAINER_NEVER_READ`]; every other
//! top-level entry, and each never-read key, stays a [`Raw`] text borrowed from the
//! request. All of it in the request's one pass, keys borrowed from it. [`Pod::write`]
//! puts them back together in the object's own order. `mutate` and `select` keep working
//! on a `Value` of the pod.
//!
//! A container's raw keys travel with the container itself, not with its place in its
//! list (the init-container method inserts its copy container first): each split
//! container carries a [`MARKER`] entry, the number of its layout in [`Pod`]. The writer
//! trusts only markers the reader put there: when a container of the request already
//! holds the marker's key, every container of that `spec` is read whole (markers
//! removed, raw keys parsed in) and the writer finds no layout to follow. What has not
//! the shape it splits (a `spec` or container that is not an object, a list that is not
//! an array) is read whole where it is, as before issue 24.
//!
//! The never-read lists are deny-lists, from an audit of every read in `select`,
//! `mutate`, `init_container` and `activation` (issue 24): a key not listed, a newer
//! Kubernetes field included, is read into the `Value` and so can never be lost or
//! stale. None of those modules iterates over a spec's or a container's keys, compares
//! whole containers, or copies one; `tests/never_read.rs` fails if a listed key changes
//! what the policy does.

use crate::json::{self, Raw};
use crate::settings::Settings;
use crate::settings::method::Method;
use crate::write;
use crate::write::OwnJson;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;

/// The written pod's buffer is its source's length and this fraction of it more: room
/// for what the policy adds (two mounts a container under init-container's overlay add a
/// fifth to the large pod).
const ROOM_FOR_ADDITIONS: usize = 4;

/// The top-level entry whose fields the policy reads and changes, split to keep
/// [`SPEC_NEVER_READ`] and the containers' [`CONTAINER_NEVER_READ`] raw.
const SPEC: &str = "spec";
/// The top-level entry whose fields the policy reads (annotations, labels, name,
/// namespace, ownerReferences), split to keep [`METADATA_NEVER_READ`] raw.
const METADATA: &str = "metadata";

/// The metadata fields the policy never reads: `managedFields` is often half of a pod
/// request. It reads `name`, `generateName`, `namespace`, `labels`, `annotations` and
/// `ownerReferences` (selection, activation's service name and attributes); none of these
/// is listed. In [`key_order`].
pub const METADATA_NEVER_READ: [&str; 8] = [
    "uid",
    "finalizers",
    "generation",
    "managedFields",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The `spec` fields the policy never reads. It reads `containers`, `initContainers`,
/// `ephemeralContainers` (names, images, mounts, env, resources, securityContext),
/// `volumes`, `affinity` (the node label), `os` (Windows pods), `resources` (pod-level,
/// for the copy container) and `securityContext` (host-process pods); none of these is
/// listed. In [`key_order`].
pub const SPEC_NEVER_READ: [&str; 33] = [
    "hostIPC",
    "hostPID",
    "hostname",
    "nodeName",
    "overhead",
    "priority",
    "dnsConfig",
    "dnsPolicy",
    "hostUsers",
    "subdomain",
    "hostAliases",
    "hostNetwork",
    "tolerations",
    "nodeSelector",
    "restartPolicy",
    "schedulerName",
    "readinessGates",
    "resourceClaims",
    "serviceAccount",
    "schedulingGates",
    "hostnameOverride",
    "imagePullSecrets",
    "preemptionPolicy",
    "runtimeClassName",
    "priorityClassName",
    "setHostnameAsFQDN",
    "enableServiceLinks",
    "serviceAccountName",
    "activeDeadlineSeconds",
    "shareProcessNamespace",
    "topologySpreadConstraints",
    "automountServiceAccountToken",
    "terminationGracePeriodSeconds",
];

/// The fields of a container (of any of the three lists) the policy never reads. It
/// reads `name`, `image` (the copy init container's), `env`, `envFrom`, `resources`,
/// `volumeMounts`, `volumeDevices` and `securityContext`; none of these is listed. In
/// [`key_order`].
pub const CONTAINER_NEVER_READ: [&str; 18] = [
    "tty",
    "args",
    "ports",
    "stdin",
    "command",
    "lifecycle",
    "stdinOnce",
    "workingDir",
    "resizePolicy",
    "startupProbe",
    "livenessProbe",
    "restartPolicy",
    "readinessProbe",
    "imagePullPolicy",
    "restartPolicyRules",
    "targetContainerName",
    "terminationMessagePath",
    "terminationMessagePolicy",
];

/// The order of the never-read lists: by length, then by bytes. Sorted, a list shows a
/// repeat next to its twin, and [`NeverRead`] merges the fixed and read-only-by lists
/// without a sort (a lookup goes by [`KeyIndex`], not by the order).
pub fn key_order(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().first().cmp(&b.as_bytes().first()))
        .then_with(|| a.cmp(b))
}

/// The three container lists of a pod spec; the reader splits their entries by
/// [`CONTAINER_NEVER_READ`].
pub const CONTAINER_LISTS: [&str; 3] = [APP_CONTAINERS, "initContainers", "ephemeralContainers"];

/// The list of the pod's app containers, the only one the policy instruments.
const APP_CONTAINERS: &str = "containers";

/// The entry a split container carries in [`Pod::value`]: the number of its layout. Not a
/// field name Kubernetes could give (it has a space); a request whose container holds it
/// has that `spec`'s containers read whole, so the writer follows only the reader's.
pub const MARKER: &str = "agent-mount raw parts";

/// How many keys a split object (a container, `spec`, `metadata`) usually has at most:
/// its layout's first size, so that it does not grow three times on the way.
const USUAL_KEYS: usize = 12;

/// An object's entries in their order, each raw or read.
type Layout<'a> = Vec<(Key<'a>, Part<'a>)>;

/// An object's key as the request spells it: borrowed from the request unless it holds
/// an escape, so that a raw entry costs no allocation for its key.
pub(crate) type Key<'a> = Cow<'a, str>;

/// Reads a [`Key`], borrowing when the deserializer can (serde's own `Cow` always copies).
pub(crate) struct BorrowedKey;

impl<'de> DeserializeSeed<'de> for BorrowedKey {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for BorrowedKey {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(Cow::Owned(key.to_string()))
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'de>, E> {
        Ok(Cow::Owned(key))
    }
}

/// Where one entry of an object went.
enum Part<'a> {
    /// Kept as given; written back as it came.
    Raw(Raw<'a>),
    /// Read into the `Value`; written from it (or left out if the policy removed it).
    Read,
    /// An object split again (`metadata`, `spec`): the number of its layout in
    /// [`Pod`]'s `splits`. A number, not the layout: a `Part` then needs no drop, and a
    /// layout's drop no call per entry (1% of a typical `validate` in wasm).
    Split(usize),
    /// A container list, read: each entry that carries a [`MARKER`] is written from its
    /// own layout, the others (the policy's own) from the `Value`.
    Containers,
}

/// A pod object read for the policy: [`Pod::value`] to read and change, the rest raw.
pub struct Pod<'a> {
    /// `metadata` and `spec` but their never-read keys, for the policy to read and change;
    /// `Value::Null` when the object is not a JSON object.
    pub value: Value,
    /// Every entry of the object in its order, raw or read; empty when it is not an object.
    layout: Layout<'a>,
    /// The layouts of the entries split again, by the number in their [`Part::Split`].
    splits: Vec<Layout<'a>>,
    /// The split containers, by the number of their [`MARKER`].
    containers: Vec<Container<'a>>,
    /// The strings of [`Pod::value`] that hold JSON the policy wrote, written as they are.
    pub own_json: OwnJson,
}

impl Pod<'_> {
    /// Reads into [`Pod::value`] each raw entry that `never_read` does not list: a pod read
    /// before its settings were known ([`NeverRead::most`], or another call's settings)
    /// then holds all the settings read. What it read beyond that stays read, as harmless
    /// as before issue 24.
    pub fn read_more(&mut self, never_read: &NeverRead) -> Result<(), json::Error> {
        let Value::Object(value) = &mut self.value else {
            return Ok(());
        };
        for (key, part) in &self.layout {
            let kind = match &**key {
                SPEC => Kind::Spec,
                METADATA => Kind::Metadata,
                _ => continue,
            };
            if let (Part::Split(n), Some(Value::Object(object))) = (part, value.get_mut(&**key))
                && let Some(layout) = self.splits.get_mut(*n)
            {
                read_listed_out(layout, object, never_read, kind)?;
            }
        }
        for container in &mut self.containers {
            let Some((list, i)) = container.at else {
                continue;
            };
            let kind = Kind::of_container_in(list);
            let object = value
                .get_mut(SPEC)
                .and_then(|spec| spec.get_mut(list))
                .and_then(|list| list.get_mut(i));
            if let Some(Value::Object(object)) = object {
                read_listed_out(&mut container.layout, object, never_read, kind)?;
            }
        }
        Ok(())
    }

    /// An object that is not a JSON object (or none): `null`, nothing to keep; the
    /// request is rejected.
    pub fn not_an_object() -> Self {
        Pod {
            value: Value::Null,
            layout: Vec::new(),
            splits: Vec::new(),
            containers: Vec::new(),
            own_json: OwnJson::default(),
        }
    }

    /// The object with the policy's changes: what was read from [`Pod::value`], every
    /// other entry byte for byte as it came, in the object's order; entries the policy
    /// added come last. `source` is the text the pod was read from: raw entries it spells
    /// one after the other are copied from it in one piece ([`spelt_run`]); any other
    /// text only loses that speed. The buffer is sized once, by the source, which the pod
    /// seldom outgrows ([`ROOM_FOR_ADDITIONS`]): no copies of a buffer grown step by step.
    pub fn write(&self, source: &str) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(source.len() + source.len() / ROOM_FOR_ADDITIONS);
        self.write_object(&mut out, source, &self.layout, &self.value)?;
        Ok(out)
    }

    /// Writes `layout`'s entries, taking the read ones from `value` (an object).
    fn write_object(
        &self,
        out: &mut Vec<u8>,
        source: &str,
        layout: &[(Key<'_>, Part<'_>)],
        value: &Value,
    ) -> Result<(), serde_json::Error> {
        let empty = Map::new();
        let read = value.as_object().unwrap_or(&empty);
        let start = out.len();
        // The policy never sets a raw key, so a raw entry is written without looking for
        // its key in `read` (a search of the map per raw entry: 2% of `validate` in wasm).
        // Should it set one all the same, the object is written again, every raw key
        // looked up, so that the policy's value is written, in the entry's place.
        if !self.write_entries(out, source, layout, read, true)? {
            out.truncate(start);
            self.write_entries(out, source, layout, read, false)?;
        }
        Ok(())
    }

    /// Writes `layout`'s entries as an object, taking the read ones from `read`. With
    /// `raw_unset`, a raw entry is written as it came without a look in `read`, and
    /// `Ok(false)` says that `read` held a raw key after all: what was written is not
    /// the object.
    fn write_entries(
        &self,
        out: &mut Vec<u8>,
        source: &str,
        layout: &[(Key<'_>, Part<'_>)],
        read: &Map<String, Value>,
        raw_unset: bool,
    ) -> Result<bool, serde_json::Error> {
        out.push(b'{');
        // Past the `{`: an entry written before, which the next one follows after a `,`.
        let entries_start = out.len();
        let separate = |out: &mut Vec<u8>| {
            if out.len() != entries_start {
                out.push(b',');
            }
        };
        // The layout's entries found in `read`, but a marker: when they are all of it,
        // the policy added none, and no entry of `read` needs looking for in the layout.
        let mut matched = 0;
        // `verbatim`: a key borrowed from the request, spelt there without an escape, so
        // it holds no `"`, `\` or control character (JSON has none raw), nothing
        // serde_json would escape: written as it is, without a pass over its bytes.
        let entry = |out: &mut Vec<u8>, key: &str, verbatim: bool| {
            separate(out);
            if verbatim {
                out.push(b'"');
                out.extend_from_slice(key.as_bytes());
                out.push(b'"');
            } else {
                write::string(out, key);
            }
            out.push(b':');
        };
        let mut entries = layout.iter();
        while let Some((key, part)) = entries.next() {
            // Raw entries the request spells one after the other, as this writes them: one
            // copy of their text, where each cost a copy of its key and one of its value
            // and four pushes (most raw entries come in such runs: 43 in 12 in a typical
            // pod).
            if raw_unset
                && let Some((text, rest)) = spelt_run(source, key, part, entries.as_slice())
            {
                separate(out);
                out.extend_from_slice(text.as_bytes());
                entries = rest.iter();
                continue;
            }
            let value = match part {
                Part::Raw(_) if raw_unset => None,
                _ => read.get(&**key),
            };
            if value.is_some() && **key != *MARKER {
                matched += 1;
            }
            let verbatim = matches!(key, Cow::Borrowed(_));
            match (part, value) {
                // A raw entry the policy did not set.
                (Part::Raw(raw), None) => {
                    entry(out, key, verbatim);
                    out.extend_from_slice(raw.get().as_bytes());
                }
                (Part::Split(n), Some(object @ Value::Object(_))) => {
                    entry(out, key, verbatim);
                    match self.splits.get(*n) {
                        Some(inner) => self.write_object(out, source, inner, object)?,
                        None => write::value_keeping(out, object, &self.own_json)?,
                    }
                }
                (Part::Containers, Some(Value::Array(list))) => {
                    entry(out, key, verbatim);
                    self.write_containers(out, source, list)?;
                }
                (_, Some(value)) => {
                    entry(out, key, verbatim);
                    write::value_keeping(out, value, &self.own_json)?;
                }
                // Read, and removed by the policy.
                (Part::Read | Part::Split(_) | Part::Containers, None) => {}
            }
        }
        let added = read.len() > matched + usize::from(read.contains_key(MARKER));
        // Only then a walk over `read` (a `filter` on `added` walked it to add nothing).
        if added {
            for (key, value) in read {
                // Only the reader puts a marker in an object it split (see [`MARKER`]).
                if key == MARKER {
                    continue;
                }
                match layout.iter().find(|(known, _)| **known == **key) {
                    None => {
                        entry(out, key, false);
                        write::value_keeping(out, value, &self.own_json)?;
                    }
                    Some((_, Part::Raw(_))) if raw_unset => return Ok(false),
                    Some(_) => {}
                }
            }
        }
        out.push(b'}');
        Ok(true)
    }

    /// Writes a container list: a container the reader split from its layout, the others
    /// (the policy's own) as they are.
    fn write_containers(
        &self,
        out: &mut Vec<u8>,
        source: &str,
        list: &[Value],
    ) -> Result<(), serde_json::Error> {
        out.push(b'[');
        for (i, container) in list.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let layout = container
                .get(MARKER)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| self.containers.get(n))
                .map(|split| &split.layout);
            match layout {
                Some(layout) => self.write_object(out, source, layout, container)?,
                None => write::value_keeping(out, container, &self.own_json)?,
            }
        }
        out.push(b']');
        Ok(())
    }
}

/// The text of a raw entry, `key` and `part`, and of as many raw entries of `after` as
/// follow it there, when `source` spells them as [`Pod::write_entries`] writes them:
/// `"key":value` each (the key borrowed from there, so without an escape), a `,` between
/// them; with the entries of `after` past it. `None` when `part` is not raw or `source` does
/// not spell it so (a key with an escape, whitespace, a repeated key's later value, or
/// another text).
fn spelt_run<'s, 'l, 'a>(
    source: &'s str,
    key: &Key<'_>,
    part: &Part<'_>,
    after: &'l [(Key<'a>, Part<'a>)],
) -> Option<(&'s str, &'l [(Key<'a>, Part<'a>)])> {
    let Range { start, mut end } = spelt_entry(source, key, part)?;
    let mut rest = after;
    while let Some(((key, part), further)) = rest.split_first()
        && let Some(next) = spelt_entry(source, key, part)
        && next.start == end + 1
        && source.as_bytes().get(end) == Some(&b',')
    {
        end = next.end;
        rest = further;
    }
    Some((source.get(start..end)?, rest))
}

/// Where `source` spells the raw entry `key`, `part` as `"key":value`, from its `"` to
/// its value's end. Its key and value are borrowed from `source` when their addresses
/// are within it: the same bytes, not a copy, so only the punctuation is looked at.
fn spelt_entry(source: &str, key: &Key<'_>, part: &Part<'_>) -> Option<Range<usize>> {
    let (Cow::Borrowed(key), Part::Raw(raw)) = (key, part) else {
        return None;
    };
    let key_at = offset_in(source, key)?;
    let value_at = offset_in(source, raw.get())?;
    let key_end = key_at + key.len();
    let bytes = source.as_bytes();
    let spelt = value_at == key_end + 2
        && bytes.get(key_at.checked_sub(1)?) == Some(&b'"')
        && bytes.get(key_end) == Some(&b'"')
        && bytes.get(key_end + 1) == Some(&b':');
    spelt.then(|| key_at - 1..value_at + raw.get().len())
}

/// The offset in `source` of `part`, when `part` lies within `source` (compared by
/// address: a slice of it, not an equal text elsewhere).
fn offset_in(source: &str, part: &str) -> Option<usize> {
    let at = part.as_ptr().addr().checked_sub(source.as_ptr().addr())?;
    (at.checked_add(part.len())? <= source.len()).then_some(at)
}

/// Reads into `object` each raw entry of its `layout` that `never_read` does not list for
/// `kind`.
fn read_listed_out(
    layout: &mut Layout<'_>,
    object: &mut Map<String, Value>,
    never_read: &NeverRead,
    kind: Kind,
) -> Result<(), json::Error> {
    for (key, part) in layout {
        if let Part::Raw(raw) = part
            && never_read.place(kind, key).is_none()
        {
            object.insert(key.to_string(), json::from_str(raw.get())?);
            *part = Part::Read;
        }
    }
    Ok(())
}

/// Records `key`'s part; a repeated key keeps its first place and its last value, as
/// `serde_json::Value` does.
fn set<'a>(layout: &mut Layout<'a>, key: Key<'a>, part: Part<'a>) {
    match layout.iter_mut().find(|(known, _)| **known == *key) {
        Some((_, old)) => *old = part,
        None => layout.push((key, part)),
    }
}

/// A split container: where it is in the `Value` the reader built, and its layout.
struct Container<'a> {
    /// Its list (one of [`CONTAINER_LISTS`]) and index there, as read; `None` once a
    /// repeated list replaced its own in the `Value`.
    at: Option<(&'static str, usize)>,
    /// Its entries, raw or read.
    layout: Layout<'a>,
    /// Whether it carries a [`MARKER`]: not when the request gave it one.
    marked: bool,
}

/// What the reader of one `spec` keeps beside the `Value`.
#[derive(Default)]
struct Containers<'a> {
    /// The split containers, by the number of their [`MARKER`].
    split: Vec<Container<'a>>,
    /// A container of the request holds a [`MARKER`] key: the spec is then read whole.
    forged: bool,
}

/// The objects [`Split`] reads, each with its never-read keys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The pod's `metadata`.
    Metadata,
    /// The pod's `spec`, whose container lists are split too.
    Spec,
    /// An entry of `spec.containers`.
    AppContainer,
    /// An entry of `initContainers` or `ephemeralContainers`, which the policy never changes.
    OtherContainer,
}

impl Kind {
    /// The kind of an entry of the container list `list` (one of [`CONTAINER_LISTS`]):
    /// the policy changes only `spec.containers`' entries, and reads less of the others.
    fn of_container_in(list: &str) -> Kind {
        if list == APP_CONTAINERS {
            Kind::AppContainer
        } else {
            Kind::OtherContainer
        }
    }
}

/// Who reads a key that only some settings read.
#[derive(Clone, Copy)]
enum Reader {
    /// Activation, when the `activation` setting is present.
    Activation,
    /// virtual-device's extended resource.
    VirtualDevice,
    /// Every method that adds a volume (its mounts, and the check that no mount of its
    /// name exists).
    VolumeMethods,
    /// init-container (the copy container's checks: host-process pods, its image, the
    /// pod-level resources).
    InitContainer,
    /// `requiredNodeLabel`.
    NodeLabel,
    /// No settings: a key the policy reads in another object only.
    Nobody,
}

impl Reader {
    /// Whether the policy under `settings` reads the key.
    fn reads(self, settings: &Settings) -> bool {
        match self {
            Reader::Activation => settings.activation.is_some(),
            Reader::VirtualDevice => matches!(settings.method, Method::VirtualDevice { .. }),
            Reader::VolumeMethods => settings.method.mounts().is_some(),
            Reader::InitContainer => matches!(settings.method, Method::InitContainer { .. }),
            Reader::NodeLabel => settings.method.node_label().is_some(),
            Reader::Nobody => false,
        }
    }
}

/// The metadata fields only activation reads (the service name and resource attributes):
/// without it, the policy reads `annotations` alone.
const METADATA_READ_ONLY_BY: [(&str, Reader); 5] = [
    ("name", Reader::Activation),
    ("labels", Reader::Activation),
    ("namespace", Reader::Activation),
    ("generateName", Reader::Activation),
    ("ownerReferences", Reader::Activation),
];

/// The `spec` fields only some settings read.
const SPEC_READ_ONLY_BY: [(&str, Reader); 4] = [
    ("volumes", Reader::VolumeMethods),
    ("affinity", Reader::NodeLabel),
    ("resources", Reader::InitContainer),
    ("securityContext", Reader::InitContainer),
];

/// The fields of an entry of `spec.containers` only some settings read; `name` is always
/// read (selection).
const APP_CONTAINER_READ_ONLY_BY: [(&str, Reader); 7] = [
    ("env", Reader::Activation),
    ("image", Reader::Nobody),
    ("envFrom", Reader::Activation),
    ("resources", Reader::VirtualDevice),
    ("volumeMounts", Reader::VolumeMethods),
    ("volumeDevices", Reader::VolumeMethods),
    ("securityContext", Reader::InitContainer),
];

/// The fields of an init or ephemeral container only some settings read; `name` is always
/// read (selection's warnings, the copy container's name check).
const OTHER_CONTAINER_READ_ONLY_BY: [(&str, Reader); 7] = [
    ("env", Reader::Nobody),
    ("image", Reader::InitContainer),
    ("envFrom", Reader::Nobody),
    ("resources", Reader::Nobody),
    ("volumeMounts", Reader::VolumeMethods),
    ("volumeDevices", Reader::Nobody),
    ("securityContext", Reader::InitContainer),
];

/// The keys a pod is read without, for one settings: the fixed never-read lists, plus the
/// keys that only other settings read (issue 24: virtual-device without activation reads
/// a container's `name` and `resources`, nothing else). Each list in [`key_order`], and
/// indexed by a [`KeyIndex`] built with it (so built only by [`NeverRead::fixed`],
/// [`NeverRead::of`] and [`NeverRead::most`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeverRead {
    /// Of `metadata`.
    pub metadata: Vec<&'static str>,
    /// Of `spec`.
    pub spec: Vec<&'static str>,
    /// Of each entry of `spec.containers`.
    pub app_container: Vec<&'static str>,
    /// Of each entry of `initContainers` and `ephemeralContainers`.
    pub other_container: Vec<&'static str>,
    /// The four lists' indexes, in the order of the lists above.
    index: [KeyIndex; 4],
}

/// One kind's never-read list with its [`KeyIndex`]: chosen once per object, not per key.
#[derive(Clone, Copy)]
struct Listed<'n> {
    /// The keys kept raw.
    list: &'n [&'static str],
    /// Their index.
    index: &'n KeyIndex,
}

impl Listed<'_> {
    /// The place of `key` in the list, if it is kept raw.
    #[inline(always)]
    fn place(self, key: &str) -> Option<usize> {
        self.index.place(self.list, key)
    }
}

/// How many slots a [`KeyIndex`] has: a power of two, over three times the longest list
/// (`spec`'s 37 keys), so that a lookup seldom meets another key's slot.
const SLOTS: usize = 128;

/// A never-read list's keys by a hash of the key ([`slot_of`]), for the reader's lookup
/// of every key of a split object. A binary search of the list, as before, cost five
/// steps and two calls to `memcmp` per key, 7% of a typical `validate` in wasm; here a
/// key the list does not hold mostly finds its slot empty, and one it holds is compared
/// once. Open addressing: a key whose slot is taken goes to the next free one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyIndex {
    /// Each slot: 1 + the place in the list of the key there; 0 when empty.
    slots: [u8; SLOTS],
}

impl KeyIndex {
    /// The index of `list`. A key that does not fit (a list of 128 keys or more, which
    /// the lists are far from) is left out, and so is read: the safe side.
    fn of(list: &[&str]) -> Self {
        let mut slots = [0; SLOTS];
        for (place, key) in list.iter().enumerate() {
            let free = probes(key).find(|&slot| slots.get(slot) == Some(&0));
            if let (Some(slot), Ok(entry)) = (free, u8::try_from(place + 1))
                && let Some(slot) = slots.get_mut(slot)
            {
                *slot = entry;
            }
        }
        KeyIndex { slots }
    }

    /// The place of `key` in `list`, the list this index was built of.
    #[inline(always)]
    fn place(&self, list: &[&str], key: &str) -> Option<usize> {
        for slot in probes(key) {
            let place = usize::from(*self.slots.get(slot)?).checked_sub(1)?;
            if list.get(place) == Some(&key) {
                return Some(place);
            }
        }
        None
    }
}

/// The slots a lookup of `key` tries, in order: its own ([`slot_of`]), then the next ones
/// around the table.
fn probes(key: &str) -> impl Iterator<Item = usize> {
    let first = slot_of(key.as_bytes());
    (0..SLOTS).map(move |step| (first + step) % SLOTS)
}

/// The multiplier of [`slot_of`]'s hash: one found by trying odd numbers, with which no two
/// keys of any one list (fixed and read-only-by keys alike) share a slot, so that each
/// lookup of a listed key compares it once.
const HASH_MULTIPLIER: u32 = 0x7_ece5;

/// The slot of `key`: a multiplicative hash of its length, first, middle and last bytes,
/// which tell the listed keys apart (`resourceClaims` and `readinessGates` differ only in
/// the middle), loaded without a call or a loop.
#[inline(always)]
fn slot_of(key: &[u8]) -> usize {
    let byte = |at: usize| u32::from(key.get(at).copied().unwrap_or_default());
    let len = key.len();
    let features =
        byte(0) | byte(len / 2) << 8 | byte(len.wrapping_sub(1)) << 16 | (len as u32) << 24;
    (features.wrapping_mul(HASH_MULTIPLIER) >> (32 - SLOTS.trailing_zeros())) as usize
}

impl NeverRead {
    /// The fixed lists only: what every settings leaves unread.
    pub fn fixed() -> Self {
        Self::indexed(
            METADATA_NEVER_READ.to_vec(),
            SPEC_NEVER_READ.to_vec(),
            CONTAINER_NEVER_READ.to_vec(),
            CONTAINER_NEVER_READ.to_vec(),
        )
    }

    /// What the policy under `settings` never reads.
    pub fn of(settings: &Settings) -> Self {
        Self::unread_by(|reader| reader.reads(settings))
    }

    /// What no settings read: the most a pod can be read without before its settings are
    /// known ([`Pod::read_more`] then reads what they read).
    pub fn most() -> Self {
        Self::unread_by(|_| false)
    }

    /// The fixed lists, and each key only some settings read unless `reads` its reader.
    fn unread_by(reads: impl Fn(Reader) -> bool) -> Self {
        // Both lists in [`key_order`]: merged in order (a sort would bring its own code
        // into the module).
        let list = |fixed: &[&'static str], only_by: &[(&'static str, Reader)]| {
            let mut unread = only_by
                .iter()
                .filter(|(_, reader)| !reads(*reader))
                .map(|(key, _)| *key)
                .peekable();
            let mut keys = Vec::with_capacity(fixed.len() + only_by.len());
            for key in fixed {
                while let Some(earlier) = unread.next_if(|unread| key_order(unread, key).is_lt()) {
                    keys.push(earlier);
                }
                keys.push(key);
            }
            keys.extend(unread);
            keys
        };
        Self::indexed(
            list(&METADATA_NEVER_READ, &METADATA_READ_ONLY_BY),
            list(&SPEC_NEVER_READ, &SPEC_READ_ONLY_BY),
            list(&CONTAINER_NEVER_READ, &APP_CONTAINER_READ_ONLY_BY),
            list(&CONTAINER_NEVER_READ, &OTHER_CONTAINER_READ_ONLY_BY),
        )
    }

    /// The four lists, each with its [`KeyIndex`].
    fn indexed(
        metadata: Vec<&'static str>,
        spec: Vec<&'static str>,
        app_container: Vec<&'static str>,
        other_container: Vec<&'static str>,
    ) -> Self {
        let index =
            [&metadata, &spec, &app_container, &other_container].map(|list| KeyIndex::of(list));
        NeverRead {
            metadata,
            spec,
            app_container,
            other_container,
            index,
        }
    }

    /// The place of `key` in the list of `kind`, if it is kept raw there.
    fn place(&self, kind: Kind, key: &str) -> Option<usize> {
        self.listed(kind).place(key)
    }

    /// The list of `kind` with its index.
    fn listed(&self, kind: Kind) -> Listed<'_> {
        let [metadata, spec, app_container, other_container] = &self.index;
        let index = match kind {
            Kind::Metadata => metadata,
            Kind::Spec => spec,
            Kind::AppContainer => app_container,
            Kind::OtherContainer => other_container,
        };
        Listed {
            list: self.of_kind(kind),
            index,
        }
    }

    /// The keys of `kind` kept raw.
    fn of_kind(&self, kind: Kind) -> &[&'static str] {
        match kind {
            Kind::Metadata => &self.metadata,
            Kind::Spec => &self.spec,
            Kind::AppContainer => &self.app_container,
            Kind::OtherContainer => &self.other_container,
        }
    }
}

/// Visits for a value that is not the shape the visitor splits: the value read whole,
/// as `Value`'s own `Deserialize` reads it.
macro_rules! read_other_values_whole {
    () => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            Ok(Value::from(v))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    };
}

/// Reads an object in one pass: its never-read keys raw, the rest into a `Value` (a
/// spec's container lists by [`ContainerList`]), its layout into `layout`; anything but
/// an object is read whole and leaves `layout` empty.
struct Split<'t, 'a> {
    /// Which object, so which keys stay raw.
    kind: Kind,
    /// Where the object's layout goes when it is one.
    layout: &'t mut Option<Layout<'a>>,
    /// Where a spec's split containers go.
    containers: &'t mut Containers<'a>,
    /// The keys kept raw.
    never_read: &'t NeverRead,
}

impl<'de> DeserializeSeed<'de> for Split<'_, 'de> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Split<'_, 'de> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    read_other_values_whole!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = seq.next_element()? {
            list.push(item);
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut read = Map::new();
        let mut layout = Vec::with_capacity(USUAL_KEYS);
        // The raw keys seen, by their place in the never-read list (one bit each; a place
        // past 64 counts as maybe seen): a key not seen before is pushed on the layout
        // without a look at its entries for a repeat, which a valid object never has.
        let mut raw_seen: u64 = 0;
        let never_read = self.never_read.listed(self.kind);
        while let Some(key) = map.next_key_seed(BorrowedKey)? {
            let at = never_read.place(&key);
            let repeated;
            let part = if let Some(at) = at {
                let bit = u32::try_from(at)
                    .ok()
                    .and_then(|at| 1u64.checked_shl(at))
                    .unwrap_or(0);
                repeated = bit == 0 || raw_seen & bit != 0;
                raw_seen |= bit;
                Part::Raw(map.next_value()?)
            } else if let (Kind::Spec, Some(list)) = (
                self.kind,
                CONTAINER_LISTS.iter().find(|list| **list == &*key),
            ) {
                // A repeated list: the earlier one's containers leave the `Value`.
                for earlier in &mut self.containers.split {
                    if earlier.at.is_some_and(|(at, _)| at == *list) {
                        earlier.at = None;
                    }
                }
                let value = map.next_value_seed(ContainerList {
                    list,
                    containers: &mut *self.containers,
                    never_read: self.never_read,
                })?;
                repeated = read.insert(key.to_string(), value).is_some();
                Part::Containers
            } else {
                if *key == *MARKER && matches!(self.kind, Kind::AppContainer | Kind::OtherContainer)
                {
                    self.containers.forged = true;
                }
                repeated = read.insert(key.to_string(), map.next_value()?).is_some();
                Part::Read
            };
            if repeated {
                set(&mut layout, key, part);
            } else {
                layout.push((key, part));
            }
        }
        *self.layout = Some(layout);
        Ok(Value::Object(read))
    }
}

/// Reads a container list in one pass, each entry by [`Split`] and marked with its
/// number; anything but an array is read whole.
struct ContainerList<'t, 'a> {
    /// The list's name.
    list: &'static str,
    /// Where the split containers go.
    containers: &'t mut Containers<'a>,
    /// The keys kept raw.
    never_read: &'t NeverRead,
}

impl<'de> DeserializeSeed<'de> for ContainerList<'_, 'de> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContainerList<'_, 'de> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    read_other_values_whole!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut read = Map::new();
        while let Some((key, value)) = map.next_entry()? {
            read.insert(key, value);
        }
        Ok(Value::Object(read))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut list = Vec::new();
        let kind = Kind::of_container_in(self.list);
        loop {
            let mut layout = None;
            let Some(mut container) = seq.next_element_seed(Split {
                kind,
                layout: &mut layout,
                containers: &mut *self.containers,
                never_read: self.never_read,
            })?
            else {
                break;
            };
            if let (Some(layout), Value::Object(container)) = (layout, &mut container) {
                let marked = !container.contains_key(MARKER);
                if marked {
                    container.insert(MARKER.into(), Value::from(self.containers.split.len()));
                }
                self.containers.split.push(Container {
                    at: Some((self.list, list.len())),
                    layout,
                    marked,
                });
            }
            list.push(container);
        }
        Ok(Value::Array(list))
    }
}

/// A spec whose container forged a [`MARKER`]: every split container read whole (our
/// marker removed, its raw keys parsed in), so that the writer has no marker to trust.
fn unsplit(spec: &mut Value, containers: Containers<'_>) -> Result<(), json::Error> {
    for Container { at, layout, marked } in containers.split {
        let Some(Value::Object(container)) =
            at.and_then(|(list, i)| spec.get_mut(list)?.get_mut(i))
        else {
            continue;
        };
        if marked {
            container.remove(MARKER);
        }
        for (key, part) in layout {
            if let Part::Raw(raw) = part {
                container.insert(key.into_owned(), json::from_str(raw.get())?);
            }
        }
    }
    Ok(())
}

/// Reads a [`Pod`] in one pass, keeping its [`NeverRead`] keys raw; anything but an
/// object gives `Value::Null`, which `select::container_names` rejects as not a JSON
/// object.
pub struct ReadPod<'n>(pub &'n NeverRead);

impl<'de> DeserializeSeed<'de> for ReadPod<'_> {
    type Value = Pod<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Pod<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ReadPod<'_> {
    type Value = Pod<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = Map::new();
        let mut layout = Vec::new();
        let mut splits = Vec::new();
        let mut containers = Vec::new();
        while let Some(key) = map.next_key_seed(BorrowedKey)? {
            let kind = match &*key {
                SPEC => Kind::Spec,
                METADATA => Kind::Metadata,
                _ => {
                    let part = Part::Raw(map.next_value()?);
                    set(&mut layout, key, part);
                    continue;
                }
            };
            let mut split = None;
            let mut spec_containers = Containers::default();
            let mut read = map.next_value_seed(Split {
                kind,
                layout: &mut split,
                containers: &mut spec_containers,
                never_read: self.0,
            })?;
            if spec_containers.forged {
                unsplit(&mut read, std::mem::take(&mut spec_containers))
                    .map_err(de::Error::custom)?;
            }
            if kind == Kind::Spec {
                // A repeated spec: the last one's containers, as its value is the last.
                containers = spec_containers.split;
            }
            let part = match split {
                Some(split) => {
                    splits.push(split);
                    Part::Split(splits.len() - 1)
                }
                None => Part::Read,
            };
            value.insert(key.to_string(), read);
            set(&mut layout, key, part);
        }
        Ok(Pod {
            value: Value::Object(value),
            layout,
            splits,
            containers,
            own_json: OwnJson::default(),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Pod::not_an_object())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Pod::not_an_object())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Pod::not_an_object())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Pod::not_an_object())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Pod::not_an_object())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Pod::not_an_object())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Pod::not_an_object())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OBJECT: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","managedFields":[{"manager":"kubectl","time":"2024-01-01T00:00:00Z","fieldsV1":{"f:spec":{}}}],"annotations":{"a":"b"},"x-unknown":1.50},"spec":{"containers":[{"future":{"n":1},"name":"app"}]},"status":{"phase":"Pending","n":1e3}}"#;

    fn read(object: &str) -> Pod<'_> {
        json::from_str_seed(object, ReadPod(&NeverRead::fixed())).unwrap()
    }

    #[test]
    fn reads_spec_and_metadata_but_managed_fields() {
        let pod = read(OBJECT);
        assert_eq!(
            pod.value,
            json!({"metadata": {"name": "p", "annotations": {"a": "b"}, "x-unknown": 1.5},
                   "spec": {"containers": [{"name": "app", "future": {"n": 1}, MARKER: 0}]}})
        );
    }

    #[test]
    fn writes_an_unchanged_pod_back_byte_for_byte() {
        // Numbers as given (1e3) show the raw entries were never re-serialised; the read
        // parts are written as serde_json writes them (sorted keys, 1.50 as 1.5).
        let pod = read(OBJECT);
        let written = String::from_utf8(pod.write(OBJECT).unwrap()).unwrap();
        let expected = OBJECT.replace("1.50", "1.5");
        assert_eq!(written, expected);
    }

    #[test]
    fn writes_the_policys_changes_in_place_and_new_entries_last() {
        let mut pod = read(OBJECT);
        pod.value["spec"]["volumes"] = json!([{"name": "v"}]);
        pod.value["metadata"]["labels"] = json!({"l": "1"});
        pod.value["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("name");
        pod.value["added"] = json!(true);
        let written = String::from_utf8(pod.write(OBJECT).unwrap()).unwrap();
        assert_eq!(
            written,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"managedFields":[{"manager":"kubectl","time":"2024-01-01T00:00:00Z","fieldsV1":{"f:spec":{}}}],"annotations":{"a":"b"},"x-unknown":1.5,"labels":{"l":"1"}},"spec":{"containers":[{"future":{"n":1},"name":"app"}],"volumes":[{"name":"v"}]},"status":{"phase":"Pending","n":1e3},"added":true}"#
        );
    }

    #[test]
    fn anything_but_an_object_reads_as_null() {
        for object in ["[1, {}]", "5", "-1", "1.5", "\"pod\"", "true", "null"] {
            assert_eq!(read(object).value, Value::Null, "{object}");
        }
    }

    #[test]
    fn a_metadata_that_is_not_an_object_is_read_whole() {
        let object = r#"{"metadata":[1],"spec":{}}"#;
        let pod = read(object);
        assert_eq!(pod.value, json!({"metadata": [1], "spec": {}}));
        assert_eq!(pod.write(object).unwrap(), br#"{"metadata":[1],"spec":{}}"#);
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_last_value() {
        let object = r#"{"spec":{"a":1},"status":1,"spec":{"b":2},"status":2}"#;
        let pod = read(object);
        assert_eq!(pod.value, json!({"spec": {"b": 2}}));
        assert_eq!(
            pod.write(object).unwrap(),
            br#"{"spec":{"b":2},"status":2}"#
        );
    }
    /// A spec with never-read keys at both levels, in three containers of two lists.
    const SPLIT: &str = r#"{"spec":{"tolerations":[{"t":1.50}],"initContainers":[{"name":"i","args":["x"],"image":"busybox"}],"containers":[{"ports":[{"p":1e3}],"name":"a","env":[]},{"name":"b","command":["c"],"tty":true}],"dnsPolicy":"None"}}"#;

    #[test]
    fn keeps_the_never_read_keys_of_spec_and_containers_raw() {
        let pod = read(SPLIT);
        assert_eq!(
            pod.value,
            json!({"spec": {
                "initContainers": [{"name": "i", "image": "busybox", MARKER: 0}],
                "containers": [{"name": "a", "env": [], MARKER: 1}, {"name": "b", MARKER: 2}]}})
        );
        // 1.50 and 1e3 come back as given: never parsed.
        assert_eq!(pod.write(SPLIT).unwrap(), SPLIT.as_bytes());
    }

    #[test]
    fn a_containers_raw_keys_follow_it_when_the_policy_inserts_before_it() {
        let mut pod = read(SPLIT);
        let spec = &mut pod.value["spec"];
        spec["initContainers"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"name": "copy", "image": "agents"}));
        spec["containers"].as_array_mut().unwrap().swap(0, 1);
        spec["containers"][1]["env"] = json!([{"name": "E", "value": "v"}]);
        spec["containers"][1]["volumeMounts"] = json!([{"name": "m"}]);
        let written = String::from_utf8(pod.write(SPLIT).unwrap()).unwrap();
        assert_eq!(
            written,
            r#"{"spec":{"tolerations":[{"t":1.50}],"initContainers":[{"image":"agents","name":"copy"},{"name":"i","args":["x"],"image":"busybox"}],"containers":[{"name":"b","command":["c"],"tty":true},{"ports":[{"p":1e3}],"name":"a","env":[{"name":"E","value":"v"}],"volumeMounts":[{"name":"m"}]}],"dnsPolicy":"None"}}"#
        );
    }

    #[test]
    fn a_raw_key_the_policy_sets_is_written_from_the_value_in_its_place() {
        // The policy never sets a never-read key; if it did, its value would be written,
        // once, where the raw entry was, beside an entry it added.
        let mut pod = read(SPLIT);
        pod.value["spec"]["dnsPolicy"] = json!("Default");
        pod.value["spec"]["volumes"] = json!([]);
        pod.value["spec"]["containers"][1]["tty"] = json!(false);
        assert_eq!(
            String::from_utf8(pod.write(SPLIT).unwrap()).unwrap(),
            r#"{"spec":{"tolerations":[{"t":1.50}],"initContainers":[{"name":"i","args":["x"],"image":"busybox"}],"containers":[{"ports":[{"p":1e3}],"name":"a","env":[]},{"name":"b","command":["c"],"tty":false}],"dnsPolicy":"Default","volumes":[]}}"#
        );
    }

    #[rstest::rstest]
    // A request that holds the marker: every container read whole, the user's key kept.
    #[case::marker_in_a_container(
        r#"{"spec":{"tty":1,"containers":[{"name":"a","ports":1.50,"agent-mount raw parts":0},{"name":"b","ports":1.50}]}}"#,
        false
    )]
    #[case::marker_in_an_init_container(
        r#"{"spec":{"containers":[{"name":"a","ports":1.50}],"initContainers":[{"agent-mount raw parts":"x","args":[]}]}}"#,
        false
    )]
    // Not a pod's shape: the odd part read whole, the rest split as usual.
    #[case::marker_in_spec(
        r#"{"spec":{"agent-mount raw parts":0,"containers":[{"name":"a","ports":1.50}]}}"#,
        true
    )]
    #[case::container_not_an_object(
        r#"{"spec":{"containers":[{"name":"a","ports":1.50},"b",null,[{"ports":2}]]}}"#,
        true
    )]
    #[case::list_not_an_array(
        r#"{"spec":{"containers":[{"name":"a","ports":1.50}],"initContainers":{"name":"i","ports":2}}}"#,
        true
    )]
    #[case::marker_and_a_repeated_list(
        r#"{"spec":{"containers":[{"name":"x","ports":1.50},{"name":"y"}],"containers":[{"name":"a","tty":3,"agent-mount raw parts":0},{"name":"b","args":[1]}]}}"#,
        false
    )]
    #[case::spec_not_an_object(r#"{"spec":[{"name":"a","ports":1.50}]}"#, false)]
    #[case::metadata_not_an_object(
        r#"{"metadata":"m","spec":{"containers":[{"name":"a","ports":1.50}]}}"#,
        true
    )]
    fn reads_what_it_cannot_split_whole_and_writes_it_all_back(
        #[case] object: &str,
        #[case] raw_kept: bool,
    ) {
        let pod = read(object);
        let whole: Value = serde_json::from_str(object).unwrap();
        if !raw_kept {
            // Read whole: the policy sees it all, and no marker of ours.
            assert_eq!(pod.value, whole);
        }
        let written = pod.write(object).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&written).unwrap(), whole);
        // 1.50 is written as given only where it stayed raw.
        let written = String::from_utf8(written).unwrap();
        assert_eq!(written.contains("1.50"), raw_kept, "{written}");
    }

    #[test]
    fn a_repeated_key_of_a_split_object_keeps_its_first_place_and_last_value() {
        // Raw (`ports`, `dnsPolicy`) and read (`name`, `env`) keys, each given twice.
        let object = r#"{"spec":{"dnsPolicy":"x","containers":[{"name":"a","ports":1,"env":[],"ports":2.50,"name":"b","env":[1]}],"dnsPolicy":"y"}}"#;
        let pod = read(object);
        assert_eq!(
            pod.value,
            json!({"spec": {"containers": [{"name": "b", "env": [1], MARKER: 0}]}})
        );
        assert_eq!(
            String::from_utf8(pod.write(object).unwrap()).unwrap(),
            r#"{"spec":{"dnsPolicy":"y","containers":[{"name":"b","ports":2.50,"env":[1]}]}}"#
        );
    }

    #[test]
    fn read_more_reads_what_the_settings_read_from_the_raw_parts() {
        // Read before the settings are known: `env` and `labels` raw; activation reads them.
        let object = r#"{"metadata":{"labels":{"a":"1"},"uid":"u"},"spec":{"containers":[{"name":"a","env":[{"name":"E","value":"1.50"}],"ports":1.50}]}}"#;
        let mut pod = json::from_str_seed(object, ReadPod(&NeverRead::most())).unwrap();
        assert_eq!(
            pod.value,
            json!({"metadata": {}, "spec": {"containers": [{"name": "a", MARKER: 0}]}})
        );
        let activation = crate::settings::parse(json!({"activation": {}})).unwrap();
        pod.read_more(&NeverRead::of(&activation)).unwrap();
        assert_eq!(
            pod.value,
            json!({"metadata": {"labels": {"a": "1"}},
                   "spec": {"containers": [{"name": "a", "env": [{"name": "E", "value": "1.50"}], MARKER: 0}]}})
        );
        pod.value["spec"]["containers"][0]["env"] = json!([]);
        assert_eq!(
            String::from_utf8(pod.write(object).unwrap()).unwrap(),
            r#"{"metadata":{"labels":{"a":"1"},"uid":"u"},"spec":{"containers":[{"name":"a","env":[],"ports":1.50}]}}"#
        );
    }

    #[test]
    fn entries_the_policy_adds_are_written_beside_a_marker_the_request_gave() {
        // The request's marker in `spec` is one of its entries; the policy's `volumes` and
        // `labels` are not, and come last.
        let object = r#"{"metadata":{"uid":"u"},"spec":{"agent-mount raw parts":0,"dnsPolicy":1.50,"containers":[{"name":"a","ports":1.50}]}}"#;
        let mut pod = read(object);
        pod.value["spec"]["volumes"] = json!([]);
        pod.value["metadata"]["labels"] = json!({});
        pod.value["spec"]["containers"][0]["volumeMounts"] = json!([]);
        assert_eq!(
            String::from_utf8(pod.write(object).unwrap()).unwrap(),
            r#"{"metadata":{"uid":"u","labels":{}},"spec":{"agent-mount raw parts":0,"dnsPolicy":1.50,"containers":[{"name":"a","ports":1.50,"volumeMounts":[]}],"volumes":[]}}"#
        );
    }

    #[test]
    fn an_escaped_key_is_the_key_it_spells() {
        // "\u0070orts" is "ports": never read, so raw, under its own name.
        let object = r#"{"spec":{"containers":[{"\u0070orts":[1.50],"n\u0061me":"a"}]}}"#;
        let pod = read(object);
        assert_eq!(
            pod.value,
            json!({"spec": {"containers": [{"name": "a", MARKER: 0}]}})
        );
        assert_eq!(
            pod.write(object).unwrap(),
            br#"{"spec":{"containers":[{"ports":[1.50],"name":"a"}]}}"#
        );
    }

    #[test]
    fn runs_of_raw_entries_are_the_text_the_source_spells_them_in() {
        // Top-level entries but `metadata` and `spec` are raw: each run as the source
        // spells it, cut by whitespace, an escaped key, a read entry or a repeated key.
        let object = r#"{"a":1,"b":[2, 3],"c":{} ,"d":4,"\u0065":5,"f":6,"spec":{},"g":7,"h" :8,"i":9,"h":10,"j":11}"#;
        let pod = read(object);
        let mut runs = Vec::new();
        let mut entries = pod.layout.iter();
        while let Some((key, part)) = entries.next() {
            match spelt_run(object, key, part, entries.as_slice()) {
                Some((text, rest)) => {
                    runs.push(text);
                    entries = rest.iter();
                }
                None => runs.push("-"),
            }
        }
        assert_eq!(
            runs,
            [
                r#""a":1,"b":[2, 3],"c":{}"#,
                r#""d":4"#,
                "-",
                r#""f":6"#,
                "-",
                r#""g":7"#,
                "-",
                r#""i":9"#,
                r#""j":11"#,
            ]
        );
        // Another text, even an equal one, spells nothing of it.
        let copy = object.to_string();
        let (key, part) = pod.layout.first().unwrap();
        assert!(spelt_run(&copy, key, part, &[]).is_none());
    }

    #[rstest::rstest]
    #[case::compact(OBJECT)]
    #[case::split(SPLIT)]
    #[case::spaced(
        r#"{"apiVersion":"v1", "kind" :"Pod","metadata":{"uid":"u","generation":1 ,"managedFields":[]},"spec":{"dnsPolicy":"x","hostIPC": true,"containers":[{"tty":true,"args":[ 1 ],"name":"a","ports":[],  "stdin":false}]}}"#
    )]
    #[case::escaped_and_repeated(
        r#"{"spec":{"dnsPolicy":"x","hostIPC":1,"dnsPolicy":"y","hostPID":2,"containers":[{"tty":1,"\u0070orts":2,"args":3,"tty":4}]}}"#
    )]
    fn a_pod_is_written_the_same_with_or_without_its_source(#[case] object: &str) {
        // Without its source (a copy is another text), every raw entry is written on its
        // own: the runs copied from the source must come to the same bytes.
        let mut pod = read(object);
        pod.value["spec"]["volumes"] = json!([]);
        let from_source = pod.write(object).unwrap();
        let copy = object.to_string();
        assert_eq!(from_source, pod.write(&copy).unwrap());
        let mut whole: Value = serde_json::from_str(object).unwrap();
        whole["spec"]["volumes"] = json!([]);
        assert_eq!(
            serde_json::from_slice::<Value>(&from_source).unwrap(),
            whole
        );
    }

    #[test]
    fn the_index_finds_each_listed_key_at_its_place_and_no_other_key() {
        let kinds = [
            Kind::Metadata,
            Kind::Spec,
            Kind::AppContainer,
            Kind::OtherContainer,
        ];
        let every_key: Vec<&str> = [
            &METADATA_NEVER_READ[..],
            &SPEC_NEVER_READ,
            &CONTAINER_NEVER_READ,
            &only_by(&METADATA_READ_ONLY_BY),
            &only_by(&SPEC_READ_ONLY_BY),
            &only_by(&APP_CONTAINER_READ_ONLY_BY),
            &only_by(&OTHER_CONTAINER_READ_ONLY_BY),
            &[
                "",
                "name",
                "spec",
                "containers",
                "agent-mount raw parts",
                "é",
            ],
        ]
        .concat();
        for never_read in [
            NeverRead::fixed(),
            NeverRead::most(),
            NeverRead::of(&Settings::default()),
            NeverRead::of(&crate::settings::parse(json!({"activation": {}})).unwrap()),
        ] {
            for kind in kinds {
                let list = never_read.of_kind(kind);
                for key in &every_key {
                    // Near misses too: a byte less, a byte more, another first byte.
                    let near = [
                        key.get(1..).unwrap_or_default().to_string(),
                        format!("{key}s"),
                        format!("X{}", key.get(1..).unwrap_or_default()),
                    ];
                    for key in near.iter().map(String::as_str).chain([*key]) {
                        assert_eq!(
                            never_read.place(kind, key),
                            list.iter().position(|known| *known == key),
                            "{key:?} in {list:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_crowded_index_finds_every_key_it_holds_and_leaves_out_what_does_not_fit() {
        // Far more keys than the lists have: slots taken by others, then no slot left.
        let keys: Vec<String> = (0..200).map(|n| format!("key{n}")).collect();
        let list: Vec<&str> = keys.iter().map(String::as_str).collect();
        let index = KeyIndex::of(&list);
        let found: Vec<usize> = list
            .iter()
            .filter_map(|key| index.place(&list, key))
            .collect();
        // The first 128 fill the slots, each found at its place; the rest are read.
        assert_eq!(found, (0..SLOTS).collect::<Vec<_>>());
        assert_eq!(index.place(&list, "key"), None);
    }

    /// The keys of a read-only-by table.
    fn only_by(table: &[(&'static str, Reader)]) -> Vec<&'static str> {
        table.iter().map(|(key, _)| *key).collect()
    }

    #[test]
    fn the_never_read_lists_are_sorted_and_without_repeats() {
        for list in [
            &SPEC_NEVER_READ[..],
            &CONTAINER_NEVER_READ,
            &METADATA_NEVER_READ,
            &only_by(&METADATA_READ_ONLY_BY),
            &only_by(&SPEC_READ_ONLY_BY),
            &only_by(&APP_CONTAINER_READ_ONLY_BY),
            &only_by(&OTHER_CONTAINER_READ_ONLY_BY),
        ] {
            assert!(
                list.windows(2).all(|w| key_order(w[0], w[1]).is_lt()),
                "{list:?}"
            );
        }
        // Merged, every settings' lists are sorted and without repeats too: nothing of
        // the fixed lists is read only by some settings.
        for settings in [
            Settings::default(),
            crate::settings::parse(serde_json::json!({"activation": {}})).unwrap(),
        ] {
            let never_read = NeverRead::of(&settings);
            for list in [
                &never_read.metadata,
                &never_read.spec,
                &never_read.app_container,
                &never_read.other_container,
            ] {
                assert!(
                    list.windows(2).all(|w| key_order(w[0], w[1]).is_lt()),
                    "{list:?}"
                );
            }
        }
    }
}
