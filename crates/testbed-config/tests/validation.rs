//! One small file per validation rule, with a snapshot of the exact `file:line:col: message` lines it produces.
//!
//! Each snapshot holds the input with line numbers, then the problem lines, so a reviewer checks every
//! `line:col` at a glance. Update with `INSTA_UPDATE=always cargo test -p testbed-config`, then read every changed
//! `.snap` file.

use std::path::Path;

const FILE: &str = "testbed.toml";

/// The one-line problems `text` produces; panics if it validates.
fn problems(text: &str) -> Vec<String> {
    match testbed_config::parse(Path::new(FILE), text) {
        Ok(_) => panic!("expected problems, but this validated:\n{text}"),
        Err(e) => e.lines(),
    }
}

/// The input with line numbers, a separator, then the problem lines exactly as `ConfigError::lines` gives them:
/// the reviewer checks every `line:col` against the numbered input.
fn report(text: &str, lines: &[String]) -> String {
    let mut out = String::new();
    for (i, l) in text.lines().enumerate() {
        out.push_str(format!("{:>3} | {l}", i + 1).trim_end());
        out.push('\n');
    }
    out.push_str("----- problems -----\n");
    out.push_str(&lines.join("\n"));
    out
}

/// Snapshots the problems of `text` (after the numbered input) and returns them.
macro_rules! check {
    ($text:expr) => {{
        let text: &str = $text;
        let lines = problems(text);
        insta::with_settings!({ omit_expression => true }, {
            insta::assert_snapshot!(report(text, &lines));
        });
        lines
    }};
}

/// The `line:col` of the `nth` (0-based) occurrence of `needle` in `text`, as the messages count them.
fn pos(text: &str, needle: &str, nth: usize) -> String {
    let offset = text.match_indices(needle).nth(nth).unwrap_or_else(|| panic!("{needle:?} #{nth} not in input")).0;
    let (line, col) = testbed_config::source::line_col(text, offset);
    format!("{line}:{col}")
}

/// Asserts that exactly one problem starts at the `nth` occurrence of `needle`.
fn assert_at(lines: &[String], text: &str, needle: &str, nth: usize) {
    let want = format!("{FILE}:{}: ", pos(text, needle, nth));
    let hits = lines.iter().filter(|l| l.starts_with(&want)).count();
    assert_eq!(hits, 1, "expected one problem at {want}, got:\n{}", lines.join("\n"));
}

// ---------------------------------------------------------------------------------------------------------
// Member names

#[test]
fn duplicate_member_names() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member1"
api_port = 16442
"#;
    let lines = check!(text);
    // The second `name = "member1"` is on line 6; its value starts at column 8 (after `name = `). The first is
    // named as line 2, column 8.
    assert_eq!(lines, ["testbed.toml:6:8: duplicate member name \"member1\" (first defined at testbed.toml:2:8)"]);
    assert_at(&lines, text, "\"member1\"", 1);
}

#[test]
fn invalid_member_names() {
    let text = r#"[[members]]
name = "1member"
api_port = 16441

[[members]]
name = "member_2"
api_port = 16442

[[members]]
name = "member-3-with-a-name-that-is-far-too-long-for-an-lxd-instance-name"
api_port = 16444

[[members]]
name = "-member4"
api_port = 16445

[[members]]
name = "member5-"
api_port = 16446

[[members]]
name = ""
api_port = 16447
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert_at(&lines, text, "\"1member\"", 0);
    assert_at(&lines, text, "\"member_2\"", 0);
    assert_at(&lines, text, "\"member-3-", 0);
}

/// A member's name is also its Karmada cluster name (`karmadactl join NAME`), which Karmada requires to be a
/// lowercase RFC 1123 label of at most 48 characters (karmada pkg/apis/cluster/validation ValidateClusterName).
/// "Member1" passes the LXD rule the config crate checks today, then fails at join time.
#[test]
fn member_names_must_be_valid_karmada_cluster_names() {
    for name in ["Member1", &format!("m{}", "x".repeat(48))] {
        let text = format!("[[members]]\nname = \"{name}\"\napi_port = 16441\n");
        let lines = problems(&text);
        assert_eq!(lines.len(), 1, "{name}: {lines:#?}");
        assert!(lines[0].starts_with("testbed.toml:2:8: "), "{}", lines[0]);
    }
}

/// The testbed name is the value of the `testbed/owner` label on Kubernetes objects: a label value must
/// start and end with a letter or digit.
#[test]
fn testbed_name_must_be_a_label_value() {
    for name in ["lab-", "_lab", "-"] {
        let text = format!("name = \"{name}\"\n");
        let lines = problems(&text);
        assert_eq!(lines.len(), 1, "{name}: {lines:#?}");
        assert!(lines[0].starts_with("testbed.toml:1:8: "), "{}", lines[0]);
        assert!(lines[0].contains("must start and end with a letter or digit"), "{}", lines[0]);
    }
    assert!(testbed_config::parse(Path::new(FILE), "name = \"lab_2-x\"\n").is_ok());
}

// ---------------------------------------------------------------------------------------------------------
// Host ports

#[test]
fn port_clash_between_two_members() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member2"
api_port = 16441
"#;
    let lines = check!(text);
    assert_eq!(
        lines,
        ["testbed.toml:7:12: host port 16441 is used twice: by the API proxy of member \"member2\" and by the API proxy of member \"member1\" at testbed.toml:3:12"]
    );
}

#[test]
fn member_port_clashes_with_host_microk8s_api() {
    let text = r#"[[members]]
name = "member1"
api_port = 16443
"#;
    let lines = check!(text);
    assert_at(&lines, text, "16443", 0);
}

#[test]
fn member_port_clashes_with_registry_port_set_in_file() {
    let text = r#"[registry]
port = 32000

[[members]]
name = "member1"
api_port = 32000
"#;
    let lines = check!(text);
    assert_at(&lines, text, "32000", 1);
    assert!(lines[0].ends_with("at testbed.toml:2:8"), "{}", lines[0]);
}

/// The registry is not in the file: its port is the default, and no place in the file defines it.
#[test]
fn member_port_clashes_with_default_registry_port() {
    let text = r#"[[members]]
name = "member1"
api_port = 32000
"#;
    let lines = check!(text);
    assert_at(&lines, text, "32000", 0);
}

#[test]
fn member_port_clashes_with_karmada_nodeport() {
    let text = r#"[[members]]
name = "member1"
api_port = 32443
"#;
    let lines = check!(text);
    assert_at(&lines, text, "32443", 0);
}

#[test]
fn proxy_port_clashes_with_member_api_port() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441

[[proxies]]
name = "prometheus"
member = "member1"
host_port = 16441
target = "tcp:10.1.33.11:9090"
"#;
    let lines = check!(text);
    assert_at(&lines, text, "16441", 1);
}

#[test]
fn ports_below_1024() {
    let text = r#"[registry]
port = 80

[karmada]
api_port = 443

[[members]]
name = "member1"
api_port = 0

[[proxies]]
name = "web"
member = "member1"
host_port = 1023
target = "tcp:10.1.33.11:80"
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_at(&lines, text, "80", 0);
    assert_at(&lines, text, "443", 0);
    assert_at(&lines, text, "1023", 0);
}

/// Ports are `u16`: a larger number is a type error from the TOML deserializer, reported as a syntax error
/// with the place of the value.
#[test]
fn port_above_65535() {
    let text = r#"[[members]]
name = "member1"
api_port = 70000
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with(&format!("{FILE}:{}: ", pos(text, "70000", 0))), "{}", lines[0]);
}

#[test]
fn negative_port() {
    let text = r#"[[members]]
name = "member1"
api_port = -1
"#;
    let lines = check!(text);
    assert!(lines[0].starts_with(&format!("{FILE}:{}: ", pos(text, "-1", 0))), "{}", lines[0]);
}

#[test]
fn port_written_as_a_string() {
    let text = r#"[[members]]
name = "member1"
api_port = "16441"
"#;
    let lines = check!(text);
    assert!(lines[0].starts_with(&format!("{FILE}:{}: ", pos(text, "\"16441\"", 0))), "{}", lines[0]);
}

// ---------------------------------------------------------------------------------------------------------
// Keys and syntax

#[test]
fn unknown_key_at_top_level() {
    let text = r#"version = 2

[[members]]
name = "member1"
api_port = 16441
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("testbed.toml:1:1: "), "{}", lines[0]);
    assert!(lines[0].contains("`version`"), "{}", lines[0]);
}

#[test]
fn unknown_key_in_members() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member2"
api_prot = 16442
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("testbed.toml:7:1: "), "{}", lines[0]);
    assert!(lines[0].contains("`api_prot`"), "{}", lines[0]);
}

#[test]
fn unknown_key_in_a_section() {
    let text = r#"[karmada]
version = "v1.15.9"
mode = "pull"
"#;
    let lines = check!(text);
    assert!(lines[0].starts_with("testbed.toml:3:1: "), "{}", lines[0]);
    assert!(lines[0].contains("`mode`"), "{}", lines[0]);
}

#[test]
fn unknown_section() {
    let text = r#"[member]
name = "member1"
api_port = 16441
"#;
    let lines = check!(text);
    assert!(lines[0].contains("`member`"), "{}", lines[0]);
}

#[test]
fn missing_required_key() {
    let text = r#"[[members]]
name = "member1"
"#;
    let lines = check!(text);
    assert!(lines[0].contains("api_port"), "{}", lines[0]);
}

#[test]
fn unknown_join_mode() {
    let text = r#"[karmada]
join_mode = "pul"
"#;
    let lines = check!(text);
    assert!(lines[0].starts_with(&format!("{FILE}:{}: ", pos(text, "\"pul\"", 0))), "{}", lines[0]);
}

#[test]
fn malformed_toml_unclosed_table_header() {
    let text = r#"[[members]
name = "member1"
api_port = 16441
"#;
    let lines = check!(text);
    assert!(lines[0].starts_with("testbed.toml:1:"), "{}", lines[0]);
}

#[test]
fn malformed_toml_unquoted_string() {
    let text = r#"[[members]]
name = member1
api_port = 16441
"#;
    let lines = check!(text);
    assert!(lines[0].starts_with(&format!("{FILE}:{}: ", pos(text, "member1", 0))), "{}", lines[0]);
}

#[test]
fn malformed_toml_duplicate_key() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441
api_port = 16442
"#;
    let lines = check!(text);
    assert!(lines[0].starts_with("testbed.toml:4:"), "{}", lines[0]);
}

// ---------------------------------------------------------------------------------------------------------
// Network

#[test]
fn member_ipv4_outside_subnet() {
    let text = r#"[lxd]
ipv4_address = "10.123.45.1/24"

[[members]]
name = "member1"
api_port = 16441
ipv4 = "10.123.46.20"
"#;
    let lines = check!(text);
    assert_at(&lines, text, "\"10.123.46.20\"", 0);
}

#[test]
fn member_ipv4_is_the_bridge_address() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441
ipv4 = "10.123.45.1"
"#;
    let lines = check!(text);
    assert_at(&lines, text, "\"10.123.45.1\"", 0);
}

#[test]
fn member_ipv4_is_network_or_broadcast_address() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441
ipv4 = "10.123.45.0"

[[members]]
name = "member2"
api_port = 16442
ipv4 = "10.123.45.255"
"#;
    check!(text);
}

#[test]
fn member_ipv4_duplicated() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441
ipv4 = "10.123.45.20"

[[members]]
name = "member2"
api_port = 16442
ipv4 = "10.123.45.20"
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 1);
    assert_at(&lines, text, "\"10.123.45.20\"", 1);
}

#[test]
fn member_ipv4_not_an_address() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441
ipv4 = "10.123.45.20/24"
"#;
    check!(text);
}

#[test]
fn bridge_address_without_prefix_or_not_a_host() {
    let text = r#"[lxd]
ipv4_address = "10.123.45.1"
"#;
    check!(text);
    let text = r#"[lxd]
ipv4_address = "10.123.45.0/24"
"#;
    let lines = problems(text);
    assert_eq!(
        lines,
        ["testbed.toml:2:16: [lxd] ipv4_address \"10.123.45.0/24\" is the network or broadcast address, not a host address"]
    );
}

#[test]
fn bridge_name_invalid_or_too_long() {
    let text = r#"[lxd]
bridge = "lxd_br0"
"#;
    check!(text);
    let lines = problems("[lxd]\nbridge = \"testbed-bridge-01\"\n");
    assert_eq!(
        lines,
        ["testbed.toml:2:10: [lxd] bridge \"testbed-bridge-01\" is longer than 15 characters (a Linux interface name)"]
    );
}

// ---------------------------------------------------------------------------------------------------------
// Karmada

#[test]
fn unknown_karmada_version() {
    let text = r#"[karmada]
version = "v1.99.0"
"#;
    let lines = check!(text);
    assert_at(&lines, text, "\"v1.99.0\"", 0);
}

/// A version testbed does not know may run when the file lists its images, but testbed cannot tell how it
/// switches cluster failover on: `failover = true` is refused there, at the key.
#[test]
fn failover_on_an_unknown_version_is_refused_at_its_key() {
    let mut text = String::from("[karmada]\nversion = \"v1.99.0\"\nfailover = true\n");
    for name in ["karmada-controller-manager", "karmada-scheduler", "karmada-webhook", "karmada-aggregated-apiserver"] {
        text.push_str(&format!("\n[[images]]\nsource = \"docker.io/karmada/{name}:v1.99.0\"\n"));
    }
    for name in ["kube-apiserver:v1.36.2", "kube-controller-manager:v1.36.2", "etcd:3.6.8-0"] {
        text.push_str(&format!("\n[[images]]\nsource = \"registry.k8s.io/{name}\"\n"));
    }
    let lines = problems(&text);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("testbed.toml:3:12: testbed does not know how karmada v1.99.0 switches cluster failover on (it knows v1.15.x, v1.16.x, v1.17.x, v1.18.x, v1.19.x)"),
        "{}",
        lines[0]
    );
    assert!(testbed_config::parse(Path::new(FILE), &text.replace("failover = true", "failover = false")).is_ok());
}

#[test]
fn karmada_version_not_a_release_tag() {
    let text = r#"[karmada]
version = "1.15"
"#;
    check!(text);
}

/// The problems' hints, in order.
fn hints(text: &str) -> Vec<String> {
    match testbed_config::parse(Path::new(FILE), text) {
        Ok(_) => panic!("expected problems, but this validated:\n{text}"),
        Err(testbed_config::ConfigError::Invalid { problems, .. }) => {
            problems.into_iter().map(|p| p.help.unwrap_or_default()).collect()
        }
        Err(e) => panic!("expected validation problems, got {e}"),
    }
}

/// The control-plane images of a version without a table entry, listed by the file (karmada-scheduler is missing,
/// and the `etcd` entry is side-loaded, which does not count); member1 pulls, so the karmada-agent is needed
/// too.
const UNKNOWN_VERSION_SOME_IMAGES: &str = r#"[karmada]
version = "v1.99.0"

[[members]]
name = "member1"
api_port = 16441
join_mode = "pull"

[[images]]
name = "karmada-controller-manager"
source = "docker.io/karmada/karmada-controller-manager:v1.99.0"

[[images]]
source = "docker.io/karmada/karmada-webhook:v1.99.0"

[[images]]
source = "docker.io/karmada/karmada-aggregated-apiserver:v1.99.0"

[[images]]
source = "registry.k8s.io/kube-apiserver:v1.35.0"

[[images]]
source = "registry.k8s.io/kube-controller-manager:v1.35.0"

[[images]]
source = "registry.k8s.io/etcd:3.6.5-0"
sideload = true
"#;

#[test]
fn unknown_version_with_images_missing_from_the_list() {
    let text = UNKNOWN_VERSION_SOME_IMAGES;
    let lines = check!(text);
    assert_eq!(
        lines,
        ["testbed.toml:2:11: karmada version \"v1.99.0\" has no image table in this testbed (known: v1.15.x, v1.16.x, v1.17.x, v1.18.x, v1.19.x), and [[images]] does not list its images: missing karmada-scheduler, etcd, karmada-agent"]
    );
    assert_eq!(
        hints(text),
        ["list each missing image as a registry image, with the tag karmadactl v1.99.0 uses, e.g.\n\n[[images]]\nname = \"karmada-scheduler\"\nsource = \"docker.io/karmada/karmada-scheduler:v1.99.0\"\n\nor use a release of one of the listed minors (any patch release of a listed minor works)"]
    );
}

/// A version without a table entry validates when the file lists every control-plane image (alpine is
/// optional, the karmada-agent needed only for pull mode), and those entries are the control plane's images,
/// in the component order, whatever their sources' repositories are called.
#[test]
fn unknown_version_with_every_image_listed_validates() {
    let text = r#"[karmada]
version = "v1.99.0"

[[images]]
source = "docker.io/karmada/karmada-scheduler:v1.99.0"

[[images]]
source = "docker.io/karmada/karmada-controller-manager:v1.99.0"

[[images]]
source = "docker.io/karmada/karmada-webhook:v1.99.0"

[[images]]
source = "docker.io/karmada/karmada-aggregated-apiserver:v1.99.0"

[[images]]
name = "kube-apiserver"
source = "registry.example/k8s/apiserver:v1.35.0"

[[images]]
source = "registry.k8s.io/kube-controller-manager:v1.35.0"

[[images]]
source = "registry.k8s.io/etcd:3.6.5-0"

[[images]]
source = "docker.io/library/nginx:1.27"
"#;
    let config = testbed_config::parse(Path::new(FILE), text).unwrap_or_else(|e| panic!("{}", e.lines().join("\n")));
    let images: Vec<(String, String, bool)> = testbed_config::control_plane_images(&config.file)
        .into_iter()
        .map(|i| (i.name.clone(), i.target("localhost:32000"), i.pull_mode_only))
        .collect();
    let want = [
        ("karmada-controller-manager", "localhost:32000/karmada-controller-manager:v1.99.0"),
        ("karmada-scheduler", "localhost:32000/karmada-scheduler:v1.99.0"),
        ("karmada-webhook", "localhost:32000/karmada-webhook:v1.99.0"),
        ("karmada-aggregated-apiserver", "localhost:32000/karmada-aggregated-apiserver:v1.99.0"),
        ("kube-apiserver", "localhost:32000/kube-apiserver:v1.35.0"),
        ("kube-controller-manager", "localhost:32000/kube-controller-manager:v1.35.0"),
        ("etcd", "localhost:32000/etcd:3.6.5-0"),
    ]
    .map(|(n, t)| (n.to_owned(), t.to_owned(), false));
    assert_eq!(images, want);

    // A pull-mode member needs the karmada-agent as well.
    let pull = format!("{text}\n[[members]]\nname = \"member1\"\napi_port = 16441\njoin_mode = \"pull\"\n");
    let lines = problems(&pull);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].ends_with("missing karmada-agent"), "{}", lines[0]);
    let with_agent = format!("{pull}\n[[images]]\nsource = \"docker.io/karmada/karmada-agent:v1.99.1\"\n");
    let config = testbed_config::parse(Path::new(FILE), &with_agent).unwrap();
    let agent = testbed_config::control_plane_images(&config.file).pop().unwrap();
    assert_eq!((agent.name.as_str(), agent.pull_mode_only), ("karmada-agent", true));
    assert_eq!(agent.target("10.123.45.1:32000"), "10.123.45.1:32000/karmada-agent:v1.99.1");
}

/// With a version that has a table, the release images come from the table, and a file entry of a release
/// image's name is still refused.
#[test]
fn known_version_refuses_a_listed_release_image() {
    let text = r#"[[images]]
name = "etcd"
source = "registry.k8s.io/etcd:3.6.5-0"
"#;
    let lines = problems(text);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("testbed.toml:2:8: image name \"etcd\" is taken by the Karmada v1.19.0 release image"));
}

#[test]
fn karmada_data_dir_relative() {
    let text = r#"[karmada]
data_dir = "etc/karmada"
"#;
    check!(text);
}

// ---------------------------------------------------------------------------------------------------------
// Registry mirrors

#[test]
fn mirrors_parse_as_inline_tables_and_as_sections() {
    let text = r#"[registry.mirrors]
"docker.io" = { endpoint = "http://127.0.0.1:5000", insecure = true }
"registry.k8s.io" = { endpoint = "https://mirror.example:8443" }

[registry.mirrors."localhost:5000"]
endpoint = "https://10.0.0.5"
insecure = false
"#;
    let config = testbed_config::parse(Path::new(FILE), text).unwrap_or_else(|e| panic!("{}", e.lines().join("\n")));
    let mirrors: Vec<String> = config
        .file
        .registry
        .mirrors
        .iter()
        .map(|(host, m)| format!("{host} {:?} insecure={}", m.endpoint_parts(), m.insecure))
        .collect();
    assert_eq!(
        mirrors,
        [
            r#"docker.io Some((false, "127.0.0.1:5000")) insecure=true"#,
            r#"localhost:5000 Some((true, "10.0.0.5")) insecure=false"#,
            r#"registry.k8s.io Some((true, "mirror.example:8443")) insecure=false"#,
        ]
    );
    let docker = testbed_config::source_endpoint(&config.file.registry, "docker.io");
    assert_eq!((docker.host.as_str(), docker.https, docker.mirrored), ("127.0.0.1:5000", false, true));
    let quay = testbed_config::source_endpoint(&config.file.registry, "quay.io");
    assert_eq!((quay.host.as_str(), quay.https, quay.mirrored), ("quay.io", true, false));
}

#[test]
fn mirror_keys_that_are_not_registry_hosts() {
    let text = r#"[registry.mirrors]
"Docker.io" = { endpoint = "https://mirror.example" }
"https://quay.io" = { endpoint = "https://mirror.example" }
"docker.io/library" = { endpoint = "https://mirror.example" }
"localhost:99999" = { endpoint = "https://mirror.example" }

[registry.mirrors."ghcr_io"]
endpoint = "https://mirror.example"
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_at(&lines, text, "\"Docker.io\"", 0);
    assert_at(&lines, text, "\"https://quay.io\"", 0);
    assert_at(&lines, text, "\"ghcr_io\"", 0);
}

#[test]
fn mirror_endpoints_with_a_path_query_or_no_scheme() {
    let text = r#"[registry.mirrors]
"docker.io" = { endpoint = "https://mirror.example/v2/" }
"ghcr.io" = { endpoint = "https://mirror.example:5000?ns=ghcr.io" }
"quay.io" = { endpoint = "mirror.example:5000" }
"registry.k8s.io" = { endpoint = "https://mirror.example:5000 # k8s" }
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_at(&lines, text, "\"https://mirror.example/v2/\"", 0);
    let hints = hints(text);
    assert_eq!(hints[0], "write \"https://mirror.example\": a mirror serves the registry API (/v2/) at its root");
}

/// Credentials in an endpoint are refused, and the message does not repeat them (the hint says why).
#[test]
fn mirror_endpoint_with_credentials() {
    let text = r#"[registry.mirrors."docker.io"]
endpoint = "https://robot:s3cret@mirror.example"
"#;
    let lines = check!(text);
    assert_eq!(
        lines,
        ["testbed.toml:2:12: endpoint of the mirror for \"docker.io\" contains credentials (user@ or user:password@)"]
    );
    assert_eq!(hints(text), ["remove them: credentials are not read from the file"]);
}

#[test]
fn mirror_over_http_without_insecure() {
    let text = r#"[registry.mirrors]
"docker.io" = { endpoint = "http://127.0.0.1:5000" }
"registry.k8s.io" = { endpoint = "http://127.0.0.1:5001", insecure = false }
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_at(&lines, text, "\"http://127.0.0.1:5000\"", 0);
    assert_at(&lines, text, "\"http://127.0.0.1:5001\"", 0);
    assert!(hints(text)[0].starts_with("add `insecure = true` if the mirror really is plain HTTP"));
}

#[test]
fn mirror_insecure_with_https() {
    let text = r#"[registry.mirrors."docker.io"]
endpoint = "https://mirror.example"
insecure = true
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_at(&lines, text, "true", 0);
}

#[test]
fn mirror_unknown_key() {
    let text = r#"[registry.mirrors."docker.io"]
endpoint = "https://mirror.example"
password = "x"
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("unknown key `password`"), "{}", lines[0]);
}

// ---------------------------------------------------------------------------------------------------------
// Proxies

const ONE_MEMBER: &str = r#"[[members]]
name = "member1"
api_port = 16441
"#;

#[test]
fn proxy_points_at_unknown_member() {
    let text = &format!(
        r#"{ONE_MEMBER}
[[proxies]]
name = "prometheus"
member = "member9"
host_port = 9091
target = "tcp:10.1.33.11:9090"
"#
    );
    let lines = check!(text);
    assert_at(&lines, text, "\"member9\"", 0);
}

#[test]
fn proxy_named_api() {
    let text = &format!(
        r#"{ONE_MEMBER}
[[proxies]]
name = "api"
member = "member1"
host_port = 9091
target = "tcp:10.1.33.11:9090"
"#
    );
    let lines = check!(text);
    assert_at(&lines, text, "\"api\"", 0);
}

#[test]
fn proxy_bad_targets() {
    let text = &format!(
        r#"{ONE_MEMBER}
[[proxies]]
name = "a"
member = "member1"
host_port = 9091
target = "http://10.1.33.11:9090"

[[proxies]]
name = "b"
member = "member1"
host_port = 9092
target = "tcp:prometheus:9090"

[[proxies]]
name = "c"
member = "member1"
host_port = 9093
target = "tcp:10.1.33.11"

[[proxies]]
name = "d"
member = "member1"
host_port = 9094
target = "tcp:10.1.33.11:0"

[[proxies]]
name = "e"
member = "member1"
host_port = 9095
target = "10.1.33.11:9090"
"#
    );
    let lines = check!(text);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_at(&lines, text, "\"http://10.1.33.11:9090\"", 0);
    assert_at(&lines, text, "\"tcp:prometheus:9090\"", 0);
}

#[test]
fn proxy_bad_name_listen_and_duplicate() {
    let text = &format!(
        r#"{ONE_MEMBER}
[[proxies]]
name = "Prometheus"
member = "member1"
host_port = 9091
target = "tcp:10.1.33.11:9090"

[[proxies]]
name = "grafana"
member = "member1"
host_port = 3000
target = "tcp:10.1.33.12:3000"
listen = "localhost"

[[proxies]]
name = "grafana"
member = "member1"
host_port = 3001
target = "tcp:10.1.33.12:3000"
"#
    );
    let lines = check!(text);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_at(&lines, text, "\"Prometheus\"", 0);
    assert_at(&lines, text, "\"localhost\"", 0);
    assert_at(&lines, text, "\"grafana\"", 1);
}

/// A proxy that follows a pod by its labels: parsed, with the namespace defaulting to `default`.
#[test]
fn proxy_following_a_pod_validates() {
    let text = format!(
        r#"{ONE_MEMBER}
[[proxies]]
name = "prometheus"
member = "member1"
host_port = 9091
pod = {{ namespace = "monitoring", selector = "app.kubernetes.io/name=prometheus,app.kubernetes.io/instance=k8s", port = 9090 }}

[[proxies]]
name = "web"
member = "member1"
host_port = 9092
pod = {{ selector = "app=web", port = 80 }}
"#
    );
    let c = testbed_config::parse(Path::new(FILE), &text).expect("valid");
    let pods: Vec<String> = c.file.proxies.iter().map(|p| p.pod.as_ref().unwrap().describe()).collect();
    assert_eq!(
        pods,
        ["monitoring/app.kubernetes.io/name=prometheus,app.kubernetes.io/instance=k8s:9090", "default/app=web:80"]
    );
    assert!(c.file.proxies.iter().all(|p| p.target.is_none()));
}

#[test]
fn proxy_with_neither_target_nor_pod() {
    let text = &format!(
        r#"{ONE_MEMBER}
[[proxies]]
name = "prometheus"
member = "member1"
host_port = 9091
"#
    );
    let lines = check!(text);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("neither where to connect (`target`) nor which pod to follow (`pod`)"), "{}", lines[0]);
}

#[test]
fn proxy_with_both_target_and_pod() {
    let text = &format!(
        r#"{ONE_MEMBER}
[[proxies]]
name = "prometheus"
member = "member1"
host_port = 9091
target = "tcp:10.1.33.11:9090"
pod = {{ namespace = "monitoring", selector = "app=prometheus", port = 9090 }}
"#
    );
    let lines = check!(text);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_at(&lines, text, "pod = ", 0);
}

#[test]
fn proxy_pod_bad_namespace_selector_and_port() {
    let text = &format!(
        r#"{ONE_MEMBER}
[[proxies]]
name = "a"
member = "member1"
host_port = 9091
pod = {{ namespace = "Monitoring", selector = "app=prometheus", port = 9090 }}

[[proxies]]
name = "b"
member = "member1"
host_port = 9092
pod = {{ namespace = "monitoring", selector = "", port = 9090 }}

[[proxies]]
name = "c"
member = "member1"
host_port = 9093
pod = {{ namespace = "monitoring", selector = "app!=prometheus", port = 9090 }}

[[proxies]]
name = "d"
member = "member1"
host_port = 9094
pod = {{ namespace = "monitoring", selector = "app.kubernetes.io/name=prometheus,-tier=web", port = 9090 }}

[[proxies]]
name = "e"
member = "member1"
host_port = 9095
pod = {{ namespace = "monitoring", selector = "app=prometheus server", port = 9090 }}

[[proxies]]
name = "f"
member = "member1"
host_port = 9096
pod = {{ namespace = "monitoring", selector = "app=prometheus", port = 0 }}

[[proxies]]
name = "g"
member = "member1"
host_port = 9097
pod = {{ namespace = "kube-system-", selector = "app", port = 9090 }}
"#
    );
    let lines = check!(text);
    assert_eq!(lines.len(), 8, "{lines:#?}");
    assert_at(&lines, text, "\"Monitoring\"", 0);
    assert_at(&lines, text, "\"\"", 0);
    assert_at(&lines, text, "\"app!=prometheus\"", 0);
    assert_at(&lines, text, "\"app.kubernetes.io/name=prometheus,-tier=web\"", 0);
    assert_at(&lines, text, "\"app=prometheus server\"", 0);
    assert_at(&lines, text, "0 }\n\n[[proxies]]\nname = \"g\"", 0);
    assert_at(&lines, text, "\"kube-system-\"", 0);
    assert_at(&lines, text, "\"app\"", 0);
}

/// A pod port is a `u16`: a larger number is the TOML deserializer's type error, at the value.
#[test]
fn proxy_pod_port_above_65535() {
    let text = &format!(
        r#"{ONE_MEMBER}
[[proxies]]
name = "prometheus"
member = "member1"
host_port = 9091
pod = {{ namespace = "monitoring", selector = "app=prometheus", port = 70000 }}
"#
    );
    let lines = check!(text);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with(&format!("{FILE}:{}: ", pos(text, "70000", 0))), "{}", lines[0]);
}

// ---------------------------------------------------------------------------------------------------------
// Images

#[test]
fn image_bad_references() {
    let text = r#"[[images]]
source = "Nginx:1.27"

[[images]]
source = "nginx:1.27 latest"

[[images]]
source = "nginx@sha256:1234"

[[images]]
source = ""
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_at(&lines, text, "\"Nginx:1.27\"", 0);
}

#[test]
fn image_duplicate_names() {
    let text = r#"[[images]]
source = "docker.io/library/nginx:1.27"

[[images]]
source = "quay.io/nginx/nginx:1.27"

[[images]]
name = "demo"
source = "flask-demo:1.0"

[[images]]
name = "demo"
source = "flask-demo:2.0"
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    // A derived name is reported at the `source` it comes from, an explicit one at its `name`.
    assert_at(&lines, text, "\"quay.io/nginx/nginx:1.27\"", 0);
    assert_at(&lines, text, "\"demo\"", 1);
}

#[test]
fn image_bad_name_archive_without_sideload_and_unknown_member() {
    let text = &format!(
        r#"{ONE_MEMBER}
[[images]]
name = "Flask Demo"
source = "flask-demo:2.0"
archive = "images/flask-demo-2.0.tar"

[[images]]
source = "flask-demo:3.0"
name = "flask-demo-3"
sideload = true
archive = "images/flask-demo-3.0.tar"
members = ["member1", "member2"]
"#
    );
    let lines = check!(text);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_at(&lines, text, "\"Flask Demo\"", 0);
    assert_at(&lines, text, "\"images/flask-demo-2.0.tar\"", 0);
    assert_at(&lines, text, "\"member2\"", 0);
}

// ---------------------------------------------------------------------------------------------------------
// Member settings

#[test]
fn member_limits_addons_and_listen() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441
listen = "0.0.0.0:16441"
cpu = "two"
memory = "4 GiB"
addons = ["dns", "Hostpath_Storage", ""]
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_at(&lines, text, "\"0.0.0.0:16441\"", 0);
    assert_at(&lines, text, "\"two\"", 0);
    assert_at(&lines, text, "\"4 GiB\"", 0);
    assert_at(&lines, text, "\"Hostpath_Storage\"", 0);
    assert_at(&lines, text, "\"\"", 0);
}

// ---------------------------------------------------------------------------------------------------------
// Several problems at once, and what is fine

/// Every problem is reported in one run, each at its own line.
#[test]
fn several_problems_in_one_file() {
    let text = r#"[karmada]
version = "v2.0.0"

[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member1"
api_port = 16441
ipv4 = "192.168.1.10"

[[proxies]]
name = "api"
member = "member3"
host_port = 16441
target = "tcp:10.1.33.11"
"#;
    check!(text);
}

#[test]
fn an_empty_file_is_valid() {
    let config = testbed_config::parse(Path::new(FILE), "").expect("an empty file describes a host and no members");
    assert!(config.file.members.is_empty());
    assert_eq!(config.file.registry.port, 32000);
}

#[test]
fn the_error_summary_counts_problems() {
    let err =
        testbed_config::parse(Path::new(FILE), "[karmada]\nversion = \"v9.9.9\"\ndata_dir = \"x\"\n").unwrap_err();
    assert_eq!(err.to_string(), "testbed.toml: 2 problems found");
    let err = testbed_config::parse(Path::new(FILE), "[karmada]\nversion = \"v9.9.9\"\n").unwrap_err();
    assert_eq!(err.to_string(), "testbed.toml: 1 problem found");
}

// ---------------------------------------------------------------------------------------------------------
// The graphical report (what `testbed validate` shows)

fn render(err: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, err)
        .expect("render");
    out
}

#[test]
fn graphical_report_of_a_validation_problem_shows_the_source_line() {
    let text = r#"[[members]]
name = "member1"
api_port = 16441

[[members]]
name = "member1"
api_port = 16442
"#;
    let err = testbed_config::parse(Path::new(FILE), text).unwrap_err();
    let out = render(&err);
    assert!(out.contains(r#"name = "member1""#), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn graphical_report_of_an_unknown_key_shows_the_source_line() {
    let text = r#"[[members]]
name = "member1"
api_prot = 16441
"#;
    let err = testbed_config::parse(Path::new(FILE), text).unwrap_err();
    let out = render(&err);
    assert!(out.contains("api_prot = 16441"), "{out}");
    insta::assert_snapshot!(out);
}

/// An `[[images]]` entry whose name equals one of the Karmada release images (`etcd`, `alpine`,
/// `kube-apiserver`, `karmada-scheduler`, ...) gets the same resource address `image.NAME` as the release image,
/// and the planner's `DesiredState::add` silently replaces the release image with it: `karmadactl init` then
/// misses its own image in the local registry.
#[test]
fn image_name_must_not_shadow_a_karmada_release_image() {
    // v1.15's etcd has an init container: alpine is one of its release images.
    let lines =
        problems("[karmada]\nversion = \"v1.15.9\"\n\n[[images]]\nsource = \"docker.io/library/alpine:3.20\"\n");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("testbed.toml:5:10: "), "{}", lines[0]);
    // From v1.16 it has none: the name is free.
    assert!(testbed_config::parse(Path::new(FILE), "[[images]]\nsource = \"docker.io/library/alpine:3.20\"\n").is_ok());
}

// ---------------------------------------------------------------------------------------------------------
// Room in the subnet

#[test]
fn a_subnet_too_small_for_its_members_is_a_problem_at_the_subnet() {
    // A /29 has no address from the 10th on; a /28 has five (.10 to .14), one of them given by hand here.
    let members = |n: usize| {
        (1..=n).map(|i| format!("[[members]]\nname = \"m{i}\"\napi_port = {}\n\n", 20000 + i)).collect::<String>()
    };
    for (subnet, n, room) in [("10.0.0.1/29", 1, 0), ("255.255.255.253/30", 1, 0), ("10.0.0.1/28", 6, 5)] {
        let text = format!("[lxd]\nipv4_address = \"{subnet}\"\n\n{}", members(n));
        let lines = problems(&text);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!(
                "testbed.toml:2:16: [lxd] ipv4_address \"{subnet}\" leaves room for {room} member address"
            )),
            "{lines:?}"
        );
        assert!(lines[0].contains(&format!("but {n} member")), "{lines:?}");
    }
    // Room counts the addresses given by hand: five candidates, one taken by m6's own, four left for five.
    let text = format!("[lxd]\nipv4_address = \"10.0.0.1/28\"\n\n{}[[members]]\nname = \"m6\"\napi_port = 20006\nipv4 = \"10.0.0.10\"\n", members(5));
    let lines = problems(&text);
    assert!(
        lines[0].contains("leaves room for 4 member addresses") && lines[0].contains("but 5 members have no ipv4"),
        "{lines:?}"
    );
    // Exactly enough room validates.
    let fits = format!("[lxd]\nipv4_address = \"10.0.0.1/28\"\n\n{}", members(5));
    assert!(testbed_config::parse(Path::new(FILE), &fits).is_ok());
}

// ---------------------------------------------------------------------------------------------------------
// Text fields that reach a path, an argument or an API (issue 11, item 9)

/// A host addon becomes `microk8s enable NAME` and the file `/var/snap/microk8s/common/testbed-addons/NAME`:
/// a path in it would create (and on destroy remove) a file outside the record folder.
#[test]
fn host_addons_must_be_addon_names() {
    let text = r#"[host]
addons = ["dns", "../../../etc/cron.d/x", "metallb:10.0.0.1-10.0.0.5"]
"#;
    let lines = check!(text);
    assert_eq!(
        lines,
        [
            "testbed.toml:2:18: host addon \"../../../etc/cron.d/x\" is not a MicroK8s addon name: it may contain only lowercase letters, digits and hyphens",
            "testbed.toml:2:43: host addon \"metallb:10.0.0.1-10.0.0.5\" is not a MicroK8s addon name: it carries arguments (NAME:ARGS), which testbed does not pass to `microk8s enable`",
        ]
    );
}

/// Snap channels are `[TRACK/]RISK[/BRANCH]`; `snap install --channel` refuses anything else, after the
/// lab is half built.
#[test]
fn microk8s_channels_must_be_snap_channels() {
    let text = r#"[host]
microk8s_channel = "1.32/stabel"

[[members]]
name = "member1"
api_port = 16441
microk8s_channel = "1.32/stable --classic"
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_at(&lines, text, "\"1.32/stabel\"", 0);
    assert_at(&lines, text, "\"1.32/stable --classic\"", 0);
    assert!(lines[0].contains("has no risk where snap wants one (the risk is one of stable, candidate, beta, edge)"));
    assert!(lines[1].contains("is not a snap channel: it has the part \"stable --classic\""));
}

/// Pool and profile names go into LXD's URL paths (`/1.0/profiles/NAME`) and resource addresses; the
/// driver and the images into its API.
#[test]
fn lxd_pool_profile_driver_and_images() {
    let text = r#"[lxd]
storage_pool = "pool/../x"
storage_driver = "z fs"
image = "myremote:22.04"
profile = "micro k8s"

[[members]]
name = "member1"
api_port = 16441
image = "ubuntu:22.04?x"
"#;
    let lines = check!(text);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    for needle in ["\"pool/../x\"", "\"z fs\"", "\"myremote:22.04\"", "\"micro k8s\"", "\"ubuntu:22.04?x\""] {
        assert_at(&lines, text, needle, 0);
    }
    assert!(lines[2].contains("names the image server \"myremote\", which testbed does not know"), "{}", lines[2]);
}

#[test]
fn registry_platforms_are_os_arch_variant() {
    let text = "[registry]\nplatforms = [\"linux/amd64\", \"linux/arm64,linux/arm\", \"amd64\"]\n";
    let lines = check!(text);
    assert_eq!(
        lines,
        [
            "testbed.toml:2:29: platform \"linux/arm64,linux/arm\" has a part that is empty or not lowercase letters, digits, '.', '_' and '-' (at most 32)",
            "testbed.toml:2:54: platform \"amd64\" is not OS/ARCH or OS/ARCH/VARIANT",
        ]
    );
}

/// The registry host of an image source is where testbed connects (and what `[registry.mirrors]` keys by).
#[test]
fn image_source_registry_host_is_checked() {
    let text = r#"[[images]]
source = "Registry.Example:5000/app:1"

[[images]]
source = "registry.example:99999/app:1"
"#;
    let lines = check!(text);
    assert_eq!(
        lines,
        [
            "testbed.toml:2:10: image source \"Registry.Example:5000/app:1\" has registry host \"Registry.Example:5000\", which may contain only lowercase letters, digits, '.' and '-' (and a :port)",
            "testbed.toml:5:10: image source \"registry.example:99999/app:1\" has registry host \"registry.example:99999\", which has a port that is not a number from 1 to 65535",
        ]
    );
}

/// `karmadactl init` wipes data_dir and destroy deletes it: `/` or a shared folder would be lost.
#[test]
fn karmada_data_dir_must_be_a_folder_of_its_own() {
    for (dir, why) in [
        ("/", "is the root folder, which `karmadactl init` would wipe and `testbed destroy` would delete"),
        ("/etc", "is the shared folder /etc, which `karmadactl init` would wipe and `testbed destroy` would delete"),
        (
            "/home/me/",
            "is the shared folder /home/me, which `karmadactl init` would wipe and `testbed destroy` would delete",
        ),
        ("/etc/karmada/../..", "has an empty, `.` or `..` part; write the folder's plain absolute path"),
    ] {
        let text = format!("[karmada]\ndata_dir = \"{dir}\"\n");
        let lines = problems(&text);
        assert_eq!(lines, [format!("testbed.toml:2:12: [karmada] data_dir {dir:?} {why}")]);
    }
    assert!(testbed_config::parse(Path::new(FILE), "[karmada]\ndata_dir = \"/var/lib/karmada\"\n").is_ok());
}

/// A newline in a value printed fake lines in `--dry-run`; no string, key or value, holds a control
/// character, and the value's own rule does not report it a second time.
#[test]
fn control_characters_never_pass() {
    let text = r#"[lxd]
profile = "microk8s\nEVIL"

[lxd.profile_config]
"raw.lxc" = "lxc.apparmor.profile=unconfined\nlxc.cap.drop="
"user.note" = "a\tb"

[registry.mirrors]
"docker.io\u001b[2J" = { endpoint = "https://mirror.example" }

[[members]]
name = "member1"
api_port = 16441
cpu = "2\n"
"#;
    let lines = check!(text);
    assert_eq!(
        lines,
        [
            "testbed.toml:2:11: lxd.profile = \"microk8s\\nEVIL\" contains a newline (U+000A)",
            "testbed.toml:6:15: lxd.profile_config.user.note = \"a\\tb\" contains a tab (U+0009)",
            "testbed.toml:9:1: key \"docker.io\\u{1b}[2J\" contains an escape (U+001B)",
            "testbed.toml:14:7: members[0].cpu = \"2\\n\" contains a newline (U+000A)",
        ]
    );
    // A newline is LXD's own in a raw.* setting: that alone validates.
    let raw = "[lxd.profile_config]\n\"raw.lxc\" = \"lxc.apparmor.profile=unconfined\\nlxc.cap.drop=\"\n";
    assert!(testbed_config::parse(Path::new(FILE), raw).is_ok());
}

/// A file that is not UTF-8 is a problem at its first bad byte, by byte offset and line:col, without the
/// "pass the file with -c/--config" hint of a file that cannot be read at all.
#[test]
fn invalid_utf8_names_the_byte_offset() {
    let bytes = b"name = \"lab\"\n[lxd]\nprofile = \"caf\xE9\"\n";
    let err = testbed_config::parse_bytes(Path::new(FILE), bytes).unwrap_err();
    assert_eq!(
        err.lines(),
        ["testbed.toml:3:15: the file is not UTF-8: byte 0xE9 at byte offset 33 (line 3, column 15)"]
    );
    let shown = render(&err);
    assert!(shown.contains("not UTF-8") && shown.contains("save the file as UTF-8"), "{shown}");
    assert!(!shown.contains("-c/--config"), "{shown}");

    // The same through `load`, which reads the file from disk.
    let path = std::env::temp_dir().join(format!("testbed-config-latin1-{}.toml", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let err = testbed_config::load(&path).unwrap_err();
    std::fs::remove_file(&path).ok();
    assert!(err.lines()[0].ends_with(":3:15: the file is not UTF-8: byte 0xE9 at byte offset 33 (line 3, column 15)"));
    assert!(!render(&err).contains("-c/--config"));
}
