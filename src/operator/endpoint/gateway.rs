//! The gateway of a TwinEndpoint (pure): a Deployment of `twin serve` with the dataset
//! revision pinned, the engine as its upstream (or the embedded engine with the twin's GGUF
//! adapter), the system prompt, the API key from its Secret as a file, the prompt log, and
//! probes on `/healthz` and `/readyz`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, EnvVarSource, KeyToPath, ObjectFieldSelector, SecretVolumeSource, Volume,
};
use kube::ResourceExt;

use super::engine::{self, fetch_container};
use super::parts::{
    ADAPTER_ANNOTATION, GATEWAY_COMPONENT, Inputs, LINEAGE_KEY, MODEL_ANNOTATION, REVISION_ANNOTATION,
    engine_name, gateway_name, lineage_name, meta, rolling_deployment,
};
use super::plan::{ADAPTERS, EnginePlan};
use crate::api::TwinEndpoint;
use crate::api::endpoint::EngineKind;
use crate::contract::gateway::GatewaySettings;
use crate::contract::paths;
use crate::contract::trainer::{dataset_folder_under, revision_folder_under};
use crate::operator::children::pod::{
    claims, config_map_volume, default_resources, empty_dir, env_var, http_port, in_pod, mount, mount_claims,
    probe, s3_credentials, serving_pod,
};
use crate::operator::settings::OperatorSettings;

/// The port the gateway listens on.
pub const PORT: i32 = 8080;
/// The user of the twin image.
const GATEWAY_UID: i64 = 65532;
/// Where the API key Secret is mounted.
const API_KEY_DIR: &str = "/var/run/twin/api-key";
/// Where the lineage ConfigMap is mounted (whole, so that the kubelet updates it in place).
const LINEAGE_DIR: &str = "/var/run/twin/lineage";

/// The OpenAI-compatible base URL of an endpoint inside the cluster.
pub fn endpoint_url(endpoint: &TwinEndpoint) -> String {
    let namespace = endpoint.namespace().unwrap_or_default();
    format!("http://{}.{namespace}.svc:{}/v1", gateway_name(endpoint), PORT)
}

/// The lineage ConfigMap of a gateway on a shared engine: the model it names in its answers and
/// whose dataset revision it retrieves from (`--lineage-file`), which it re-reads as it runs.
pub fn lineage(inputs: &Inputs) -> Option<ConfigMap> {
    let EnginePlan::Shared { .. } = inputs.engine else { return None };
    let endpoint = inputs.endpoint;
    let model = serde_json::to_string_pretty(inputs.gateway_model).expect("a served model serialises");
    Some(ConfigMap {
        metadata: meta(endpoint, lineage_name(endpoint), GATEWAY_COMPONENT),
        data: Some([(LINEAGE_KEY.to_string(), model)].into()),
        ..Default::default()
    })
}

/// The gateway's Deployment.
pub fn deployment(inputs: &Inputs, settings: &OperatorSettings) -> Deployment {
    let endpoint = inputs.endpoint;
    let spec = &endpoint.spec;
    let gateway = &spec.gateway;
    let overrides = gateway.pod.clone().unwrap_or_default();
    let name = endpoint.name_any();
    let namespace = endpoint.namespace().unwrap_or_default();
    let mut serve = GatewaySettings {
        listen: format!("0.0.0.0:{PORT}"),
        models_dir: Some(paths::MODELS_DIR.into()),
        log_format: Some("json".into()),
        ..GatewaySettings::of_endpoint(endpoint)
    };
    let mut volumes = vec![empty_dir("models", None, None), empty_dir("tmp", None, None)];
    let mut mounts = vec![mount("models", paths::MODELS_DIR, false), mount("tmp", "/tmp", false)];
    // The embedded engine's adapter, fetched before the gateway starts: (source, folder).
    let mut fetch_adapter = None;
    let mut annotations = BTreeMap::new();
    // (URI, written) of every pvc:// place the gateway reaches, for the claims to mount.
    let mut places: Vec<(String, bool)> = Vec::new();
    let pinned = inputs.gateway_model;
    match inputs.engine {
        EnginePlan::Vllm { .. } => {
            let upstream = format!("http://{}.{namespace}.svc:{}/v1", engine_name(endpoint), engine::PORT);
            serve = serve.upstream(upstream, Some(name.clone()), Some(pinned));
            serve.context_tokens = spec.engine.max_model_len.map(|length| length as usize);
            // An engine scaled to zero wakes on the first request, which waits for it.
            serve.upstream_wait_seconds = spec.autoscaling.as_ref().and_then(|s| s.wake_seconds());
        }
        EnginePlan::Shared { url, model, .. } => {
            // What it serves is not the pod's to say: the gateway reads it from its lineage
            // ConfigMap while it runs, so a retrained adapter or a new revision moves no pod.
            serve = serve.upstream(url.clone(), Some(model.clone()), None);
            serve.lineage_file = Some(format!("{LINEAGE_DIR}/{LINEAGE_KEY}").into());
            volumes.push(config_map_volume("lineage", &lineage_name(endpoint)));
            mounts.push(mount("lineage", LINEAGE_DIR, true));
            let shared = inputs.shared_engine.map(|engine| &engine.spec);
            serve.context_tokens = shared.and_then(|s| s.vllm.max_model_len).map(|length| length as usize);
            // A shared engine scaled to zero wakes on the first request to any of its twins.
            serve.upstream_wait_seconds = shared.and_then(|s| s.autoscaling.as_ref()?.wake_seconds());
        }
        EnginePlan::External { url } => serve = serve.upstream(url.clone(), None, Some(pinned)),
        EnginePlan::Embedded { model, adapter } => {
            places.push((inputs.model.base_model.clone(), false));
            let mut fetched = None;
            if let (Some(source), Some(adapter)) = (adapter, &inputs.model.adapter_uri) {
                let folder = format!("{ADAPTERS}/{name}");
                let file = source.rsplit('/').next().unwrap_or("adapter.gguf").to_string();
                fetched = Some(format!("{folder}/{file}"));
                places.push((source.clone(), false));
                fetch_adapter = Some((source.clone(), folder));
                annotations.insert(ADAPTER_ANNOTATION.to_string(), adapter.clone());
            }
            serve = serve.embedded(model.clone(), fetched, pinned);
        }
    }
    if serve.lineage_file.is_some() {
        // The dataset's folder: the lineage file pins its revision.
        if let Some(retrieval) = inputs.retrieval {
            let folder = dataset_folder_under(&retrieval.output, retrieval.dataset).to_string();
            serve.dataset = Some(in_pod(&folder));
            places.push((folder, false));
        }
    } else {
        let model_json = serde_json::to_string(pinned).expect("a served model serialises");
        annotations.insert(MODEL_ANNOTATION.to_string(), model_json);
        if let Some(retrieval) = inputs.retrieval
            && let Some(revision) = &pinned.dataset_revision
        {
            let folder = revision_folder_under(&retrieval.output, retrieval.dataset, revision).to_string();
            serve.dataset = Some(in_pod(&folder));
            places.push((folder, false));
            annotations.insert(REVISION_ANNOTATION.to_string(), revision.to_string());
        }
    }
    if let Some(log) = &gateway.prompt_log_uri {
        serve.prompt_log = Some(in_pod(log));
        places.push((log.clone(), true));
    }
    // S3 settings and credentials: the dataset's, which the prompt log shares.
    let s3 = inputs.retrieval.map(|r| &r.dataset.spec.output).filter(|l| l.uri.starts_with("s3://"));
    if let Some(location) = s3 {
        serve.s3_endpoint_url = location.endpoint_url.clone();
        serve.s3_region = location.region.clone();
    }
    if let Some(secret) = &gateway.api_key_secret_ref {
        volumes.push(Volume {
            name: "api-key".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath { key: secret.key.clone(), path: "api-key".into(), mode: None }]),
                default_mode: Some(0o440),
                optional: Some(false),
            }),
            ..Default::default()
        });
        mounts.push(mount("api-key", API_KEY_DIR, true));
        serve.api_key_file = Some(format!("{API_KEY_DIR}/api-key").into());
    }
    let mut env: Vec<EnvVar> =
        serve.environment().into_iter().map(|(variable, value)| env_var(variable, value)).collect();
    // The replica's name in the prompt log's files: its pod's.
    env.push(EnvVar {
        name: GatewaySettings::variable("replica").into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let read: Vec<(&str, bool)> = places.iter().map(|(uri, writes)| (uri.as_str(), *writes)).collect();
    let claims = claims(&read);
    let mut claim_mounts = Vec::new();
    mount_claims(
        claims.iter().map(|(claim, writes)| (claim.as_str(), *writes)),
        &mut volumes,
        &mut claim_mounts,
    );
    let init: Vec<Container> = fetch_adapter
        .iter()
        .map(|fetch| {
            let fetch_mounts = [mount("adapters", ADAPTERS, false), mount("tmp", "/tmp", false)]
                .into_iter()
                .chain(claim_mounts.clone());
            // The adapter is where its training job wrote it, with that job's S3 settings.
            fetch_container("fetch-adapter", fetch, inputs.adapter_location, fetch_mounts.collect(), settings)
        })
        .collect();
    if !init.is_empty() {
        volumes.push(empty_dir("adapters", None, None));
        mounts.push(mount("adapters", ADAPTERS, true));
    }
    mounts.extend(claim_mounts);
    let embedded = spec.engine.kind == EngineKind::Embedded;
    let resources = overrides.resources.clone().unwrap_or_else(|| {
        let (cpu, memory, limit) = if embedded { ("2", "2Gi", "4Gi") } else { ("500m", "1Gi", "2Gi") };
        default_resources(cpu, memory, limit)
    });
    let container = Container {
        name: "gateway".into(),
        image: Some(overrides.image.clone().unwrap_or_else(|| settings.twin_image.clone())),
        args: Some(vec!["serve".into()]),
        ports: Some(http_port(PORT)),
        env: Some(env),
        env_from: s3.and_then(s3_credentials),
        resources: Some(resources),
        volume_mounts: Some(mounts),
        // Loading the embedding model and the revision's index (or the embedded model) takes a
        // while: ten minutes before liveness counts.
        startup_probe: Some(probe("/healthz", 5, 120)),
        readiness_probe: Some(probe("/readyz", 5, 3)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        ..Default::default()
    };
    let template = serving_pod(&overrides, GATEWAY_UID, container, init, 60, volumes);
    let replicas = match gateway.max_replicas {
        Some(max) if max > gateway.replicas => None,
        _ => Some(gateway.replicas),
    };
    rolling_deployment(endpoint, gateway_name(endpoint), GATEWAY_COMPONENT, replicas, annotations, template)
}
