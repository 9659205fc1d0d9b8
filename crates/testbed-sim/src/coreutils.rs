//! The file programs the providers run on the host and in members (`mkdir`, `touch`, `rm`, `ls`, `cat`),
//! over a file tree: the simulated host's directory ([`HostTree`]) or what the simulation keeps inside a
//! container ([`InsideTree`], saved in the state file). Messages and exit codes are GNU coreutils 9.4's
//! (Ubuntu 24.04): a missing operand is exit 1 for `mkdir`, `touch`, `rm` and `cat`, and 2 for `ls`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use testbed_command::Output;

use crate::host_root::under;

/// The programs here, where Ubuntu puts them (coreutils is essential: every host and image has them).
pub(crate) const PROGRAMS: [&str; 5] = ["mkdir", "touch", "rm", "ls", "cat"];

/// One entry of a container's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    Dir,
    File {
        content: String,
        mode: u32,
    },
    /// A file whose content is not text (an image archive pushed in).
    Bytes {
        content: crate::registry::Blob,
        mode: u32,
    },
}

/// What a file program reads and changes.
pub(crate) trait Tree {
    fn is_dir(&self, path: &str) -> bool;
    fn is_file(&self, path: &str) -> bool;
    fn read(&self, path: &str) -> Option<String>;
    /// Writes a file whose parent exists.
    fn write(&mut self, path: &str, content: &str, mode: u32) -> bool;
    /// Makes one directory whose parent exists.
    fn make_dir(&mut self, path: &str) -> bool;
    /// Removes a file, or a directory and all under it.
    fn remove(&mut self, path: &str);
    /// The names in a directory, sorted.
    fn names(&self, dir: &str) -> Vec<String>;
}

/// The parent of an absolute path (`/` for a top-level entry).
pub(crate) fn parent(path: &str) -> &str {
    match path.trim_end_matches('/').rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The files inside a container, as the simulation keeps them: paths to entries. `/` and the directories
/// every Ubuntu image has are always there.
pub(crate) struct InsideTree<'a> {
    pub files: &'a mut BTreeMap<String, Entry>,
}

/// Directories every container image has.
const IMAGE_DIRS: [&str; 9] = ["/", "/etc", "/root", "/tmp", "/usr", "/usr/bin", "/var", "/var/lib", "/var/snap"];

/// A file's bytes, in a container's files.
pub(crate) fn file_bytes<'a>(files: &'a BTreeMap<String, Entry>, path: &str) -> Option<&'a [u8]> {
    match files.get(path) {
        Some(Entry::File { content, .. }) => Some(content.as_bytes()),
        Some(Entry::Bytes { content, .. }) => Some(&content.0),
        _ => None,
    }
}

impl InsideTree<'_> {
    /// Writes a file whose parent exists: text as text, anything else as bytes.
    pub fn write_bytes(&mut self, path: &str, content: &[u8], mode: u32) -> bool {
        match std::str::from_utf8(content) {
            Ok(text) => self.write(path, text, mode),
            Err(_) if !self.is_dir(parent(path)) || self.is_dir(path) => false,
            Err(_) => {
                let content = crate::registry::Blob(content.to_vec());
                self.files.insert(path.to_owned(), Entry::Bytes { content, mode });
                true
            }
        }
    }
}

impl Tree for InsideTree<'_> {
    fn is_dir(&self, path: &str) -> bool {
        IMAGE_DIRS.contains(&path) || matches!(self.files.get(path), Some(Entry::Dir))
    }

    fn is_file(&self, path: &str) -> bool {
        matches!(self.files.get(path), Some(Entry::File { .. } | Entry::Bytes { .. }))
    }

    fn read(&self, path: &str) -> Option<String> {
        match self.files.get(path) {
            Some(Entry::File { content, .. }) => Some(content.clone()),
            Some(Entry::Bytes { content, .. }) => Some(String::from_utf8_lossy(&content.0).into_owned()),
            _ => None,
        }
    }

    fn write(&mut self, path: &str, content: &str, mode: u32) -> bool {
        if !self.is_dir(parent(path)) || self.is_dir(path) {
            return false;
        }
        self.files.insert(path.to_owned(), Entry::File { content: content.to_owned(), mode });
        true
    }

    fn make_dir(&mut self, path: &str) -> bool {
        if !self.is_dir(parent(path)) || self.is_file(path) {
            return false;
        }
        if !IMAGE_DIRS.contains(&path) {
            self.files.insert(path.to_owned(), Entry::Dir);
        }
        true
    }

    fn remove(&mut self, path: &str) {
        let below = format!("{}/", path.trim_end_matches('/'));
        self.files.retain(|p, _| p != path && !p.starts_with(&below));
    }

    fn names(&self, dir: &str) -> Vec<String> {
        let prefix = if dir == "/" { "/".to_owned() } else { format!("{}/", dir.trim_end_matches('/')) };
        self.files
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_owned)
            .collect()
    }
}

/// The simulated host's files: a real directory standing for `/`.
pub(crate) struct HostTree<'a> {
    pub root: &'a Path,
}

impl HostTree<'_> {
    fn at(&self, path: &str) -> PathBuf {
        under(self.root, path)
    }
}

impl Tree for HostTree<'_> {
    fn is_dir(&self, path: &str) -> bool {
        self.at(path).is_dir()
    }

    fn is_file(&self, path: &str) -> bool {
        self.at(path).is_file()
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read(self.at(path)).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn write(&mut self, path: &str, content: &str, mode: u32) -> bool {
        use std::os::unix::fs::PermissionsExt;
        self.is_dir(parent(path))
            && std::fs::write(self.at(path), content).is_ok()
            && std::fs::set_permissions(self.at(path), std::fs::Permissions::from_mode(mode)).is_ok()
    }

    fn make_dir(&mut self, path: &str) -> bool {
        self.is_dir(path) || std::fs::create_dir(self.at(path)).is_ok()
    }

    fn remove(&mut self, path: &str) {
        let p = self.at(path);
        if p.is_dir() {
            let _ = std::fs::remove_dir_all(p);
        } else {
            let _ = std::fs::remove_file(p);
        }
    }

    fn names(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.at(dir))
            .map(|entries| {
                entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Makes `path` and its missing parents (`mkdir -p`).
pub(crate) fn make_dirs(tree: &mut dyn Tree, path: &str) -> bool {
    if tree.is_dir(path) {
        return true;
    }
    if tree.is_file(path) {
        return false;
    }
    make_dirs(tree, parent(path)) && tree.make_dir(path)
}

fn operands<'a>(args: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    args.iter().partition(|a| a.starts_with('-') && a.len() > 1)
}

fn failed(code: i32, stderr: String) -> Output {
    Output::failed(code, stderr)
}

/// Success, or exit 1 with the messages gathered for the operands that failed.
fn ended(err: String) -> Output {
    if err.is_empty() {
        Output::ok("")
    } else {
        failed(1, err)
    }
}

/// Runs one of the file programs, or `None` when `name` is not one of them.
pub(crate) fn run(tree: &mut dyn Tree, name: &str, args: &[&str]) -> Option<Output> {
    let (flags, paths) = operands(args);
    let has = |c: char| flags.iter().any(|f| !f.starts_with("--") && f.contains(c));
    let missing = |program: &str, code: i32| {
        failed(code, format!("{program}: missing operand\nTry '{program} --help' for more information.\n"))
    };
    Some(match name {
        "mkdir" => {
            if paths.is_empty() {
                return Some(missing("mkdir", 1));
            }
            let mut err = String::new();
            for p in &paths {
                let made = if has('p') { make_dirs(tree, p) } else { !tree.is_dir(p) && tree.make_dir(p) };
                if !made {
                    let why =
                        if tree.is_dir(p) || tree.is_file(p) { "File exists" } else { "No such file or directory" };
                    err.push_str(&format!("mkdir: cannot create directory '{p}': {why}\n"));
                }
            }
            ended(err)
        }
        "touch" => {
            if paths.is_empty() {
                return Some(missing("touch", 1));
            }
            let mut err = String::new();
            for p in &paths {
                if tree.is_dir(p) || tree.is_file(p) {
                    continue;
                }
                if !tree.write(p, "", 0o644) {
                    err.push_str(&format!("touch: cannot touch '{p}': No such file or directory\n"));
                }
            }
            ended(err)
        }
        "rm" => {
            if paths.is_empty() {
                return Some(if has('f') { Output::ok("") } else { missing("rm", 1) });
            }
            let mut err = String::new();
            for p in &paths {
                if tree.is_dir(p) && !has('r') {
                    err.push_str(&format!("rm: cannot remove '{p}': Is a directory\n"));
                } else if tree.is_dir(p) || tree.is_file(p) {
                    tree.remove(p);
                } else if !has('f') {
                    err.push_str(&format!("rm: cannot remove '{p}': No such file or directory\n"));
                }
            }
            ended(err)
        }
        "ls" => {
            let mut out = String::new();
            let mut err = String::new();
            for p in if paths.is_empty() { vec!["."] } else { paths } {
                if tree.is_dir(p) {
                    for n in tree.names(p) {
                        out.push_str(&n);
                        out.push('\n');
                    }
                } else if tree.is_file(p) {
                    out.push_str(p);
                    out.push('\n');
                } else {
                    err.push_str(&format!("ls: cannot access '{p}': No such file or directory\n"));
                }
            }
            Output { code: if err.is_empty() { 0 } else { 2 }, stdout: out, stderr: err }
        }
        "cat" => {
            let mut out = String::new();
            let mut err = String::new();
            for p in &paths {
                match tree.read(p) {
                    Some(text) => out.push_str(&text),
                    None if tree.is_dir(p) => err.push_str(&format!("cat: {p}: Is a directory\n")),
                    None => err.push_str(&format!("cat: {p}: No such file or directory\n")),
                }
            }
            Output { code: if err.is_empty() { 0 } else { 1 }, stdout: out, stderr: err }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(files: &mut BTreeMap<String, Entry>, argv: &[&str]) -> Output {
        run(&mut InsideTree { files }, argv[0], &argv[1..]).expect("a file program")
    }

    #[test]
    fn the_file_programs_answer_as_coreutils_does() {
        let mut f = BTreeMap::new();
        assert_eq!(sh(&mut f, &["touch", "/var/snap/x/y"]).code, 1);
        assert_eq!(
            sh(&mut f, &["mkdir", "/var/snap/x/y"]).stderr,
            "mkdir: cannot create directory '/var/snap/x/y': No such file or directory\n"
        );
        assert!(sh(&mut f, &["mkdir", "-p", "/var/snap/x/y"]).success());
        assert!(sh(&mut f, &["touch", "/var/snap/x/y/dns", "/var/snap/x/y/registry"]).success());
        assert_eq!(sh(&mut f, &["ls", "-1", "/var/snap/x/y"]).stdout, "dns\nregistry\n");
        let missing = sh(&mut f, &["ls", "-1", "/var/snap/none"]);
        assert_eq!(
            (missing.code, missing.stderr.as_str()),
            (2, "ls: cannot access '/var/snap/none': No such file or directory\n")
        );
        assert_eq!(sh(&mut f, &["cat", "/var/snap/none"]).stderr, "cat: /var/snap/none: No such file or directory\n");
        assert!(sh(&mut f, &["rm", "-f", "/var/snap/x/y/dns", "/var/snap/none"]).success());
        assert_eq!(sh(&mut f, &["ls", "-1", "/var/snap/x/y"]).stdout, "registry\n");
        assert_eq!(sh(&mut f, &["rm", "/var/snap/x"]).stderr, "rm: cannot remove '/var/snap/x': Is a directory\n");
        assert!(sh(&mut f, &["rm", "-rf", "/var/snap/x"]).success());
        assert!(f.is_empty(), "{f:?}");
    }
}
