//! The bridge's forwarding rules: which tool the host has, and reading what is in force.
//!
//! With `iptables` on the host (legacy or the nf_tables variant), testbed's three rules go into the filter
//! table's `INPUT` and `FORWARD` chains, inserted at the top and tagged `-m comment --comment testbed:NAME` (NAME: the file's `name`); a
//! rule is looked for with `iptables -C`, which exits 0 when a matching rule exists and 1 with "Bad rule
//! (does a matching rule exist in that chain?)" when none does (iptables 1.8.9, seen under both backends;
//! legacy iptables says "No chain/target/match by that name" for a missing chain). Exit 2 is a usage error
//! and 4 a resource problem such as not being root ("Could not fetch rule set generation id: Permission
//! denied (you must be root)").
//!
//! A host with `nft` and no `iptables` gets the same rules in testbed's own table, `inet testbed`, with
//! base chains `input` and `forward` (priority 0, policy accept) and `comment "testbed"` on each rule;
//! `nft -j list table inet testbed` reads them back (exit 1 and "Error: No such file or directory" when the
//! table does not exist). Note that in nftables an accept in one table does not overrule a drop in another
//! table's base chain on the same hook: on such a host the drop must be lifted where it is made.

use testbed_command::Output;

/// The three rules, as (iptables chain, direction flag): the host reaches into the bridge, and the bridge
/// is forwarded both ways.
pub const RULES: [(&str, &str); 3] = [("INPUT", "-i"), ("FORWARD", "-i"), ("FORWARD", "-o")];

/// The nftables table testbed uses on hosts without iptables.
pub const NFT_TABLE: &str = "testbed";

/// Which program the host's firewall is managed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallTool {
    Iptables,
    Nft,
}

/// An iptables rule for `bridge`; with a `comment`, it matches testbed's comment (without one, the check
/// finds rules someone else added, as the shell scripts testbed replaces did).
pub fn iptables_rule(op: &str, chain: &str, dir: &str, bridge: &str, comment: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = ["iptables", op, chain, dir, bridge].iter().map(|s| s.to_string()).collect();
    if let Some(comment) = comment {
        v.extend(["-m", "comment", "--comment", comment].iter().map(|s| s.to_string()));
    }
    v.extend(["-j", "ACCEPT"].iter().map(|s| s.to_string()));
    v
}

/// What an `iptables -C` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Present,
    Absent,
    /// Neither: not root, a lock held, a usage error. The output says which.
    Unknown,
}

pub fn classify_check(out: &Output) -> Check {
    match out.code {
        0 => Check::Present,
        1 if absent_message(&out.stderr) => Check::Absent,
        _ => Check::Unknown,
    }
}

/// Whether iptables' message says the rule (or its chain) is not there.
pub fn absent_message(stderr: &str) -> bool {
    stderr.contains("does a matching rule exist") || stderr.contains("No chain/target/match by that name")
}

/// Bridges that have a rule with `comment` in `iptables -S CHAIN` output (lines such as
/// `-A FORWARD -i lxdbr0 -m comment --comment "testbed:lab" -j ACCEPT`).
pub fn commented_bridges(listing: &str, comment: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let commented = words.windows(2).any(|w| w[0] == "--comment" && w[1].trim_matches('"') == comment);
        if !commented {
            continue;
        }
        if let Some(w) = words.windows(2).find(|w| w[0] == "-i" || w[0] == "-o") {
            if !out.iter().any(|b| b == w[1]) {
                out.push(w[1].to_owned());
            }
        }
    }
    out
}

/// One rule of `table inet testbed`, from `nft -j` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRule {
    pub chain: String,
    /// `iifname` or `oifname`.
    pub key: String,
    pub bridge: String,
    pub handle: u64,
    /// Its comment, if it has one (`testbed:<name>` on a testbed's).
    pub comment: Option<String>,
}

impl NftRule {
    /// Whether it carries `comment`.
    pub fn carries(&self, comment: &str) -> bool {
        self.comment.as_deref() == Some(comment)
    }
}

impl NftRule {
    /// The iptables-style (chain, direction) this rule is, if it is one of the three.
    pub fn as_pair(&self) -> Option<(&'static str, &'static str)> {
        match (self.chain.as_str(), self.key.as_str()) {
            ("input", "iifname") => Some(RULES[0]),
            ("forward", "iifname") => Some(RULES[1]),
            ("forward", "oifname") => Some(RULES[2]),
            _ => None,
        }
    }
}

/// The nft chain and match key of an iptables-style (chain, direction).
pub fn nft_names(chain: &str, dir: &str) -> (&'static str, &'static str) {
    let c = if chain == "INPUT" { "input" } else { "forward" };
    let k = if dir == "-i" { "iifname" } else { "oifname" };
    (c, k)
}

/// Parses `nft -j list table inet testbed`: every rule that matches an interface name and accepts.
pub fn parse_nft(json: &str) -> Result<Vec<NftRule>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("unexpected nft -j output: {e}"))?;
    let items = v.get("nftables").and_then(|x| x.as_array()).ok_or("unexpected nft -j output: no nftables list")?;
    let mut out = Vec::new();
    for item in items {
        let Some(rule) = item.get("rule") else { continue };
        let chain = rule.get("chain").and_then(|c| c.as_str()).unwrap_or_default().to_owned();
        let handle = rule.get("handle").and_then(|h| h.as_u64()).unwrap_or_default();
        let comment = rule.get("comment").and_then(|c| c.as_str()).map(str::to_owned);
        let exprs = rule.get("expr").and_then(|e| e.as_array()).cloned().unwrap_or_default();
        let accepts = exprs.iter().any(|e| e.get("accept").is_some());
        let matched = exprs.iter().find_map(|e| {
            let m = e.get("match")?;
            let key = m.get("left")?.get("meta")?.get("key")?.as_str()?;
            let right = m.get("right")?.as_str()?;
            (matches!(key, "iifname" | "oifname") && m.get("op").and_then(|o| o.as_str()).unwrap_or("==") == "==")
                .then(|| (key.to_owned(), right.to_owned()))
        });
        if let (true, Some((key, bridge))) = (accepts, matched) {
            out.push(NftRule { chain, key, bridge, handle, comment });
        }
    }
    Ok(out)
}

/// One `host.nodeports` rule as the firewall holds it: TCP to `ports` on a host address is dropped unless
/// it comes from a local address or in through `bridge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePortsRule {
    pub bridge: String,
    /// As iptables' `--dports` takes them: `32000,32443`.
    pub ports: String,
    /// The nft rule's handle (none under iptables, where a rule is deleted by its words).
    pub handle: Option<u64>,
}

/// The `host.nodeports` rules carrying `comment` in `iptables -t raw -S PREROUTING` output, whose lines
/// read (iptables 1.8.9, which quotes a comment holding a `:`)
/// `-A PREROUTING ! -i lxdbr0 -p tcp -m multiport --dports 32000,32443 -m addrtype --dst-type LOCAL -m addrtype ! --src-type LOCAL -m comment --comment "testbed:lab" -j DROP`.
pub fn node_ports_in_listing(listing: &str, comment: &str) -> Vec<NodePortsRule> {
    let mut out = Vec::new();
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |flag: &str| words.windows(2).find(|w| w[0] == flag).map(|w| w[1].trim_matches('"'));
        if after("--comment") != Some(comment) || after("-j") != Some("DROP") {
            continue;
        }
        let bridge = words.windows(3).find(|w| w[0] == "!" && w[1] == "-i").map(|w| w[2]);
        if let (Some(bridge), Some(ports)) = (bridge, after("--dports")) {
            out.push(NodePortsRule { bridge: bridge.to_owned(), ports: ports.to_owned(), handle: None });
        }
    }
    out
}

/// What `nft -j list table inet testbed` holds: testbed's forwarding rules, its NodePort rules, and how
/// many rules there are in all (the table goes only when the last of them does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftTable {
    pub forwarding: Vec<NftRule>,
    /// NodePort rules, each with its comment.
    pub node_ports: Vec<(NodePortsRule, Option<String>)>,
    pub rules: usize,
}

/// Parses `nft -j list table inet testbed` whole.
pub fn parse_nft_table(json: &str) -> Result<NftTable, String> {
    let forwarding = parse_nft(json)?;
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("unexpected nft -j output: {e}"))?;
    let items = v.get("nftables").and_then(|x| x.as_array()).cloned().unwrap_or_default();
    let mut node_ports = Vec::new();
    let mut rules = 0;
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        rules += 1;
        let exprs = rule.get("expr").and_then(|e| e.as_array()).cloned().unwrap_or_default();
        if !exprs.iter().any(|e| e.get("drop").is_some()) {
            continue;
        }
        let matches: Vec<&serde_json::Value> = exprs.iter().filter_map(|e| e.get("match")).collect();
        let bridge = matches.iter().find_map(|m| {
            let key = m.get("left")?.get("meta")?.get("key")?.as_str()?;
            (key == "iifname" && m.get("op")?.as_str()? == "!=").then(|| m.get("right")?.as_str().map(str::to_owned))?
        });
        let ports = matches.iter().find_map(|m| {
            let payload = m.get("left")?.get("payload")?;
            if payload.get("protocol")?.as_str()? != "tcp" || payload.get("field")?.as_str()? != "dport" {
                return None;
            }
            let right = m.get("right")?;
            let list: Vec<u64> = match right.get("set") {
                Some(set) => set.as_array()?.iter().filter_map(|p| p.as_u64()).collect(),
                None => vec![right.as_u64()?],
            };
            Some(list.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
        });
        if let (Some(bridge), Some(ports)) = (bridge, ports) {
            let handle = rule.get("handle").and_then(|h| h.as_u64());
            let comment = rule.get("comment").and_then(|c| c.as_str()).map(str::to_owned);
            node_ports.push((NodePortsRule { bridge, ports, handle }, comment));
        }
    }
    Ok(NftTable { forwarding, node_ports, rules })
}

/// Whether `nft` said the table is not there.
pub fn nft_table_absent(out: &Output) -> bool {
    out.code == 1 && out.stderr.contains("No such file or directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list table inet testbed` as nftables 1.0.6 printed it for the three rules on lxdbr0.
    pub const NFT_THREE_RULES: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "testbed", "handle": 1}}, {"chain": {"family": "inet", "table": "testbed", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"chain": {"family": "inet", "table": "testbed", "name": "input", "handle": 2, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}, {"rule": {"family": "inet", "table": "testbed", "chain": "forward", "handle": 4, "comment": "testbed:testbed", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lxdbr0"}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "testbed", "chain": "forward", "handle": 5, "comment": "testbed:testbed", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "lxdbr0"}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "testbed", "chain": "input", "handle": 3, "comment": "testbed:testbed", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lxdbr0"}}, {"accept": null}]}}]}"#;

    #[test]
    fn nft_listing_gives_the_three_rules_with_handles() {
        let rules = parse_nft(NFT_THREE_RULES).unwrap();
        let mut pairs: Vec<_> = rules.iter().map(|r| (r.as_pair().unwrap(), r.bridge.as_str(), r.handle)).collect();
        pairs.sort();
        assert_eq!(
            pairs,
            vec![(("FORWARD", "-i"), "lxdbr0", 4), (("FORWARD", "-o"), "lxdbr0", 5), (("INPUT", "-i"), "lxdbr0", 3)]
        );
        assert!(rules.iter().all(|r| r.carries("testbed:testbed")));
        assert!(parse_nft("not json").is_err());
    }

    /// The table as nftables 1.0.6 printed it (seen in a network namespace on the development machine)
    /// after `nft add rule inet testbed prerouting iifname != "lxdbr0" tcp dport { 32000, 32443 } fib daddr
    /// type local fib saddr type != local drop comment "testbed:lab"`.
    pub const NFT_NODE_PORTS: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "testbed", "handle": 1}}, {"chain": {"family": "inet", "table": "testbed", "name": "prerouting", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}}, {"rule": {"family": "inet", "table": "testbed", "chain": "prerouting", "handle": 3, "comment": "testbed:lab", "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "lxdbr0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [32000, 32443]}}}, {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"match": {"op": "!=", "left": {"fib": {"result": "type", "flags": ["saddr"]}}, "right": "local"}}, {"drop": null}]}}]}"#;

    #[test]
    fn nft_node_port_rules_are_read_with_their_ports_and_handle() {
        let t = parse_nft_table(NFT_NODE_PORTS).unwrap();
        assert!(t.forwarding.is_empty());
        assert_eq!(t.rules, 1);
        assert_eq!(
            t.node_ports,
            vec![(
                NodePortsRule { bridge: "lxdbr0".into(), ports: "32000,32443".into(), handle: Some(3) },
                Some("testbed:lab".into())
            )]
        );
        let whole = parse_nft_table(NFT_THREE_RULES).unwrap();
        assert_eq!((whole.forwarding.len(), whole.node_ports.len(), whole.rules), (3, 0, 3));
    }

    #[test]
    fn iptables_listing_gives_this_testbeds_node_port_rules() {
        // As iptables 1.8.9 (nf_tables) printed it, in a network namespace on the development machine.
        let s = "-P PREROUTING ACCEPT\n-A PREROUTING ! -i lxdbr0 -p tcp -m multiport --dports 32000,32443 -m addrtype --dst-type LOCAL -m addrtype ! --src-type LOCAL -m comment --comment \"testbed:lab\" -j DROP\n-A PREROUTING ! -i br1 -p tcp -m multiport --dports 32000 -m addrtype --dst-type LOCAL -m addrtype ! --src-type LOCAL -m comment --comment \"testbed:other\" -j DROP\n";
        assert_eq!(
            node_ports_in_listing(s, "testbed:lab"),
            vec![NodePortsRule { bridge: "lxdbr0".into(), ports: "32000,32443".into(), handle: None }]
        );
        assert_eq!(node_ports_in_listing(s, "testbed:other")[0].bridge, "br1");
        assert!(node_ports_in_listing(s, "testbed:none").is_empty());
    }

    #[test]
    fn iptables_answers_are_told_apart() {
        assert_eq!(classify_check(&Output::ok("")), Check::Present);
        let absent = Output::failed(1, "iptables: Bad rule (does a matching rule exist in that chain?).\n");
        assert_eq!(classify_check(&absent), Check::Absent);
        let legacy_no_chain = Output::failed(1, "iptables: No chain/target/match by that name.\n");
        assert_eq!(classify_check(&legacy_no_chain), Check::Absent);
        let not_root = Output::failed(
            4,
            "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n",
        );
        assert_eq!(classify_check(&not_root), Check::Unknown);
        let usage = Output::failed(2, "iptables v1.8.9 (nf_tables): option \"--comment\" requires an argument\n");
        assert_eq!(classify_check(&usage), Check::Unknown);
    }

    #[test]
    fn listing_finds_the_bridges_of_this_testbeds_rules_only() {
        let s = "-P FORWARD DROP\n-A FORWARD -i docker0 -j ACCEPT\n-A FORWARD -i oldbr -m comment --comment \"testbed:lab\" -j ACCEPT\n-A FORWARD -o oldbr -m comment --comment \"testbed:lab\" -j ACCEPT\n-A FORWARD -i otherbr -m comment --comment \"testbed:other\" -j ACCEPT\n";
        assert_eq!(commented_bridges(s, "testbed:lab"), vec!["oldbr".to_owned()]);
        assert_eq!(commented_bridges(s, "testbed:other"), vec!["otherbr".to_owned()]);
    }
}
