//! The lab's contexts in a kubeconfig: one kubeconfig holding a context for Karmada and for every member
//! under names prefixed with the lab's (`lab-karmada`, `lab-member1`), and the merge of those contexts into a
//! user's kubeconfig and their removal from it.
//!
//! Each cluster, context and user testbed writes carries a named extension, `testbed`, saying which lab it
//! belongs to (minikube records its own entries the same way; kubectl keeps extensions when it rewrites the
//! file). Merging replaces only entries that carry it for the same lab, and refuses when an entry of the same
//! name is someone else's. The user's file is edited as text, a whole list item at a time: everything else in
//! it (other entries, comments, key order, quoting) stays byte for byte, and removing what a merge added gives
//! back the file as it was. A layout that cannot be edited that way (flow style, several documents, anchors
//! across items) is refused, never rewritten.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The extension that marks an entry as testbed's.
pub const EXTENSION: &str = "testbed";

/// The three lists of a kubeconfig whose items are named entries.
const LISTS: [List; 3] = [List::Clusters, List::Contexts, List::Users];

/// A list of named entries in a kubeconfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum List {
    Clusters,
    Contexts,
    Users,
}

impl List {
    /// The list's key at the top of the file.
    pub fn key(self) -> &'static str {
        match self {
            List::Clusters => "clusters",
            List::Contexts => "contexts",
            List::Users => "users",
        }
    }

    /// The key of an item's body (`cluster`, `context`, `user`), where its extensions are.
    fn body(self) -> &'static str {
        match self {
            List::Clusters => "cluster",
            List::Contexts => "context",
            List::Users => "user",
        }
    }

    /// The entry's kind in words.
    fn noun(self) -> &'static str {
        match self {
            List::Clusters => "cluster",
            List::Contexts => "context",
            List::Users => "user",
        }
    }
}

/// Why a kubeconfig could not be read, built or edited.
#[derive(Debug, thiserror::Error)]
pub enum ContextsError {
    #[error("{source_name} is not a kubeconfig testbed can read: {reason}")]
    Unreadable { source_name: String, reason: String },
    #[error("{source_name} has no context {context:?} (or the cluster or user it names)")]
    MissingContext { source_name: String, context: String },
    #[error("{file} already has a {noun} named {name:?} (line {line}) that testbed did not write")]
    NotOurs { file: String, noun: &'static str, name: String, line: usize },
    #[error("{file} cannot be edited without rewriting it: {reason}")]
    Layout { file: String, reason: String },
}

/// One context of the lab: its name (`lab-member1`) and the kubeconfig it comes from.
#[derive(Debug, Clone)]
pub struct LabContext {
    /// The name it gets: context, cluster and user are all named so.
    pub name: String,
    /// What the source is, for messages (`member1's kubeconfig (.testbed/kubeconfigs/member1.config)`).
    pub source_name: String,
    /// The source kubeconfig's text.
    pub source: String,
}

/// The entries of the lab's contexts, renamed and marked as the lab's, by list.
#[derive(Debug, Clone, PartialEq)]
pub struct LabEntries {
    /// The lab's name (the file's top-level `name`).
    pub lab: String,
    /// Whether the credentials and addresses are the simulated machine's.
    pub simulated: bool,
    entries: BTreeMap<List, Vec<Value>>,
    /// The contexts, in order.
    pub contexts: Vec<String>,
}

/// What a kubeconfig says, as far as testbed reads it: its lists' items and its current context.
#[derive(Deserialize, Default)]
struct Parsed {
    #[serde(default)]
    clusters: Option<Vec<Value>>,
    #[serde(default)]
    contexts: Option<Vec<Value>>,
    #[serde(default)]
    users: Option<Vec<Value>>,
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
}

impl Parsed {
    fn list(&self, list: List) -> &[Value] {
        match list {
            List::Clusters => &self.clusters,
            List::Contexts => &self.contexts,
            List::Users => &self.users,
        }
        .as_deref()
        .unwrap_or_default()
    }
}

impl LabEntries {
    /// The entries of `contexts`: from each source, its current context (or its only one) with the cluster
    /// and user it names, all three renamed to the context's name and marked as `lab`'s.
    pub fn build(lab: &str, simulated: bool, contexts: &[LabContext]) -> Result<LabEntries, ContextsError> {
        let mut entries: BTreeMap<List, Vec<Value>> = BTreeMap::new();
        let mut names = Vec::new();
        for c in contexts {
            let unreadable = |reason: String| ContextsError::Unreadable { source_name: c.source_name.clone(), reason };
            let source: Parsed = serde_saphyr::from_str(&c.source).map_err(|e| unreadable(e.to_string()))?;
            let source_contexts = source.list(List::Contexts);
            let wanted = match (&source.current_context, source_contexts) {
                (Some(name), _) if !name.is_empty() => name.clone(),
                (_, [only]) => name_of(only).unwrap_or_default().to_owned(),
                _ => return Err(unreadable("it has no current context".into())),
            };
            let missing =
                || ContextsError::MissingContext { source_name: c.source_name.clone(), context: wanted.clone() };
            let context = source_contexts.iter().find(|x| name_of(x) == Some(wanted.as_str())).ok_or_else(missing)?;
            let cluster_name = context["context"]["cluster"].as_str().ok_or_else(missing)?;
            let user_name = context["context"]["user"].as_str().ok_or_else(missing)?;
            let find = |list: List, name: &str| {
                source.list(list).iter().find(|x| name_of(x) == Some(name)).cloned().ok_or_else(missing)
            };
            let cluster = find(List::Clusters, cluster_name)?;
            let user = find(List::Users, user_name)?;
            let mut context = context.clone();
            context["context"]["cluster"] = json!(c.name);
            context["context"]["user"] = json!(c.name);
            for (list, mut item) in [(List::Clusters, cluster), (List::Contexts, context), (List::Users, user)] {
                item["name"] = json!(c.name);
                mark(&mut item, list, lab, simulated);
                entries.entry(list).or_default().push(item);
            }
            names.push(c.name.clone());
        }
        Ok(LabEntries { lab: lab.to_owned(), simulated, entries, contexts: names })
    }

    fn items(&self, list: List) -> &[Value] {
        self.entries.get(&list).map(Vec::as_slice).unwrap_or_default()
    }

    /// The lab's contexts as one kubeconfig, its current context the first, with a comment that says what
    /// it holds.
    pub fn kubeconfig(&self) -> String {
        let mut out = format!(
            "# The contexts of the testbed lab {:?}: {}.\n# It holds credentials: keep it private.\n",
            self.lab,
            self.contexts.join(", ")
        );
        if self.simulated {
            out.push_str(
                "# Simulated: these credentials and addresses are the simulated machine's; they reach no real cluster.\n",
            );
        }
        let mut doc = Map::new();
        doc.insert("apiVersion".into(), json!("v1"));
        for list in LISTS {
            doc.insert(list.key().into(), Value::Array(self.items(list).to_vec()));
        }
        doc.insert("current-context".into(), json!(self.contexts.first().cloned().unwrap_or_default()));
        doc.insert("kind".into(), json!("Config"));
        doc.insert("preferences".into(), json!({}));
        out.push_str(&crate::yaml::to_yaml(&Value::Object(doc)));
        out
    }
}

/// The entry's `name`.
fn name_of(item: &Value) -> Option<&str> {
    item.get("name").and_then(Value::as_str)
}

/// Adds the `testbed` extension saying the entry is `lab`'s to the item's body.
fn mark(item: &mut Value, list: List, lab: &str, simulated: bool) {
    let body = &mut item[list.body()];
    if !body.is_object() {
        *body = json!({});
    }
    let mut extension = json!({"lab": lab, "managed-by": "testbed"});
    if simulated {
        extension["simulated"] = json!(true);
    }
    let extensions = body["extensions"].as_array().cloned().unwrap_or_default();
    let mut kept: Vec<Value> = extensions.into_iter().filter(|e| e["name"] != EXTENSION).collect();
    kept.push(json!({"name": EXTENSION, "extension": extension}));
    body["extensions"] = Value::Array(kept);
}

/// The lab an entry belongs to, if testbed wrote it.
fn lab_of(item: &Value, list: List) -> Option<&str> {
    item[list.body()]["extensions"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == EXTENSION)
        .and_then(|e| e["extension"]["lab"].as_str())
}

// ---------------------------------------------------------------------------------------------------
// Editing a user's kubeconfig as text
// ---------------------------------------------------------------------------------------------------

/// A list in the file: where its key is, and its items as line ranges.
#[derive(Debug)]
struct Block {
    /// The line of `key:`.
    key_line: usize,
    /// What follows `key:` on its line (`[]`, `null`, or nothing for a block list).
    inline: String,
    /// The indentation of the items' dashes.
    dash: usize,
    /// Each item: its first line and the line after its last.
    items: Vec<(usize, usize)>,
    /// The line after the list's last item (where an item is appended).
    end: usize,
}

/// The file, cut into lines (each with its line end), with its lists found.
struct Layout<'a> {
    lines: Vec<&'a str>,
    blocks: BTreeMap<List, Block>,
    /// The line of `current-context:`, when the file has one.
    current_context: Option<usize>,
}

/// Whether the line starts a top-level key (`key:` at the first column).
fn top_key(line: &str) -> Option<&str> {
    let first = line.chars().next()?;
    if first.is_whitespace() || matches!(first, '#' | '-' | '.') {
        return None;
    }
    let (key, _) = line.split_once(':')?;
    Some(key.trim().trim_matches('"').trim_matches('\''))
}

/// Whether the line holds nothing (blank, or only a comment).
fn is_blank(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

impl<'a> Layout<'a> {
    fn read(file: &str, text: &'a str) -> Result<Layout<'a>, ContextsError> {
        let layout = |reason: &str| ContextsError::Layout { file: file.to_owned(), reason: reason.to_owned() };
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        if lines.iter().skip(1).any(|l| l.trim_end() == "---") {
            return Err(layout("it holds more than one YAML document"));
        }
        let keys: Vec<(usize, &str)> = lines.iter().enumerate().filter_map(|(i, l)| Some((i, top_key(l)?))).collect();
        let mut blocks = BTreeMap::new();
        let mut current_context = None;
        for (n, (i, key)) in keys.iter().enumerate() {
            let next = keys.get(n + 1).map_or(lines.len(), |(j, _)| *j);
            if *key == "current-context" {
                current_context = Some(*i);
            }
            let Some(list) = LISTS.into_iter().find(|l| l.key() == *key) else { continue };
            let inline = lines[*i].split_once(':').map(|(_, v)| v).unwrap_or_default();
            let inline = inline.split(" #").next().unwrap_or_default().trim().to_owned();
            let body: Vec<usize> = (i + 1..next).filter(|j| !is_blank(lines[*j])).collect();
            let dash = match body.first() {
                Some(j) => lines[*j].len() - lines[*j].trim_start_matches(' ').len(),
                None => 0,
            };
            let is_item = |j: usize| {
                let (Some(indent), Some(rest)) = (lines[j].get(..dash), lines[j].get(dash..)) else { return false };
                indent.trim().is_empty() && (rest.starts_with("- ") || rest.trim_end() == "-")
            };
            let starts: Vec<usize> = body.iter().copied().filter(|j| is_item(*j)).collect();
            if !inline.is_empty() && !starts.is_empty() {
                return Err(layout(&format!("`{}:` has a value on its line and items below it", list.key())));
            }
            if body.first().is_some_and(|j| !is_item(*j)) {
                return Err(layout(&format!("`{}:` is not a block list of `- ` items", list.key())));
            }
            // An item runs to the next item; the last one to the list's last line that is not blank.
            let end = body.last().map_or(i + 1, |j| j + 1);
            let items =
                starts.iter().enumerate().map(|(k, s)| (*s, starts.get(k + 1).copied().unwrap_or(end))).collect();
            blocks.insert(list, Block { key_line: *i, inline, dash, items, end });
        }
        Ok(Layout { lines, blocks, current_context })
    }

    /// The text of lines `from..to`.
    fn text(&self, from: usize, to: usize) -> String {
        self.lines[from..to].concat()
    }
}

/// The file read both ways, checked to agree: each list's items as the text cuts them are the items the YAML
/// parser reads, in order.
struct Checked<'a> {
    layout: Layout<'a>,
    parsed: Parsed,
    /// Each list's items, parsed one by one from their own text.
    items: BTreeMap<List, Vec<Value>>,
}

fn check<'a>(file: &str, text: &'a str) -> Result<Checked<'a>, ContextsError> {
    let unreadable = |reason: String| ContextsError::Unreadable { source_name: file.to_owned(), reason };
    let layout = Layout::read(file, text)?;
    let parsed: Parsed = if text.trim().is_empty() {
        Parsed::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| unreadable(e.to_string()))?
    };
    let mut items = BTreeMap::new();
    for list in LISTS {
        let cut: Vec<Value> = match layout.blocks.get(&list) {
            Some(block) => block
                .items
                .iter()
                .map(|(from, to)| {
                    let item: Vec<Value> =
                        serde_saphyr::from_str(&dedent(&layout.text(*from, *to), block.dash)).unwrap_or_default();
                    item.into_iter().next().unwrap_or(Value::Null)
                })
                .collect(),
            None => Vec::new(),
        };
        if cut != parsed.list(list) {
            return Err(ContextsError::Layout {
                file: file.to_owned(),
                reason: format!("its `{}` list is not one `- ` item after another at one indentation", list.key()),
            });
        }
        items.insert(list, cut);
    }
    Ok(Checked { layout, parsed, items })
}

/// `text` with `by` leading spaces taken off each line that has them.
fn dedent(text: &str, by: usize) -> String {
    text.split_inclusive('\n')
        .map(|l| match (l.get(..by), l.get(by..)) {
            (Some(indent), Some(rest)) if indent.trim().is_empty() => rest,
            _ => l,
        })
        .collect()
}

/// `item` as a list item in block style, its dash at `dash` columns.
fn item_text(item: &Value, dash: usize) -> String {
    crate::yaml::list_items(std::slice::from_ref(item), dash)
}

/// The contexts in `text` (a kubeconfig) that testbed wrote for `lab`; none when it cannot be read.
pub fn lab_contexts(text: &str, lab: &str) -> Vec<String> {
    let parsed: Parsed = serde_saphyr::from_str(text).unwrap_or_default();
    parsed
        .list(List::Contexts)
        .iter()
        .filter(|x| lab_of(x, List::Contexts) == Some(lab))
        .filter_map(|x| name_of(x).map(str::to_owned))
        .collect()
}

/// What a merge or an unmerge did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edit {
    /// The file's new text.
    pub text: String,
    /// The contexts added, replaced and removed.
    pub added: Vec<String>,
    pub replaced: Vec<String>,
    pub removed: Vec<String>,
    /// The current context was one of the removed ones and is now empty.
    pub cleared_current_context: bool,
}

/// `text` (the user's kubeconfig, `file` in messages; empty when there is none) with the lab's entries in:
/// each replaces the lab's entry of the same name where it is, or goes at the end of its list; the lab's
/// entries the lab no longer has are removed. Everything else stays as it was. An entry of one of the lab's
/// names that testbed did not write (or wrote for another lab) is refused.
pub fn merge(file: &str, text: &str, lab: &LabEntries) -> Result<Edit, ContextsError> {
    if text.trim().is_empty() {
        let mut doc = lab.kubeconfig();
        // Only the entries: the header's comment is for a file of the lab's own.
        doc = doc.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
        return Ok(Edit { text: doc, added: lab.contexts.clone(), ..Edit::default() });
    }
    let checked = check(file, text)?;
    let mut edit = Edit::default();
    // Replacements and removals by line, and what goes at each list's end.
    let mut replace: BTreeMap<usize, (usize, String)> = BTreeMap::new();
    let mut appended: Vec<(List, String)> = Vec::new();
    for list in LISTS {
        let block = checked.layout.blocks.get(&list);
        let existing = &checked.items[&list];
        let mut tail = String::new();
        let dash = block.map_or(0, |b| b.dash);
        for item in lab.items(list) {
            let name = name_of(item).unwrap_or_default();
            match existing.iter().position(|x| name_of(x) == Some(name)) {
                Some(k) if lab_of(&existing[k], list) == Some(lab.lab.as_str()) => {
                    let (from, to) = block.map(|b| b.items[k]).unwrap_or_default();
                    replace.insert(from, (to, item_text(item, dash)));
                    if list == List::Contexts {
                        edit.replaced.push(name.to_owned());
                    }
                }
                Some(k) => {
                    let line = block.map_or(0, |b| b.items[k].0) + 1;
                    return Err(ContextsError::NotOurs {
                        file: file.to_owned(),
                        noun: list.noun(),
                        name: name.to_owned(),
                        line,
                    });
                }
                None => {
                    tail.push_str(&item_text(item, dash));
                    if list == List::Contexts {
                        edit.added.push(name.to_owned());
                    }
                }
            }
        }
        // The lab's entries it no longer has.
        for (k, x) in existing.iter().enumerate() {
            let ours = lab_of(x, list) == Some(lab.lab.as_str());
            let kept = lab.items(list).iter().any(|i| name_of(i) == name_of(x));
            if ours && !kept {
                if let Some(b) = block {
                    replace.insert(b.items[k].0, (b.items[k].1, String::new()));
                }
                if list == List::Contexts {
                    edit.removed.push(name_of(x).unwrap_or_default().to_owned());
                }
            }
        }
        if !tail.is_empty() {
            appended.push((list, tail));
        }
    }
    edit.text = rewrite(&checked, &replace, &appended, None);
    Ok(edit)
}

/// `text` without the lab's entries (those carrying its mark); a current context that was one of them is
/// left empty. Everything else stays as it was.
pub fn unmerge(file: &str, text: &str, lab: &str) -> Result<Edit, ContextsError> {
    if text.trim().is_empty() {
        return Ok(Edit { text: text.to_owned(), ..Edit::default() });
    }
    let checked = check(file, text)?;
    let mut edit = Edit::default();
    let mut replace: BTreeMap<usize, (usize, String)> = BTreeMap::new();
    for list in LISTS {
        let Some(block) = checked.layout.blocks.get(&list) else { continue };
        for (k, x) in checked.items[&list].iter().enumerate() {
            if lab_of(x, list) == Some(lab) {
                replace.insert(block.items[k].0, (block.items[k].1, String::new()));
                if list == List::Contexts {
                    edit.removed.push(name_of(x).unwrap_or_default().to_owned());
                }
            }
        }
    }
    let current = checked.parsed.current_context.as_deref().unwrap_or_default();
    let clear = edit.removed.iter().any(|r| r == current);
    edit.cleared_current_context = clear;
    edit.text = rewrite(&checked, &replace, &[], clear.then_some(()));
    Ok(edit)
}

/// The file with lines replaced (`start → (end, text)`), items appended at their lists' ends, an emptied
/// list written `[]`, and the current context emptied when asked.
fn rewrite(
    checked: &Checked<'_>,
    replace: &BTreeMap<usize, (usize, String)>,
    appended: &[(List, String)],
    clear_current: Option<()>,
) -> String {
    let layout = &checked.layout;
    let mut out = String::new();
    // Where each list's appended items go, and each list's key line.
    let mut at_end: BTreeMap<usize, &str> = BTreeMap::new();
    let mut missing_lists = String::new();
    for (list, tail) in appended {
        match layout.blocks.get(list) {
            Some(b) => {
                at_end.insert(b.end, tail);
            }
            None => {
                missing_lists.push_str(&format!("{}:\n{tail}", list.key()));
            }
        }
    }
    let emptied: Vec<List> = LISTS
        .into_iter()
        .filter(|l| {
            layout.blocks.get(l).is_some_and(|b| {
                !b.items.is_empty()
                    && b.items.iter().all(|(s, _)| replace.get(s).is_some_and(|(_, t)| t.is_empty()))
                    && !appended.iter().any(|(a, _)| a == l)
            })
        })
        .collect();
    let mut i = 0;
    while i <= layout.lines.len() {
        if let Some(tail) = at_end.get(&i) {
            out.push_str(tail);
        }
        if i == layout.lines.len() {
            break;
        }
        if let Some((end, text)) = replace.get(&i) {
            out.push_str(text);
            i = *end;
            continue;
        }
        let line = layout.lines[i];
        let block_here = layout.blocks.iter().find(|(_, b)| b.key_line == i);
        match block_here {
            // A list written inline (`[]`, `null`) that gets items becomes a block list.
            Some((list, b)) if !b.inline.is_empty() && appended.iter().any(|(a, _)| a == list) => {
                out.push_str(&format!("{}:\n", list.key()));
            }
            Some((list, _)) if emptied.contains(list) => out.push_str(&format!("{}: []\n", list.key())),
            _ if clear_current.is_some() && layout.current_context == Some(i) => {
                out.push_str("current-context: \"\"\n");
            }
            _ => out.push_str(line),
        }
        i += 1;
    }
    if !missing_lists.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&missing_lists);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member's kubeconfig as `microk8s config` writes it.
    fn member(server: &str) -> String {
        format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: {server}\n  name: microk8s-cluster\n\
             contexts:\n- context:\n    cluster: microk8s-cluster\n    user: admin\n  name: microk8s\n\
             current-context: microk8s\nkind: Config\npreferences: {{}}\nusers:\n- name: admin\n  user:\n    \
             client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n"
        )
    }

    fn lab(simulated: bool) -> LabEntries {
        let contexts: Vec<LabContext> =
            [("lab-karmada", "https://10.0.0.1:32443"), ("lab-member1", "https://127.0.0.1:16441")]
                .into_iter()
                .map(|(name, server)| LabContext {
                    name: name.into(),
                    source_name: name.into(),
                    source: member(server),
                })
                .collect();
        LabEntries::build("lab", simulated, &contexts).unwrap()
    }

    /// A user's kubeconfig as kubectl writes it, with a comment and entries of its own.
    const USERS: &str = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://k8s.example:6443\n  name: work\n\
                         contexts:\n- context:\n    cluster: work\n    namespace: team-a\n    user: me\n  name: work\n\
                         current-context: work\nkind: Config\npreferences: {}\n# my token, rotated monthly\nusers:\n\
                         - name: me\n  user:\n    token: \"abc: def\"\n";

    #[test]
    fn the_lab_kubeconfig_names_every_context_with_the_labs_prefix_and_marks_each_entry() {
        let text = lab(false).kubeconfig();
        let parsed: Parsed = serde_saphyr::from_str(&text).unwrap();
        for list in LISTS {
            let names: Vec<&str> = parsed.list(list).iter().filter_map(name_of).collect();
            assert_eq!(names, ["lab-karmada", "lab-member1"], "{text}");
            assert!(parsed.list(list).iter().all(|x| lab_of(x, list) == Some("lab")), "{text}");
        }
        assert_eq!(parsed.current_context.as_deref(), Some("lab-karmada"));
        assert_eq!(parsed.contexts.unwrap()[1]["context"]["user"], "lab-member1");
        assert_eq!(parsed.users.unwrap()[1]["user"]["client-key-data"], "S0VZ");
        assert!(text.starts_with("# The contexts of the testbed lab \"lab\""), "{text}");
        assert!(!text.contains("Simulated"));
        assert!(lab(true).kubeconfig().contains("# Simulated: "));
    }

    #[test]
    fn a_merge_keeps_the_users_file_byte_for_byte_and_an_unmerge_gives_it_back() {
        let merged = merge("config", USERS, &lab(false)).unwrap();
        assert_eq!(merged.added, ["lab-karmada", "lab-member1"]);
        // The user's lines are all there, in order, untouched.
        let mut rest = merged.text.as_str();
        for line in USERS.lines() {
            let at = rest.find(line).unwrap_or_else(|| panic!("{line:?} lost: {}", merged.text));
            rest = &rest[at + line.len()..];
        }
        let parsed: Parsed = serde_saphyr::from_str(&merged.text).unwrap();
        let names: Vec<&str> = parsed.list(List::Contexts).iter().filter_map(name_of).collect();
        assert_eq!(names, ["work", "lab-karmada", "lab-member1"]);
        assert_eq!(parsed.current_context.as_deref(), Some("work"));
        // Merging again changes nothing; unmerging restores the file.
        let again = merge("config", &merged.text, &lab(false)).unwrap();
        assert_eq!(again.text, merged.text);
        assert_eq!(again.replaced, ["lab-karmada", "lab-member1"]);
        let back = unmerge("config", &merged.text, "lab").unwrap();
        assert_eq!(back.text, USERS);
        assert_eq!(back.removed, ["lab-karmada", "lab-member1"]);
        assert!(!back.cleared_current_context);
    }

    #[test]
    fn indented_lists_keep_their_indentation_and_a_member_that_left_is_removed() {
        let indented = "apiVersion: v1\nclusters:\n  - name: work\n    cluster:\n      server: https://k:6443\n\
                        contexts: []\nusers: null\ncurrent-context: lab-member1\n";
        let merged = merge("config", indented, &lab(false)).unwrap();
        assert!(merged.text.contains("\n  - cluster:\n"), "{}", merged.text);
        assert!(merged.text.contains("contexts:\n- context:"), "{}", merged.text);
        let only_karmada = LabEntries::build(
            "lab",
            false,
            &[LabContext {
                name: "lab-karmada".into(),
                source_name: "k".into(),
                source: member("https://10.0.0.1:32443"),
            }],
        )
        .unwrap();
        let shrunk = merge("config", &merged.text, &only_karmada).unwrap();
        assert_eq!(shrunk.removed, ["lab-member1"]);
        let parsed: Parsed = serde_saphyr::from_str(&shrunk.text).unwrap();
        assert_eq!(parsed.list(List::Users).iter().filter_map(name_of).collect::<Vec<_>>(), ["lab-karmada"]);
        // Unmerged, the lists the lab filled are empty again, and a current context of the lab's is cleared.
        let back = unmerge("config", &merged.text, "lab").unwrap();
        assert!(back.cleared_current_context);
        assert!(back.text.contains("contexts: []\n") && back.text.contains("users: []\n"), "{}", back.text);
        assert!(back.text.contains("current-context: \"\"\n"), "{}", back.text);
        assert!(back.text.starts_with("apiVersion: v1\nclusters:\n  - name: work\n"), "{}", back.text);
    }

    #[test]
    fn an_entry_of_the_labs_name_that_testbed_did_not_write_is_refused() {
        let theirs = USERS.replace("  name: work\ncurrent", "  name: lab-member1\ncurrent");
        let error = merge("config", &theirs, &lab(false)).unwrap_err();
        assert!(
            matches!(&error, ContextsError::NotOurs { noun: "context", name, line: 7, .. } if name == "lab-member1"),
            "{error:?}"
        );
        // Another lab's entries are not this lab's either.
        let other = LabEntries { lab: "other".into(), ..lab(false) };
        let merged = merge("config", USERS, &lab(false)).unwrap();
        assert!(matches!(merge("config", &merged.text, &other), Err(ContextsError::NotOurs { .. })));
        assert_eq!(unmerge("config", &merged.text, "other").unwrap().text, merged.text);
    }

    #[test]
    fn layouts_that_cannot_be_edited_line_by_line_are_refused() {
        let flow = "apiVersion: v1\nclusters: [{name: a, cluster: {server: https://a}}]\n";
        assert!(matches!(merge("config", flow, &lab(false)), Err(ContextsError::Layout { .. })));
        let two = format!("{USERS}---\n{USERS}");
        assert!(matches!(merge("config", &two, &lab(false)), Err(ContextsError::Layout { .. })));
        assert!(matches!(merge("config", "clusters: [", &lab(false)), Err(ContextsError::Unreadable { .. })));
    }

    #[test]
    fn a_new_file_gets_the_labs_entries_and_its_first_context() {
        let merged = merge("config", "", &lab(true)).unwrap();
        let parsed: Parsed = serde_saphyr::from_str(&merged.text).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("lab-karmada"));
        assert!(!merged.text.contains('#'));
        assert_eq!(parsed.list(List::Clusters)[0]["cluster"]["extensions"][0]["extension"]["simulated"], true);
    }
}
