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
/// `-A FORWARD -i lxdbr0 -m comment --comment testbed:lab -j ACCEPT`).
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
        let s = "-P FORWARD DROP\n-A FORWARD -i docker0 -j ACCEPT\n-A FORWARD -i oldbr -m comment --comment testbed:lab -j ACCEPT\n-A FORWARD -o oldbr -m comment --comment testbed:lab -j ACCEPT\n-A FORWARD -i otherbr -m comment --comment testbed:other -j ACCEPT\n";
        assert_eq!(commented_bridges(s, "testbed:lab"), vec!["oldbr".to_owned()]);
        assert_eq!(commented_bridges(s, "testbed:other"), vec!["otherbr".to_owned()]);
    }
}
