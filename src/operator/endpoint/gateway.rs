//! The gateway of a TwinEndpoint (pure): a Deployment of `twin serve` with the dataset
//! revision pinned, the engine as its upstream (or the embedded engine with the twin's GGUF
//! adapter), the system prompt, the API key from its Secret as a file, the prompt log, and
//! probes on `/healthz` and `/readyz`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, KeyToPath, ObjectFieldSelector, SecretVolumeSource, Volume,
};
use kube::ResourceExt;

use super::engine::{self, fetch_container};
use super::parts::{
    ADAPTER_ANNOTATION, GATEWAY_COMPONENT, Inputs, MODEL_ANNOTATION, REVISION_ANNOTATION, engine_name,
    gateway_name, rolling_deployment,
};
use super::plan::{ADAPTERS, EnginePlan};
use crate::api::TwinEndpoint;
use crate::api::endpoint::{EngineKind, ServedModel};
use crate::contract::trainer::revision_folder_under;
use crate::contract::{env, paths};
use crate::operator::children::pod::{
    claims, default_resources, empty_dir, env_var, http_port, in_pod, mount, mount_claims, probe,
    restricted_container, s3_credentials, serving_pod,
};
use crate::operator::settings::OperatorSettings;

/// The port the gateway listens on.
pub const PORT: i32 = 8080;
/// The user of the twin image.
const GATEWAY_UID: i64 = 65532;
/// Where the API key Secret is mounted.
const API_KEY_DIR: &str = "/var/run/twin/api-key";

/// The OpenAI-compatible base URL of an endpoint inside the cluster.
pub fn endpoint_url(endpoint: &TwinEndpoint) -> String {
    let namespace = endpoint.namespace().unwrap_or_default();
    format!("http://{}.{namespace}.svc:{}/v1", gateway_name(endpoint), PORT)
}

/// What the upstream serves, for the lineage every answer carries.
fn lineage(env: &mut Vec<EnvVar>, model: &ServedModel) {
    env.push(env_var("TWIN_SERVE_UPSTREAM_BASE_MODEL", model.base_model.clone()));
    if let Some(adapter) = &model.adapter_uri {
        env.push(env_var("TWIN_SERVE_UPSTREAM_ADAPTER", adapter.clone()));
    }
}

/// The gateway's Deployment.
pub fn deployment(inputs: &Inputs, settings: &OperatorSettings) -> Deployment {
    let endpoint = inputs.endpoint;
    let spec = &endpoint.spec;
    let gateway = &spec.gateway;
    let overrides = gateway.pod.clone().unwrap_or_default();
    let name = endpoint.name_any();
    let namespace = endpoint.namespace().unwrap_or_default();
    let mut env = vec![
        env_var("TWIN_SERVE_NAME", name.clone()),
        env_var("TWIN_SERVE_LISTEN", format!("0.0.0.0:{PORT}")),
        env_var("TWIN_SERVE_TOP_K", gateway.rag.top_k.to_string()),
        env_var(env::MODELS_DIR, paths::MODELS_DIR),
        env_var(env::LOG_FORMAT, "json"),
        EnvVar {
            name: "TWIN_SERVE_REPLICA".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut volumes = vec![empty_dir("models", None, None), empty_dir("tmp", None, None)];
    let mut mounts = vec![mount("models", paths::MODELS_DIR, false), mount("tmp", "/tmp", false)];
    // The embedded engine's adapter, fetched before the gateway starts: (source, folder).
    let mut fetch_adapter = None;
    let mut annotations = BTreeMap::new();
    // (URI, written) of every pvc:// place the gateway reaches, for the claims to mount.
    let mut places: Vec<(String, bool)> = Vec::new();
    match inputs.engine {
        EnginePlan::Vllm { .. } => {
            env.push(env_var("TWIN_SERVE_ENGINE", "openai"));
            let upstream = format!("http://{}.{namespace}.svc:{}/v1", engine_name(endpoint), engine::PORT);
            env.push(env_var("TWIN_SERVE_UPSTREAM", upstream));
            env.push(env_var("TWIN_SERVE_UPSTREAM_MODEL", name.clone()));
            lineage(&mut env, inputs.gateway_model);
            if let Some(length) = spec.engine.max_model_len {
                env.push(env_var("TWIN_SERVE_CONTEXT_TOKENS", length.to_string()));
            }
        }
        EnginePlan::External { url } => {
            env.push(env_var("TWIN_SERVE_ENGINE", "openai"));
            env.push(env_var("TWIN_SERVE_UPSTREAM", url.clone()));
            lineage(&mut env, inputs.gateway_model);
        }
        EnginePlan::Embedded { model, adapter } => {
            env.push(env_var("TWIN_SERVE_ENGINE", "embedded"));
            env.push(env_var("TWIN_SERVE_MODEL", model.clone()));
            places.push((inputs.model.base_model.clone(), false));
            if let (Some(source), Some(adapter)) = (adapter, &inputs.model.adapter_uri) {
                let folder = format!("{ADAPTERS}/{name}");
                let file = source.rsplit('/').next().unwrap_or("adapter.gguf").to_string();
                env.push(env_var("TWIN_SERVE_ADAPTER", format!("{folder}/{file}")));
                places.push((source.clone(), false));
                fetch_adapter = Some((source.clone(), folder));
                annotations.insert(ADAPTER_ANNOTATION.to_string(), adapter.clone());
            }
        }
    }
    let pinned = inputs.gateway_model;
    let model_json = serde_json::to_string(pinned).expect("a served model serialises");
    annotations.insert(MODEL_ANNOTATION.to_string(), model_json);
    if let Some(retrieval) = inputs.retrieval
        && let Some(revision) = &pinned.dataset_revision
    {
        let folder = revision_folder_under(&retrieval.output, retrieval.dataset, revision).to_string();
        env.push(env_var("TWIN_SERVE_DATASET", in_pod(&folder)));
        places.push((folder, false));
        annotations.insert(REVISION_ANNOTATION.to_string(), revision.to_string());
    }
    // Every engine's answers name the revision the adapter learned from, next to the one
    // retrieval uses.
    if pinned.adapter_uri.is_some()
        && let Some(revision) = &pinned.adapter_revision
    {
        env.push(env_var("TWIN_SERVE_ADAPTER_REVISION", revision.clone()));
    }
    if let Some(log) = &gateway.prompt_log_uri {
        env.push(env_var("TWIN_SERVE_PROMPT_LOG", in_pod(log)));
        places.push((log.clone(), true));
    }
    // S3 settings and credentials: the dataset's, which the prompt log shares.
    let s3 = inputs.retrieval.map(|r| &r.dataset.spec.output).filter(|l| l.uri.starts_with("s3://"));
    if let Some(location) = s3 {
        env.extend(
            location.endpoint_url.iter().map(|url| env_var("TWIN_SERVE_S3_ENDPOINT_URL", url.clone())),
        );
        env.extend(location.region.iter().map(|region| env_var("TWIN_SERVE_S3_REGION", region.clone())));
    }
    if let Some(prompt) = &gateway.system_prompt {
        env.push(env_var("TWIN_SERVE_SYSTEM_PROMPT", prompt.clone()));
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
        env.push(env_var("TWIN_SERVE_API_KEY_FILE", format!("{API_KEY_DIR}/api-key")));
    }
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
        security_context: Some(restricted_container()),
        ..Default::default()
    };
    let template = serving_pod(&overrides, GATEWAY_UID, container, init, 60, volumes);
    let replicas = match gateway.max_replicas {
        Some(max) if max > gateway.replicas => None,
        _ => Some(gateway.replicas),
    };
    rolling_deployment(endpoint, gateway_name(endpoint), GATEWAY_COMPONENT, replicas, annotations, template)
}
