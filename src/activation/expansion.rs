//! The kubelet's `$(NAME)` expansion of env values, read without expanding: which names a
//! value refers to, and whether joining two values changes how either part is read.
//!
//! The kubelet (k8s.io/kubernetes `third_party/forked/golang/expansion`) reads a value
//! left to right: `$$` is a literal `$`, `$(NAME)` up to the first `)` is a reference,
//! an unclosed `$(` stays as written, and `$` before any other byte stays with that byte.

/// One `$` construct of a value: its byte span and, for a reference, the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Token<'a> {
    start: usize,
    end: usize,
    /// `Some` for `$(NAME)`.
    reference: Option<&'a str>,
    /// `$$` or `$(NAME)`: the constructs whose meaning depends on both of their bytes.
    meaningful: bool,
}

/// The `$` constructs of `value`, in order, in one linear pass.
fn tokens(value: &str) -> impl Iterator<Item = Token<'_>> {
    let bytes = value.as_bytes();
    // `str`'s search for one ASCII character is a word-at-a-time scan, not byte by byte.
    let mut dollars = value.match_indices('$').map(|(i, _)| i);
    let mut at = 0;
    // Once a search for `)` failed, every later one does: no rescans (linear).
    let mut closer_left = true;
    std::iter::from_fn(move || {
        let start = dollars.by_ref().find(|&i| i >= at)?;
        // A `$` at the very end stays as written.
        let next = *bytes.get(start + 1)?;
        let token = match next {
            b'$' => Token {
                start,
                end: start + 2,
                reference: None,
                meaningful: true,
            },
            b'(' => {
                let close = if closer_left {
                    value.get(start + 2..).and_then(|rest| rest.find(')'))
                } else {
                    None
                };
                match close {
                    Some(offset) => {
                        let end = start + 2 + offset;
                        Token {
                            start,
                            end: end + 1,
                            reference: value.get(start + 2..end),
                            meaningful: true,
                        }
                    }
                    None => {
                        closer_left = false;
                        Token {
                            start,
                            end: start + 2,
                            reference: None,
                            meaningful: false,
                        }
                    }
                }
            }
            _ => Token {
                start,
                end: start + 2,
                reference: None,
                meaningful: false,
            },
        };
        at = token.end;
        Some(token)
    })
}

/// The names `value` refers to with `$(NAME)`, as the kubelet reads it.
pub fn references(value: &str) -> impl Iterator<Item = &str> {
    tokens(value).filter_map(|t| t.reference)
}

/// Whether `value`, read as the kubelet reads it, has a `$$` or `$(…)` that spans byte
/// `boundary`: then the text before and the text after it do not keep their meaning
/// when joined there (`-Dx=$(` + ` -javaagent:/a.jar)` is one unresolved reference).
pub fn spans(value: &str, boundary: usize) -> bool {
    tokens(value)
        .take_while(|t| t.start < boundary)
        .any(|t| t.meaningful && t.end > boundary)
}

/// `text` written so that the kubelet leaves it as it is: every `$` doubled.
pub fn literal(text: &str) -> String {
    text.replace('$', "$$")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::plain("http://$(HOST_IP):4317", &["HOST_IP"])]
    #[case::two("$(A)$(B)", &["A", "B"])]
    #[case::escaped("$$(A)", &[])]
    #[case::escaped_then_reference("$$$(A)", &["A"])]
    #[case::unclosed("$(A", &[])]
    #[case::unclosed_then_more("$(A $$ $(B", &[])]
    #[case::empty_name("$()", &[""])]
    #[case::lone_dollars("5$ $x $", &[])]
    #[case::dollar_before_paren_of_escape("$$()", &[])]
    #[case::nested_reads_to_first_close("$(A$(B))", &["A$(B"])]
    #[case::unicode("ü$(Ä)ü", &["Ä"])]
    fn references_as_the_kubelet_reads(#[case] value: &str, #[case] expected: &[&str]) {
        assert_eq!(references(value).collect::<Vec<_>>(), expected);
    }

    #[rstest]
    #[case::clean_join("-Xmx1g -javaagent:/a.jar", 6, false)]
    #[case::unclosed_closed_by_ours("-Dx=$( -javaagent:/a.jar)", 6, true)]
    #[case::unclosed_stays_unclosed("-Dx=$( -javaagent:/a.jar", 6, false)]
    #[case::dollar_meets_dollar("a$$(B)", 2, true)]
    #[case::dollar_meets_space("a$ b", 2, false)]
    #[case::reference_before("$(A) b", 4, false)]
    fn joins_keep_both_parts(#[case] value: &str, #[case] boundary: usize, #[case] expected: bool) {
        assert_eq!(spans(value, boundary), expected);
    }

    #[test]
    fn many_unclosed_openers_stay_linear() {
        let value = "$(".repeat(200_000);
        assert_eq!(references(&value).count(), 0);
        assert!(!spans(&value, value.len() / 2));
    }

    #[test]
    fn literal_doubles_every_dollar() {
        assert_eq!(literal("a$b$$(C)"), "a$$b$$$$(C)");
    }
}
