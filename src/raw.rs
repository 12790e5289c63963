//! The pod as the policy reads it: what it reads and may change as a `Value`, the rest
//! kept as the raw JSON it came in and written back byte for byte.
//!
//! A pod request is mostly `metadata.managedFields`, `status` and fields the policy never
//! looks at. Building them into a `Value` and serialising them again was most of the cost
//! of `validate` (issue 24). [`Pod`] reads the object once: `spec` and the `metadata`
//! fields (all but `managedFields`) into [`Pod::value`], every other entry as a
//! [`RawValue`] borrowed from the request. [`Pod::write`] puts the two back together in
//! the object's own order. `mutate` and `select` keep working on a `Value` of the pod.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;

/// The top-level entry the policy reads and changes whole.
const SPEC: &str = "spec";
/// The top-level entry whose fields the policy reads (annotations, and whatever else a
/// method may come to read), split once more to keep `managedFields` raw.
const METADATA: &str = "metadata";
/// The metadata field the policy never reads: often half of a pod request.
const MANAGED_FIELDS: &str = "managedFields";

/// Where one entry of an object went.
enum Part<'a> {
    /// Kept as given; written back as it came.
    Raw(&'a RawValue),
    /// Read into the `Value`; written from it (or left out if the policy removed it).
    Read,
    /// An object split again: its entries, each raw or read.
    Split(Vec<(String, Part<'a>)>),
}

/// A pod object read for the policy: [`Pod::value`] to read and change, the rest raw.
pub struct Pod<'a> {
    /// `spec` and the metadata fields but `managedFields`, for the policy to read and
    /// change; `Value::Null` when the object is not a JSON object.
    pub value: Value,
    /// Every entry of the object in its order, raw or read; empty when it is not an object.
    layout: Vec<(String, Part<'a>)>,
}

impl Pod<'_> {
    /// An object that is not a JSON object (or none): `null`, nothing to keep; the
    /// request is rejected.
    pub fn not_an_object() -> Self {
        Pod {
            value: Value::Null,
            layout: Vec::new(),
        }
    }

    /// The object with the policy's changes: what was read from [`Pod::value`], every
    /// other entry byte for byte as it came, in the object's order; entries the policy
    /// added come last.
    pub fn write(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::new();
        write_object(&mut out, &self.layout, &self.value)?;
        Ok(out)
    }
}

/// Writes `layout`'s entries, taking the read ones from `value` (an object).
fn write_object(
    out: &mut Vec<u8>,
    layout: &[(String, Part<'_>)],
    value: &Value,
) -> Result<(), serde_json::Error> {
    let empty = Map::new();
    let read = value.as_object().unwrap_or(&empty);
    out.push(b'{');
    let mut first = true;
    let mut entry = |out: &mut Vec<u8>, key: &str| -> Result<(), serde_json::Error> {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key)?;
        out.push(b':');
        Ok(())
    };
    for (key, part) in layout {
        match (part, read.get(key)) {
            // A raw entry the policy did not set (it never sets one: this keeps a write safe).
            (Part::Raw(raw), None) => {
                entry(out, key)?;
                out.extend_from_slice(raw.get().as_bytes());
            }
            (Part::Split(inner), Some(object @ Value::Object(_))) => {
                entry(out, key)?;
                write_object(out, inner, object)?;
            }
            (_, Some(value)) => {
                entry(out, key)?;
                serde_json::to_writer(&mut *out, value)?;
            }
            // Read, and removed by the policy.
            (Part::Read | Part::Split(_), None) => {}
        }
    }
    for (key, value) in read {
        if !layout.iter().any(|(known, _)| known == key) {
            entry(out, key)?;
            serde_json::to_writer(&mut *out, value)?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// Records `key`'s part; a repeated key keeps its first place and its last value, as
/// `serde_json::Value` does.
fn set<'a>(layout: &mut Vec<(String, Part<'a>)>, key: String, part: Part<'a>) {
    match layout.iter_mut().find(|(known, _)| *known == key) {
        Some((_, old)) => *old = part,
        None => layout.push((key, part)),
    }
}

/// `metadata` read: every field but `managedFields` into a `Value`; a metadata that is not
/// an object is read whole.
// `from_slice`, as for the request: one instance of serde_json's parser in the module.
fn read_metadata(raw: &RawValue) -> Result<(Value, Part<'_>), serde_json::Error> {
    let Ok(Entries(entries)) = serde_json::from_slice::<Entries<'_>>(raw.get().as_bytes()) else {
        return Ok((serde_json::from_slice(raw.get().as_bytes())?, Part::Read));
    };
    let mut read = Map::new();
    let mut layout = Vec::with_capacity(entries.len());
    for (key, raw) in entries {
        if key == MANAGED_FIELDS {
            set(&mut layout, key, Part::Raw(raw));
        } else {
            read.insert(key.clone(), serde_json::from_slice(raw.get().as_bytes())?);
            set(&mut layout, key, Part::Read);
        }
    }
    Ok((Value::Object(read), Part::Split(layout)))
}

/// An object's entries as raw JSON, in order; fails on anything but an object.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pod<'a> {
    /// Reads the object in one pass; anything but an object gives `Value::Null`, which
    /// `select::container_names` rejects as not a JSON object.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PodVisitor(PhantomData))
    }
}

/// Builds a [`Pod`] from the request's `object`, borrowing its raw parts.
struct PodVisitor<'a>(PhantomData<Pod<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for PodVisitor<'a> {
    type Value = Pod<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut read = Map::new();
        let mut layout = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let part = match key.as_str() {
                SPEC => {
                    read.insert(key.clone(), map.next_value()?);
                    Part::Read
                }
                METADATA => {
                    let raw: &'de RawValue = map.next_value()?;
                    let (value, part) = read_metadata(raw).map_err(de::Error::custom)?;
                    read.insert(key.clone(), value);
                    part
                }
                _ => Part::Raw(map.next_value()?),
            };
            set(&mut layout, key, part);
        }
        Ok(Pod {
            value: Value::Object(read),
            layout,
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
        serde_json::from_str(object).unwrap()
    }

    #[test]
    fn reads_spec_and_metadata_but_managed_fields() {
        let pod = read(OBJECT);
        assert_eq!(
            pod.value,
            json!({"metadata": {"name": "p", "annotations": {"a": "b"}, "x-unknown": 1.5},
                   "spec": {"containers": [{"name": "app", "future": {"n": 1}}]}})
        );
    }

    #[test]
    fn writes_an_unchanged_pod_back_byte_for_byte() {
        // Numbers as given (1e3) show the raw entries were never re-serialised; the read
        // parts are written as serde_json writes them (sorted keys, 1.50 as 1.5).
        let pod = read(OBJECT);
        let written = String::from_utf8(pod.write().unwrap()).unwrap();
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
        let written = String::from_utf8(pod.write().unwrap()).unwrap();
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
        let pod = read(r#"{"metadata":[1],"spec":{}}"#);
        assert_eq!(pod.value, json!({"metadata": [1], "spec": {}}));
        assert_eq!(pod.write().unwrap(), br#"{"metadata":[1],"spec":{}}"#);
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_last_value() {
        let pod = read(r#"{"spec":{"a":1},"status":1,"spec":{"b":2},"status":2}"#);
        assert_eq!(pod.value, json!({"spec": {"b": 2}}));
        assert_eq!(pod.write().unwrap(), br#"{"spec":{"b":2},"status":2}"#);
    }
}
