//! A TwinEndpoint run by `twin up`: the gateway of `twin serve` in this process, on an address
//! taken before anything else runs (so a port in use is said at once), with the embedded engine
//! loading the training job's GGUF base model and the `adapter.gguf` its run published (or the
//! `external` engine's URL), and the dataset revision `twin up` built. A training job that has
//! not trained here leaves the endpoint serving its base model, and saying so.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use clap::Parser;

use super::manifest::{self, Located, Twin};
use super::state::{Phase, State, Status};
use crate::api::endpoint::{EndpointPhase, EngineKind, RetrievalRevision, ServedModel};
use crate::api::readiness::{DatasetReadiness, NO_RETRIEVAL};
use crate::api::training::TrainingPhase;
use crate::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};
use crate::contract::gateway::GatewaySettings;
use crate::contract::trainer::{Run, revision_folder, run_output};
use crate::serve::config::{ApiKey, ServeArgs};
use crate::storage::StorageUri;

/// The environment variable that gives `twin up` an endpoint's API key locally, where the
/// Secret that `spec.gateway.apiKeySecretRef` names does not exist.
pub const API_KEY_ENV: &str = "TWIN_API_KEY";

/// Whether `twin up` serves the endpoint on this machine: vLLM, its own or shared, runs only on
/// a cluster's GPUs.
pub fn served_here(endpoint: &TwinEndpoint) -> bool {
    !matches!(endpoint.spec.engine.kind, EngineKind::Vllm | EngineKind::Shared)
}

/// The address each endpoint served here listens on, taken now, by the endpoint's index among
/// `resources`: the first at `listen`, each next one on the following port (any free port each
/// when `listen`'s port is 0). A taken address is a problem naming the endpoint.
pub fn bind_all(
    resources: &[Located],
    listen: SocketAddr,
) -> Result<BTreeMap<usize, TcpListener>, Vec<String>> {
    let mut listeners = BTreeMap::new();
    let mut problems = Vec::new();
    let mut next = listen;
    for (index, resource) in resources.iter().enumerate() {
        let Twin::Endpoint(endpoint) = &resource.twin else { continue };
        if !served_here(endpoint) {
            continue;
        }
        match crate::serve::bind(&next.to_string()) {
            Ok(listener) => {
                listeners.insert(index, listener);
            }
            Err(error) => problems.push(format!(
                "{}: {error}: stop what uses it, or give twin up another --listen address",
                resource.at()
            )),
        }
        if next.port() != 0 {
            next.set_port(next.port().wrapping_add(1));
        }
    }
    if problems.is_empty() { Ok(listeners) } else { Err(problems) }
}

/// The base URL clients use for a listener's address.
pub fn base_url(listener: &TcpListener) -> String {
    let mut address = listener.local_addr().expect("a bound listener has an address");
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{address}")
}

/// An endpoint ready to serve: the gateway's settings and what it will say once it serves.
#[derive(Debug)]
pub struct Plan {
    /// `twin serve`'s settings.
    pub args: ServeArgs,
    /// What is served: model, adapter, dataset revision.
    pub serving: String,
    /// Why it serves less than asked (the base model without its adapter), if it does.
    pub degraded: Option<(String, String)>,
    /// The dataset revision it retrieves from.
    pub revision: Option<String>,
}

/// The training job the endpoint names, from the YAML.
fn job<'a>(resources: &'a [Located], namespace: &str, name: &str) -> Option<&'a TwinTrainingJob> {
    match manifest::find(resources, "TwinTrainingJob", namespace, name)? {
        Twin::Training(job) => Some(job),
        _ => None,
    }
}

/// The dataset the endpoint names, from the YAML.
fn dataset<'a>(resources: &'a [Located], namespace: &str, name: &str) -> Option<&'a TwinDataset> {
    match manifest::find(resources, "TwinDataset", namespace, name)? {
        Twin::Dataset(dataset) => Some(dataset),
        _ => None,
    }
}

/// A `file://` URI's path, or a plain path.
fn local_path(uri: &str) -> Option<PathBuf> {
    match uri.parse::<StorageUri>() {
        Ok(StorageUri::File { path }) => Some(path),
        Ok(_) => None,
        Err(_) if !uri.contains("://") => Some(PathBuf::from(uri)),
        Err(_) => None,
    }
}

/// The GGUF file the embedded engine loads for a base model URI: a local `.gguf` file, or
/// `hf://org/name@revision/file.gguf` (downloaded into the models folder).
fn gguf_base(uri: &str, field: &str) -> Result<String, Status> {
    let refused = |why: &str| {
        Status::new(
            EndpointPhase::Failed,
            "ModelNotGguf",
            format!(
                "{field} {uri}: {why}; the embedded engine runs a GGUF file (file:///path/model.gguf or \
                 hf://org/name@revision/file.gguf): serve other models with engine.kind external, or vllm on a cluster"
            ),
        )
    };
    if !uri.ends_with(".gguf") {
        return Err(refused("not a .gguf file"));
    }
    if uri.starts_with("hf://") {
        return Ok(uri.to_string());
    }
    match local_path(uri) {
        Some(path) if path.is_file() => Ok(path.display().to_string()),
        Some(path) => Err(refused(&format!("{} does not exist", path.display()))),
        None => Err(refused("twin up reads models from this machine or the Hub")),
    }
}

/// The GGUF adapter next to a PEFT adapter folder the trainer published (`<run>/adapter` and
/// `<run>/adapter.gguf`), or the `.gguf` file itself.
fn gguf_adapter(uri: &str, field: &str) -> Result<PathBuf, Status> {
    let missing =
        |why: String| Status::new(EndpointPhase::Failed, "AdapterNotFound", format!("{field} {uri}: {why}"));
    let path = local_path(uri)
        .ok_or_else(|| missing("twin up serves adapters from this machine (file://)".into()))?;
    let gguf = if uri.ends_with(".gguf") { path } else { path.with_extension("gguf") };
    if gguf.is_file() {
        Ok(gguf)
    } else {
        Err(missing(format!(
            "{} does not exist: the embedded engine loads the trainer's GGUF adapter (adapter.gguf next to adapter/)",
            gguf.display()
        )))
    }
}

/// What the external server serves, for the lineage every answer names, as the operator
/// resolves it: the spec's base model (and adapter), or its training job's base model and the
/// adapter promoted here. `None` leaves the gateway to name the upstream's model.
fn external_lineage(
    endpoint: &TwinEndpoint,
    resources: &[Located],
    state: &State,
    namespace: &str,
) -> Option<ServedModel> {
    let spec = &endpoint.spec.model;
    if let Some(base) = &spec.base_model {
        return Some(ServedModel {
            base_model: base.uri.clone(),
            adapter_uri: spec.adapter_uri.clone(),
            ..Default::default()
        });
    }
    let name = &spec.training_job_ref.as_ref()?.name;
    let job = job(resources, namespace, name)?;
    let promoted = super::train::promoted_here(job, state);
    let adapter = promoted.as_deref().and_then(|revision| {
        let run = Run::new(job, revision);
        Some(run_output(job, &run).ok()?.join("adapter").to_string())
    });
    Some(ServedModel {
        base_model: job.spec.base_model.uri.clone(),
        adapter_uri: adapter,
        training_job: Some(name.clone()),
        adapter_revision: promoted,
        ..Default::default()
    })
}

/// What the embedded engine loads, and what its status adds.
#[derive(Debug, Default)]
struct Model {
    /// The base model.
    model: String,
    /// The adapter.
    adapter: Option<PathBuf>,
    /// The dataset revision the adapter was trained on.
    adapter_revision: Option<String>,
    /// Why it serves less than asked (reason, message), if it does.
    degraded: Option<(String, String)>,
    /// Why the adapter is not the training job's latest (its latest run failed its gate).
    held: Option<String>,
}

/// What the endpoint's `model` resolves to here.
fn model(
    endpoint: &TwinEndpoint,
    resources: &[Located],
    state: &State,
    namespace: &str,
) -> Result<Model, Status> {
    let spec = &endpoint.spec.model;
    if let Some(base) = &spec.base_model {
        let model = gguf_base(&base.uri, "spec.model.baseModel.uri")?;
        let adapter =
            spec.adapter_uri.as_deref().map(|uri| gguf_adapter(uri, "spec.model.adapterUri")).transpose()?;
        return Ok(Model { model, adapter, ..Default::default() });
    }
    let name = spec.training_job_ref.as_ref().map(|r| r.name.as_str()).unwrap_or_default();
    let Some(job) = job(resources, namespace, name) else {
        let message = format!("TwinTrainingJob {name:?} is not in the YAML given");
        return Err(Status::new(EndpointPhase::Pending, "TrainingJobNotFound", message));
    };
    let model =
        gguf_base(&job.spec.base_model.uri, &format!("TwinTrainingJob {name:?}'s spec.baseModel.uri"))?;
    let entry = state.get("TwinTrainingJob", namespace, name);
    let promoted = super::train::promoted_here(job, state);
    let Some(revision) = promoted.as_deref() else {
        let why =
            entry.map_or_else(|| "has not run".to_string(), |e| format!("is {} ({})", e.phase, e.reason));
        let degraded = (
            "ServingBaseModel".to_string(),
            format!(
                "TwinTrainingJob {name:?} {why}, so this serves its base model without the twin's adapter"
            ),
        );
        return Ok(Model { model, degraded: Some(degraded), ..Default::default() });
    };
    let run = Run::new(job, revision);
    let output = run_output(job, &run).map_err(|e| Status::new(EndpointPhase::Failed, "InvalidSpec", e))?;
    let adapter =
        gguf_adapter(&output.join("adapter").to_string(), &format!("TwinTrainingJob {name:?}'s adapter"))?;
    // The job's latest run failed its gate: the promoted one serves, and the status says so.
    let held =
        entry.filter(|e| e.phase == Phase::Training(TrainingPhase::Rejected)).map(|e| e.message.clone());
    Ok(Model {
        model,
        adapter: Some(adapter),
        adapter_revision: Some(revision.to_string()),
        degraded: None,
        held,
    })
}

/// The endpoint's dataset revision folder, when it names a dataset: the newest one built, or
/// with `gateway.rag.revision: adapter` the one its adapter was trained on.
fn knowledge(
    endpoint: &TwinEndpoint,
    resources: &[Located],
    state: &State,
    namespace: &str,
    adapter_revision: Option<&str>,
) -> Result<Option<(String, String)>, Status> {
    let Some(reference) = &endpoint.spec.dataset_ref else { return Ok(None) };
    let name = &reference.name;
    let dataset = dataset(resources, namespace, name).map(|dataset| {
        let mut dataset = dataset.clone();
        dataset.status = state.dataset_status(namespace, name);
        dataset
    });
    let readiness = DatasetReadiness::of(dataset.as_ref());
    let revision = match (endpoint.spec.gateway.rag.revision, adapter_revision) {
        (RetrievalRevision::Adapter, Some(trained)) => Some(trained.to_string()),
        _ => readiness.published_revision().map(str::to_string),
    };
    let (Some(dataset), Some(revision)) = (dataset.as_ref(), revision) else {
        let DatasetReadiness::NotReady { why, .. } = &readiness else {
            unreachable!("a Ready dataset has a revision")
        };
        let wait = why.wait(name, namespace, "spec.datasetRef.name", "serving", Some(NO_RETRIEVAL));
        return Err(Status::new(EndpointPhase::Pending, wait.reason, wait.message));
    };
    let folder = revision_folder(dataset, &revision)
        .map_err(|e| Status::new(EndpointPhase::Failed, "InvalidSpec", e))?;
    Ok(Some((folder.to_string(), revision)))
}

/// What an endpoint is served with on this machine.
pub struct Here<'a> {
    /// Every resource of the YAML.
    pub resources: &'a [Located],
    /// Their statuses so far.
    pub state: &'a State,
    /// Where models are found and downloaded to.
    pub models_dir: Option<&'a std::path::Path>,
    /// The API key clients must send, for endpoints that ask for one ([`API_KEY_ENV`]).
    pub api_key: Option<String>,
}

/// How `twin up` serves the endpoint on `url`, or its status when it cannot.
pub fn plan(resource: &Located, here: &Here, url: &str) -> Result<Plan, Status> {
    let Twin::Endpoint(endpoint) = &resource.twin else { unreachable!("plan() is given endpoints") };
    let (resources, state, models_dir) = (here.resources, here.state, here.models_dir);
    let namespace = resource.twin.namespace();
    if !served_here(endpoint) {
        return Err(Status::new(
            EndpointPhase::Pending,
            "EngineNotLocal",
            "engine.kind vllm and shared run on a cluster's GPUs (kubectl apply); to serve this twin here set \
             engine.kind embedded (a GGUF base model, on the CPU) or external (an OpenAI-compatible url)",
        ));
    }
    let mut gateway = GatewaySettings {
        listen: url.trim_start_matches("http://").into(),
        models_dir: models_dir.map(Into::into),
        prompt_log: endpoint.spec.gateway.prompt_log_uri.clone(),
        ..GatewaySettings::of_endpoint(endpoint)
    };
    let mut serving = Vec::new();
    let mut degraded = None;
    let mut adapter_revision = None;
    if endpoint.spec.engine.kind == EngineKind::External {
        let upstream = endpoint.spec.engine.url.clone().unwrap_or_default();
        serving.push(format!("the model at {upstream}"));
        let lineage = external_lineage(endpoint, resources, state, namespace);
        gateway = gateway.upstream(upstream, None, lineage.as_ref());
    } else {
        let resolved = model(endpoint, resources, state, namespace)?;
        adapter_revision = resolved.adapter_revision.clone();
        serving.push(resolved.model.clone());
        let adapter = resolved.adapter.map(|adapter| adapter.display().to_string());
        if let Some(adapter) = &adapter {
            serving.push(format!("with adapter {adapter}"));
        }
        if let Some(held) = resolved.held {
            serving.push(format!("(PromotionHeld: {held})"));
        }
        let served = ServedModel {
            base_model: resolved.model.clone(),
            adapter_uri: adapter.clone(),
            adapter_revision: resolved.adapter_revision,
            ..Default::default()
        };
        gateway = gateway.embedded(resolved.model, adapter, &served);
        degraded = resolved.degraded;
    }
    let knowledge = knowledge(endpoint, resources, state, namespace, adapter_revision.as_deref())?;
    if let Some((folder, revision)) = &knowledge {
        serving.push(format!("on dataset revision {revision}"));
        gateway.dataset = Some(folder.clone());
    }
    let mut args = ServeArgs::try_parse_from(["twin serve"]).map_err(|e| {
        Status::new(EndpointPhase::Failed, "InvalidSpec", format!("the gateway's settings: {e}"))
    })?;
    args.gateway = gateway;
    if endpoint.spec.gateway.api_key_secret_ref.is_some() {
        let Some(key) = here.api_key.clone().filter(|k| !k.trim().is_empty()) else {
            return Err(Status::new(
                EndpointPhase::Pending,
                "ApiKeyNotSet",
                format!(
                    "spec.gateway.apiKeySecretRef names a Secret, which exists only in a cluster: give the key \
                     here as {API_KEY_ENV}"
                ),
            ));
        };
        args.api_key = Some(ApiKey(key));
    }
    Ok(Plan { args, serving: serving.join(" "), degraded, revision: knowledge.map(|(_, revision)| revision) })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::api::dataset::DatasetPhase;
    use crate::local::state::Entry;

    /// A fresh folder for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("twin-endpoint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A dataset, a training job on a GGUF base and an endpoint serving it, under `dir`.
    fn resources(dir: &Path, base: &str, engine: &str) -> Vec<Located> {
        let d = dir.display();
        let yaml = format!(
            "apiVersion: llmtwin.dev/v1alpha1\nkind: TwinDataset\nmetadata: {{name: paul}}\nspec:\n  author: {{name: Paul}}\n  sources: [{{name: blog, files: {{uri: 'file://{d}/corpus'}}}}]\n  output: {{uri: 'file://{d}/out'}}\n---\n\
             apiVersion: llmtwin.dev/v1alpha1\nkind: TwinTrainingJob\nmetadata: {{name: paul-v1}}\nspec:\n  datasetRef: {{name: paul}}\n  baseModel: {{uri: '{base}'}}\n  backend: {{kubernetes: {{}}}}\n  output: {{uri: 'file://{d}/out'}}\n---\n\
             apiVersion: llmtwin.dev/v1alpha1\nkind: TwinEndpoint\nmetadata: {{name: paul}}\nspec:\n  model: {{trainingJobRef: {{name: paul-v1}}}}\n  datasetRef: {{name: paul}}\n  engine: {engine}\n  gateway: {{rag: {{topK: 3}}, systemPrompt: Answer as Paul.}}\n"
        );
        std::fs::write(dir.join("twins.yaml"), yaml).unwrap();
        manifest::load(&dir.join("twins.yaml")).unwrap()
    }

    fn entry(phase: Phase, name: &str, reason: &str) -> Entry {
        Entry {
            phase,
            namespace: "default".into(),
            name: name.into(),
            reason: reason.into(),
            message: String::new(),
            updated: String::new(),
            revision: Some("rev1".into()),
            promoted: None,
            file: "twins.yaml".into(),
        }
    }

    fn here<'a>(resources: &'a [Located], state: &'a State) -> Here<'a> {
        Here { resources, state, models_dir: None, api_key: None }
    }

    /// The dataset Ready on rev1, the training job in `phase`.
    fn state(phase: TrainingPhase, reason: &str) -> State {
        let mut state = State::default();
        state.record(entry(Phase::Dataset(DatasetPhase::Ready), "paul", "RevisionPublished"));
        state.record(entry(Phase::Training(phase), "paul-v1", reason));
        state
    }

    #[test]
    fn an_embedded_endpoint_serves_its_jobs_adapter_on_the_revision_built() {
        let dir = scratch("adapter");
        let base = dir.join("smollm2.gguf");
        std::fs::write(&base, b"GGUF").unwrap();
        let adapter = dir.join("out/models/paul-v1/g1-rev1/adapter.gguf");
        std::fs::create_dir_all(adapter.parent().unwrap()).unwrap();
        std::fs::write(&adapter, b"GGUF").unwrap();
        let resources = resources(&dir, &format!("file://{}", base.display()), "{kind: embedded}");
        let served = plan(
            &resources[2],
            &here(&resources, &state(TrainingPhase::Succeeded, "AdapterPublished")),
            "http://127.0.0.1:8080",
        )
        .unwrap();
        assert_eq!(served.args.gateway.model.as_deref(), Some(base.display().to_string().as_str()));
        assert_eq!(served.args.gateway.adapter.as_deref(), Some(adapter.display().to_string().as_str()));
        assert_eq!(
            served.args.gateway.dataset,
            Some(format!("file://{}/out/datasets/paul/rev1", dir.display()))
        );
        assert_eq!((served.args.gateway.name.as_deref(), served.args.gateway.top_k), (Some("paul"), 3));
        assert_eq!(served.args.gateway.system_prompt.as_deref(), Some("Answer as Paul."));
        assert_eq!((served.degraded, served.revision.as_deref()), (None, Some("rev1")));

        // Not trained here: the base model alone, said.
        let base_only = plan(
            &resources[2],
            &here(&resources, &state(TrainingPhase::Pending, "TrainerNotInstalled")),
            "http://127.0.0.1:8080",
        )
        .unwrap();
        assert_eq!(base_only.args.gateway.adapter, None);
        let (reason, why) = base_only.degraded.unwrap();
        assert_eq!(reason, "ServingBaseModel");
        assert!(why.contains("is Pending (TrainerNotInstalled)"), "{why}");

        // Trained, but its adapter is gone.
        std::fs::remove_file(&adapter).unwrap();
        let gone = plan(
            &resources[2],
            &here(&resources, &state(TrainingPhase::Succeeded, "AdapterPublished")),
            "http://127.0.0.1:8080",
        )
        .unwrap_err();
        assert_eq!(gone.reason, "AdapterNotFound");
        assert!(gone.message.contains("adapter.gguf does not exist"), "{}", gone.message);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_cannot_be_served_here_says_why() {
        let dir = scratch("refused");
        let url = "http://127.0.0.1:8080";
        let ready = state(TrainingPhase::Succeeded, "AdapterPublished");
        let vllm = resources(&dir, "hf://HuggingFaceTB/SmolLM2-135M", "{kind: vllm}");
        let refused = plan(&vllm[2], &here(&vllm, &ready), url).unwrap_err();
        assert_eq!(
            (refused.phase, refused.reason.as_str()),
            (Phase::Endpoint(EndpointPhase::Pending), "EngineNotLocal")
        );

        let safetensors = resources(&dir, "hf://HuggingFaceTB/SmolLM2-135M", "{kind: embedded}");
        let refused = plan(&safetensors[2], &here(&safetensors, &ready), url).unwrap_err();
        assert_eq!(refused.reason, "ModelNotGguf");
        assert!(
            refused.message.starts_with("TwinTrainingJob \"paul-v1\"'s spec.baseModel.uri hf://"),
            "{}",
            refused.message
        );

        let missing = resources(&dir, &format!("file://{}/none.gguf", dir.display()), "{kind: embedded}");
        let refused = plan(&missing[2], &here(&missing, &ready), url).unwrap_err();
        assert!(refused.message.contains("none.gguf does not exist"), "{}", refused.message);

        let external = resources(
            &dir,
            "hf://HuggingFaceTB/SmolLM2-135M",
            "{kind: external, url: 'http://vllm:8000/v1'}",
        );
        let waiting = plan(&external[2], &here(&external, &State::default()), url).unwrap_err();
        assert_eq!(waiting.reason, "WaitingForDataset");
        let served = plan(&external[2], &here(&external, &ready), url).unwrap();
        assert_eq!(served.args.gateway.upstream.as_deref(), Some("http://vllm:8000/v1"));
        assert!(served.args.api_key.is_none());

        // A Secret's key: given here, or the endpoint waits for it.
        let mut keyed = external.clone();
        if let Twin::Endpoint(endpoint) = &mut keyed[2].twin {
            endpoint.spec.gateway.api_key_secret_ref =
                Some(serde_json::from_value(serde_json::json!({"name": "twin-api", "key": "key"})).unwrap());
        }
        let waiting = plan(&keyed[2], &here(&keyed, &ready), url).unwrap_err();
        assert_eq!(waiting.reason, "ApiKeyNotSet");
        assert!(waiting.message.contains(API_KEY_ENV), "{}", waiting.message);
        let with_key = Here { api_key: Some("s3cret".into()), ..here(&keyed, &ready) };
        let served = plan(&keyed[2], &with_key, url).unwrap();
        assert_eq!(served.args.api_key.map(|k| k.0).as_deref(), Some("s3cret"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn each_endpoint_takes_its_own_address_and_a_taken_one_is_named() {
        let dir = scratch("bind");
        let mut resources = resources(&dir, "hf://x/y", "{kind: embedded}");
        let mut second = resources[2].clone();
        if let Twin::Endpoint(endpoint) = &mut second.twin {
            endpoint.metadata.name = Some("paul-2".into());
        }
        resources.push(second);
        let listeners = bind_all(&resources, "127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(listeners.keys().copied().collect::<Vec<_>>(), [2, 3]);
        let taken = listeners[&2].local_addr().unwrap();
        let problems = bind_all(&resources, taken).unwrap_err();
        assert!(problems[0].contains("(TwinEndpoint paul): cannot listen on"), "{problems:?}");
        assert!(base_url(&listeners[&3]).starts_with("http://127.0.0.1:"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
