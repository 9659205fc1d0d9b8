//! Issue 10's first rule, checked on the source: every layer has one implementation. The `Provider` trait is
//! implemented by the five real provider crates only; the simulated world models what they talk to, and
//! none of its types is a provider.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn only_the_real_provider_crates_implement_provider() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crates/");
    let mut files = Vec::new();
    rust_files(crates, &mut files);
    let implementing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            text.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with("impl Provider for") || l.starts_with("impl testbed_provider::Provider for")
            })
        })
        .filter_map(|f| f.strip_prefix(crates).ok().map(|p| p.display().to_string()))
        .collect();
    let mut crates_implementing: Vec<&str> =
        implementing.iter().filter_map(|p| p.split('/').next()).collect::<Vec<_>>();
    crates_implementing.sort_unstable();
    crates_implementing.dedup();
    assert_eq!(
        crates_implementing,
        ["testbed-host", "testbed-karmada", "testbed-lxd", "testbed-microk8s", "testbed-registry"],
        "files implementing Provider: {implementing:?}"
    );
    assert!(
        implementing.iter().all(|p| p.contains("/src/")),
        "no test double implements Provider either: {implementing:?}"
    );
}
