//! Pod-supplied text in warnings, kept short: values cut after [`MAX_ECHO`] characters and
//! name lists after [`MAX_LISTED`] names, so a hostile pod cannot blow up a response.

use serde_json::Value;
use std::borrow::Cow;

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
    cut(text).into_owned()
}

/// [`shorten`] without a copy when `text` is short enough.
fn cut(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_ECHO) {
        Some((at, _)) => Cow::Owned(format!("{}…", text.get(..at).unwrap_or_default())),
        None => Cow::Borrowed(text),
    }
}

/// The names joined by ", ", cut after [`MAX_LISTED`] with "and N more", each shortened
/// and quoted as `{:?}` quotes it.
pub fn listing(names: &[&str]) -> String {
    // One string written in place, sized once: this runs for every mutated pod, for its
    // audit note.
    let shown = names.get(..MAX_LISTED).unwrap_or(names);
    let mut out = String::with_capacity(shown.iter().map(|n| n.len() + 4).sum());
    for (i, name) in shown.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let name = cut(name);
        // `{:?}` leaves printable ASCII but `"` and `\` as it is: no formatter needed then.
        if name
            .bytes()
            .all(|b| (0x20..=0x7E).contains(&b) && b != b'"' && b != b'\\')
        {
            out.push('"');
            out.push_str(&name);
            out.push('"');
        } else {
            out.push_str(&format!("{name:?}"));
        }
    }
    match names.len().saturating_sub(MAX_LISTED) {
        0 => out,
        more => format!("{out} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names as `{:?}` quotes them, the plain ones (written directly) and the others.
    #[test]
    fn names_are_listed_as_debug_quotes_them() {
        let names = [
            "app",
            "a b",
            "quo\"te",
            "back\\slash",
            "tab\t",
            "ü",
            "x\u{7f}",
            "",
        ];
        let expected: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        assert_eq!(listing(&names), expected.join(", "));
    }

    #[test]
    fn long_lists_and_names_are_cut() {
        let long = "n".repeat(MAX_ECHO + 5);
        let names = vec![long.as_str(); MAX_LISTED + 2];
        let one = format!("\"{}…\"", "n".repeat(MAX_ECHO));
        assert_eq!(
            listing(&names),
            format!("{} and 2 more", vec![one; MAX_LISTED].join(", "))
        );
    }
}
