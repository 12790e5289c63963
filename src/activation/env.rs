//! Merging activation's entries into a container's `env`, on the raw JSON, never clobbering.
//!
//! - a join entry is set where the variable is absent or empty, left alone where its
//!   value already holds ours as the runtime reads it ([`holds`]), and appended after
//!   the app's own value otherwise; a `valueFrom` there whose source always exists is
//!   renamed `ORIGINAL_<NAME>` and joined through a new entry right after it;
//! - a plain entry is added only where the container has no variable of that name;
//! - where a name repeats, the last entry (the one that wins at run time) counts;
//! - every `$(NAME)` in a value written here resolves as meant: the entries an appended
//!   part refers to are inserted before the app's entry, referenced new entries go first,
//!   and whatever would make a reference resolve to something else is a conflict.

use super::EnvEntry;
use super::expansion::{references, spans};
use crate::message::{echo, shorten};
use crate::write::{self, OwnJson};
use serde_json::{Map, Value, json};

/// Prefix of the app's renamed entry when a join variable comes from `valueFrom`.
pub const ORIGINAL: &str = "ORIGINAL_";
/// The JVM option that loads an agent jar, optionally followed by `=<options>`.
const JAVAAGENT: &str = "-javaagent:";

/// Why a container could not be activated; each message says how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvConflict {
    /// `env`, an entry or a value has another JSON type than the API server allows.
    #[error(
        "container {container:?}: {field} is {found}, expected {expected}: fix that field in the pod's manifest (agent-mount adds to it)"
    )]
    WrongType {
        /// The container.
        container: String,
        /// Where, e.g. `env[2].value`.
        field: String,
        /// What it is (shortened).
        found: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A variable agent-mount joins into comes from a `valueFrom` that may be absent.
    #[error(
        "container {container:?} sets {name} from an optional valueFrom, which agent-mount cannot read, and the agent needs {wanted:?} in it: where the source is absent, $(ORIGINAL_{name}) would stay as text in the value; add the agent option to the ConfigMap or Secret it comes from, make the source required (no optional: true), or set {name} by value in the pod (agent-mount then appends to it)"
    )]
    ValueFrom {
        /// The container.
        container: String,
        /// The variable.
        name: String,
        /// Our item.
        wanted: String,
    },
    /// The app already has the entry the `valueFrom` rename needs.
    #[error(
        "container {container:?} sets {name} from valueFrom and also has an entry {ORIGINAL}{name}, the name agent-mount renames it to in order to join the agent into it: rename that entry, or set {name} by value in the pod"
    )]
    OriginalTaken {
        /// The container.
        container: String,
        /// The variable.
        name: String,
    },
    /// The app defines a name that a value agent-mount writes refers to.
    #[error(
        "container {container:?} defines {name} itself, and the value agent-mount writes to {by} refers to $({name}), which would then resolve to the app's value: rename the app's {name}, or give {by} in the pod yourself"
    )]
    Defines {
        /// The container.
        container: String,
        /// The referenced variable.
        name: String,
        /// The variable whose value refers to it.
        by: String,
    },
    /// The app's value and the part agent-mount appends would be read as one `$` construct.
    #[error(
        "container {container:?}: {name}'s value ends in an unclosed $( or a $, which the part agent-mount appends would complete: close it, or write a literal $ as $$ in the pod"
    )]
    Unclosed {
        /// The container.
        container: String,
        /// The variable.
        name: String,
    },
    /// An app entry after an entry agent-mount inserts refers to the inserted name.
    #[error(
        "container {container:?}: {by} refers to $({name}), which agent-mount inserts before it for its own values, so the app's reference would change what it resolves to: rename that reference, or define {name} yourself before it"
    )]
    Inserted {
        /// The container.
        container: String,
        /// The inserted variable.
        name: String,
        /// The app's variable that refers to it.
        by: String,
    },
}

/// An entry as the merge takes it: the entry, and its JSON as the pod gets it where that
/// was written ahead (a settings entry: see [`PreparedEntry`]); `None`: written as it goes in.
pub trait ToMerge {
    /// The entry.
    fn entry(&self) -> &EnvEntry;
    /// Its JSON as the pod gets it, when written ahead.
    fn json(&self) -> Option<&str>;
}

impl ToMerge for EnvEntry {
    fn entry(&self) -> &EnvEntry {
        self
    }

    fn json(&self) -> Option<&str> {
        None
    }
}

/// An entry and its JSON as the pod gets it ([`entry_json`]), written once when the
/// settings load: the recipes', `activation.env`'s and the downward-API entries are the
/// same for every container of every pod, and writing them was most of the merge's
/// cost (issue 24). An entry built per pod (the service name, the attributes) is
/// [`PreparedEntry::unwritten`]: most of those never go in as new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedEntry {
    /// The entry.
    entry: EnvEntry,
    /// Its JSON, `None` where not written ahead.
    json: Option<String>,
}

impl PreparedEntry {
    /// `entry`, its JSON written now.
    pub fn new(entry: EnvEntry) -> Self {
        let json = entry_json(&entry);
        PreparedEntry { entry, json }
    }

    /// `entry`, its JSON written only if it goes in.
    pub fn unwritten(entry: EnvEntry) -> Self {
        PreparedEntry { entry, json: None }
    }
}

impl ToMerge for PreparedEntry {
    fn entry(&self) -> &EnvEntry {
        &self.entry
    }

    fn json(&self) -> Option<&str> {
        self.json.as_deref()
    }
}

impl std::ops::Deref for PreparedEntry {
    type Target = EnvEntry;

    fn deref(&self) -> &EnvEntry {
        &self.entry
    }
}

/// The entry compared, its JSON aside: the tests compare the settings with entries.
impl PartialEq<EnvEntry> for PreparedEntry {
    fn eq(&self, other: &EnvEntry) -> bool {
        self.entry == *other
    }
}

/// What the merge did to one container.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged<'e> {
    /// Whether `env` changed.
    pub changed: bool,
    /// The variables that now hold our value: added, appended to, or already ours.
    pub ours: Vec<&'e str>,
    /// Whether the container has `envFrom`, whose variables ours replace.
    pub env_from: bool,
}

/// What happens to one app entry.
enum Change {
    /// Its value becomes this (it was absent or empty, or ours is appended).
    Value(String),
    /// It is renamed `ORIGINAL_<NAME>`, and this entry follows it.
    Rename(String, Value),
}

/// A new entry: where it goes, what it refers to.
struct New<'e> {
    entry: &'e EnvEntry,
    /// Its JSON, where written ahead.
    json: Option<&'e str>,
    /// Before which app entry it goes (`None`: after the app's).
    before: Option<usize>,
    /// The indices (into the new entries) of the new entries its value refers to.
    needs: Vec<usize>,
}

/// Merges `entries` into `container`'s `env`: all of them, or none on a conflict.
pub fn merge<'e, E: ToMerge + 'e>(
    container: &mut Map<String, Value>,
    entries: impl IntoIterator<Item = &'e E>,
    own_json: &mut OwnJson,
) -> Result<Merged<'e>, EnvConflict> {
    // Borrowed: only a conflict's message needs it, shortened there.
    let name = container.get("name").and_then(Value::as_str).unwrap_or("?");
    let empty = Vec::new();
    let env = match container.get("env") {
        None | Some(Value::Null) => &empty,
        Some(Value::Array(env)) => env,
        Some(other) => return Err(wrong_type(name, "env".into(), other, "a list")),
    };
    let entries = entries.into_iter();
    // The upper bound where known: resource attributes' entries are counted only there.
    let (least, most) = entries.size_hint();
    let mut plan = Plan::new(name, env, most.unwrap_or(least))?;
    for entry in entries {
        plan.decide(entry.entry(), entry.json())?;
    }
    plan.place()?;
    let Plan {
        ours,
        news,
        changes,
        ..
    } = plan;
    let changed = !news.is_empty() || !changes.is_empty();
    if changed {
        apply(container, &news, changes, own_json);
    }
    let env_from = container
        .get("envFrom")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    Ok(Merged {
        changed,
        env_from: env_from && !ours.is_empty(),
        ours,
    })
}

/// The error for a field of another JSON type than the API server allows.
fn wrong_type(
    container: &str,
    field: String,
    found: &Value,
    expected: &'static str,
) -> EnvConflict {
    EnvConflict::WrongType {
        container: shorten(container),
        field,
        found: echo(found),
        expected,
    }
}

/// One container's merge, planned against its `env` before anything is written.
struct Plan<'c, 'e> {
    /// The container's name, for messages (shortened there).
    container: &'c str,
    /// The app's `env`, every entry an object with a string name.
    env: &'c [Value],
    /// The names of `env`'s entries, read once: every lookup scans these.
    names: Vec<&'c str>,
    /// Our entries, the first of each name: later ones of that name are dropped. At most
    /// a few dozen (MAX_ENV twice, and resource attributes'), so they are scanned, not mapped.
    ours_by_name: Vec<&'e EnvEntry>,
    /// The variables that hold our value: added, appended to, or already ours; each once.
    ours: Vec<&'e str>,
    /// The entries to add.
    news: Vec<New<'e>>,
    /// What happens to app entries: index, change; one change per index at most.
    changes: Vec<(usize, Change)>,
    /// The values written into app entries: index, variable, the part that is ours.
    written: Vec<(usize, &'e str, &'e str)>,
}

impl<'c, 'e> Plan<'c, 'e> {
    /// Reads `env`: every entry an object with a string name; `entries` sizes the lists
    /// of ours up front (no reallocation as they fill).
    fn new(container: &'c str, env: &'c [Value], entries: usize) -> Result<Self, EnvConflict> {
        let mut names = Vec::with_capacity(env.len());
        for (i, var) in env.iter().enumerate() {
            let Some(name) = var.as_object().and_then(|v| v.get("name")?.as_str()) else {
                return Err(wrong_type(
                    container,
                    format!("env[{i}]"),
                    var,
                    "an object with a string name",
                ));
            };
            names.push(name);
        }
        Ok(Plan {
            container,
            env,
            names,
            ours_by_name: Vec::with_capacity(entries),
            ours: Vec::with_capacity(entries),
            news: Vec::with_capacity(entries),
            changes: Vec::new(),
            written: Vec::new(),
        })
    }

    /// The app's last entry of `name` (the one that wins at run time) and its index. A scan
    /// from the end, no map: a container's env is short, our entries are bounded (MAX_ENV
    /// twice, and resource attributes'), and hashing every name cost more than scanning.
    fn last(&self, name: &str) -> Option<(usize, &'c Value)> {
        let i = self.names.iter().rposition(|known| *known == name)?;
        Some((i, self.env.get(i)?))
    }

    /// Counts `name` among the variables that hold our value, once: a few dozen names at
    /// most, so a scan finds a repeat and no set is built.
    fn keep(&mut self, name: &'e str) {
        if !self.ours.contains(&name) {
            self.ours.push(name);
        }
    }

    /// Decides what `entry` (its JSON `json`, where written ahead) does to the container:
    /// add, set, append, rename, or nothing.
    fn decide(&mut self, entry: &'e EnvEntry, json: Option<&'e str>) -> Result<(), EnvConflict> {
        let name = entry.name();
        if let Some(earlier) = self.ours_by_name.iter().find(|e| e.name() == name) {
            if setting(earlier) == setting(entry) {
                self.keep(name);
            }
            return Ok(());
        }
        self.ours_by_name.push(entry);
        let existing = self.last(name);
        let (i, var) = match (entry, existing) {
            (_, None) => {
                self.news.push(New {
                    entry,
                    json,
                    before: None,
                    needs: Vec::new(),
                });
                self.keep(name);
                return Ok(());
            }
            (EnvEntry::Join { .. }, Some(found)) => found,
            // A plain entry: the app's own setting wins, silently.
            (_, Some((_, var))) => {
                if is_exactly(var, entry) {
                    self.keep(name);
                }
                return Ok(());
            }
        };
        let EnvEntry::Join {
            value, separator, ..
        } = entry
        else {
            return Ok(());
        };
        let change = match (
            var.get("valueFrom").filter(|v| !v.is_null()),
            var.get("value"),
        ) {
            (Some(source), _) => self.rename(name, value, separator, source)?,
            (None, None | Some(Value::Null)) => Change::Value(value.clone()),
            (None, Some(Value::String(app))) if app.is_empty() => Change::Value(value.clone()),
            (None, Some(Value::String(app))) if holds(app, value, separator) => {
                self.keep(name);
                return Ok(());
            }
            // The app's options first, ours after.
            (None, Some(Value::String(app))) => {
                // Sized once: the app's value can be large, and `format!` grows by doubling.
                let mut joined = String::with_capacity(app.len() + separator.len() + value.len());
                joined.push_str(app);
                joined.push_str(separator);
                joined.push_str(value);
                if spans(&joined, app.len()) {
                    return Err(EnvConflict::Unclosed {
                        container: shorten(self.container),
                        name: shorten(name),
                    });
                }
                Change::Value(joined)
            }
            (None, Some(other)) => {
                return Err(wrong_type(
                    self.container,
                    format!("env[{i}].value"),
                    other,
                    "a string",
                ));
            }
        };
        self.changes.push((i, change));
        // Kept in index order as they come (a sort would be a sort's code of its own).
        let at = self.written.partition_point(|&(known, _, _)| known <= i);
        self.written.insert(at, (i, name, value));
        self.keep(name);
        Ok(())
    }

    /// The Odigos way for a join variable from `valueFrom`: the app's entry renamed
    /// `ORIGINAL_<NAME>`, and `<NAME>` = `$(ORIGINAL_<NAME>)<separator><ours>` after it.
    fn rename(
        &self,
        name: &str,
        value: &str,
        separator: &str,
        source: &Value,
    ) -> Result<Change, EnvConflict> {
        if !always_exists(source) {
            return Err(EnvConflict::ValueFrom {
                container: shorten(self.container),
                name: shorten(name),
                wanted: shorten(value),
            });
        }
        let original = format!("{ORIGINAL}{name}");
        if self.last(&original).is_some() {
            return Err(EnvConflict::OriginalTaken {
                container: shorten(self.container),
                name: shorten(name),
            });
        }
        let joined = format!("$({original}){separator}{value}");
        Ok(Change::Rename(
            original,
            json!({"name": name, "value": joined}),
        ))
    }

    /// The new entries `value` (written to `by`, before app entry `at` if any) refers to.
    /// A reference to an entry of ours that the app defines must find exactly ours before
    /// `at`, else it would resolve to the app's value.
    fn references_of(
        &self,
        by: &str,
        value: &str,
        at: Option<usize>,
    ) -> Result<Vec<usize>, EnvConflict> {
        let mut needs = Vec::new();
        for name in references(value) {
            if let Some(k) = self.news.iter().position(|n| n.entry.name() == name) {
                needs.push(k);
                continue;
            }
            let Some(entry) = self.ours_by_name.iter().find(|e| e.name() == name) else {
                continue;
            };
            let app = self.last(name);
            let resolves_to_ours = app.is_some_and(|(j, var)| {
                at.is_none_or(|i| j < i)
                    && is_exactly(var, entry)
                    && !self.changes.iter().any(|(changed, _)| *changed == j)
            });
            if !resolves_to_ours {
                return Err(EnvConflict::Defines {
                    container: shorten(self.container),
                    name: shorten(name),
                    by: shorten(by),
                });
            }
        }
        Ok(needs)
    }

    /// Places the new entries: before the first app entry whose new value needs them
    /// (directly or through another new entry), else after the app's; then checks that
    /// nothing placed changes what any reference resolves to.
    fn place(&mut self) -> Result<(), EnvConflict> {
        for k in 0..self.news.len() {
            let Some(n) = self.news.get(k) else { continue };
            let needs = match n.entry {
                EnvEntry::Join { value, .. } | EnvEntry::Value { value, .. } => {
                    self.references_of(n.entry.name(), value, None)?
                }
                EnvEntry::ValueFrom { .. } => continue,
            };
            if let Some(n) = self.news.get_mut(k) {
                n.needs = needs;
            }
        }
        for w in 0..self.written.len() {
            let Some(&(i, by, value)) = self.written.get(w) else {
                continue;
            };
            let mut stack = self.references_of(by, value, Some(i))?;
            while let Some(k) = stack.pop() {
                let Some(n) = self.news.get_mut(k) else {
                    continue;
                };
                if n.before.is_some() {
                    continue;
                }
                n.before = Some(i);
                stack.extend(n.needs.iter().copied());
            }
        }
        // A new entry placed before an app entry must find what it refers to before that.
        for n in self.news.iter().filter(|n| n.before.is_some()) {
            if let EnvEntry::Join { value, .. } | EnvEntry::Value { value, .. } = n.entry {
                self.references_of(n.entry.name(), value, n.before)?;
            }
        }
        self.check_inserted()
    }

    /// The app entries after an entry inserted before them (or after a renamed entry) must
    /// not refer to its name: the insertion would change what they resolve to.
    fn check_inserted(&self) -> Result<(), EnvConflict> {
        // Each inserted name and the first app index that sees it.
        // A few dozen at most: scanned, and the last of a name counts.
        let mut inserted: Vec<(&str, usize)> = self
            .news
            .iter()
            .filter_map(|n| Some((n.entry.name(), n.before?)))
            .collect();
        for (i, change) in &self.changes {
            if let Change::Rename(original, _) = change {
                inserted.push((original, i + 1));
            }
        }
        let Some(first) = inserted.iter().map(|&(_, at)| at).min() else {
            return Ok(());
        };
        for (j, var) in self.env.iter().enumerate().skip(first) {
            let Some(value) = var.get("value").and_then(Value::as_str) else {
                continue;
            };
            for name in references(value) {
                let seen_at = inserted.iter().rev().find(|(n, _)| *n == name);
                if seen_at.is_some_and(|&(_, at)| at <= j) {
                    return Err(EnvConflict::Inserted {
                        container: shorten(self.container),
                        name: shorten(name),
                        by: shorten(var.get("name").and_then(Value::as_str).unwrap_or("")),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether a `valueFrom` always gives a value: a field, a resource, or a key of a
/// ConfigMap or Secret that is not `optional` (without it the container does not start).
fn always_exists(source: &Value) -> bool {
    let optional =
        |kind: &str| source.pointer(&format!("/{kind}/optional")) == Some(&Value::Bool(true));
    if source.get("fieldRef").is_some() || source.get("resourceFieldRef").is_some() {
        return true;
    }
    ["configMapKeyRef", "secretKeyRef"]
        .iter()
        .any(|kind| source.get(*kind).is_some() && !optional(kind))
}

/// Writes the new `env`: the app's entries in their order, each changed as planned, the
/// new entries before the app entry that needs them or after all, referenced ones first.
/// The new entries go in as JSON text kept by `own_json`: no map built, none escaped again.
fn apply(
    container: &mut Map<String, Value>,
    news: &[New],
    mut changes: Vec<(usize, Change)>,
    own_json: &mut OwnJson,
) {
    // `remove` and `insert`, not the entry API: the map's entry code is 3 KB of the module
    // once neither this nor `mutate::child_at` uses it.
    let old = match container.remove("env") {
        Some(Value::Array(old)) => old,
        _ => Vec::new(),
    };
    // The new entries in the order they are written (each index once), each with the app
    // entry it precedes.
    let placed: Vec<&New> = ordered(news)
        .into_iter()
        .filter_map(|k| news.get(k))
        .collect();
    // Each new entry's JSON is kept as it goes into `out`: no kept string is ever left
    // out of the pod (and freed, its address free for another string) before the write.
    let mut json = |n: &New| match n.json.map(str::to_owned).or_else(|| entry_json(n.entry)) {
        Some(text) => own_json.keep(text),
        None => as_json(n.entry),
    };
    // Usually none goes before an app entry: then the app's entries are not scanned for it.
    let any_before = placed.iter().any(|n| n.before.is_some());
    let mut out = Vec::with_capacity(old.len() + placed.len() + 1);
    for (i, mut var) in old.into_iter().enumerate() {
        if any_before {
            for n in placed.iter().filter(|n| n.before == Some(i)) {
                out.push(json(n));
            }
        }
        let change = changes
            .iter()
            .position(|(changed, _)| *changed == i)
            .map(|at| changes.swap_remove(at).1);
        match change {
            Some(Change::Value(value)) => {
                if let Some(var) = var.as_object_mut() {
                    var.insert("value".into(), Value::String(value));
                }
                out.push(var);
            }
            Some(Change::Rename(original, joined)) => {
                if let Some(var) = var.as_object_mut() {
                    var.insert("name".into(), Value::String(original));
                }
                out.push(var);
                out.push(joined);
            }
            None => out.push(var),
        }
    }
    for n in placed.iter().filter(|n| n.before.is_none()) {
        out.push(json(n));
    }
    container.insert("env".into(), Value::Array(out));
}

/// The new entries' indices, each after the new entries it refers to, else in the given
/// order (a cycle, which no order resolves, keeps the given order).
fn ordered(news: &[New]) -> Vec<usize> {
    // Usually each refers only to entries before it (the downward-API entries come before
    // the attributes that refer to them): then the given order is that order, no search.
    if news
        .iter()
        .enumerate()
        .all(|(k, n)| n.needs.iter().all(|&d| d < k))
    {
        return (0..news.len()).collect();
    }
    // 0: not yet, 1: in progress, 2: done.
    let mut state = vec![0u8; news.len()];
    let mut out = Vec::with_capacity(news.len());
    // An explicit stack: (entry, whether its needs were pushed); empty after each root.
    let mut stack = Vec::new();
    for root in 0..news.len() {
        stack.push((root, false));
        while let Some((k, expanded)) = stack.pop() {
            match (state.get(k).copied(), expanded) {
                (Some(0), false) => {
                    if let Some(s) = state.get_mut(k) {
                        *s = 1;
                    }
                    stack.push((k, true));
                    let needs = news.get(k).map(|n| n.needs.as_slice()).unwrap_or_default();
                    stack.extend(needs.iter().rev().map(|&d| (d, false)));
                }
                (Some(1), true) => {
                    if let Some(s) = state.get_mut(k) {
                        *s = 2;
                    }
                    out.push(k);
                }
                _ => {}
            }
        }
    }
    out
}

/// Whether `value` already holds `ours` as the runtime reads it: `ours`'s items,
/// consecutive, among `value`'s items. For a whitespace join (the JVM, Node.js) items
/// are split on any run of whitespace, quotes around an item are ignored, and
/// `-javaagent:<jar>=<options>` is the jar; other joins split at the separator.
/// Linear in the lengths of both.
pub fn holds(value: &str, ours: &str, separator: &str) -> bool {
    // Our very value (a second admission, or an app that sets it as we would): no items read.
    if value == ours {
        return true;
    }
    if separator.trim().is_empty() {
        let pattern: Vec<&str> = text_items(ours).collect();
        // An item as read is a part of the text: a substring search for our first and
        // last items (fast) rules out most values before the item-by-item pass.
        let first = pattern.first();
        let last = pattern.last().filter(|_| pattern.len() > 1);
        let missing = [first, last]
            .into_iter()
            .flatten()
            .any(|item| !value.contains(item));
        !missing && contains_run(&mut text_items(value), &pattern)
    } else {
        // Our items consecutive among the value's are our whole value in its text.
        value.contains(ours)
            && contains_run(
                &mut value.split(separator),
                &ours.split(separator).collect::<Vec<_>>(),
            )
    }
}

/// The items of a whitespace-joined value as a runtime loads them.
fn text_items(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace().map(|item| {
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|&q| item.strip_prefix(q)?.strip_suffix(q))
            .unwrap_or(item);
        // `-javaagent:<jar>=<options>` loads `<jar>`.
        match unquoted
            .strip_prefix(JAVAAGENT)
            .and_then(|rest| rest.find('='))
        {
            Some(at) => unquoted.get(..JAVAAGENT.len() + at).unwrap_or(unquoted),
            None => unquoted,
        }
    })
}

/// Whether `pattern` occurs as consecutive items of `items` (Knuth–Morris–Pratt: each
/// item is compared a bounded number of times, so the cost is linear). `items` is `dyn`:
/// one copy of this code for both kinds of items, not one per iterator type.
fn contains_run(items: &mut dyn Iterator<Item = &str>, pattern: &[&str]) -> bool {
    if pattern.is_empty() {
        return true;
    }
    // fail[i]: the length of the longest proper border of pattern[..=i].
    let mut fail = vec![0usize; pattern.len()];
    let mut k = 0;
    for i in 1..pattern.len() {
        while k > 0 && pattern.get(i) != pattern.get(k) {
            k = fail.get(k - 1).copied().unwrap_or_default();
        }
        if pattern.get(i) == pattern.get(k) {
            k += 1;
        }
        if let Some(f) = fail.get_mut(i) {
            *f = k;
        }
    }
    let mut matched = 0;
    for item in items {
        while matched > 0 && pattern.get(matched) != Some(&item) {
            matched = fail.get(matched - 1).copied().unwrap_or_default();
        }
        if pattern.get(matched) == Some(&item) {
            matched += 1;
        }
        if matched == pattern.len() {
            return true;
        }
    }
    false
}

/// Whether an existing env entry is exactly the plain entry we would add.
fn is_exactly(var: &Value, entry: &EnvEntry) -> bool {
    match entry {
        EnvEntry::Value { value, .. } => {
            var.get("value").and_then(Value::as_str) == Some(value)
                && var.get("valueFrom").is_none_or(Value::is_null)
        }
        EnvEntry::ValueFrom { source, .. } => var.get("valueFrom") == Some(source.value()),
        EnvEntry::Join { .. } => false,
    }
}

/// What an entry sets, as the pod gets it: its value or its source (the same JSON as
/// [`as_json`] gives, compared without building it).
fn setting(entry: &EnvEntry) -> (Option<&str>, Option<&Value>) {
    match entry {
        EnvEntry::Join { value, .. } | EnvEntry::Value { value, .. } => (Some(value), None),
        EnvEntry::ValueFrom { source, .. } => (None, Some(source.value())),
    }
}

/// The env entry the pod gets, as the compact JSON serde_json writes for [`as_json`]'s
/// value (its map's key order: `name`, then `value` or `valueFrom`), written without
/// building it. `None` if a number of the source cannot be written, which it can.
pub fn entry_json(entry: &EnvEntry) -> Option<String> {
    // Sized for the text without escapes: an attributes value is longer than most, and
    // growing the buffer copies it.
    let text = match entry {
        EnvEntry::Join { value, .. } | EnvEntry::Value { value, .. } => value.len(),
        EnvEntry::ValueFrom { source, .. } => source.json().map_or(0, str::len),
    };
    let mut out = Vec::with_capacity(ENTRY_JSON_FRAME + entry.name().len() + text);
    out.extend_from_slice(br#"{"name":"#);
    write::string(&mut out, entry.name());
    match entry {
        EnvEntry::Join { value, .. } | EnvEntry::Value { value, .. } => {
            out.extend_from_slice(br#","value":"#);
            write::string(&mut out, value);
        }
        EnvEntry::ValueFrom { source, .. } => {
            out.extend_from_slice(br#","valueFrom":"#);
            out.extend_from_slice(source.json()?.as_bytes());
        }
    }
    out.push(b'}');
    String::from_utf8(out).ok()
}

/// The bytes of an entry's JSON around its name and value: `{"name":"","valueFrom":}`
/// and room for a few escapes.
const ENTRY_JSON_FRAME: usize = 32;

/// The env entry the pod gets.
pub fn as_json(entry: &EnvEntry) -> Value {
    // Built directly: `json!` with a non-literal goes through `to_value`, a serializer
    // pass over the whole source at every admission.
    let mut out = Map::new();
    out.insert("name".into(), Value::String(entry.name().to_string()));
    match entry {
        EnvEntry::Join { value, .. } | EnvEntry::Value { value, .. } => {
            out.insert("value".into(), Value::String(value.clone()));
        }
        EnvEntry::ValueFrom { source, .. } => {
            out.insert("valueFrom".into(), source.value().clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
