//! YAML documents read as Kubernetes reads them, each key and value with the place it is written.
//!
//! Kubernetes reads manifests with Go's YAML 1.1 parser (go-yaml v2): an unquoted `yes`, `no`, `on`,
//! `off`, `y` or `n` is a boolean there, and `0644` is an octal number. The parser here reads them the same
//! way (YAML 1.1 booleans, legacy octal numbers), so a document means what it means to `kubectl`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Localizer, Location, MessageFormatter, Spanned};

/// One value of a document and where it is written: a byte range of the file's text.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub span: Range<usize>,
    pub value: Tree,
}

#[derive(Debug, Clone)]
pub(crate) enum Tree {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping's key and where it is written.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub name: String,
    pub span: Range<usize>,
}

/// A file that is not YAML: what the parser says, at its place.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub span: Range<usize>,
    pub message: String,
}

/// The documents of `text` (separated by `---`), in order; documents that hold nothing (only comments, or
/// `~`) are left out.
pub(crate) fn documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let options = serde_saphyr::options! {
        legacy_octal_numbers: true,
        with_snippet: false,
    };
    let lines = LineStarts::new(text);
    match serde_saphyr::from_multiple_with_options::<Spanned<Raw>>(text, options) {
        Ok(docs) => Ok(docs.into_iter().map(|d| node(d, text, &lines)).collect()),
        Err(e) => {
            let span = e.location().map(|l| lines.span(text, &l)).unwrap_or(0..0);
            let message = e.render_with_options(serde_saphyr::render_options! {
                formatter: &Plain,
                snippets: serde_saphyr::SnippetMode::Off,
            });
            Err(SyntaxError { span, message })
        }
    }
}

impl Node {
    /// The value as JSON, which is what the Kubernetes API takes.
    pub fn to_json(&self) -> Value {
        match &self.value {
            Tree::Null => Value::Null,
            Tree::Bool(b) => Value::Bool(*b),
            Tree::Int(i) => Value::from(*i),
            Tree::UInt(u) => Value::from(*u),
            // The parser refuses non-finite numbers, which JSON cannot hold.
            Tree::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Tree::Str(s) => Value::String(s.clone()),
            Tree::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Tree::Map(entries) => Value::Object(entries.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect()),
        }
    }

    /// The value of key `name`, if this is a mapping that has it.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.entry(name).map(|(_, v)| v)
    }

    /// The key `name` and its value, if this is a mapping that has it.
    pub fn entry(&self, name: &str) -> Option<(&Key, &Node)> {
        match &self.value {
            Tree::Map(entries) => entries.iter().find(|(k, _)| k.name == name).map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Tree::Str(s) => Some(s),
            _ => None,
        }
    }

    /// What kind of value this is, for messages.
    pub fn what(&self) -> &'static str {
        match &self.value {
            Tree::Null => "empty",
            Tree::Bool(_) => "a boolean",
            Tree::Int(_) | Tree::UInt(_) | Tree::Float(_) => "a number",
            Tree::Str(_) => "a string",
            Tree::Seq(_) => "a list",
            Tree::Map(_) => "a mapping",
        }
    }

    /// The node a JSON path leads to, or the deepest one on its way that exists, with the key of the last
    /// mapping step taken (where an object's field is written).
    pub fn find(&self, path: &[Step]) -> (&Node, Option<&Key>) {
        let mut node = self;
        let mut key = None;
        for step in path {
            let next = match (step, &node.value) {
                (Step::Key(name), Tree::Map(_)) => node.entry(name).map(|(k, v)| (v, Some(k))),
                (Step::Index(i), Tree::Seq(items)) => items.get(*i).map(|v| (v, None)),
                _ => None,
            };
            match next {
                Some((v, k)) => {
                    node = v;
                    key = k;
                }
                None => break,
            }
        }
        (node, key)
    }

    /// The word of an unquoted YAML 1.1 boolean other than `true`/`false` (`yes`, `no`, `on`, `off`, `y`,
    /// `n`), as written: a value Kubernetes reads as a boolean where YAML 1.2 tools read a string.
    pub fn bool_word<'t>(&self, text: &'t str) -> Option<&'t str> {
        if !matches!(self.value, Tree::Bool(_)) {
            return None;
        }
        let raw = text.get(self.span.clone())?.trim();
        (!raw.eq_ignore_ascii_case("true") && !raw.eq_ignore_ascii_case("false") && !raw.starts_with(['"', '\'']))
            .then_some(raw)
    }
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// A path as messages write it: `spec.template.spec.containers[0].image`.
pub(crate) fn path_text(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A document as the parser gives it, each value with its place.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
                    items.push(item);
                }
                Ok(Raw::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<Spanned<Raw>>()?));
                }
                Ok(Raw::Map(entries))
            }
        }
        d.deserialize_any(Any)
    }
}

fn node(raw: Spanned<Raw>, text: &str, lines: &LineStarts) -> Node {
    let span = lines.span(text, &raw.referenced);
    let value = match raw.value {
        Raw::Null => Tree::Null,
        Raw::Bool(b) => Tree::Bool(b),
        Raw::Int(i) => Tree::Int(i),
        Raw::UInt(u) => Tree::UInt(u),
        Raw::Float(f) => Tree::Float(f),
        Raw::Str(s) => Tree::Str(s),
        Raw::Seq(items) => Tree::Seq(items.into_iter().map(|i| node(i, text, lines)).collect()),
        Raw::Map(entries) => Tree::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = Key { span: lines.span(text, &k.referenced), name: k.value };
                    (key, node(v, text, lines))
                })
                .collect(),
        ),
    };
    Node { span, value }
}

/// Where each line of a text starts, to turn the parser's line and column into a byte offset where it gives
/// none.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(text: &str) -> Self {
        LineStarts(std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    /// The byte range of a location: its own when the parser knows it, else from line and column (columns
    /// count characters), one character long.
    fn span(&self, text: &str, loc: &Location) -> Range<usize> {
        let exact = loc.span().byte_offset().and_then(|o| usize::try_from(o).ok()).filter(|o| *o <= text.len());
        if let Some(start) = exact.filter(|o| text.is_char_boundary(*o)) {
            let len = loc.span().byte_len().and_then(|l| usize::try_from(l).ok()).unwrap_or(0);
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            return start..end;
        }
        let line = usize::try_from(loc.line()).unwrap_or(0).max(1);
        let Some(&line_start) = self.0.get(line - 1) else { return text.len()..text.len() };
        let col = usize::try_from(loc.column()).unwrap_or(0).max(1);
        let rest = &text[line_start..];
        let start = line_start + rest.char_indices().nth(col - 1).map_or(rest.len(), |(i, _)| i);
        let end = text[start..].chars().next().map_or(start, |c| start + c.len_utf8());
        start..end
    }
}

/// The parser's own message for an error, without its "at line L, column C": the problem gives the place.
struct Plain;

struct NoPlace;

impl Localizer for NoPlace {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _loc: Location) -> Cow<'a, str> {
        base
    }
}

impl MessageFormatter for Plain {
    fn localizer(&self) -> &dyn Localizer {
        &NoPlace
    }

    fn format_message<'a>(&self, err: &'a serde_saphyr::Error) -> Cow<'a, str> {
        serde_saphyr::DefaultMessageFormatter.format_message(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let mut docs = documents(text).unwrap();
        assert_eq!(docs.len(), 1, "{text}");
        docs.remove(0)
    }

    #[test]
    fn keys_and_values_know_their_place() {
        let text = "# c\n---\nkind: ConfigMap\ndata:\n  a: \"x\"\n  list:\n  - on\n";
        let doc = one(text);
        let (key, value) = doc.get("data").unwrap().entry("a").unwrap();
        assert_eq!(&text[key.span.clone()], "a");
        assert_eq!(&text[value.span.clone()], "\"x\"");
        let (on, _) = doc.find(&[Step::Key("data".into()), Step::Key("list".into()), Step::Index(0)]);
        assert_eq!(on.bool_word(text), Some("on"));
        assert_eq!(doc.span.start, text.find("kind").unwrap());
    }

    #[test]
    fn yaml_1_1_booleans_and_octal_numbers_as_kubernetes_reads_them() {
        let doc = one("a: yes\nb: \"yes\"\nc: Off\nd: 0644\ne: true\nf: n\n");
        let json = doc.to_json();
        assert_eq!(json, serde_json::json!({"a": true, "b": "yes", "c": false, "d": 420, "e": true, "f": false}));
        let text = "a: yes\nb: true\n";
        let doc = one(text);
        assert_eq!(doc.get("a").unwrap().bool_word(text), Some("yes"));
        assert_eq!(doc.get("b").unwrap().bool_word(text), None);
    }

    #[test]
    fn empty_documents_are_left_out_and_errors_have_a_place() {
        assert_eq!(documents("# only\n---\n---\n~\n---\na: 1\n").unwrap().len(), 1);
        let text = "a: 1\n---\nb: [1,\n";
        let e = documents(text).unwrap_err();
        assert!(!e.message.contains("line"), "{}", e.message);
        assert_eq!(crate::source::line_col(text, e.span.start).0, 3, "{e:?}");
        let e = documents("a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("duplicate"), "{}", e.message);
    }

    #[test]
    fn paths_read_as_kubectl_explain_writes_them() {
        let p = [Step::Key("spec".into()), Step::Key("containers".into()), Step::Index(0), Step::Key("image".into())];
        assert_eq!(path_text(&p), "spec.containers[0].image");
    }
}
