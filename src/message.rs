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
    // No more characters than bytes: a short text (every name) is not walked char by char.
    if text.len() <= MAX_ECHO {
        return Cow::Borrowed(text);
    }
    match text.char_indices().nth(MAX_ECHO) {
        Some((at, _)) => Cow::Owned(format!("{}…", text.get(..at).unwrap_or_default())),
        None => Cow::Borrowed(text),
    }
}

/// The names joined by ", ", cut after [`MAX_LISTED`] with "and N more", each shortened
/// and quoted as `{:?}` quotes it.
pub fn listing(names: &[&str]) -> String {
    // Sized once: this runs for warnings about many names.
    let shown = names.get(..MAX_LISTED).unwrap_or(names);
    let mut out = String::with_capacity(shown.iter().map(|n| n.len() + 4).sum());
    let mut listed = Listing::new(&mut out);
    for name in names {
        listed.push(name);
    }
    listed.finish();
    out
}

/// A [`listing`] written into a string as the names come: the audit note of every
/// mutated pod is written in one string, no list of names or string per part built.
pub struct Listing<'o> {
    /// Where the listing is written.
    out: &'o mut String,
    /// The names pushed so far, shown or not.
    count: usize,
}

impl<'o> Listing<'o> {
    /// An empty listing, written at the end of `out`.
    pub fn new(out: &'o mut String) -> Self {
        Listing { out, count: 0 }
    }

    /// Lists `name`: shortened and quoted among the first [`MAX_LISTED`], counted after.
    pub fn push(&mut self, name: &str) {
        self.count += 1;
        if self.count > MAX_LISTED {
            return;
        }
        if self.count > 1 {
            self.out.push_str(", ");
        }
        let name = cut(name);
        // `{:?}` leaves printable ASCII but `"` and `\` as it is: no formatter needed then.
        if name
            .bytes()
            .all(|b| (0x20..=0x7E).contains(&b) && b != b'"' && b != b'\\')
        {
            self.out.push('"');
            self.out.push_str(&name);
            self.out.push('"');
        } else {
            self.out.push_str(&format!("{name:?}"));
        }
    }

    /// Ends the listing: "and N more" for the names past [`MAX_LISTED`].
    pub fn finish(self) {
        let more = self.count.saturating_sub(MAX_LISTED);
        if more > 0 {
            self.out.push_str(" and ");
            self.out.push_str(&more.to_string());
            self.out.push_str(" more");
        }
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

    /// Cut after MAX_ECHO characters, not bytes: a text of that many characters in more
    /// bytes stays whole.
    #[test]
    fn texts_are_cut_after_max_echo_characters() {
        for (text, cut) in [
            ("n".repeat(MAX_ECHO), None),
            ("ü".repeat(MAX_ECHO), None),
            (
                "n".repeat(MAX_ECHO + 1),
                Some(format!("{}…", "n".repeat(MAX_ECHO))),
            ),
            (
                "ü".repeat(MAX_ECHO + 1),
                Some(format!("{}…", "ü".repeat(MAX_ECHO))),
            ),
        ] {
            assert_eq!(shorten(&text), cut.unwrap_or_else(|| text.clone()));
        }
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
