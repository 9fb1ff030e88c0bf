//! The YAML `twin up` runs: every document of one file, or of a folder's `*.yaml` and `*.yml`
//! files (not its subfolders, as `kubectl apply -f DIR`), each checked against its CRD's
//! schema and CEL rules as the API server would check it, with every problem named by file,
//! document and field. Nothing runs until every document is valid.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::schema::CrdCatalog;
use crate::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};

/// The namespace of a document that names none (kubectl's default context namespace).
pub const DEFAULT_NAMESPACE: &str = "default";

/// One resource of the YAML.
#[derive(Debug, Clone)]
pub enum Twin {
    /// A TwinDataset.
    Dataset(Box<TwinDataset>),
    /// A TwinTrainingJob.
    Training(Box<TwinTrainingJob>),
    /// A TwinEndpoint.
    Endpoint(Box<TwinEndpoint>),
}

impl Twin {
    #[allow(missing_docs)]
    pub fn kind(&self) -> &'static str {
        match self {
            Twin::Dataset(_) => "TwinDataset",
            Twin::Training(_) => "TwinTrainingJob",
            Twin::Endpoint(_) => "TwinEndpoint",
        }
    }

    /// The phase of its own kind among the three given.
    pub fn phase(
        &self,
        dataset: crate::api::dataset::DatasetPhase,
        training: crate::api::training::TrainingPhase,
        endpoint: crate::api::endpoint::EndpointPhase,
    ) -> super::state::Phase {
        match self {
            Twin::Dataset(_) => dataset.into(),
            Twin::Training(_) => training.into(),
            Twin::Endpoint(_) => endpoint.into(),
        }
    }

    fn metadata(&self) -> &kube::api::ObjectMeta {
        match self {
            Twin::Dataset(d) => &d.metadata,
            Twin::Training(t) => &t.metadata,
            Twin::Endpoint(e) => &e.metadata,
        }
    }

    #[allow(missing_docs)]
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    #[allow(missing_docs)]
    pub fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// `twindataset/paul`, as kubectl names objects.
    pub fn handle(&self) -> String {
        format!("{}/{}", self.kind().to_ascii_lowercase(), self.name())
    }
}

/// The resource of `kind` named `name` in `namespace` among `resources`.
pub fn find<'a>(resources: &'a [Located], kind: &str, namespace: &str, name: &str) -> Option<&'a Twin> {
    resources
        .iter()
        .map(|r| &r.twin)
        .find(|twin| twin.kind() == kind && twin.name() == name && twin.namespace() == namespace)
}

/// A resource with where it was written.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Located {
    pub file: PathBuf,
    /// Its document in the file, from 1.
    pub document: usize,
    /// The resource, with the schema's defaults filled in.
    pub twin: Twin,
}

impl Located {
    /// `FILE, document N (Kind name)`: where a problem is.
    pub fn at(&self) -> String {
        format!(
            "{}, document {} ({} {})",
            self.file.display(),
            self.document,
            self.twin.kind(),
            self.twin.name()
        )
    }
}

/// The YAML files of `path`: the file itself, or a folder's `*.yaml` and `*.yml` in name order.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if metadata.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{} holds no .yaml or .yml files", path.display()));
    }
    Ok(files)
}

/// A checked document as its typed resource.
fn typed(kind: &str, object: Value) -> Result<Twin, String> {
    let twin = match kind {
        "TwinDataset" => serde_json::from_value(object).map(|dataset| Twin::Dataset(Box::new(dataset))),
        "TwinTrainingJob" => serde_json::from_value(object).map(|job| Twin::Training(Box::new(job))),
        "TwinEngine" => {
            return Err(
                "a TwinEngine is a cluster's vLLM shared by twins (kubectl apply); twin up does not run one: serve its twins here with engine.kind embedded".into(),
            );
        }
        _ => serde_json::from_value(object).map(|endpoint| Twin::Endpoint(Box::new(endpoint))),
    };
    twin.map_err(|e| format!("does not read as a {kind}: {e}"))
}

/// Checks one document; its problems, each already prefixed with where it is.
fn check(
    catalog: &CrdCatalog,
    file: &Path,
    document: usize,
    mut object: Value,
) -> Result<Located, Vec<String>> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let at = format!(
        "{}, document {document} ({} {})",
        file.display(),
        if kind.is_empty() { "no kind" } else { &kind },
        name
    );
    let Some(schema) = catalog.by_kind(&kind) else {
        return Err(vec![format!(
            "{at}: kind {kind:?} is not one `twin up` runs: TwinDataset, TwinTrainingJob or TwinEndpoint \
             (apiVersion llmtwin.dev/v1alpha1)"
        )]);
    };
    if name.is_empty() {
        return Err(vec![format!("{at}: metadata.name: Required value")]);
    }
    if object.pointer("/metadata/namespace").is_none_or(Value::is_null) {
        object["metadata"]["namespace"] = Value::from(DEFAULT_NAMESPACE);
    }
    let checked = schema
        .check(&object, None)
        .map_err(|errors| errors.into_iter().map(|error| format!("{at}: {error}")).collect::<Vec<_>>())?;
    let twin = typed(&kind, checked).map_err(|error| vec![format!("{at}: {error}")])?;
    Ok(Located { file: file.to_path_buf(), document, twin })
}

/// Every resource of `path`, checked; or every problem found, each naming its file, document
/// and field.
pub fn load(path: &Path) -> Result<Vec<Located>, Vec<String>> {
    let catalog = CrdCatalog::generated();
    let mut resources = Vec::new();
    let mut problems = Vec::new();
    for file in files(path).map_err(|e| vec![e])? {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) => {
                problems.push(format!("{}: {error}", file.display()));
                continue;
            }
        };
        let documents: Vec<Value> = match serde_saphyr::from_str_multiple(&text) {
            Ok(documents) => documents,
            Err(error) => {
                problems.push(format!("{}: not YAML: {error}", file.display()));
                continue;
            }
        };
        for (index, object) in documents.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
            match check(&catalog, &file, index + 1, object) {
                Ok(resource) => resources.push(resource),
                Err(found) => problems.extend(found),
            }
        }
    }
    if resources.is_empty() && problems.is_empty() {
        problems.push(format!("{}: no TwinDataset, TwinTrainingJob or TwinEndpoint in it", path.display()));
    }
    if problems.is_empty() { Ok(resources) } else { Err(problems) }
}
