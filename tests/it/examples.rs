//! Every example under `manifests/examples/` is valid against the CRDs (schema and CEL rules)
//! and deserialises into the operator's types.

use serde_json::Value;

use crate::support::{crd_schema::CrdCatalog, repo};

#[test]
fn every_example_is_valid() {
    let catalog = CrdCatalog::generated();
    let files = repo::files_with_extension("manifests/examples", "yaml");
    let mut kinds_seen = std::collections::BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let documents: Vec<Value> = serde_saphyr::from_str_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        assert!(!documents.is_empty(), "{} holds no object", file.display());
        for document in documents {
            let kind = document["kind"].as_str().unwrap_or_default().to_string();
            if document["apiVersion"].as_str().is_some_and(|v| v.starts_with("llmtwin.dev/")) {
                let defaulted = catalog.check(&document, None).unwrap_or_else(|errors| {
                    panic!("{} ({kind}) is invalid:\n{}", file.display(), errors.join("\n"))
                });
                deserialises(&kind, defaulted);
                kinds_seen.insert(kind);
            }
        }
    }
    assert_eq!(
        kinds_seen.into_iter().collect::<Vec<_>>(),
        ["TwinDataset", "TwinEndpoint", "TwinEngine", "TwinTrainingJob"],
        "the examples must show every kind"
    );
}

fn deserialises(kind: &str, object: Value) {
    use twin_operator::api::{TwinDataset, TwinEndpoint, TwinEngine, TwinTrainingJob};
    let result = match kind {
        "TwinDataset" => serde_json::from_value::<TwinDataset>(object).map(drop),
        "TwinTrainingJob" => serde_json::from_value::<TwinTrainingJob>(object).map(drop),
        "TwinEndpoint" => serde_json::from_value::<TwinEndpoint>(object).map(drop),
        "TwinEngine" => serde_json::from_value::<TwinEngine>(object).map(drop),
        other => panic!("unexpected kind {other}"),
    };
    result.unwrap_or_else(|e| panic!("{kind} does not deserialise: {e}"));
}
