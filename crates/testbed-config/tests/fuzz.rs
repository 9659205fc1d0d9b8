//! Fuzzing the file reader: arbitrary bytes, and the repository's own files with arbitrary damage, never
//! make parse+validate panic, and every error renders, one-line and graphical, at a place inside the file.
//!
//! 512 cases per property by default, a second or two in all; more with PROPTEST_CASES (e.g. 100000 for a
//! longer local run).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;

const FILE: &str = "testbed.toml";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// testbed.toml and every example file: realistic starting points that reach validation.
fn seeds() -> Vec<Vec<u8>> {
    let mut paths = vec![repo().join("testbed.toml")];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    examples.sort();
    paths.extend(examples);
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Pieces of TOML and of bad input, to insert whole: a random byte rarely makes a new table or a string.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\n",
    "\\",
    "\\u0000",
    "\\n",
    "\\t",
    "\\u001b",
    "{",
    "}",
    ",",
    ".",
    "#",
    "\"\"\"",
    "é",
    "\u{feff}",
    "0",
    "65536",
    "-1",
    "true",
    "1979-05-27",
    "inf",
    "nan",
    "\"/\"",
    "\"\"",
    "\"../\"",
    "\r\n",
    "\t",
    "[[members]]\nname = \"m\"\napi_port = 16441\n",
    "[lxd]\n",
    "[karmada]\ndata_dir = \"/\"\n",
    "[[images]]\nsource = \"A:B@sha256:\"\n",
    "[registry.mirrors]\n\"x\" = { endpoint = \"http://[::1]\" }\n",
    "[[proxies]]\nname = \"p\"\nmember = \"m\"\nhost_port = 1\ntarget = \"tcp:[::1]:0\"\n",
];

/// One change to a file.
#[derive(Debug, Clone)]
enum Mutation {
    InsertBytes(Index, Vec<u8>),
    InsertToken(Index, Index),
    Delete(Index, usize),
    Replace(Index, u8),
    DuplicateRange(Index, usize),
    LongValue(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::InsertToken(i, t)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<Index>(), 1usize..200).prop_map(|(i, n)| Mutation::DuplicateRange(i, n)),
        (any::<Index>(), 200usize..70000).prop_map(|(i, n)| Mutation::LongValue(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |i: &Index, len: usize| i.index(len + 1);
        match m {
            Mutation::InsertBytes(i, b) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, b.iter().copied());
            }
            Mutation::InsertToken(i, t) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, t.get(TOKENS).bytes());
            }
            Mutation::Delete(i, n) => {
                let p = at(i, bytes.len());
                bytes.drain(p..(p + n).min(bytes.len()));
            }
            Mutation::Replace(i, b) if !bytes.is_empty() => {
                let p = i.index(bytes.len());
                bytes[p] = *b;
            }
            Mutation::Replace(..) => {}
            Mutation::DuplicateRange(i, n) => {
                let p = at(i, bytes.len());
                let piece = bytes[p..(p + n).min(bytes.len())].to_vec();
                bytes.splice(p..p, piece);
            }
            Mutation::LongValue(i, n) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, std::iter::repeat_n(b'x', *n));
            }
        }
    }
    bytes
}

/// Parses and validates `bytes`; on an error, checks what the user would see.
fn read(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Err(err) = testbed_config::parse_bytes(Path::new(FILE), bytes) else { return Ok(()) };
    let lines = err.lines();
    prop_assert!(!lines.is_empty());
    let line_count = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    for l in &lines {
        // `testbed.toml:LINE:COL: message`, LINE inside the file, COL from 1, on one line.
        let rest = l.strip_prefix("testbed.toml:").ok_or_else(|| TestCaseError::fail(format!("no location: {l}")))?;
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let col: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        prop_assert!((1..=line_count).contains(&line) && col >= 1, "bad location in {l:?}");
        prop_assert!(!l.contains('\n'), "a problem line holds a newline: {l:?}");
    }
    let mut shown = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut shown, &err)
        .map_err(|e| TestCaseError::fail(format!("the report does not render: {e}")))?;
    prop_assert!(!shown.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), .. ProptestConfig::default() })]

    /// Any bytes (mostly not UTF-8), any text, and text of TOML's own characters (which parses now and then).
    #[test]
    fn arbitrary_bytes_never_panic_and_every_error_renders(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        any::<String>().prop_map(String::into_bytes),
        "[a-z0-9_.:/\\[\\]{}=,\"' #\n\t-]{0,300}".prop_map(String::into_bytes),
    ]) {
        read(&bytes)?;
    }

    #[test]
    fn damaged_example_files_never_panic_and_every_error_renders(
        seed in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        read(&apply(seed.get(&seeds).clone(), &mutations))?;
    }
}
