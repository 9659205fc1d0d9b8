//! What the free-text fields of the file may hold: each one reaches a path, a command's argument or an API
//! call, so each is held to what the tool on the other side accepts (its characters and its length).
//! Every rule returns what is wrong, as the tail of a sentence ("... is not a snap channel: it ..."), or
//! `None`.

/// The first control character of `s` (newline, tab, escape, DEL, ...), if any: no value may hold one,
/// since each would break the line it is printed on, or the argument or path it becomes.
pub fn control_char(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control())
}

/// How a control character is named in a message.
pub fn describe_control(c: char) -> String {
    let name = match c {
        '\n' => "a newline",
        '\r' => "a carriage return",
        '\t' => "a tab",
        '\u{1b}' => "an escape",
        '\0' => "a NUL",
        _ => "a control character",
    };
    format!("{name} (U+{:04X})", c as u32)
}

/// The risks of a snap channel (snapd's `channel.Risks`).
const RISKS: [&str; 4] = ["stable", "candidate", "beta", "edge"];

/// A snap channel as `snap install --channel` takes it: `[TRACK/]RISK[/BRANCH]`, or a track alone (its
/// stable risk), e.g. `1.35/stable`, `1.35`, `latest/edge/fix`. Tracks and branches are ASCII letters,
/// digits, `.`, `_` and `-`, starting with a letter or digit.
pub fn snap_channel_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.len() > 128 {
        return Some("is longer than 128 characters".into());
    }
    let parts: Vec<&str> = s.split('/').collect();
    let part_ok = |p: &str| {
        p.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if let Some(bad) = parts.iter().find(|p| !part_ok(p)) {
        return Some(format!(
            "has the part {bad:?}; tracks, risks and branches are ASCII letters, digits, '.', '_' and '-', starting with a letter or digit"
        ));
    }
    let risk = |p: &str| RISKS.contains(&p);
    let ok = match parts.as_slice() {
        [_] => true,
        [track, second] => risk(second) || (risk(track) && !risk(second)),
        [_, middle, _] => risk(middle),
        _ => return Some("has more than three parts (TRACK/RISK/BRANCH)".into()),
    };
    (!ok).then(|| format!("has no risk where snap wants one (the risk is one of {})", RISKS.join(", ")))
}

/// A valid snap channel as snapd shows it, fully qualified: `1.32` is `1.32/stable`, `stable` is
/// `latest/stable`, `edge/fix` is `latest/edge/fix` (snapd's `channel.Full`).
pub fn full_snap_channel(s: &str) -> String {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [risk] if RISKS.contains(risk) => format!("latest/{risk}"),
        [track] => format!("{track}/stable"),
        [risk, branch] if RISKS.contains(risk) && !RISKS.contains(branch) => format!("latest/{risk}/{branch}"),
        _ => s.to_owned(),
    }
}

/// A MicroK8s addon name (`microk8s enable NAME`, and the name of testbed's record file for it): lowercase
/// letters, digits and hyphens, starting with a letter or digit, at most 63 characters. Arguments
/// (`metallb:RANGE`) are not taken: testbed enables and disables addons by name.
pub fn addon_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("is empty");
    }
    if s.len() > 63 {
        return Some("is longer than 63 characters");
    }
    if s.contains(':') {
        return Some("carries arguments (NAME:ARGS), which testbed does not pass to `microk8s enable`");
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Some("may contain only lowercase letters, digits and hyphens");
    }
    if s.starts_with('-') {
        return Some("must not start with a hyphen");
    }
    None
}

/// The name of an LXD storage pool or profile testbed manages. LXD itself refuses only `/`, non-ASCII and
/// `.`/`..`; testbed also puts the name in URL paths and in resource addresses (`lxd_profile.NAME`), so it
/// takes 1 to 63 ASCII letters, digits, `-` and `_`, starting with a letter or digit.
pub fn lxd_entity_name_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("is empty");
    }
    if s.len() > 63 {
        return Some("is longer than 63 characters");
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Some("may contain only ASCII letters, digits, '-' and '_'");
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Some("must start with a letter or digit");
    }
    None
}

/// An LXD (or Incus) storage driver name: `dir`, `zfs`, `btrfs`, `lvm`, `ceph`, ...: 1 to 32 lowercase
/// letters. Which drivers a daemon has is its own answer.
pub fn storage_driver_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_lowercase()) {
        return Some("is not a driver name (1 to 32 lowercase letters, e.g. \"dir\", \"zfs\", \"btrfs\", \"lvm\")");
    }
    None
}

/// The image servers testbed knows by their remote name (`REMOTE:ALIAS`).
pub const IMAGE_REMOTES: [&str; 3] = ["ubuntu", "ubuntu-daily", "images"];

/// A member image: `REMOTE:ALIAS` with a remote of [`IMAGE_REMOTES`] (`ubuntu:24.04`,
/// `images:alpine/3.20`), or a local alias (`testbed-busybox`). An alias is 1 to 128 ASCII letters,
/// digits, `.`, `_`, `-` and `/`, starting with a letter or digit.
pub fn lxd_image_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    let alias = match s.split_once(':') {
        Some((remote, alias)) if IMAGE_REMOTES.contains(&remote) => alias,
        Some((remote, _)) => {
            return Some(format!(
                "names the image server {remote:?}, which testbed does not know (it knows {})",
                IMAGE_REMOTES.map(|r| format!("{r}:")).join(", ")
            ))
        }
        None => s,
    };
    if alias.is_empty() || alias.len() > 128 {
        return Some("has an alias that is empty or longer than 128 characters".into());
    }
    let ok = alias.as_bytes()[0].is_ascii_alphanumeric()
        && alias.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    (!ok).then(|| {
        format!("has the alias {alias:?}; an alias is ASCII letters, digits, '.', '_', '-' and '/', starting with a letter or digit")
    })
}

/// An OCI platform as `[registry] platforms` lists it: `OS/ARCH[/VARIANT]` (`linux/amd64`, `linux/arm/v7`),
/// each part 1 to 32 lowercase letters, digits, `.`, `_` and `-`.
pub fn platform_problem(s: &str) -> Option<&'static str> {
    let parts: Vec<&str> = s.split('/').collect();
    if !(2..=3).contains(&parts.len()) {
        return Some("is not OS/ARCH or OS/ARCH/VARIANT");
    }
    let part_ok = |p: &&str| {
        !p.is_empty()
            && p.len() <= 32
            && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    (!parts.iter().all(part_ok))
        .then_some("has a part that is empty or not lowercase letters, digits, '.', '_' and '-' (at most 32)")
}

/// An LXD config key (`linux.kernel_modules`, `raw.lxc`, `user.note`): 1 to 128 ASCII letters, digits,
/// `.`, `_` and `-`, starting with a letter.
pub fn config_key_problem(s: &str) -> Option<&'static str> {
    let ok = s.len() <= 128
        && s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    (!ok).then_some("is not an LXD config key (ASCII letters, digits, '.', '_' and '-', starting with a letter)")
}

/// Whether a value of LXD config key `key` may span lines: the `raw.*` keys (`raw.lxc`, `raw.apparmor`,
/// `raw.seccomp`, `raw.idmap`) are LXD's multi-line settings, so a newline (only that) is theirs.
pub fn multi_line_config_key(key: &str) -> bool {
    key.starts_with("raw.")
}

/// The longest path the file may give (Linux's PATH_MAX).
const PATH_MAX: usize = 4096;

/// A path the file gives (a directory or an archive): not empty, at most 4096 bytes. Control characters
/// are refused everywhere already.
pub fn path_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("is empty");
    }
    if s.len() > PATH_MAX {
        return Some("is longer than 4096 bytes");
    }
    None
}

/// Folders `[karmada] data_dir` must not be: init deletes and recreates data_dir, and destroy deletes it,
/// so a folder others keep things in would be lost. Besides these, every folder directly under `/` (and `/`
/// itself), and every folder directly under `/home` and `/usr` (a user's home, the system's programs).
const SHARED_DIRS: [&str; 12] = [
    "/etc/apt",
    "/etc/default",
    "/etc/kubernetes",
    "/etc/ssh",
    "/etc/ssl",
    "/etc/systemd",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/run",
    "/var/snap",
    "/var/tmp",
];

/// `[karmada] data_dir`: an absolute, plain path (no `.`, `..` or empty parts) to a folder of its own, since
/// `karmadactl init` wipes it and `destroy` deletes it.
pub fn data_dir_problem(s: &str) -> Option<String> {
    if let Some(why) = path_problem(s) {
        return Some(why.into());
    }
    if !s.starts_with('/') {
        return Some("must be an absolute path".into());
    }
    let trimmed = s.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').skip(1).collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Some("has an empty, `.` or `..` part; write the folder's plain absolute path".into());
    }
    let shared = match parts.as_slice() {
        [] | [_] => true,
        ["home" | "usr", _] => true,
        _ => SHARED_DIRS.contains(&trimmed),
    };
    shared.then(|| {
        format!(
            "is {}, which `karmadactl init` would wipe and `testbed destroy` would delete",
            if trimmed.is_empty() { "the root folder".to_owned() } else { format!("the shared folder {trimmed}") }
        )
    })
}

/// A Kubernetes DNS label (RFC 1123, as namespaces are named): 1-63 lowercase letters, digits and `-`,
/// starting and ending with a letter or digit (apimachinery's `IsDNS1123Label`).
pub fn dns_label_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("is empty");
    }
    if s.len() > 63 {
        return Some("is longer than 63 characters");
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Some("may contain only lowercase letters, digits and '-'");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must start and end with a letter or digit");
    }
    None
}

/// The name part of a label key, or a label value that is not empty: at most 63 ASCII letters, digits, `-`,
/// `_` and `.`, starting and ending with a letter or digit (apimachinery's `IsQualifiedName` name part and
/// `IsValidLabelValue`).
fn label_name_problem(s: &str) -> Option<&'static str> {
    if s.len() > 63 {
        return Some("is longer than 63 characters");
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Some("may contain only ASCII letters, digits, '-', '_' and '.'");
    }
    let edge = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    if !edge(s.as_bytes().first()) || !edge(s.as_bytes().last()) {
        return Some("must start and end with a letter or digit");
    }
    None
}

/// A label key: `[PREFIX/]NAME`, the prefix a DNS subdomain (lowercase letters, digits, `-` and `.`, at most
/// 253 characters, each dot-separated part starting and ending with a letter or digit), the name as
/// [`label_name_problem`] says and not empty (apimachinery's `IsQualifiedName`).
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some("has an empty prefix before '/'".into());
        }
        if prefix.len() > 253 {
            return Some("has a prefix longer than 253 characters".into());
        }
        let part_ok = |p: &str| {
            let b = p.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        };
        if !prefix.split('.').all(part_ok) {
            return Some(format!(
                "has the prefix {prefix:?}, which is not a DNS subdomain (lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit)"
            ));
        }
    }
    if name.is_empty() {
        return Some("has an empty name".into());
    }
    if name.contains('/') {
        return Some("has more than one '/'".into());
    }
    let why = label_name_problem(name)?;
    Some(match prefix {
        Some(_) => format!("has a name part {name:?} that {why}"),
        None => why.to_owned(),
    })
}

/// A label value: empty, or as [`label_name_problem`] says.
pub fn label_value_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return None;
    }
    label_name_problem(value)
}

/// A label selector of equality terms only, `KEY=VALUE[,KEY=VALUE]` (`==` is Kubernetes' other spelling of
/// `=`), as a proxy follows a pod by: not empty, each key and value as Kubernetes takes them, no key twice
/// (no label has two values, so no pod would match).
pub fn label_selector_problem(s: &str) -> Option<String> {
    if s.trim().is_empty() {
        return Some("is empty: it would match every pod in the namespace".into());
    }
    let mut keys: Vec<&str> = Vec::new();
    for term in s.split(',') {
        let term = term.trim();
        if term.is_empty() {
            return Some("has an empty term (two commas, or a comma at an end)".into());
        }
        if term.contains("!=")
            || term.starts_with('!')
            || term.contains(" in ")
            || term.contains(" notin ")
            || !term.contains('=')
        {
            return Some(format!(
                "has the term {term:?}; only equality terms KEY=VALUE are taken (a proxy follows the pods whose labels have every value given)"
            ));
        }
        let (key, value) = term.split_once("==").or_else(|| term.split_once('=')).unwrap_or((term, ""));
        let (key, value) = (key.trim(), value.trim());
        if let Some(why) = label_key_problem(key) {
            return Some(format!("has the key {key:?}, which {why}"));
        }
        if value.contains('=') {
            return Some(format!("has the term {term:?} with more than one '='"));
        }
        if let Some(why) = label_value_problem(value) {
            return Some(format!("has the value {value:?} (of key {key:?}), which {why}"));
        }
        if keys.contains(&key) {
            return Some(format!("gives the key {key:?} twice: a label has one value, so no pod would match"));
        }
        keys.push(key);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snap_channels() {
        for ok in
            ["1.32/stable", "1.32", "latest/edge", "edge", "1.32/stable/hotfix-1", "stable/fix", "1.32-strict/beta"]
        {
            assert_eq!(snap_channel_problem(ok), None, "{ok}");
        }
        for bad in ["", "1.32/", "/stable", "1.32/stabel", "1.32/stable/a/b", "1.32 stable", "1.32/stable;x", "a/b/c"] {
            assert!(snap_channel_problem(bad).is_some(), "{bad:?} was accepted");
        }
        for (given, full) in [
            ("1.32", "1.32/stable"),
            ("1.32/edge", "1.32/edge"),
            ("stable", "latest/stable"),
            ("edge/fix", "latest/edge/fix"),
            ("1.32/stable/hotfix-1", "1.32/stable/hotfix-1"),
        ] {
            assert_eq!(full_snap_channel(given), full, "{given}");
        }
    }

    #[test]
    fn addons() {
        for ok in ["dns", "hostpath-storage", "metrics-server", "cert-manager", "gpu"] {
            assert_eq!(addon_problem(ok), None, "{ok}");
        }
        for bad in ["", "../etc", "DNS", "metallb:10.0.0.1-10.0.0.5", "a/b", "-dns", "a b"] {
            assert!(addon_problem(bad).is_some(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn lxd_names_images_and_keys() {
        assert_eq!(lxd_entity_name_problem("testbed-member"), None);
        assert_eq!(lxd_entity_name_problem("default"), None);
        for bad in ["", "a/b", "..", "-x", "_x", "pool.1", "pøøl"] {
            assert!(lxd_entity_name_problem(bad).is_some(), "{bad:?} was accepted");
        }
        for ok in ["ubuntu:22.04", "ubuntu-daily:24.04", "images:alpine/3.20", "testbed-busybox"] {
            assert_eq!(lxd_image_problem(ok), None, "{ok}");
        }
        for bad in ["", "ubuntu:", "foo:22.04", "/x", "a b", "ubuntu:22.04?x"] {
            assert!(lxd_image_problem(bad).is_some(), "{bad:?} was accepted");
        }
        assert_eq!(storage_driver_problem("zfs"), None);
        assert!(storage_driver_problem("z fs").is_some() && storage_driver_problem("").is_some());
        assert_eq!(config_key_problem("linux.kernel_modules"), None);
        assert!(config_key_problem("").is_some() && config_key_problem("a b").is_some());
    }

    #[test]
    fn platforms() {
        for ok in ["linux/amd64", "linux/arm/v7", "linux/arm64/v8", "linux/386", "linux/ppc64le"] {
            assert_eq!(platform_problem(ok), None, "{ok}");
        }
        for bad in ["", "linux", "linux/", "/amd64", "linux/amd64/v8/x", "Linux/amd64", "linux/amd64,linux/arm64"] {
            assert!(platform_problem(bad).is_some(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn data_dirs() {
        for ok in ["/etc/karmada", "/etc/karmada/", "/var/lib/karmada", "/home/me/karmada", "/opt/testbed/karmada"] {
            assert_eq!(data_dir_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "etc/karmada",
            "/",
            "//",
            "/etc",
            "/etc/",
            "/home/me",
            "/usr/lib",
            "/var/lib",
            "/etc/karmada/..",
            "/etc//karmada",
            "/etc/./k",
        ] {
            assert!(data_dir_problem(bad).is_some(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn dns_labels() {
        for ok in ["monitoring", "default", "kube-system", "a", "0", &"a".repeat(63)] {
            assert_eq!(dns_label_problem(ok), None, "{ok}");
        }
        for bad in ["", "Monitoring", "-a", "a-", "a.b", "a_b", &"a".repeat(64)] {
            assert!(dns_label_problem(bad).is_some(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn label_selectors_of_equality_terms() {
        for ok in [
            "app=prometheus",
            "app.kubernetes.io/name=prometheus",
            "app.kubernetes.io/name=prometheus,app.kubernetes.io/instance=k8s",
            "app==web",
            "tier=",
            "a = b",
            "x.y/Z_1=A.b-c_9",
        ] {
            assert_eq!(label_selector_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            " ",
            "app",
            "app!=web",
            "!app",
            "app in (a,b)",
            "app=web,",
            ",app=web",
            "app=web,,tier=db",
            "=web",
            "/name=web",
            "Example.com/name=web",
            "a/b/c=web",
            "-app=web",
            "app=-web",
            "app=web/x",
            "app=a=b",
            "app=web,app=db",
            &format!("app={}", "v".repeat(64)),
            &format!("{}=v", "k".repeat(64)),
        ] {
            assert!(label_selector_problem(bad).is_some(), "{bad:?} was accepted");
        }
    }
}
