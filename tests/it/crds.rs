//! CRD generation: `twin crd`, the committed `crds/`, the chart's copies and `install.yaml`
//! all match the Rust types, and the CRDs carry the names, columns and subresources users see.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use twin_operator::{api, crdgen};

use crate::support::repo;

const REGENERATE: &str = "run scripts/generate and commit the result";

#[test]
fn committed_crds_match_the_rust_types() {
    let crds = api::crds();
    for crd in &crds {
        let name = crdgen::file_name(crd);
        assert_eq!(
            repo::read(&format!("crds/{name}")),
            crdgen::crd_file(crd).unwrap(),
            "crds/{name} drifted: {REGENERATE}"
        );
        assert_eq!(
            repo::read(&format!("charts/twin-operator/templates/crds/{name}")),
            crdgen::chart_template(crd).unwrap(),
            "the chart's copy of {name} drifted: {REGENERATE}"
        );
    }
    for dir in ["crds", "charts/twin-operator/templates/crds"] {
        let files = repo::files_with_extension(dir, "yaml");
        assert_eq!(files.len(), crds.len(), "{dir} holds files no CRD generates: {files:?}");
    }
}

#[test]
fn install_yaml_is_the_chart_rendered_with_defaults() {
    let rendered = repo::run_helm(&[
        "template",
        "twin-operator",
        "charts/twin-operator",
        "--namespace",
        "twin-system",
        "--set",
        "namespace.create=true",
    ]);
    assert_eq!(
        repo::read("manifests/install.yaml"),
        rendered,
        "manifests/install.yaml drifted: {REGENERATE}"
    );
}

#[test]
fn twin_crd_prints_crds_that_parse_back_into_the_same_objects() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_twin")).arg("crd").output().unwrap();
    assert!(output.status.success(), "twin crd failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let parsed: Vec<CustomResourceDefinition> = serde_saphyr::from_str_multiple(&text).unwrap();
    assert_eq!(parsed, api::crds());
    // The chart's templated copies are plain YAML once the Helm directives are gone.
    for crd in api::crds() {
        let template = crdgen::chart_template(&crd).unwrap();
        let body: String = template.lines().filter(|l| !l.contains("{{")).map(|l| format!("{l}\n")).collect();
        let parsed: CustomResourceDefinition = serde_saphyr::from_str(&body).unwrap();
        assert_eq!(parsed.spec, crd.spec);
        assert_eq!(parsed.metadata.annotations.unwrap()["helm.sh/resource-policy"], "keep");
    }
}

#[test]
fn crds_have_the_names_columns_and_subresources_users_rely_on() {
    let expected = [
        (
            "twindatasets.llmtwin.dev",
            "TwinDataset",
            "tds",
            vec!["Phase", "Revision", "Documents", "Chunks", "Author", "Age"],
        ),
        (
            "twintrainingjobs.llmtwin.dev",
            "TwinTrainingJob",
            "ttj",
            vec![
                "Phase",
                "Dataset",
                "Revision",
                "Backend",
                "NLL-Reduction",
                "Passed",
                "Base",
                "Adapter",
                "Age",
            ],
        ),
        (
            "twinengines.llmtwin.dev",
            "TwinEngine",
            "teng",
            vec!["Phase", "Base", "Adapters", "Replicas", "Age"],
        ),
        (
            "twinendpoints.llmtwin.dev",
            "TwinEndpoint",
            "tep",
            vec!["Phase", "URL", "Engine", "Gateway", "Adapter", "Age"],
        ),
    ];
    let crds = api::crds();
    assert_eq!(crds.len(), expected.len());
    for (crd, (name, kind, short, columns)) in crds.iter().zip(expected) {
        assert_eq!(crd.metadata.name.as_deref(), Some(name));
        assert_eq!(crd.spec.group, "llmtwin.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[short.to_string()][..]));
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["twin".to_string()][..]));
        let [version] = &crd.spec.versions[..] else { panic!("{kind}: one version expected") };
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        assert!(
            version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "{kind}: status subresource"
        );
        let names: Vec<&str> =
            version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(names, columns, "{kind}: printer columns");
        let schema =
            serde_json::to_value(version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap())
                .unwrap();
        assert_documented(&schema, kind);
    }
}

/// Every property of the spec has a description: they are what `kubectl explain` shows.
fn assert_documented(schema: &serde_json::Value, path: &str) {
    if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, property) in properties {
            let path = format!("{path}.{name}");
            if name != "metadata" && name != "apiVersion" && name != "kind" {
                assert!(
                    property.get("description").is_some_and(|d| d.as_str().is_some_and(|d| !d.is_empty())),
                    "{path} has no description"
                );
            }
            assert_documented(property, &path);
        }
    }
    if let Some(items) = schema.get("items") {
        assert_documented(items, &format!("{path}[]"));
    }
}

#[test]
fn the_field_reference_in_docs_matches_the_crds() {
    let readme = repo::read("docs/reference.md");
    let begin = "<!-- BEGIN GENERATED FIELD REFERENCE -->\n";
    let end = "<!-- END GENERATED FIELD REFERENCE -->";
    let start = readme.find(begin).expect("docs/reference.md has the reference's begin marker") + begin.len();
    let stop = readme.find(end).expect("docs/reference.md has the reference's end marker");
    assert_eq!(
        &readme[start..stop],
        twin_operator::apidoc::api_reference(),
        "docs/reference.md's field reference drifted: {REGENERATE}"
    );
    let reference = twin_operator::apidoc::api_reference();
    for field in [
        "`spec.sources[].feed.url`",
        "`spec.backend.sagemaker.roleArn`",
        "`spec.autoscaling.maxReplicas`",
        "`status.revision`",
    ] {
        assert!(reference.contains(field), "the reference lacks {field}");
    }
}
