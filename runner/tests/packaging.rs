//! Packaging: policy.yaml, artifacthub-pkg.yml and questions-ui.yml agree with each other and the code;
//! the README documents every setting and keeps its two commands; every relative link in the docs resolves.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agent_mount::settings::keys::applies_to;
use agent_mount::settings::raw::RawSettings;
use agent_mount_common::MountMethod;
use runner::build::workspace_root;
use runner::input::read_document;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn document(name: &str) -> Value {
    read_document(&workspace_root().join(name)).unwrap()
}

fn yaml_string(value: &Value) -> Value {
    serde_yaml::from_str(value.as_str().expect("a YAML string")).unwrap()
}

#[test]
fn artifacthub_agrees_with_policy_metadata() {
    let metadata = document("policy.yaml");
    let hub = document("artifacthub-pkg.yml");
    let annotation = |key: &str| metadata["annotations"][key].as_str().unwrap().to_string();
    let version = annotation("io.kubewarden.policy.version");
    assert_eq!(hub["version"], version.as_str());
    assert_eq!(
        version,
        env!("CARGO_PKG_VERSION"),
        "policy.yaml version vs the crates' version"
    );
    assert_eq!(
        hub["name"],
        annotation("io.kubewarden.policy.title").as_str()
    );
    assert_eq!(
        hub["displayName"],
        annotation("io.artifacthub.displayName").as_str()
    );
    assert_eq!(
        hub["description"],
        annotation("io.kubewarden.policy.description").as_str()
    );
    assert_eq!(
        hub["license"],
        annotation("io.kubewarden.policy.license").as_str()
    );
    assert_eq!(
        hub["homeURL"],
        annotation("io.kubewarden.policy.url").as_str()
    );
    let image = format!("{}:v{version}", annotation("io.kubewarden.policy.ociUrl"));
    assert_eq!(hub["containersImages"][0]["image"], image.as_str());
    let keywords: Vec<String> = annotation("io.artifacthub.keywords")
        .split(',')
        .map(|k| k.trim().to_string())
        .collect();
    assert_eq!(hub["keywords"], json!(keywords));
    let hub_annotations = &hub["annotations"];
    assert_eq!(
        hub_annotations["kubewarden/mutation"],
        metadata["mutating"].to_string().as_str()
    );
    assert_eq!(
        hub_annotations["kubewarden/resources"],
        annotation("io.artifacthub.resources").as_str()
    );
    assert_eq!(
        yaml_string(&hub_annotations["kubewarden/rules"]),
        metadata["rules"]
    );
    assert_eq!(
        yaml_string(&hub_annotations["kubewarden/contextAwareResources"]),
        metadata["contextAwareResources"]
    );
    let questions = std::fs::read_to_string(workspace_root().join("questions-ui.yml")).unwrap();
    assert_eq!(
        hub_annotations["kubewarden/questions-ui"],
        questions.as_str()
    );
    assert_eq!(metadata["executionMode"], "kubewarden-wapc");
    assert_eq!(metadata["backgroundAudit"], false);
    for key in [
        "title",
        "description",
        "author",
        "url",
        "source",
        "license",
        "version",
        "severity",
        "category",
    ] {
        assert!(
            metadata["annotations"]
                .get(format!("io.kubewarden.policy.{key}"))
                .is_some(),
            "{key}"
        );
    }
}

/// The README's relative links do not resolve where the policy's README is shown (Artifact
/// Hub, `kwctl inspect`), so artifacthub-pkg.yml links the other manuals: each at the
/// release's tag, to a file that exists.
#[test]
fn artifacthub_links_the_manuals_of_its_version() {
    let hub = document("artifacthub-pkg.yml");
    let blob = format!(
        "{}/blob/v{}/",
        hub["homeURL"].as_str().unwrap(),
        hub["version"].as_str().unwrap()
    );
    let mut linked = Vec::new();
    for link in hub["links"].as_array().unwrap() {
        let url = link["url"].as_str().unwrap();
        if url.contains("/blob/") {
            let path = url
                .strip_prefix(&blob)
                .unwrap_or_else(|| panic!("{url} should start with {blob}"));
            assert!(
                workspace_root().join(path).is_file(),
                "{url}: no file {path}"
            );
            linked.push(path);
        }
    }
    assert_eq!(
        linked,
        [
            "node/README.md",
            "agents/README.md",
            "docs/guarantees.md",
            "docs/methods.md",
            "docs/installing.md",
            "docs/activation.md"
        ]
    );
}

/// Every settings key path, nested keys dotted, from settings with every key set.
fn settings_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let value = serde_json::to_value(RawSettings::every_key()).unwrap();
    for (key, inner) in value.as_object().unwrap() {
        keys.push(key.clone());
        if let Value::Object(nested) = inner {
            keys.extend(nested.keys().map(|k| format!("{key}.{k}")));
        }
    }
    keys
}

/// The methods a (possibly dotted) key applies to, as the settings say it.
fn methods_of(key: &str) -> Vec<MountMethod> {
    applies_to(key)
}

/// A method's name as the documentation shortens it, e.g. `host-path`.
fn short(method: MountMethod) -> &'static str {
    method.as_str().trim_start_matches("k8s-")
}

/// How the README states where a key applies: "every method", or the short names.
fn applies_phrase(key: &str) -> String {
    let methods = methods_of(key);
    if methods.len() == MountMethod::ALL.len() {
        "applies to: every method".into()
    } else {
        let names: Vec<&str> = methods.into_iter().map(short).collect();
        format!("applies to: {}", names.join(", "))
    }
}

#[test]
fn readme_documents_every_setting_where_it_applies() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    for key in settings_keys().iter().filter(|k| !k.contains('.')) {
        let heading = format!("**`{key}`** (");
        let start = readme
            .find(&heading)
            .unwrap_or_else(|| panic!("README.md has no paragraph starting {heading}"));
        let rest = &readme[start..];
        let parenthetical = &rest[..rest.find(")").unwrap()];
        let phrase = applies_phrase(key);
        assert!(
            parenthetical.ends_with(&phrase),
            "README.md: {heading}...) should end with {phrase:?}, found {parenthetical:?}"
        );
    }
}

#[test]
fn questions_ui_shows_each_key_where_it_applies() {
    let questions = document("questions-ui.yml");
    for question in questions["questions"].as_array().unwrap() {
        let variable = question["variable"].as_str().unwrap();
        if variable == "description" {
            continue;
        }
        let methods = methods_of(variable);
        let show_if = question.get("show_if").and_then(Value::as_str);
        match methods.as_slice() {
            [only] => assert_eq!(
                show_if,
                Some(format!("mountMethod={}", only.as_str()).as_str()),
                "{variable}"
            ),
            several => {
                assert_eq!(show_if, None, "{variable} applies to several methods");
                if several.len() < MountMethod::ALL.len() {
                    let description = question["description"].as_str().unwrap();
                    for method in several {
                        assert!(
                            description.contains(short(*method)),
                            "{variable}: the description should name {}",
                            short(*method)
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn questions_ui_covers_every_setting() {
    let questions = document("questions-ui.yml");
    let variables: Vec<&str> = questions["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["variable"].as_str().unwrap())
        .collect();
    let keys = settings_keys();
    assert!(keys.len() >= 20, "{keys:?}");
    for key in &keys {
        let covered = variables
            .iter()
            .any(|v| v == key || v.starts_with(&format!("{key}.")));
        assert!(
            covered,
            "questions-ui.yml has no entry for settings key {key}"
        );
    }
    let options = questions["questions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["variable"] == "mountMethod")
        .unwrap();
    let methods: Vec<&str> = MountMethod::ALL.iter().map(|m| m.as_str()).collect();
    assert_eq!(options["options"], json!(methods));
    for question in questions["questions"].as_array().unwrap() {
        let allowed = ["string", "boolean", "int", "enum", "array[", "map["];
        assert!(
            allowed.contains(&question["type"].as_str().unwrap()),
            "{question}"
        );
        for field in ["variable", "group", "label", "description", "type"] {
            assert!(
                question.get(field).is_some(),
                "{field} missing in {question}"
            );
        }
    }
}

/// The README opens with the brief's two commands, as `.ci/run` runs them.
#[test]
fn readme_opens_with_the_two_commands() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let block = readme
        .split("```console\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a console block");
    let commands: Vec<&str> = block
        .lines()
        .map(|line| line.split('#').next().unwrap().trim())
        .collect();
    assert_eq!(commands, ["cargo run -p runner -- demo", "./test.sh"]);
    let first_section = readme.find("\n## ").unwrap();
    assert!(
        readme.find(block).unwrap() < first_section,
        "the two commands come before the first section"
    );
}

/// The Markdown files whose relative links must resolve: the manuals, the developer notes,
/// the benchmarks and everything under docs/.
fn markdown_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files: Vec<PathBuf> = [
        "README.md",
        "CONTRIBUTING.md",
        "BENCHMARKS.md",
        "node/README.md",
        "agents/README.md",
    ]
    .iter()
    .map(|name| root.join(name))
    .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ holds no Markdown file");
    files.extend(docs);
    files
}

/// The lines of a Markdown file outside its fenced code blocks.
fn outside_fences(markdown: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut fence: Option<&str> = None;
    for line in markdown.lines() {
        let opener = ["```", "~~~"]
            .into_iter()
            .find(|f| line.trim_start().starts_with(f));
        match (fence, opener) {
            (None, Some(f)) => fence = Some(f),
            (Some(open), Some(f)) if open == f => fence = None,
            (None, None) => lines.push(line),
            _ => {}
        }
    }
    lines
}

/// The Markdown text outside fenced blocks and code spans, line by line, where links are
/// read (a `](` inside code is an example, not a link).
fn prose_lines(markdown: &str) -> Vec<String> {
    without_code_spans(&outside_fences(markdown).join("\n"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Removes code spans: a run of n backticks up to the next run of exactly n (CommonMark);
/// a run with no closing run stays as text.
fn without_code_spans(text: &str) -> String {
    let run_at = |i: usize| text[i..].chars().take_while(|&c| c == '`').count();
    let mut out = String::new();
    let mut i = 0;
    while let Some(offset) = text[i..].find('`') {
        let start = i + offset;
        let n = run_at(start);
        out.push_str(&text[i..start]);
        let mut search = start + n;
        let close = loop {
            match text[search..].find('`') {
                None => break None,
                Some(o) => {
                    let at = search + o;
                    let m = run_at(at);
                    if m == n {
                        break Some(at + m);
                    }
                    search = at + m;
                }
            }
        };
        match close {
            Some(end) => i = end,
            None => {
                out.push_str(&text[start..start + n]);
                i = start + n;
            }
        }
    }
    out.push_str(&text[i..]);
    out
}

/// A heading's anchor as GitHub makes it: lower case, spaces to `-`, punctuation other
/// than `-` and `_` dropped.
fn github_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors a Markdown file offers: its headings' slugs (repeats numbered `-1`, `-2`…,
/// as GitHub does) and its `<a id="…">` elements. Headings are read with their code spans,
/// which give their text to the slug.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in outside_fences(markdown) {
        if let Some(heading) = line.strip_prefix('#') {
            let slug = github_slug(heading.trim_start_matches('#'));
            let mut unique = slug.clone();
            let mut n = 0;
            while found.contains(&unique) {
                n += 1;
                unique = format!("{slug}-{n}");
            }
            found.insert(unique);
        }
    }
    for part in markdown.split("<a id=\"").skip(1) {
        found.insert(part.split('"').next().unwrap().to_string());
    }
    found
}

/// The targets of the inline links `[text](target)` in a file's prose.
fn link_targets(markdown: &str) -> Vec<String> {
    prose_lines(markdown)
        .iter()
        .flat_map(|line| {
            line.split("](")
                .skip(1)
                .map(|rest| rest.split([')', ' ']).next().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Why a relative link from `file` does not resolve, if it does not: a missing file, or an
/// anchor that the target Markdown file does not have.
fn broken(file: &Path, target: &str) -> Option<String> {
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else {
        file.parent().unwrap().join(path)
    };
    if !resolved.exists() {
        return Some(format!("{} does not exist", resolved.display()));
    }
    let anchor = anchor?;
    if resolved.extension().is_none_or(|ext| ext != "md") {
        return None;
    }
    let offered = anchors(&std::fs::read_to_string(&resolved).unwrap());
    (!offered.contains(anchor)).then(|| format!("{} has no anchor #{anchor}", resolved.display()))
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = workspace_root();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            if let Some(why) = broken(&file, &target) {
                let name = file.strip_prefix(&root).unwrap().display();
                failures.push(format!("{name}: ({target}): {why}"));
            }
        }
    }
    assert!(checked >= 30, "only {checked} relative links found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_link_reader_follows_github() {
    assert_eq!(
        github_slug(" `agent-mount-node device-plugin`"),
        "agent-mount-node-device-plugin"
    );
    assert_eq!(
        github_slug(" The agents: tree and image"),
        "the-agents-tree-and-image"
    );
    assert_eq!(
        github_slug(" The installer's DaemonSet"),
        "the-installers-daemonset"
    );
    let doc = "# A\n\n## A\n\n```sh\n# not a heading [x](nowhere.md)\n```\n<a id=\"x-y\"></a>\n";
    assert_eq!(
        anchors(doc),
        BTreeSet::from(["a".into(), "a-1".into(), "x-y".into()])
    );
    assert_eq!(
        link_targets(
            "see [b](b.md#c) and `[code](not.md)`, ``a ` [d](e.md) ``, [f](g.md \"title\")"
        ),
        ["b.md#c", "g.md"]
    );
}
