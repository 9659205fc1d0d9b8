//! Faults at the seams: a program call, an LXD API request or a Kubernetes/Karmada API request that fails
//! as the real one fails, once or always, named in `TESTBED_SIM_FAIL`; random ones and random latencies
//! drawn from `TESTBED_SIM_SEED`.
//!
//! What `TESTBED_SIM_FAIL` takes (comma-separated; each may end in `=always`, default `=once`):
//! - `ADDRESS` (`lxd_instance.member1`): the first request or program call that changes that resource;
//! - `program:NAME[.SUB][@WHERE]` (`program:snap.install@member2`, `program:iptables@host`): a call of the
//!   program NAME whose first argument is SUB, on the host or in member WHERE (anywhere if left out);
//! - `lxd:METHOD:PATH` (`lxd:PUT:/1.0/instances/member1/state`): an LXD API request with that method whose
//!   path starts with PATH;
//! - `kube:METHOD:PATH[@WHERE]` (`kube:GET:/api/v1/nodes@member2`,
//!   `kube:PATCH:/apis/cluster.karmada.io/v1alpha1/clusters/member1@karmada`): a request with that method
//!   whose path starts with PATH, to the API server WHERE (`host` for the host MicroK8s', `karmada` for
//!   Karmada's, or a member's name; any if left out);
//! - `random:P` (`random:0.05`): each program call fails with probability P, decided per call from the
//!   seed and the call itself (where it runs, its arguments, and how many times the same call ran before),
//!   so a seed fails the same calls whatever order parallel actions make them in.
//!
//! A fault that fires answers with the program's own way of failing (its message and exit code, below),
//! LXD's error envelope, or kube-apiserver's 500 `Status` for an etcd that timed out, so the providers meet what they would meet on a real host. A once-fault is spent
//! in the state file: the next run on the same machine does not see it again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often a named fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Times {
    Once,
    Always,
}

/// What a named fault matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The first change to a resource (the providers' ownership and the catalogue name it).
    Address(String),
    /// A program call.
    Program { name: String, sub: Option<String>, at: Option<String> },
    /// An LXD API request.
    Lxd { method: String, path: String },
    /// A request to a Kubernetes API server: the host MicroK8s' (`host`), Karmada's (`karmada`) or a
    /// member's (its name); any when `at` is `None`.
    Kube { method: String, path: String, at: Option<String> },
}

/// One fault of `TESTBED_SIM_FAIL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// As written (without `=once`): the key its spending is recorded under.
    pub text: String,
    pub target: Target,
    pub times: Times,
}

/// Why an entry of `TESTBED_SIM_FAIL` is not one.
pub type BadEntry = String;

/// What a fault may name in this run: the file's resources and members (and the host, Karmada, and the
/// programs the simulated machine runs). A fault naming anything else would never fire.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// Every resource address the file implies.
    pub addresses: BTreeSet<String>,
    /// The file's members.
    pub members: BTreeSet<String>,
}

/// The programs the simulated machine runs: on the host all of them, in a member `snap`, `microk8s` and
/// the file programs.
pub const PROGRAMS: &[&str] = &[
    "apt-get",
    "snap",
    "lxd",
    "incus",
    "curl",
    "tar",
    "karmadactl",
    "sysctl",
    "iptables",
    "microk8s",
    "mkdir",
    "touch",
    "rm",
    "ls",
    "cat",
];

impl Names {
    /// Where a program runs or a Kubernetes API server answers: `host`, (`karmada`,) or a member.
    fn check_where(&self, at: Option<&str>, karmada: bool) -> Result<(), BadEntry> {
        let Some(at) = at else { return Ok(()) };
        if at == "host" || (karmada && at == "karmada") || self.members.contains(at) {
            return Ok(());
        }
        let fixed: &[&str] = if karmada { &["host", "karmada"] } else { &["host"] };
        let places: Vec<&str> = fixed.iter().copied().chain(self.members.iter().map(String::as_str)).collect();
        Err(format!("`@{at}` names nothing in this world; WHERE is one of {}", places.join(", ")))
    }

    fn check_member(&self, name: &str, prefix: bool) -> Result<(), BadEntry> {
        let known = if prefix { self.members.iter().any(|m| m.starts_with(name)) } else { self.members.contains(name) };
        if known {
            return Ok(());
        }
        let members: Vec<&str> = self.members.iter().map(String::as_str).collect();
        Err(format!("instance {name} is not a member of this file; its members are {}", members.join(", ")))
    }
}

impl Fault {
    /// Whether what the fault names exists in this world (`names`); the error says what does.
    pub fn check(&self, names: &Names) -> Result<(), BadEntry> {
        match &self.target {
            Target::Address(a) if names.addresses.contains(a) => Ok(()),
            Target::Address(a) => {
                let all: Vec<&str> = names.addresses.iter().map(String::as_str).collect();
                Err(format!("{a} is not a resource of this file; its resources are {}", all.join(", ")))
            }
            Target::Program { name, at, .. } => {
                if !PROGRAMS.contains(&name.as_str()) {
                    return Err(format!(
                        "the simulated machine runs no program {name}; it runs {}",
                        PROGRAMS.join(", ")
                    ));
                }
                names.check_where(at.as_deref(), false)
            }
            Target::Lxd { path, .. } => {
                let Some(rest) = path.strip_prefix("/1.0") else {
                    return Err(format!("{path} is not a path of LXD's API, which starts with /1.0"));
                };
                match rest.strip_prefix("/instances/") {
                    // A path that ends in the name matches every instance whose name starts with it.
                    Some(instance) => match instance.split_once('/') {
                        Some((name, _)) => names.check_member(name, false),
                        None => names.check_member(instance, true),
                    },
                    None => Ok(()),
                }
            }
            Target::Kube { path, at, .. } => {
                if !(path == "/api" || path.starts_with("/api/") || path.starts_with("/apis")) {
                    return Err(format!("{path} is not a path of the Kubernetes API, which starts with /api or /apis"));
                }
                names.check_where(at.as_deref(), true)
            }
        }
    }
}

impl Fault {
    /// Parses one entry; `is_address` says whether a string is a resource address.
    pub fn parse(entry: &str, is_address: impl Fn(&str) -> bool) -> Result<Fault, BadEntry> {
        let (text, times) = match entry.rsplit_once('=') {
            Some((t, "always")) => (t, Times::Always),
            Some((t, "once")) => (t, Times::Once),
            Some((_, other)) => return Err(format!("`={other}` is neither `=once` nor `=always`")),
            None => (entry, Times::Once),
        };
        let target = if let Some(rest) = text.strip_prefix("program:") {
            let (call, at) = match rest.split_once('@') {
                Some((c, at)) if !at.is_empty() => (c, Some(at.to_owned())),
                Some(_) => return Err("`@` must be followed by `host` or a member's name".into()),
                None => (rest, None),
            };
            let (name, sub) = match call.split_once('.') {
                Some((n, s)) => (n, Some(s.to_owned())),
                None => (call, None),
            };
            if name.is_empty() {
                return Err("a program fault names the program: program:NAME[.SUB][@WHERE]".into());
            }
            Target::Program { name: name.to_owned(), sub, at }
        } else if let Some(rest) = text.strip_prefix("lxd:") {
            let Some((method, path)) = rest.split_once(':').filter(|(m, p)| !m.is_empty() && p.starts_with('/')) else {
                return Err("an LXD fault is lxd:METHOD:PATH, e.g. lxd:PUT:/1.0/instances/member1/state".into());
            };
            Target::Lxd { method: method.to_ascii_uppercase(), path: path.to_owned() }
        } else if let Some(rest) = text.strip_prefix("kube:") {
            let form = "a Kubernetes API fault is kube:METHOD:PATH[@WHERE], e.g. kube:GET:/api/v1/nodes@member1 (WHERE: host, karmada or a member)";
            let Some((method, request)) = rest.split_once(':').filter(|(m, p)| !m.is_empty() && p.starts_with('/'))
            else {
                return Err(form.into());
            };
            let (path, at) = match request.split_once('@') {
                Some((p, at)) if !at.is_empty() => (p, Some(at.to_owned())),
                Some(_) => return Err(form.into()),
                None => (request, None),
            };
            Target::Kube { method: method.to_ascii_uppercase(), path: path.to_owned(), at }
        } else if is_address(text) {
            Target::Address(text.to_owned())
        } else {
            return Err(
                "this is not a resource address (e.g. lxd_instance.member1), program:NAME[.SUB][@WHERE], lxd:METHOD:PATH, kube:METHOD:PATH[@WHERE] or random:P"
                    .into(),
            );
        };
        Ok(Fault { text: text.to_owned(), target, times })
    }

    fn matches_program(&self, at: &str, name: &str, args: &[&str]) -> bool {
        match &self.target {
            Target::Program { name: n, sub, at: w } => {
                n == name
                    && sub.as_deref().is_none_or(|s| args.first() == Some(&s))
                    && w.as_deref().is_none_or(|w| w == at)
            }
            _ => false,
        }
    }
}

/// The faults of one run, and what they have spent.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub named: Vec<Fault>,
    /// `random:P`.
    pub random: Option<f64>,
    /// `TESTBED_SIM_SEED`: with it, each program call's time varies (0.5 to 1.5 times its usual), and
    /// `random:P` draws from it.
    pub seed: Option<u64>,
    /// How many times each call has run in this process (what makes a repeated call a different draw).
    seen: BTreeMap<String, u32>,
}

/// Faults are equal when they fail the same calls (how many calls ran is not part of that).
impl PartialEq for Faults {
    fn eq(&self, other: &Faults) -> bool {
        (&self.named, self.random.map(f64::to_bits), self.seed)
            == (&other.named, other.random.map(f64::to_bits), other.seed)
    }
}

impl Eq for Faults {}

impl Faults {
    pub fn new(named: Vec<Fault>, random: Option<f64>, seed: Option<u64>) -> Faults {
        Faults { named, random, seed, seen: BTreeMap::new() }
    }

    /// The fault for a program call on `at` (`host` or a member), if one fires; `spent` holds the once-faults
    /// that fired already and gains the one that fires now.
    pub fn program(
        &mut self,
        at: &str,
        name: &str,
        args: &[&str],
        spent: &mut std::collections::BTreeSet<String>,
    ) -> Option<String> {
        let call = format!("{at}$ {name} {}", args.join(" "));
        let n = self.seen.entry(call.clone()).or_default();
        *n += 1;
        let nth = *n;
        if let Some(f) = self.named.iter().find(|f| f.matches_program(at, name, args)) {
            if f.times == Times::Always || spent.insert(f.text.clone()) {
                return Some(f.text.clone());
            }
        }
        let p = self.random?;
        let draw = unit(mix(self.seed.unwrap_or(0), &format!("{call}#{nth}")));
        (draw < p).then(|| format!("random:{p}"))
    }

    /// The fault for an LXD request, if one fires.
    pub fn lxd(&self, method: &str, path: &str, spent: &mut std::collections::BTreeSet<String>) -> Option<String> {
        self.request(spent, |t| match t {
            Target::Lxd { method: m, path: p } => m.eq_ignore_ascii_case(method) && path.starts_with(p.as_str()),
            _ => false,
        })
    }

    /// The fault for a request to the Kubernetes API server `at` (`host`, `karmada` or a member), if one
    /// fires.
    pub fn kube(
        &self,
        at: &str,
        method: &str,
        path: &str,
        spent: &mut std::collections::BTreeSet<String>,
    ) -> Option<String> {
        self.request(spent, |t| match t {
            Target::Kube { method: m, path: p, at: w } => {
                m.eq_ignore_ascii_case(method) && path.starts_with(p.as_str()) && w.as_deref().is_none_or(|w| w == at)
            }
            _ => false,
        })
    }

    /// The first named fault `matches` picks, if it fires: always, or once (then it joins `spent`).
    fn request(
        &self,
        spent: &mut std::collections::BTreeSet<String>,
        matches: impl Fn(&Target) -> bool,
    ) -> Option<String> {
        let f = self.named.iter().find(|f| matches(&f.target))?;
        (f.times == Times::Always || spent.insert(f.text.clone())).then(|| f.text.clone())
    }

    /// A program call's time with the seed's variation (none without a seed).
    pub fn latency(&self, at: &str, argv: &[&str], took: Duration) -> Duration {
        let Some(seed) = self.seed else { return took };
        let factor = 0.5 + unit(mix(seed, &format!("latency {at}$ {}", argv.join(" "))));
        took.mul_f64(factor)
    }
}

/// How a program fails when its fault fires: its exit code and what it prints, as the real program prints
/// a common failure of its own (snapd unreachable, dpkg's lock held, DNS down, a truncated archive, the
/// xtables lock, an API server that does not answer).
pub fn program_failure(name: &str, args: &[&str], fault: &str) -> (i32, String) {
    let why = format!(" (simulated: TESTBED_SIM_FAIL={fault})");
    let (code, text) = match name {
        "snap" => (1, format!("error: cannot communicate with server: Post \"http://localhost/v2/snaps/{}\": dial unix /run/snapd.socket: connect: connection refused", args.get(1).unwrap_or(&""))),
        "apt-get" => (100, "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?".to_owned()),
        "curl" => (6, "curl: (6) Could not resolve host: github.com".to_owned()),
        "tar" => (2, "gzip: stdin: unexpected end of file\ntar: Unexpected EOF in archive\ntar: Error is not recoverable: exiting now".to_owned()),
        "iptables" => (4, "Another app is currently holding the xtables lock. Perhaps you want to use the -w option?".to_owned()),
        "nft" => (1, "Error: Could not process rule: Device or resource busy".to_owned()),
        "sysctl" => (255, format!("sysctl: permission denied on key \"{}\"", args.last().and_then(|a| a.split('=').next()).unwrap_or(""))),
        "microk8s" => (1, "Error from server (ServiceUnavailable): the server is currently unable to handle the request".to_owned()),
        "karmadactl" => (1, "error: Get \"https://127.0.0.1:16443/api?timeout=32s\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_owned()),
        "lxd" | "incus" => (1, "Error: LXD still not running after 60s timeout".to_owned()),
        other => (1, format!("{other}: Input/output error")),
    };
    (code, format!("{text}{why}\n"))
}

/// LXD's answer when its fault fires: an internal error, as LXD 5.0 sends one when its database is busy.
pub fn lxd_failure(fault: &str) -> (u16, String) {
    (500, format!("Failed to begin transaction: context deadline exceeded (simulated: TESTBED_SIM_FAIL={fault})"))
}

/// A Kubernetes API server's answer when its fault fires: etcd did not answer in time, the error
/// `kubectl` shows as `Error from server: etcdserver: request timed out` when etcd has lost its quorum or
/// its disk is too slow. kube-apiserver passes that error up unconverted, as a 500 `Status` with etcd's
/// text ([`testbed_kube::fake::FakeFailure::unconverted`] cites the source).
pub fn kube_failure(fault: &str) -> String {
    format!("etcdserver: request timed out (simulated: TESTBED_SIM_FAIL={fault})")
}

/// A 64-bit mix of the seed and a call (FNV-1a over the bytes, then splitmix64's finaliser): stable across
/// runs, builds and Rust versions.
fn mix(seed: u64, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A draw in [0, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn parse(s: &str) -> Result<Fault, BadEntry> {
        Fault::parse(s, |a| a.starts_with("lxd_instance."))
    }

    #[test]
    fn entries_parse_or_say_what_they_should_be() {
        let f = parse("program:snap.install@member2=always").unwrap();
        assert_eq!(
            f.target,
            Target::Program { name: "snap".into(), sub: Some("install".into()), at: Some("member2".into()) }
        );
        assert_eq!((f.text.as_str(), f.times), ("program:snap.install@member2", Times::Always));
        assert_eq!(
            parse("lxd:put:/1.0/instances/member1/state").unwrap().target,
            Target::Lxd { method: "PUT".into(), path: "/1.0/instances/member1/state".into() }
        );
        assert_eq!(parse("lxd_instance.member1").unwrap().target, Target::Address("lxd_instance.member1".into()));
        let f = parse("kube:patch:/apis/cluster.karmada.io/v1alpha1/clusters/member1@karmada=always").unwrap();
        assert_eq!(
            f.target,
            Target::Kube {
                method: "PATCH".into(),
                path: "/apis/cluster.karmada.io/v1alpha1/clusters/member1".into(),
                at: Some("karmada".into())
            }
        );
        assert_eq!(
            (f.text.as_str(), f.times),
            ("kube:patch:/apis/cluster.karmada.io/v1alpha1/clusters/member1@karmada", Times::Always)
        );
        assert_eq!(
            parse("kube:GET:/api/v1/nodes").unwrap().target,
            Target::Kube { method: "GET".into(), path: "/api/v1/nodes".into(), at: None }
        );
        for bad in [
            "program:",
            "program:snap@",
            "lxd:PUT",
            "lxd:PUT:instances",
            "nonsense",
            "lxd_instance.m1=twice",
            "kube:GET",
            "kube::/api/v1/nodes",
            "kube:GET:api/v1/nodes",
            "kube:GET:/api/v1/nodes@",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("kube:GET:/api/v1/nodes@").unwrap_err();
        assert!(e.contains("kube:METHOD:PATH[@WHERE]"), "{e}");
        assert!(parse("nonsense").unwrap_err().contains("kube:METHOD:PATH[@WHERE]"));
    }

    #[test]
    fn a_kube_fault_fails_requests_to_its_server_by_method_and_path_prefix() {
        let mut spent = BTreeSet::new();
        let f = Faults::new(vec![parse("kube:GET:/api/v1/nodes@member2").unwrap()], None, None);
        assert!(f.kube("member1", "GET", "/api/v1/nodes", &mut spent).is_none(), "another member");
        assert!(f.kube("host", "GET", "/api/v1/nodes", &mut spent).is_none(), "the host's API");
        assert!(f.kube("member2", "PATCH", "/api/v1/nodes/member2", &mut spent).is_none(), "another method");
        assert!(f.kube("member2", "GET", "/api/v1/namespaces", &mut spent).is_none(), "another path");
        assert!(f.lxd("GET", "/api/v1/nodes", &mut spent).is_none(), "not an LXD fault");
        assert_eq!(
            f.kube("member2", "get", "/api/v1/nodes/member2", &mut spent).as_deref(),
            Some("kube:GET:/api/v1/nodes@member2"),
            "the path is a prefix, the method any case"
        );
        assert!(spent.contains("kube:GET:/api/v1/nodes@member2"), "spent where the state file keeps it");
        assert!(f.kube("member2", "GET", "/api/v1/nodes", &mut spent).is_none(), "spent");

        let f = Faults::new(vec![parse("kube:PATCH:/apis/cluster.karmada.io=always").unwrap()], None, None);
        for at in ["karmada", "host", "member1", "karmada"] {
            assert!(f.kube(at, "PATCH", "/apis/cluster.karmada.io/v1alpha1/clusters/m1", &mut spent).is_some(), "{at}");
        }
        let message = kube_failure("kube:GET:/api/v1/nodes@member2");
        assert_eq!(
            message,
            "etcdserver: request timed out (simulated: TESTBED_SIM_FAIL=kube:GET:/api/v1/nodes@member2)"
        );
    }

    #[test]
    fn a_once_fault_fires_once_and_an_always_fault_every_time() {
        let mut spent = BTreeSet::new();
        let mut f = Faults::new(vec![parse("program:snap.install@member2").unwrap()], None, None);
        assert!(f.program("member1", "snap", &["install", "microk8s"], &mut spent).is_none(), "another member");
        assert!(f.program("member2", "snap", &["list"], &mut spent).is_none(), "another subcommand");
        assert!(f.program("member2", "snap", &["install", "microk8s"], &mut spent).is_some());
        assert!(f.program("member2", "snap", &["install", "microk8s"], &mut spent).is_none(), "spent");
        let mut f = Faults::new(vec![parse("program:curl=always").unwrap()], None, None);
        assert!((0..3).all(|_| f.program("host", "curl", &["-fsSL"], &mut spent).is_some()));
    }

    #[test]
    fn a_seed_fails_the_same_calls_in_any_order() {
        let calls: Vec<(String, Vec<&str>)> =
            (0..200).map(|i| (format!("member{}", i % 7), vec!["microk8s", "status"])).collect();
        let failed = |order: &mut dyn Iterator<Item = &(String, Vec<&str>)>| {
            let mut f = Faults::new(vec![], Some(0.1), Some(42));
            let mut spent = BTreeSet::new();
            let mut out: BTreeMap<String, u32> = BTreeMap::new();
            for (at, argv) in order {
                if f.program(at, argv[0], &argv[1..], &mut spent).is_some() {
                    *out.entry(at.clone()).or_default() += 1;
                }
            }
            out
        };
        let forwards = failed(&mut calls.iter());
        let backwards = failed(&mut calls.iter().rev());
        assert_eq!(forwards, backwards);
        let total: u32 = forwards.values().sum();
        assert!((5..=40).contains(&total), "about 10% of 200 calls fail: {total}");
        // Which of the calls fail, by position: another seed picks others.
        let picked = |seed: u64| -> Vec<usize> {
            let mut f = Faults::new(vec![], Some(0.1), Some(seed));
            let mut spent = BTreeSet::new();
            (0..calls.len())
                .filter(|&i| f.program(&calls[i].0, "microk8s", &["status"], &mut spent).is_some())
                .collect()
        };
        assert_eq!(picked(42), picked(42));
        assert_ne!(picked(42), picked(43));
    }

    #[test]
    fn a_seed_varies_latency_reproducibly() {
        let f = Faults::new(vec![], None, Some(7));
        let t = f.latency("host", &["snap", "install", "microk8s"], Duration::from_secs(100));
        assert_eq!(t, f.latency("host", &["snap", "install", "microk8s"], Duration::from_secs(100)));
        assert!(t >= Duration::from_secs(50) && t < Duration::from_secs(150), "{t:?}");
        let none = Faults::default();
        assert_eq!(none.latency("host", &["snap"], Duration::from_secs(100)), Duration::from_secs(100));
    }

    #[test]
    fn a_failing_program_says_what_the_real_one_says() {
        let (code, text) = program_failure("apt-get", &["install", "-y", "lxd"], "program:apt-get");
        assert_eq!(code, 100);
        assert!(text.starts_with("E: Could not get lock") && text.contains("TESTBED_SIM_FAIL=program:apt-get"));
        assert_eq!(program_failure("iptables", &[], "x").0, 4);
    }
}
