//! The policy's JSON writer (`agent_mount::write`) against serde_json's: for generated
//! values, strings over every byte class at every offset from an 8-byte boundary, every
//! number kind, nested lists and objects, the bytes are `serde_json::to_vec`'s.
// Test code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agent_mount::write;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Number, Value, json};

/// Generated values per property.
const CASES: u32 = 10_000;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        failure_persistence: None,
        ..Config::with_cases(CASES)
    })
}

/// One character of a string, from each class the escaping treats apart: every control
/// character, `"`, `\`, `/`, DEL, plain ASCII, and two-, three- and four-byte UTF-8.
fn character() -> impl Strategy<Value = char> {
    prop_oneof![
        (0u8..0x20).prop_map(char::from),
        Just('"'),
        Just('\\'),
        Just('/'),
        Just('\u{7f}'),
        prop::char::range(' ', '~'),
        prop::char::range('\u{80}', '\u{7ff}'),
        prop::char::range('\u{800}', '\u{ffff}'),
        prop::char::range('\u{10000}', '\u{10ffff}'),
    ]
}

/// A string: a plain run of any length (so that what follows it falls at every offset
/// from an 8-byte boundary), then characters of every class, then another plain run.
fn text() -> impl Strategy<Value = String> {
    (
        "[a-z0-9 ./:=-]{0,40}",
        prop::collection::vec(character(), 0..12),
        "[a-zA-Z_]{0,20}",
    )
        .prop_map(|(before, middle, after)| {
            let mut text = before;
            text.extend(middle);
            text.push_str(&after);
            text
        })
}

/// Every number kind: u64, negative i64, and finite f64 from tiny to huge (exponents).
fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<u64>().prop_map(Number::from),
        any::<i64>().prop_map(Number::from),
        prop::num::f64::NORMAL
            .prop_union(prop::num::f64::SUBNORMAL)
            .or(prop::num::f64::ZERO)
            .prop_filter_map("finite", Number::from_f64),
        (-1000i32..1000, -30i32..30)
            .prop_map(|(m, e)| { Number::from_f64(f64::from(m) * 10f64.powi(e)).unwrap() }),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn written(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write::value(&mut out, value).unwrap();
    out
}

#[test]
fn writes_every_generated_value_as_serde_json_does() {
    runner()
        .run(&json_value(), |value| {
            prop_assert_eq!(
                String::from_utf8(written(&value)).unwrap(),
                serde_json::to_string(&value).unwrap()
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn writes_every_generated_string_as_serde_json_does() {
    runner()
        .run(&text(), |text| {
            let mut out = Vec::new();
            write::string(&mut out, &text);
            prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&text).unwrap()
            );
            Ok(())
        })
        .unwrap();
}

/// Each byte that needs an escape, alone and at every offset of a 24-byte plain run,
/// followed by plain bytes or by a second escape: the word scan's every position.
#[test]
fn escapes_each_byte_at_every_offset_as_serde_json_does() {
    let special = (0u8..0x20)
        .map(char::from)
        .chain(['"', '\\', '/', '\u{7f}', 'é', '€', '𝄞']);
    for c in special {
        for offset in 0..24 {
            for after in ["", "x", "\"", "tail of plain text", "\u{1}"] {
                let text = format!("{}{c}{after}", "p".repeat(offset));
                let mut out = Vec::new();
                write::string(&mut out, &text);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&text).unwrap(),
                    "{text:?}"
                );
            }
        }
    }
}

#[test]
fn writes_numbers_and_nesting_as_serde_json_does() {
    let value = json!({
        "u": u64::MAX, "i": i64::MIN, "f": 1.5, "e": 1e300, "small": 5e-324, "neg": -0.0,
        "nested": [[[{"a": [null, true, false, {}], "": []}]]],
    });
    assert_eq!(
        String::from_utf8(written(&value)).unwrap(),
        serde_json::to_string(&value).unwrap()
    );
}

/// As deep as serde_json reads (128 levels), lists and objects in turn: the writer's
/// recursion fits the test thread's stack.
#[test]
fn writes_a_value_as_deep_as_serde_json_reads() {
    let mut value = json!("leaf");
    for depth in 0..128 {
        value = if depth % 2 == 0 {
            json!([value])
        } else {
            json!({ "k": value })
        };
    }
    assert_eq!(written(&value), serde_json::to_vec(&value).unwrap());
}
