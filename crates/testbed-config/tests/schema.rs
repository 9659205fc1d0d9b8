//! The committed `testbed.schema.json` (repo root) must be exactly what [`testbed_config::schema`] prints, so
//! editors validate against the model that `testbed` really parses.
//!
//! Regenerate it after changing `crates/testbed-config/src/model.rs`:
//!
//! ```sh
//! TESTBED_BLESS=1 cargo test -p testbed-config --test schema
//! ```

use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testbed.schema.json")
}

/// The schema as the file holds it: pretty JSON and a trailing newline.
fn generated() -> String {
    let mut s = serde_json::to_string_pretty(&testbed_config::schema()).expect("the schema serialises");
    s.push('\n');
    s
}

#[test]
fn committed_schema_is_up_to_date() {
    let path = committed_path();
    let want = generated();
    if std::env::var("TESTBED_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &want).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let first_diff = have.lines().zip(want.lines()).position(|(a, b)| a != b).map_or_else(
            || format!("the files differ in length ({} vs {} lines)", have.lines().count(), want.lines().count()),
            |i| format!("first difference at line {}", i + 1),
        );
        panic!(
            "testbed.schema.json does not match the model in crates/testbed-config/src/model.rs ({first_diff}).\n\
             Regenerate it with:\n\n    TESTBED_BLESS=1 cargo test -p testbed-config --test schema\n\n\
             (or `testbed schema > testbed.schema.json`), then commit the file."
        );
    }
}

#[test]
fn schema_describes_every_section_and_refuses_unknown_keys() {
    let schema = serde_json::to_value(testbed_config::schema()).unwrap();
    let props = schema["properties"].as_object().expect("top-level properties");
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["host", "images", "karmada", "lxd", "members", "name", "proxies", "registry", "workloads"]);
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    // Doc comments become descriptions, which editors show on hover.
    assert!(props["members"]["description"].as_str().is_some_and(|d| d.contains("LXD container")));
    let member = &schema["$defs"]["Member"];
    assert_eq!(member["additionalProperties"], serde_json::json!(false));
    let mut required: Vec<&str> = member["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    required.sort_unstable();
    assert_eq!(required, ["api_port", "name"]);
}
