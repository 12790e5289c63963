//! Pod-supplied text in warnings, kept short: values cut after [`MAX_ECHO`] characters and
//! name lists after [`MAX_LISTED`] names, so a hostile pod cannot blow up a response.

use serde_json::Value;

/// Longest pod-supplied text a message repeats.
pub const MAX_ECHO: usize = 200;
/// How many names a warning lists before "and N more".
pub const MAX_LISTED: usize = 10;

/// A pod-supplied value for a message, cut after [`MAX_ECHO`] characters.
pub fn echo(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    shorten(&text)
}

/// `text` cut after [`MAX_ECHO`] characters, marked with an ellipsis.
pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_string(),
    }
}

/// The names joined by ", ", cut after [`MAX_LISTED`] with "and N more", each shortened.
pub fn listing(names: &[&str]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(MAX_LISTED)
        .map(|n| format!("{:?}", shorten(n)))
        .collect();
    match names.len().saturating_sub(MAX_LISTED) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}
