//! Plans as people and programs read them: text, JSON (see docs/plan-json.md) and DOT.

use serde::Serialize;

use crate::plan::{Action, Change, Op, Plan, Summary};

/// The version of the JSON format `testbed plan --json` prints.
pub const FORMAT_VERSION: &str = "1.1";

/// How [`text_styled`] shows a plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextStyle {
    /// ANSI colours on the symbols: `+` green, `~` yellow, `-` red, `-/+` magenta.
    pub color: bool,
    /// The plan is `testbed destroy`'s: it says so in destroy's words.
    pub destroy: bool,
}

/// One line per action with its symbol and reason, then the summary line.
pub fn text(plan: &Plan) -> String {
    text_styled(plan, TextStyle::default())
}

/// The ANSI colour of an operation's symbol.
pub fn op_color(op: Op) -> &'static str {
    match op {
        Op::Create => "32",
        Op::Update => "33",
        Op::Delete => "31",
        Op::Replace => "35",
    }
}

/// [`text`], coloured or in destroy's words.
pub fn text_styled(plan: &Plan, style: TextStyle) -> String {
    let mut out = String::new();
    for n in &plan.notes {
        out.push_str(&format!("Note: {n}\n"));
    }
    if !plan.notes.is_empty() {
        out.push('\n');
    }
    if plan.is_empty() {
        out.push_str("No changes.\n");
        return out;
    }
    let actions = plan.actions();
    let width = actions.iter().map(|a| a.address.as_str().len()).max().unwrap_or(0);
    if style.destroy {
        out.push_str("testbed will destroy these resources, in reverse dependency order:\n\n");
    } else {
        out.push_str("testbed will perform these actions, in dependency order:\n\n");
    }
    for a in actions {
        let op = a.shown_op();
        let symbol = format!("{:>3}", op.symbol());
        let symbol = if style.color { format!("\x1b[{}m{symbol}\x1b[0m", op_color(op)) } else { symbol };
        let reason = match (&a.cascade, style.destroy) {
            (Some(c), true) => format!("will be destroyed, with {c}"),
            (None, true) => "will be destroyed".to_owned(),
            (_, false) => format!("{}: {}", half_name(a), a.reason),
        };
        out.push_str(&format!("  {symbol} {:<width$}  {reason}\n", a.address.as_str(), width = width));
    }
    out.push('\n');
    out.push_str(&summary_line(&plan.summary()));
    out.push('\n');
    out
}

/// The operation's name as the plan shows it: a replace's halves say which half they are.
fn half_name(a: &Action) -> &'static str {
    match (a.replace, a.op) {
        (true, Op::Delete) => "replace, delete",
        (true, _) => "replace, create",
        (false, op) => op.name(),
    }
}

/// `Plan: N to create, N to update, N to replace, N to destroy.` or `No changes.`
pub fn summary_line(s: &Summary) -> String {
    if s.total() == 0 {
        return "No changes.".to_owned();
    }
    format!("Plan: {} to create, {} to update, {} to replace, {} to destroy.", s.create, s.update, s.replace, s.delete)
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    simulated: Option<&'a [&'a str]>,
    actions: Vec<JsonAction<'a>>,
    summary: Summary,
    notes: &'a [String],
}

#[derive(Serialize)]
struct JsonAction<'a> {
    address: &'a str,
    action: Op,
    /// Which half of a replace (`delete` or `create`); absent for other actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    half: Option<Op>,
    depends_on: Vec<&'a str>,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    member: Option<&'a str>,
    #[serde(skip_serializing_if = "<[Change]>::is_empty")]
    changes: &'a [Change],
}

/// The plan as one JSON object (pretty-printed, with a final newline).
pub fn json(plan: &Plan) -> String {
    json_doc(plan, None)
}

/// [`json`] with `"simulated"`: the layers that ran on the simulated machine (empty when all are real).
pub fn json_simulated(plan: &Plan, simulated: &[&str]) -> String {
    json_doc(plan, Some(simulated))
}

fn json_doc(plan: &Plan, simulated: Option<&[&str]>) -> String {
    let actions = plan
        .order()
        .into_iter()
        .map(|n| {
            let a = &plan.graph[n];
            JsonAction {
                address: a.address.as_str(),
                action: a.shown_op(),
                half: a.replace.then_some(a.op),
                depends_on: plan.depends_on(n).into_iter().map(|d| d.as_str()).collect(),
                reason: &a.reason,
                member: a.member.as_deref(),
                changes: &a.changes,
            }
        })
        .collect();
    let doc =
        JsonPlan { format_version: FORMAT_VERSION, simulated, actions, summary: plan.summary(), notes: &plan.notes };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// A node's DOT identifier: its address, and for a replace's delete half the address with `/delete`.
fn dot_id(a: &Action) -> String {
    if a.replace && a.op == Op::Delete {
        format!("{}/delete", a.address)
    } else {
        a.address.to_string()
    }
}

/// The plan's DAG in Graphviz DOT: one node per action, an edge from each action to those that wait on it.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::from("digraph testbed {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n");
    let order = plan.order();
    for &n in &order {
        let a = &plan.graph[n];
        let color = match a.shown_op() {
            Op::Create => "darkgreen",
            Op::Update => "goldenrod",
            Op::Replace => "darkorange",
            Op::Delete => "firebrick",
        };
        out.push_str(&format!(
            "  \"{id}\" [label=\"{sym} {addr}\", color={color}];\n",
            id = dot_id(a),
            addr = a.address,
            sym = a.shown_op().symbol()
        ));
    }
    for &n in &order {
        let mut from: Vec<String> =
            plan.graph.neighbors_directed(n, petgraph::Direction::Incoming).map(|d| dot_id(&plan.graph[d])).collect();
        from.sort();
        for d in from {
            out.push_str(&format!("  \"{d}\" -> \"{}\";\n", dot_id(&plan.graph[n])));
        }
    }
    out.push_str("}\n");
    out
}
