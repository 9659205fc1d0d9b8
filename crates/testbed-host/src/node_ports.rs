//! `host.nodeports`: the rule that keeps the registry's and the Karmada API's NodePorts to loopback and the
//! bridge.
//!
//! MicroK8s' kube-proxy runs without `--nodeport-addresses` (its arguments file,
//! canonical/microk8s `microk8s-resources/default-args/kube-proxy`, sets only `--kubeconfig`,
//! `--cluster-cidr`, `--healthz-bind-address` and `--profiling`), so a NodePort answers on every address of the
//! host; the registry addon's 32000 has no authentication and allows deletes (real-tools.md, "Behaviours
//! that break naive automation", case 15). The rule sits in the raw table's PREROUTING, which the kernel
//! runs before kube-proxy's DNAT turns the NodePort into its pod (and before conntrack), so it sees the
//! port the client asked for whatever proxy mode kube-proxy uses. It drops TCP to those ports on a host
//! address unless the source is one of the host's own addresses (the host itself, in through `lo`) or the
//! packet came in through the bridge (the members). One rule per testbed, carrying its comment; with
//! nft and no iptables, the same rule in `table inet testbed`, chain `prerouting` at priority raw.

use testbed_plan::{Action, Address, Health, Kind, Observed, Op, Owner, Resource, Spec};
use testbed_provider::{ActionLog, ProviderError};
use testbed_steps::{node_ports_rule, raw_prerouting};

use crate::firewall::{self, FirewallTool, NodePortsRule, NFT_TABLE};
use testbed_command::DEFAULT_TIMEOUT;

use crate::provider::{argv, precondition, HostProvider};

const CHAIN: &str = "prerouting";

impl HostProvider {
    /// testbed's rules as the firewall holds them (none when the firewall tool is missing).
    async fn node_ports_rules(&self) -> Result<Vec<NodePortsRule>, ProviderError> {
        let comment = &self.cx.firewall_comment;
        match self.firewall_tool() {
            None => Ok(Vec::new()),
            Some(FirewallTool::Iptables) => {
                let args = ["iptables", "-t", "raw", "-S", "PREROUTING"];
                let out = self.query(&args).await?;
                if !out.success() {
                    return Err(Self::unreadable(&argv(&args), &out));
                }
                Ok(firewall::node_ports_in_listing(&out.stdout, comment))
            }
            Some(FirewallTool::Nft) => Ok(self
                .nft_table()
                .await?
                .map(|t| {
                    t.node_ports.into_iter().filter(|(_, c)| c.as_deref() == Some(comment)).map(|(r, _)| r).collect()
                })
                .unwrap_or_default()),
        }
    }

    pub(crate) async fn observe_node_ports(
        &self,
        wanted: Option<&Resource>,
    ) -> Result<Option<Observed>, ProviderError> {
        let rules = self.node_ports_rules().await?;
        let want = wanted.map(|r| (setting(r, "bridge"), setting(r, "ports")));
        // The wanted rule if it is there, else the first of this testbed's.
        let Some(seen) = rules.iter().find(|r| Some((r.bridge.as_str(), r.ports.as_str())) == want).or(rules.first())
        else {
            return Ok(None);
        };
        let health = match rules.len() {
            1 => Health::Ok,
            n => Health::NeedsRepair(format!("{n} rules carry this testbed's comment; one is kept")),
        };
        let spec: Spec = [("bridge".to_owned(), seen.bridge.clone()), ("ports".to_owned(), seen.ports.clone())]
            .into_iter()
            .collect();
        Ok(Some(Observed {
            address: Address::new(Kind::HostNodeports, &["nodeports"]),
            kind: Kind::HostNodeports,
            member: None,
            owner: Owner::Testbed,
            spec,
            health,
            in_use_by: Vec::new(),
        }))
    }

    /// Deletes this testbed's rules other than the wanted one, then adds the wanted one if it is missing
    /// (a delete wants none).
    pub(crate) async fn apply_node_ports(&self, a: &Action, log: &ActionLog) -> Result<(), ProviderError> {
        let address = &a.address;
        let want = a.desired.as_ref().filter(|_| a.op != Op::Delete).map(|r| NodePortsRule {
            bridge: setting(r, "bridge").into(),
            ports: setting(r, "ports").into(),
            handle: None,
        });
        let same = |r: &NodePortsRule| want.as_ref().is_some_and(|w| w.bridge == r.bridge && w.ports == r.ports);
        let _one_at_a_time = self.firewall_changes.lock().await;
        let comment = &self.cx.firewall_comment;
        match self.firewall_tool() {
            None if want.is_none() => Ok(()),
            None => Err(precondition(
                format!("{address}: neither iptables nor nft is installed, so the registry and the Karmada API cannot be kept off the network"),
                "install iptables (apt-get install iptables), or set [host] expose_node_ports = true to leave them open, then apply again",
            )),
            Some(FirewallTool::Iptables) => {
                let rules = self.node_ports_rules().await?;
                let mut kept = false;
                for r in &rules {
                    if same(r) && !kept {
                        kept = true;
                        continue;
                    }
                    let args = raw_prerouting("-D", &node_ports_rule(&r.bridge, &r.ports, comment));
                    self.run(address, args, log, DEFAULT_TIMEOUT, true).await?;
                }
                if let (Some(w), false) = (&want, kept) {
                    let args = raw_prerouting("-I", &node_ports_rule(&w.bridge, &w.ports, comment));
                    self.run(address, args, log, DEFAULT_TIMEOUT, true).await?;
                }
                Ok(())
            }
            Some(FirewallTool::Nft) => {
                log.note("this host has nft and no iptables: the rule goes into table inet testbed");
                let table = self.nft_table().await?.unwrap_or_default();
                let mine: Vec<&NodePortsRule> =
                    table.node_ports.iter().filter(|(_, c)| c.as_deref() == Some(comment)).map(|(r, _)| r).collect();
                let mut kept = false;
                let mut gone = Vec::new();
                for r in mine {
                    if same(r) && !kept {
                        kept = true;
                    } else {
                        gone.push(r);
                    }
                }
                if want.is_none() && gone.len() == table.rules && table.rules > 0 {
                    // The table is shared by every testbed on the host: it goes with its last rule.
                    return self
                        .run(address, argv(&["nft", "delete", "table", "inet", NFT_TABLE]), log, DEFAULT_TIMEOUT, true)
                        .await
                        .map(drop);
                }
                for r in gone {
                    let handle = r.handle.map(|h| h.to_string()).unwrap_or_default();
                    let args = argv(&["nft", "delete", "rule", "inet", NFT_TABLE, CHAIN, "handle", &handle]);
                    self.run(address, args, log, DEFAULT_TIMEOUT, true).await?;
                }
                let Some(w) = want.filter(|_| !kept) else { return Ok(()) };
                self.run(address, argv(&["nft", "add", "table", "inet", NFT_TABLE]), log, DEFAULT_TIMEOUT, true).await?;
                let body = "{ type filter hook prerouting priority raw ; policy accept ; }";
                let args = argv(&["nft", "add", "chain", "inet", NFT_TABLE, CHAIN, body]);
                self.run(address, args, log, DEFAULT_TIMEOUT, true).await?;
                let (bridge, ports, comment) =
                    (format!("\"{}\"", w.bridge), format!("{{ {} }}", w.ports.replace(',', ", ")), format!("\"{comment}\""));
                let rule = [
                    "nft", "add", "rule", "inet", NFT_TABLE, CHAIN, "iifname", "!=", &bridge, "tcp", "dport", &ports,
                    "fib", "daddr", "type", "local", "fib", "saddr", "type", "!=", "local", "drop", "comment", &comment,
                ];
                self.run(address, argv(&rule), log, DEFAULT_TIMEOUT, true).await.map(drop)
            }
        }
    }
}

fn setting<'a>(r: &'a Resource, key: &str) -> &'a str {
    r.spec.get(key).map(String::as_str).unwrap_or_default()
}
