//! The spec file's committed JSON schema stays in step with its types.

use std::path::Path;

use ferry_image::spec::ImageSpec;

/// docs/image.schema.json is generated from the spec's types; it must not
/// drift (`FERRY_UPDATE_SCHEMA=1` rewrites it).
#[test]
fn committed_schema_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/image.schema.json");
    let generated = serde_json::to_string_pretty(&ImageSpec::json_schema()).unwrap() + "\n";
    if std::env::var_os("FERRY_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == generated,
        "schema changed: run the test with FERRY_UPDATE_SCHEMA=1"
    );
}
