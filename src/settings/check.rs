//! Value checks: a syntax rule's answer turned into a [`SettingsError`] that names the
//! key, and lists checked for their length, each entry and repeats.

use super::errors::SettingsError;

/// A syntax rule: `Err` says what is allowed (`agent_mount_common::syntax`).
pub type Rule = fn(&str) -> Result<(), String>;

/// Checks a value with a syntax rule. Not inlined: its error path, copied into each of the
/// 26 places that call it, was 2 KB of the .wasm; it runs when settings are read.
#[inline(never)]
pub fn check(key: &str, value: &str, rule: Rule) -> Result<(), SettingsError> {
    rule(value).map_err(|allowed| SettingsError::invalid(key, value, allowed))
}

/// Checks a list's length, each entry, and that no entry repeats. The repeat check scans
/// the entries before each one: lists are short (at most `max`, checked first) and read
/// once per settings, and a `BTreeSet` brought B-tree code of its own into the .wasm.
pub fn check_list(
    key: &'static str,
    list: &[String],
    max: usize,
    rule: Rule,
) -> Result<(), SettingsError> {
    if list.len() > max {
        return Err(SettingsError::TooMany {
            key,
            count: list.len(),
            max,
        });
    }
    for (i, entry) in list.iter().enumerate() {
        check(&format!("{key}[{i}]"), entry, rule)?;
        if list.iter().take(i).any(|earlier| earlier == entry) {
            return Err(SettingsError::Duplicate {
                key: format!("{key}[{i}]"),
                value: entry.clone(),
            });
        }
    }
    Ok(())
}
