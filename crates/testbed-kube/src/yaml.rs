//! A small YAML writer for JSON values, in kubectl's block style (a list's dashes at its key's indentation):
//! enough for a kubeconfig, which is maps, lists and scalars. Strings that YAML would read as something else
//! are double-quoted (JSON's escapes are valid YAML escapes). The members' kubeconfigs and the lab's contexts
//! are written with it.

use serde_json::{Map, Value};

/// `v` as a YAML document (a map's keys in the map's order).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    yaml(v, 0, &mut out);
    out
}

/// `items` as a block list whose dashes are at `indent` columns.
pub fn list_items(items: &[Value], indent: usize) -> String {
    let mut out = String::new();
    yaml(&Value::Array(items.to_vec()), indent, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) | Value::Object(_) => unreachable!("not a scalar"),
    }
}

fn string(s: &str) -> String {
    const SPECIAL: [&str; 11] = ["true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", ""];
    let plain = !SPECIAL.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err()
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=+@".contains(&b))
        && !s.contains(": ")
        && !s.ends_with(':');
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

fn empty_collection(v: &Value) -> Option<&'static str> {
    match v {
        Value::Object(m) if m.is_empty() => Some("{}"),
        Value::Array(a) if a.is_empty() => Some("[]"),
        _ => None,
    }
}

fn yaml(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) => yaml_map(m, indent, out),
        Value::Array(items) => {
            let pad = " ".repeat(indent);
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        let mut inner = String::new();
                        yaml_map(m, indent + 2, &mut inner);
                        // The first key goes on the dash's line.
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&inner[indent + 2..]);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        yaml(item, indent + 2, out);
                    }
                    other => {
                        let text = empty_collection(other).map(str::to_owned).unwrap_or_else(|| scalar(other));
                        out.push_str(&format!("{pad}- {text}\n"));
                    }
                }
            }
        }
        other => out.push_str(&format!("{}{}\n", " ".repeat(indent), scalar(other))),
    }
}

fn yaml_map(m: &Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        let key = string(k);
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                out.push_str(&format!("{pad}{key}:\n"));
                yaml(v, indent + 2, out);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push_str(&format!("{pad}{key}:\n"));
                yaml(v, indent, out);
            }
            other => {
                let text = empty_collection(other).map(str::to_owned).unwrap_or_else(|| scalar(other));
                out.push_str(&format!("{pad}{key}: {text}\n"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_quotes_what_would_change_meaning() {
        let v =
            serde_json::json!({"a": "true", "b": "1.5", "c": "x: y", "d": "https://h:1/p", "e": "", "f": [], "g": {}});
        assert_eq!(to_yaml(&v), "a: \"true\"\nb: \"1.5\"\nc: \"x: y\"\nd: https://h:1/p\ne: \"\"\nf: []\ng: {}\n");
    }
}
