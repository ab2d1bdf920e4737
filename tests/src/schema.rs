//! JSON schemas the tests validate our output against (`tests/schemas/`).

/// What the CDI JSON schema committed under tests/schemas/ finds wrong with `spec`.
pub fn cdi_errors(spec: &serde_json::Value) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/cdi-spec.schema.json");
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    v.iter_errors(spec)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Validate `spec` against the CDI JSON schema committed under tests/schemas/.
pub fn assert_valid_cdi(spec: &serde_json::Value) {
    let errors = cdi_errors(spec);
    assert!(errors.is_empty(), "CDI spec invalid: {errors:#?}\n{spec:#}");
}
