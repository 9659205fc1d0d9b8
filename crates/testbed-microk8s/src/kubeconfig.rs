//! Members' kubeconfig files: the admin kubeconfig `microk8s config` prints, rewritten for people and for
//! Karmada, marked as testbed's, and read back.
//!
//! The text of a kubeconfig holds credentials (`token`, `client-key-data`). Nothing in this module logs it,
//! puts it in an error, or shows it through `Debug`: errors say where a fault is, never what is there.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The first line of every kubeconfig testbed writes starts with this; the rest of the line is
/// `name=<testbed> address=kubeconfig.<member> use=people|karmada`.
pub const MARKER_PREFIX: &str = "# managed-by: testbed ";

/// Who a kubeconfig file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// `kubectl` on the host: the server is the member's API proxy on a host port.
    People,
    /// The Karmada control plane's pods: the server is the member's bridge address.
    Karmada,
}

impl Use {
    fn word(self) -> &'static str {
        match self {
            Use::People => "people",
            Use::Karmada => "karmada",
        }
    }
}

/// What a marker line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The testbed (the file's `name`) that wrote it.
    pub testbed: String,
    /// The member it belongs to.
    pub member: String,
    pub use_: Use,
}

impl Marker {
    pub fn line(&self) -> String {
        format!("{MARKER_PREFIX}name={} address=kubeconfig.{} use={}", self.testbed, self.member, self.use_.word())
    }

    /// The marker on the first line of `text`, if there is one.
    pub fn read(text: &str) -> Option<Marker> {
        let rest = text.lines().next()?.strip_prefix(MARKER_PREFIX)?;
        let mut testbed = None;
        let mut member = None;
        let mut use_ = None;
        for token in rest.split_whitespace() {
            match token.split_once('=') {
                Some(("name", v)) => testbed = Some(v.to_owned()),
                Some(("address", v)) => member = v.strip_prefix("kubeconfig.").map(str::to_owned),
                Some(("use", "people")) => use_ = Some(Use::People),
                Some(("use", "karmada")) => use_ = Some(Use::Karmada),
                _ => {}
            }
        }
        Some(Marker { testbed: testbed?, member: member?, use_: use_? })
    }
}

/// Why the output of `microk8s config` could not be used. Says where, never what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeconfigError {
    #[error("it is not a kubeconfig ({bytes} bytes that do not parse as one{at})")]
    NotAKubeconfig { bytes: usize, at: String },
    #[error("it has no context to use (no current-context)")]
    NoContext,
    #[error("its context {0:?} names a cluster or user it does not define")]
    Dangling(String),
}

/// The two files written for a member. `Debug` shows their sizes only: they hold credentials.
pub struct Rewritten {
    pub people: String,
    pub karmada: String,
}

impl fmt::Debug for Rewritten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rewritten")
            .field("people", &format_args!("<{} bytes>", self.people.len()))
            .field("karmada", &format_args!("<{} bytes>", self.karmada.len()))
            .finish()
    }
}

/// " (at line N column M)" from a parser message, else "".
fn fault_location(message: &str) -> String {
    let Some(at) = message.find("line ") else { return String::new() };
    let location: String =
        message[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == ' ' || *c == ',').collect();
    format!(" (at {})", location.trim().trim_end_matches(','))
}

/// Rewrites the admin kubeconfig `microk8s config` printed: keeps its current context's cluster (CA) and
/// user (token or client certificate), names cluster, user and context after the member, points the server
/// at `people_server` or `karmada_server`, and puts testbed's marker line on top.
pub fn rewrite(
    admin: &str,
    testbed: &str,
    member: &str,
    people_server: &str,
    karmada_server: &str,
) -> Result<Rewritten, KubeconfigError> {
    let parsed = kube::config::Kubeconfig::from_yaml(admin)
        .map_err(|e| KubeconfigError::NotAKubeconfig { bytes: admin.len(), at: fault_location(&e.to_string()) })?;
    let context_name = match (&parsed.current_context, parsed.contexts.as_slice()) {
        (Some(c), _) if !c.is_empty() => c.clone(),
        (_, [only]) => only.name.clone(),
        _ => return Err(KubeconfigError::NoContext),
    };
    let ctx = parsed
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| KubeconfigError::Dangling(context_name.clone()))?;
    let cluster = parsed
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| KubeconfigError::Dangling(context_name.clone()))?;
    let user = match &ctx.user {
        Some(u) => parsed
            .auth_infos
            .iter()
            .find(|a| &a.name == u)
            .and_then(|a| a.auth_info.clone())
            .ok_or_else(|| KubeconfigError::Dangling(context_name.clone()))?,
        None => Default::default(),
    };
    // Serialising exposes the credentials into these values; they go nowhere but the files' text.
    let cluster = serde_json::to_value(&cluster).map_err(|_| KubeconfigError::Dangling(context_name.clone()))?;
    let user = serde_json::to_value(&user).map_err(|_| KubeconfigError::Dangling(context_name.clone()))?;
    let file = |server: &str, use_: Use| {
        let mut cluster = cluster.clone();
        if let Value::Object(m) = &mut cluster {
            m.insert("server".into(), Value::String(server.to_owned()));
        }
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": member, "cluster": cluster}],
            "users": [{"name": member, "user": user}],
            "contexts": [{"name": member, "context": {"cluster": member, "user": member}}],
            "current-context": member,
            "preferences": {},
        });
        let marker = Marker { testbed: testbed.to_owned(), member: member.to_owned(), use_ };
        let mut text = marker.line();
        text.push('\n');
        text.push_str(&format!(
            "# The admin kubeconfig of {member} (from `microk8s config`), for {}. testbed apply rewrites this file;\n\
             # delete the line above to keep it as yours.\n",
            match use_ {
                Use::People => "kubectl on this host (through the member's API proxy)",
                Use::Karmada => "the Karmada control plane (the member's bridge address)",
            }
        ));
        text.push_str(&testbed_kube::yaml::to_yaml(&doc));
        text
    };
    Ok(Rewritten { people: file(people_server, Use::People), karmada: file(karmada_server, Use::Karmada) })
}

/// The server of the current context of a kubeconfig's text, if it has one.
pub fn server_of(text: &str) -> Option<String> {
    let k = kube::config::Kubeconfig::from_yaml(text).ok()?;
    let context_name = match (&k.current_context, k.contexts.as_slice()) {
        (Some(c), _) if !c.is_empty() => c.clone(),
        (_, [only]) => only.name.clone(),
        _ => return None,
    };
    let ctx = k.contexts.iter().find(|c| c.name == context_name)?.context.clone()?;
    k.clusters.iter().find(|c| c.name == ctx.cluster)?.cluster.clone()?.server
}

/// What is on disk at a kubeconfig path.
pub enum OnDisk {
    Absent,
    /// A file, with its first-line marker if it has one, its server, and its permission bits.
    File {
        marker: Option<Marker>,
        server: String,
        mode: u32,
        text: String,
    },
    /// Something that cannot be read (a directory, no permission): described, never overwritten.
    Unreadable(String),
}

impl fmt::Debug for OnDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnDisk::Absent => f.write_str("Absent"),
            OnDisk::File { marker, server, mode, text } => f
                .debug_struct("File")
                .field("marker", marker)
                .field("server", server)
                .field("mode", &format_args!("{mode:04o}"))
                .field("text", &format_args!("<{} bytes>", text.len()))
                .finish(),
            OnDisk::Unreadable(why) => f.debug_tuple("Unreadable").field(why).finish(),
        }
    }
}

pub fn read(path: &Path) -> OnDisk {
    match std::fs::read_to_string(path) {
        Ok(text) => OnDisk::File {
            marker: Marker::read(&text),
            server: server_of(&text).unwrap_or_default(),
            mode: testbed_command::files::mode(path).unwrap_or(0),
            text,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OnDisk::Absent,
        Err(e) => OnDisk::Unreadable(format!("{} cannot be read ({})", path.display(), e.kind())),
    }
}

/// Every kubeconfig file in `dir` (`*.config`) that `testbed` marked, with its marker.
pub fn scan(dir: &Path, testbed: &str) -> Vec<(PathBuf, Marker)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(PathBuf, Marker)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "config") && p.is_file())
        .filter_map(|p| {
            // Only the first line is needed.
            let text = std::fs::read_to_string(&p).ok()?;
            let m = Marker::read(&text)?;
            (m.testbed == testbed).then_some((p, m))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0FEQVRB\n    \
                         server: https://10.123.45.10:16443\n  name: microk8s-cluster\ncontexts:\n- context:\n    \
                         cluster: microk8s-cluster\n    user: admin\n  name: microk8s\ncurrent-context: microk8s\n\
                         kind: Config\npreferences: {}\nusers:\n- name: admin\n  user:\n    \
                         client-certificate-data: Q0VSVA==\n    client-key-data: S0VZLXNlY3JldC1rZXktbWF0ZXJpYWw=\n\n";

    #[test]
    fn both_files_keep_the_credentials_and_change_the_server_and_names() {
        let r = rewrite(ADMIN, "lab", "member1", "https://127.0.0.1:16441", "https://10.123.45.10:16443").unwrap();
        for (text, server, use_) in [
            (&r.people, "https://127.0.0.1:16441", Use::People),
            (&r.karmada, "https://10.123.45.10:16443", Use::Karmada),
        ] {
            assert_eq!(
                Marker::read(text),
                Some(Marker { testbed: "lab".into(), member: "member1".into(), use_ }),
                "{text}"
            );
            assert_eq!(server_of(text).as_deref(), Some(server));
            let k = kube::config::Kubeconfig::from_yaml(text).unwrap();
            assert_eq!(k.current_context.as_deref(), Some("member1"));
            assert_eq!(k.clusters[0].name, "member1");
            assert_eq!(k.auth_infos[0].name, "member1");
            let c = k.clusters[0].cluster.as_ref().unwrap();
            assert_eq!(c.certificate_authority_data.as_deref(), Some("Q0FEQVRB"));
            let u = k.auth_infos[0].auth_info.as_ref().unwrap();
            assert_eq!(u.client_certificate_data.as_deref(), Some("Q0VSVA=="));
            assert!(text.contains("client-key-data: S0VZLXNlY3JldC1rZXktbWF0ZXJpYWw="));
        }
        assert!(!format!("{r:?}").contains("S0VZ"), "{r:?}");
    }

    #[test]
    fn a_broken_kubeconfig_is_described_without_its_text() {
        let e = rewrite("token: abcdef-secret\n  : [", "lab", "m", "s", "k").unwrap_err();
        assert!(!e.to_string().contains("abcdef"), "{e}");
        assert!(e.to_string().contains("not a kubeconfig"), "{e}");
    }

    #[test]
    fn markers_name_the_testbed_member_and_use() {
        let m = Marker { testbed: "lab".into(), member: "member2".into(), use_: Use::Karmada };
        assert_eq!(m.line(), "# managed-by: testbed name=lab address=kubeconfig.member2 use=karmada");
        assert_eq!(Marker::read(&format!("{}\napiVersion: v1\n", m.line())), Some(m));
        assert_eq!(Marker::read("apiVersion: v1\n"), None);
    }
}
