use super::*;
use proptest::prelude::*;
use serde_json::json;

/// An entry's JSON, kept into `own_json`.
fn kept(own_json: &mut OwnJson, entry: &Value) -> Value {
    own_json.keep(serde_json::to_string(entry).unwrap())
}

fn written(own_json: &OwnJson, value: &Value) -> String {
    let mut out = Vec::new();
    value_keeping(&mut out, value, own_json).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_kept_string_is_written_as_the_json_it_holds() {
    let mut own_json = OwnJson::default();
    let entry =
        json!({"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}});
    // Moved in, not through `json!`, which would copy it.
    let mut pod = json!({"env": [{"name": "A", "value": "1"}]});
    pod["env"]
        .as_array_mut()
        .unwrap()
        .push(kept(&mut own_json, &entry));
    let out = written(&own_json, &pod);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"env": [{"name": "A", "value": "1"}, entry]})
    );
}

/// The request's strings are other allocations: the same bytes as a kept string, in the
/// same place, are written as a string.
#[test]
fn a_string_with_the_same_bytes_is_written_as_a_string() {
    let mut own_json = OwnJson::default();
    let entry = json!({"name": "A", "value": "1"});
    let text = serde_json::to_string(&entry).unwrap();
    let mine = kept(&mut own_json, &entry);
    let forged = Value::Array(vec![Value::String(text.clone()), mine.clone()]);
    assert_eq!(
        serde_json::from_str::<Value>(&written(&own_json, &forged)).unwrap(),
        json!([text, text]),
        "neither the request's string nor a copy of a kept one is taken for JSON"
    );
}

#[test]
fn unfold_reads_back_only_the_kept_strings() {
    let mut own_json = OwnJson::default();
    let entry = json!({"name": "A", "value": "{\"x\": 1}"});
    let text = serde_json::to_string(&entry).unwrap();
    let mut pod = json!({"spec": {"containers": [{"env": [text]}]}});
    pod["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(kept(&mut own_json, &entry));
    own_json.unfold(&mut pod);
    assert_eq!(
        pod,
        json!({"spec": {"containers": [{"env": [text, entry]}]}})
    );
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    /// With kept strings or without, what is not kept is written as serde_json writes it,
    /// and a kept one as its JSON: byte for byte the pod with the entry in its place.
    #[test]
    fn the_rest_is_written_as_serde_json_writes_it(value in any_value(), entry in any_value(), keep in any::<bool>()) {
        let mut own_json = OwnJson::default();
        let second = if keep { entry.clone() } else { Value::Null };
        let expected = serde_json::to_string(&json!([value, second])).unwrap();
        let mut pod = Value::Array(vec![value, Value::Null]);
        if keep {
            pod[1] = kept(&mut own_json, &entry);
        }
        prop_assert_eq!(written(&own_json, &pod), expected);
    }
}

/// A string is looked up only when a kept one has its length modulo 64: one 64 bytes
/// shorter than a kept string is still told apart by its address.
#[test]
fn a_string_whose_length_matches_a_kept_one_modulo_64_is_written_as_a_string() {
    let mut own_json = OwnJson::default();
    let entry = json!({"name": "A", "value": "x".repeat(60)});
    let json = serde_json::to_string(&entry).unwrap();
    assert!(json.len() > 64, "{json}");
    let short = "y".repeat(json.len() - 64);
    let pod = Value::Array(vec![
        kept(&mut own_json, &entry),
        Value::String(short.clone()),
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&written(&own_json, &pod)).unwrap(),
        json!([entry, short])
    );
}
