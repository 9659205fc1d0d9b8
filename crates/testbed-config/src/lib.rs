//! The desired-state file `testbed.toml`: its model and defaults ([`model`]), strict parsing with
//! file:line:col errors, semantic validation ([`validate`]), and its JSON Schema ([`schema`]).
//!
//! Data flows one way through testbed: this crate turns text into a validated [`Config`]; the planner
//! reads nothing else from the file.

pub mod error;
pub mod image_ref;
pub mod karmada_release;
pub mod manifests;
pub mod mirror;
pub mod model;
pub mod net;
pub mod source;
pub mod text;
mod validate;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, Problem};
pub use karmada_release::{control_plane_images, ControlPlaneImage};
pub use mirror::{source_endpoint, SourceEndpoint};
pub use model::*;
pub use validate::lxd_instance_name_problem;

/// A desired-state file that parsed and passed every check. Only [`parse`] and [`load`] make one.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub file: TestbedFile,
    /// The file's path as the user gave it.
    pub path: PathBuf,
    /// Each `[[workloads]]` entry's objects, read from its manifest files, in the file's order.
    pub workloads: Vec<manifests::WorkloadManifests>,
}

impl Config {
    /// The directory relative paths in the file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// `path` as the file means it: relative paths are relative to the file's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = std::path::Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir().join(p)
        }
    }

    /// Where the members' kubeconfigs are written: `[host] kubeconfig_dir`, resolved.
    pub fn kubeconfig_dir(&self) -> PathBuf {
        self.resolve(&self.file.host.kubeconfig_dir)
    }

    /// A member's join mode, after defaults.
    pub fn join_mode(&self, member: &Member) -> JoinMode {
        member.join_mode.unwrap_or(self.file.karmada.join_mode)
    }
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
    parse_bytes(path, &bytes)
}

/// Parses and validates the file's bytes, naming it `path` in messages: bytes that are not UTF-8 (which
/// TOML requires) are a problem at the first bad byte, by byte offset and line:column.
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(path, text),
        Err(e) => Err(encoding_error(&path.display().to_string(), bytes, &e)),
    }
}

fn encoding_error(path: &str, bytes: &[u8], e: &std::str::Utf8Error) -> ConfigError {
    let offset = e.valid_up_to();
    let bad = &bytes[offset..offset + e.error_len().unwrap_or(bytes.len() - offset)];
    let shown_bytes = bad.iter().map(|b| format!("0x{b:02X}")).collect::<Vec<_>>().join(" ");
    // The text up to the bad byte is valid, so the lossy text has the same offsets up to it.
    let text = String::from_utf8_lossy(bytes);
    let (line, col) = source::line_col(&text, offset);
    let what = if e.error_len().is_some() { "is not UTF-8" } else { "ends inside a UTF-8 character" };
    let (src, span) = error::shown(path, &text, &(offset..offset + char::REPLACEMENT_CHARACTER.len_utf8()));
    ConfigError::Encoding(Box::new(Problem {
        location: format!("{path}:{line}:{col}"),
        message: format!("the file {what}: byte {shown_bytes} at byte offset {offset} (line {line}, column {col})"),
        src,
        span,
        label: "not UTF-8".to_owned(),
        help: Some(
            "TOML files are UTF-8: save the file as UTF-8 (e.g. `iconv -f LATIN1 -t UTF-8`), or remove the byte".into(),
        ),
    }))
}

/// Parses and validates `text`, naming it `path` in messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let file: TestbedFile = toml::from_str(text).map_err(|e| syntax_error(&shown, text, &e))?;
    let map = source::SourceMap::new(text);
    let mut reporter = error::Reporter { path: &shown, map: &map, problems: Vec::new(), tainted: Default::default() };
    validate::check(&file, &mut reporter);
    reporter.problems.sort_by_key(|p| p.span.offset());
    if !reporter.problems.is_empty() {
        return Err(ConfigError::Invalid { path: shown.clone(), problems: reporter.problems });
    }
    // The workloads' files are read once the file itself is sound; their problems come in the workloads'
    // order, each at its place in its own file.
    let workloads = manifests::read_all(&file, path, &mut reporter);
    if reporter.problems.is_empty() {
        Ok(Config { file, path: path.to_path_buf(), workloads })
    } else {
        Err(ConfigError::Invalid { path: shown.clone(), problems: reporter.problems })
    }
}

/// Whether the value at `offset` is in a proxy's `pod` table: inline on its line (`pod = { ... }`), or under
/// a `[proxies.pod]` header.
fn in_pod_table(text: &str, offset: usize) -> bool {
    let before = &text[..offset.min(text.len())];
    let line = before.rsplit('\n').next().unwrap_or_default();
    if line.trim_start().starts_with("pod") && line.contains('{') {
        return true;
    }
    let header = before.lines().rev().map(str::trim).find(|l| l.starts_with('['));
    header.is_some_and(|h| h.trim_matches(['[', ']']).trim().ends_with(".pod"))
}

fn syntax_error(path: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let (line, col) = source::line_col(text, span.start);
    let raw = e.message().trim().to_owned();
    let (message, label, help) = if let Some(rest) = raw.strip_prefix("unknown field ") {
        let (key, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
        let help = (!expected.is_empty()).then(|| format!("expected{}", expected.trim_end_matches('.')));
        (format!("unknown key {key}"), "unknown key".to_owned(), help)
    } else if let Some(rest) = raw.strip_prefix("missing field ") {
        (format!("missing required key {rest}"), "in this table".to_owned(), None)
    } else if raw.contains("expected u16") {
        // Host ports are 1024 and up; a pod's port is any port.
        let range = if in_pod_table(text, span.start) { "1-65535" } else { "1024-65535" };
        let msg = raw.replace("expected u16", &format!("expected a port number ({range})"));
        (msg, "not a port".to_owned(), None)
    } else {
        (raw, "here".to_owned(), None)
    };
    let (src, span) = error::shown(path, text, &span);
    ConfigError::Syntax(Box::new(Problem {
        location: format!("{path}:{line}:{col}"),
        message: error::brief(message),
        src,
        span,
        label,
        help,
    }))
}

/// The name an `[[images]]` entry goes by in addresses: its `name`, else the repository's last component.
pub fn image_name(img: &Image) -> String {
    if let Some(n) = &img.name {
        return n.clone();
    }
    image_ref::ImageRef::parse(&img.source).map(|r| r.short_name().to_owned()).unwrap_or_else(|_| img.source.clone())
}

/// The JSON Schema of `testbed.toml`, for editors (see docs/reference.md).
pub fn schema() -> schemars::Schema {
    schemars::schema_for!(TestbedFile)
}
