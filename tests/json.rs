//! The policy's JSON reader (`agent_mount::json`) against serde_json, which it replaced:
//! for generated JSON texts of every spelling (whitespace, escapes, surrogate pairs,
//! number shapes) and for byte-level corruptions of them, it accepts exactly the texts
//! serde_json accepts and reads the same `Value`; its skipper accepts exactly what
//! serde_json's `IgnoredAny` accepts and stops at the same byte. Nesting deeper than
//! serde_json reads is refused with an error, in a raw part and in a read part, however
//! deep (no stack overflow).
// Test code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use agent_mount::json::{self, Raw, Reader};
use agent_mount::response::validate;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::{fixture, payload};

/// Generated texts, and as many corruptions.
const CASES: u32 = 20_000;

/// Whitespace as JSON allows it, mostly none.
fn space() -> BoxedStrategy<String> {
    prop_oneof![
        6 => Just(String::new()),
        1 => "[ \t\r\n]{1,3}",
    ]
    .boxed()
}

/// A string's body: plain text (ASCII, multi-byte, long runs for the 8-byte scan) and
/// every escape, surrogate pairs included.
fn string() -> BoxedStrategy<String> {
    let piece = prop_oneof![
        6 => "[a-zA-Z0-9:./_ -]{0,20}",
        1 => "[éß日本😀\u{7f}]{1,3}",
        1 => prop::sample::select(vec![
            "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0041", "\\u00e9",
            "\\u65E5", "\\ud83d\\ude00", "\\uD834\\uDD1E", "\\u0000", "\\u001f",
        ])
        .prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..4)
        .prop_map(|pieces| format!("\"{}\"", pieces.concat()))
        .boxed()
}

/// A number of every shape JSON has: sign, zero, long integers (beyond `u64`, `i64`),
/// fractions, exponents of both cases and signs.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,6})?([eE][-+]?[0-9]{1,3})?",
        prop::sample::select(vec![
            "0",
            "-0",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e308",
            "1e309",
            "-1e400",
            "4.9e-324",
            "1e-400",
            "0e999",
        ])
        .prop_map(String::from),
    ]
}

/// A JSON text: literals, numbers, strings, lists and objects (repeated keys included),
/// with whitespace anywhere it may be.
fn document() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        number(),
        string(),
    ];
    let tree = leaf.prop_recursive(6, 64, 6, |inner| {
        let item = (space(), inner, space())
            .prop_map(|(a, v, b)| format!("{a}{v}{b}"))
            .boxed();
        prop_oneof![
            proptest::collection::vec(item.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            proptest::collection::vec(
                (
                    space(),
                    prop_oneof![string(), Just("\"k\"".to_string())],
                    space(),
                    item
                ),
                0..6
            )
            .prop_map(|entries| {
                let entries: Vec<String> = entries
                    .into_iter()
                    .map(|(a, key, b, value)| format!("{a}{key}{b}:{value}"))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }),
        ]
    });
    (space(), tree, space()).prop_map(|(a, t, b)| format!("{a}{t}{b}"))
}

/// What a corruption puts in: control characters, quotes, backslashes, lone surrogates,
/// bad numbers, brackets and separators.
const INSERTS: [&str; 24] = [
    "\u{1}",
    "\u{1f}",
    "\n",
    "\\",
    "\"",
    "\\ud800",
    "\\udc00",
    "\\ud800\\u0041",
    "\\u12",
    "\\x",
    "01",
    "1.",
    "-",
    "1e",
    "+1",
    ".5",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "tru",
    "x",
];

/// A text with one change at a char boundary: a char dropped, replaced or inserted.
fn corrupted() -> impl Strategy<Value = String> {
    (
        document(),
        any::<prop::sample::Index>(),
        0..3_u8,
        prop::sample::select(&INSERTS[..]),
    )
        .prop_map(|(text, at, change, insert)| {
            let boundaries: Vec<usize> = (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .collect();
            let at = boundaries[at.index(boundaries.len())];
            let next = boundaries.iter().copied().find(|i| *i > at).unwrap_or(at);
            let (before, after) = (&text[..at], &text[at..]);
            match change {
                0 => format!("{before}{}", &text[next..]),
                1 => format!("{before}{insert}{}", &text[next..]),
                _ => format!("{before}{insert}{after}"),
            }
        })
}

/// Whether two values are equal, floats to 12 significant digits (or both below 1e-290,
/// where subnormals have few): neither serde_json's default float parser nor ours is
/// correctly rounded beyond Clinger's fast path, each its own way.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            let scale = x.abs().max(y.abs());
            x == y || (x - y).abs() <= 1e-12 * scale || scale < 1e-290
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Counts of the property's sides, to show both were reached.
#[derive(Default)]
struct Sides {
    accepted: AtomicUsize,
    refused: AtomicUsize,
    floats_rounded_apart: AtomicUsize,
}

/// Our reader and serde_json agree on `text`: as a `Value`, and skipped as `IgnoredAny`.
fn agree(text: &str, sides: &Sides) -> Result<(), TestCaseError> {
    let ours = json::from_str::<Value>(text);
    let theirs = serde_json::from_str::<Value>(text);
    match (&ours, &theirs) {
        (Ok(ours), Ok(theirs)) => {
            prop_assert!(same(ours, theirs), "{text:?}: {ours} != {theirs}");
            if ours != theirs {
                sides.floats_rounded_apart.fetch_add(1, Ordering::Relaxed);
            }
            sides.accepted.fetch_add(1, Ordering::Relaxed);
        }
        (Err(_), Err(_)) => {
            sides.refused.fetch_add(1, Ordering::Relaxed);
        }
        _ => prop_assert!(false, "{text:?}: ours {ours:?}, serde_json {theirs:?}"),
    }

    // The skipper, as a raw part is skipped: the whole text, then where the first value ends.
    let ours = json::from_str::<IgnoredAny>(text).is_ok();
    let theirs = serde_json::from_str::<IgnoredAny>(text).is_ok();
    prop_assert_eq!(ours, theirs, "skipping {:?}", text);
    let mut reader = Reader::new(text);
    let ours = reader.skip_value().map(|()| reader.offset());
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<IgnoredAny>();
    let theirs = stream
        .next()
        .map(|skipped| skipped.map(|_| stream.byte_offset()));
    if let (Ok(ours), Some(Ok(theirs))) = (&ours, &theirs) {
        prop_assert_eq!(ours, theirs, "skipping {:?}", text);
    }
    // serde_json's stream refuses a value run into text (`1x`), which the skipper leaves
    // to its caller: otherwise both accept the same first values.
    if theirs.as_ref().is_some_and(Result::is_ok) {
        prop_assert!(ours.is_ok(), "skipping {:?}: {:?}", text, ours);
    }
    // A raw part is the value's text, without the whitespace around it.
    if let Ok(raw) = json::from_str::<Raw>(text) {
        prop_assert_eq!(raw.get(), text.trim_matches([' ', '\t', '\r', '\n']));
    }
    Ok(())
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn reads_what_serde_json_reads_and_refuses_what_it_refuses() {
    let sides = Sides::default();
    runner()
        .run(&document(), |text| agree(&text, &sides))
        .unwrap();
    runner()
        .run(&corrupted(), |text| agree(&text, &sides))
        .unwrap();
    let (accepted, refused) = (sides.accepted.into_inner(), sides.refused.into_inner());
    eprintln!(
        "{accepted} accepted, {refused} refused; {} with a float rounded apart from serde_json's",
        sides.floats_rounded_apart.into_inner()
    );
    // Both sides of the property are exercised, or it proves nothing.
    let side = CASES as usize / 5;
    assert!(
        accepted > side && refused > side,
        "{accepted} accepted, {refused} refused"
    );
}

/// Hand-picked texts at each rule's edge, read as serde_json reads them.
#[rstest::rstest]
#[case::control_character_in_a_string("\"a\u{1}b\"")]
#[case::escaped_control_character("\"a\\u0001b\"")]
#[case::del_is_no_control_character("\"a\u{7f}b\"")]
#[case::lone_leading_surrogate("\"\\ud800\"")]
#[case::lone_trailing_surrogate("\"\\udc00\"")]
#[case::leading_surrogate_then_another("\"\\ud800\\ud800\"")]
#[case::surrogate_pair("\"\\ud83d\\ude00\"")]
#[case::short_hex("\"\\u12\"")]
#[case::bad_hex("\"\\u12g4\"")]
#[case::unknown_escape("\"\\x\"")]
#[case::leading_zero("01")]
#[case::bare_dot("1.")]
#[case::bare_minus("-")]
#[case::bare_exponent("1e")]
#[case::plus_sign("+1")]
#[case::minus_zero("-0")]
#[case::u64_max("18446744073709551615")]
#[case::past_u64("18446744073709551616")]
#[case::i64_min("-9223372036854775808")]
#[case::past_i64("-9223372036854775809")]
#[case::out_of_range("1e309")]
#[case::underflow("1e-400")]
#[case::trailing_comma("[1,]")]
#[case::trailing_text("{} x")]
#[case::trailing_whitespace(" {}\n\t\r ")]
#[case::repeated_key("{\"a\":1,\"a\":2}")]
#[case::key_not_a_string("{1:2}")]
#[case::vertical_tab_is_no_whitespace("\u{b}1")]
#[case::empty("")]
#[case::misspelt_literal("nul")]
fn edge_cases_read_as_serde_json_reads_them(#[case] text: &str) {
    agree(text, &Sides::default()).unwrap();
}

/// `[[…[]…]]` `depth` lists deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn nesting_stops_where_serde_jsons_does() {
    for depth in [126, 127, 128, 129] {
        let text = nested(depth);
        let ours = json::from_str::<Value>(&text).is_ok();
        assert_eq!(
            ours,
            serde_json::from_str::<Value>(&text).is_ok(),
            "{depth}"
        );
        assert_eq!(ours, depth <= 127, "{depth}");
        // Skipped, as a raw part is: the same limit.
        assert_eq!(json::from_str::<IgnoredAny>(&text).is_ok(), ours, "{depth}");
        assert_eq!(json::from_str::<Raw>(&text).is_ok(), ours, "{depth}");
    }
    // Counted across a read part and the raw part in it: 1 + 126 read, then 127 raw.
    let inside = |depth| format!("[{}]", nested(depth));
    assert!(json::from_str::<(Raw,)>(&inside(126)).is_ok());
    assert!(json::from_str::<(Raw,)>(&inside(127)).is_err());
}

#[test]
fn a_deep_nest_is_refused_with_an_error_not_a_crash() {
    let deep = nested(100_000);
    for error in [
        json::from_str::<Value>(&deep).unwrap_err(),
        json::from_str::<IgnoredAny>(&deep).unwrap_err(),
        json::from_str::<Raw>(&deep).unwrap_err(),
    ] {
        assert_eq!(
            error.to_string(),
            "lists and objects nested deeper than 127 at byte 127"
        );
    }
}

/// The policy refuses a request nested too deep, in a part it keeps raw
/// (`metadata.managedFields`) as in one it reads (`metadata.annotations`), with the
/// reader's message, and answers the next request as usual.
#[rstest::rstest]
#[case::raw_part("managedFields")]
#[case::read_part("annotations")]
fn a_deep_request_is_rejected_as_unreadable(#[case] key: &str) {
    let mut request = fixture("pod_typical.json");
    request["object"]["metadata"][key] = Value::String("DEEP".into());
    let text = String::from_utf8(payload(&request, &Value::Null)).unwrap();
    let text = text.replace("\"DEEP\"", &nested(100_000));
    let response = validate(text.as_bytes());
    assert!(!response.accepted);
    let message = response.message.unwrap();
    assert!(
        message.starts_with("agent-mount: cannot read the admission request: lists and objects nested deeper than 127 at byte"),
        "{message}"
    );
    assert!(validate(&payload(&request, &Value::Null)).accepted);
}

/// Strings come borrowed from the text unless they hold an escape, keys included: what
/// lets the policy keep raw entries without copying their keys.
#[test]
fn strings_without_escapes_are_borrowed() {
    #[derive(Deserialize)]
    struct Borrowed<'a> {
        #[serde(borrow)]
        plain: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        escaped: std::borrow::Cow<'a, str>,
    }
    let text = r#"{"plain": "a b", "escaped": "a\u0020b"}"#;
    let read: Borrowed = json::from_str(text).unwrap();
    assert!(matches!(read.plain, std::borrow::Cow::Borrowed("a b")));
    assert!(matches!(read.escaped, std::borrow::Cow::Owned(ref s) if s == "a b"));
}

/// Errors say where, as a byte offset, and what was found and allowed.
#[rstest::rstest]
#[case::trailing(
    "{} x",
    "found 'x' after the value: only whitespace may follow it at byte 3"
)]
#[case::missing_colon(
    r#"{"a" 1}"#,
    "found '1' after an object's key, where `:` should be at byte 5"
)]
#[case::bad_number(
    "[01]",
    "invalid number: a JSON number has no leading zero and has digits after `-`, `.` and the exponent's `e` at byte 2"
)]
#[case::lone_surrogate(
    r#"["\ud800x"]"#,
    "lone surrogate `\\uD800` in a string: \\uD800-\\uDBFF must be followed by \\uDC00-\\uDFFF at byte 8"
)]
#[case::wrong_type("{}", "invalid type: map, expected a string at byte 0")]
fn errors_name_the_place_and_the_problem(#[case] text: &str, #[case] expected: &str) {
    let error = if text == "{}" {
        json::from_str::<String>(text).unwrap_err()
    } else {
        json::from_str::<Value>(text).unwrap_err()
    };
    assert_eq!(error.to_string(), expected);
}
