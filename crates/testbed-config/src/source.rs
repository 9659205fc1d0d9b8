//! Where things are in the file: byte spans of keys and values, and line:column for messages.

use std::ops::Range;

/// One step of a path into the document: a table key or an array index.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The parsed document kept for its spans, next to the text for line:column lookups.
pub struct SourceMap {
    doc: Option<toml_edit::Document<String>>,
    text: String,
}

impl SourceMap {
    pub fn new(text: &str) -> Self {
        SourceMap { doc: toml_edit::Document::parse(text.to_owned()).ok(), text: text.to_owned() }
    }

    /// The span of the value at `path`; falls back to the nearest enclosing item that exists, then to the
    /// start of the file.
    pub fn value_span(&self, path: &[Seg<'_>]) -> Range<usize> {
        self.find(path, false)
    }

    /// The span of the value at `path`, only if the file writes that value (None when a default applies).
    pub fn try_value_span(&self, path: &[Seg<'_>]) -> Option<Range<usize>> {
        let doc = self.doc.as_ref()?;
        let mut node = Node::Table(doc.as_table());
        for seg in path {
            node = node.child(*seg)?.node;
        }
        node.span()
    }

    /// The span of the key that names the value at `path` (for "unknown key" style messages).
    pub fn key_span(&self, path: &[Seg<'_>]) -> Range<usize> {
        self.find(path, true)
    }

    fn find(&self, path: &[Seg<'_>], want_key: bool) -> Range<usize> {
        let Some(doc) = &self.doc else { return 0..0 };
        let mut node = Node::Table(doc.as_table());
        let mut best: Range<usize> = 0..0;
        for (i, seg) in path.iter().enumerate() {
            let Some(step) = node.child(*seg) else {
                return best;
            };
            let last = i + 1 == path.len();
            if last && want_key {
                if let Some(s) = step.key_span.clone() {
                    return s;
                }
            }
            if let Some(s) = step.node.span().or(step.key_span) {
                best = s;
            }
            node = step.node;
        }
        best
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.text, offset)
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A string the document writes, key or value, with where it is: for checks that hold for every string.
#[derive(Debug, Clone)]
pub struct Written {
    /// Where it is, in TOML's dotted form (`lxd.profile`, `members[1].name`); a key's path ends with itself.
    pub path: String,
    /// The string as TOML decodes it (escapes resolved).
    pub text: String,
    pub span: Range<usize>,
    pub is_key: bool,
}

impl SourceMap {
    /// Every key and every string value the document writes, in document order.
    pub fn written_strings(&self) -> Vec<Written> {
        let mut out = Vec::new();
        if let Some(doc) = &self.doc {
            walk_table(doc.as_table(), "", &mut out);
        }
        out.sort_by_key(|w| w.span.start);
        out
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk_table(table: &toml_edit::Table, path: &str, out: &mut Vec<Written>) {
    for (key, item) in table.iter().filter_map(|(k, _)| table.get_key_value(k)) {
        let here = join(path, key.get());
        if let Some(span) = key.span() {
            out.push(Written { path: here.clone(), text: key.get().to_owned(), span, is_key: true });
        }
        walk_item(item, &here, out);
    }
}

fn walk_item(item: &toml_edit::Item, path: &str, out: &mut Vec<Written>) {
    match item {
        toml_edit::Item::Value(v) => walk_value(v, path, out),
        toml_edit::Item::Table(t) => walk_table(t, path, out),
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                walk_table(t, &format!("{path}[{i}]"), out);
            }
        }
        toml_edit::Item::None => {}
    }
}

fn walk_value(value: &toml_edit::Value, path: &str, out: &mut Vec<Written>) {
    match value {
        toml_edit::Value::String(s) => {
            if let Some(span) = s.span() {
                out.push(Written { path: path.to_owned(), text: s.value().clone(), span, is_key: false });
            }
        }
        toml_edit::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                walk_value(v, &format!("{path}[{i}]"), out);
            }
        }
        toml_edit::Value::InlineTable(t) => {
            for (key, item) in t.iter().filter_map(|(k, _)| t.get_key_value(k)) {
                let here = join(path, key.get());
                if let Some(span) = key.span() {
                    out.push(Written { path: here.clone(), text: key.get().to_owned(), span, is_key: true });
                }
                walk_item(item, &here, out);
            }
        }
        _ => {}
    }
}

/// 1-based line and column (in characters) of a byte offset into `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A position in the document: toml_edit spreads tables, arrays of tables and values over three types.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

struct Step<'a> {
    node: Node<'a>,
    key_span: Option<Range<usize>>,
}

impl<'a> Node<'a> {
    fn span(&self) -> Option<Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn child(self, seg: Seg<'_>) -> Option<Step<'a>> {
        match (self, seg) {
            (Node::Item(toml_edit::Item::Table(t)), Seg::Key(k)) | (Node::Table(t), Seg::Key(k)) => {
                let (key, item) = t.get_key_value(k)?;
                Some(Step { node: Node::Item(item), key_span: key.span() })
            }
            (Node::Item(toml_edit::Item::Value(v)), _) => Node::Value(v).child(seg),
            (Node::Value(toml_edit::Value::InlineTable(t)), Seg::Key(k)) => {
                let (key, value) = t.get_key_value(k)?;
                let node = match value {
                    toml_edit::Item::Value(v) => Node::Value(v),
                    other => Node::Item(other),
                };
                Some(Step { node, key_span: key.span() })
            }
            (Node::Item(toml_edit::Item::ArrayOfTables(a)), Seg::Index(n)) => {
                Some(Step { node: Node::Table(a.get(n)?), key_span: None })
            }
            (Node::Value(toml_edit::Value::Array(a)), Seg::Index(n)) => {
                Some(Step { node: Node::Value(a.get(n)?), key_span: None })
            }
            _ => None,
        }
    }
}
