//! Entries the policy adds to the pod as JSON text it wrote itself, written back as they
//! are (issue 24).
//!
//! An env entry, a mount, a volume or the copy container built as a `Value` costs a map,
//! its strings and their release, then an escaping pass when the pod is written: most of
//! activation's cost. [`OwnJson::keep`] puts such an entry's compact JSON into the pod as a
//! `Value::String` and records where that string lives; the writer
//! ([`OwnJson::write`]) writes such a string as the JSON it holds.
//!
//! A string is taken for JSON only when its heap address and length are the ones
//! recorded: a string read from the request is another allocation, so a request cannot
//! forge one, whatever its bytes. A kept string goes into the pod as it is kept, or the
//! call ends in a conflict and the pod is not written; in the pod it stays until the
//! write (moving it keeps its allocation), since the policy only ever adds to a pod. So no
//! kept string is freed before the write, and its address cannot come to another.

use serde_json::Value;

/// A value the policy adds to many pods (a mount, a volume, the copy container), with its
/// JSON written once, when the settings are read: [`OwnJson::copy_of`] puts it into a pod.
#[derive(Debug)]
pub struct Prepared {
    /// The value, for the tests that compare with it.
    value: Value,
    /// Its compact JSON; `None` if serde_json could not write it, which it does not.
    json: Option<String>,
}

impl Prepared {
    /// `value`, its JSON written now.
    pub fn new(value: Value) -> Self {
        let json = serde_json::to_string(&value).ok();
        Prepared { value, json }
    }

    /// The value.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// The strings of a pod that hold JSON the policy wrote: each one's address and length.
#[derive(Debug, Default)]
pub struct OwnJson {
    /// Address and length of each string [`OwnJson::keep`] handed out, by address: a pod
    /// of 200 containers has 200 mounts kept, and every string written is looked up.
    kept: Vec<(usize, usize)>,
}

impl OwnJson {
    /// `json` (a JSON value the policy wrote, never empty) as the pod's `Value`, recorded
    /// so that [`OwnJson::write`] writes it as it is.
    pub fn keep(&mut self, json: String) -> Value {
        let at = (json.as_ptr().addr(), json.len());
        // Kept in order as they come (a sort would bring its own code into the module).
        let place = self.kept.partition_point(|known| *known < at);
        self.kept.insert(place, at);
        Value::String(json)
    }

    /// A copy of `prepared` for a pod: its JSON kept, one allocation and one copy of its
    /// bytes, where the value would be a map, its strings and their escaping.
    pub fn copy_of(&mut self, prepared: &Prepared) -> Value {
        match &prepared.json {
            Some(json) => self.keep(json.clone()),
            None => prepared.value.clone(),
        }
    }

    /// Whether `text` is one of the strings [`OwnJson::keep`] handed out.
    fn holds(&self, text: &str) -> bool {
        let at = (text.as_ptr().addr(), text.len());
        self.kept.binary_search(&at).is_ok()
    }

    /// Writes `value` as serde_json does, but a kept string as the JSON it holds.
    pub fn write(&self, out: &mut Vec<u8>, value: &Value) -> Result<(), serde_json::Error> {
        match value {
            Value::String(json) if self.holds(json) => out.extend_from_slice(json.as_bytes()),
            // Without kept strings (no activation), serde_json's own pass over the rest.
            Value::Array(items) if !self.kept.is_empty() => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write(out, item)?;
                }
                out.push(b']');
            }
            Value::Object(map) if !self.kept.is_empty() => {
                out.push(b'{');
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, key)?;
                    out.push(b':');
                    self.write(out, item)?;
                }
                out.push(b'}');
            }
            other => serde_json::to_writer(out, other)?,
        }
        Ok(())
    }

    /// Replaces each kept string in `value` by the value its JSON reads as: the pod as a
    /// request would give it, for code (tests) that reads the pod's `Value` itself. A
    /// string that did not read (the policy writes none) would stay, for a test to see.
    pub fn unfold(&self, value: &mut Value) {
        match value {
            Value::String(json) if self.holds(json) => {
                if let Ok(read) = serde_json::from_str(json) {
                    *value = read;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.unfold(item)),
            Value::Object(map) => map.values_mut().for_each(|item| self.unfold(item)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
