//! Every CEL rule in the CRDs rejects at least one object and accepts at least one; plus the
//! OpenAPI part of the schema (types, ranges, patterns, unknown fields, list uniqueness). Each
//! case runs twice: against the real API server (through kubectl, so the message is the one users
//! see), and against the checks `twin up` shares (kube-cel and jsonschema), which must agree.
//! Whether the CRDs' rules fit the API server's cost budget is the real API server's to say
//! (`cluster_install.rs` installs them); the margin is measured with its own estimator.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::control_plane;
use crate::support::crd_schema::CrdCatalog;

/// A valid object of each kind, the base every case patches.
fn base(kind: &str) -> Value {
    match kind {
        "TwinDataset" => json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset",
            "metadata": {"name": "paul", "namespace": "twins"},
            "spec": {
                "author": {"name": "Paul Iusztin"},
                "sources": [{"name": "blog", "feed": {"url": "https://decodingml.substack.com/feed"}}],
                "output": {"uri": "s3://twins-bucket/twins"}
            }
        }),
        "TwinTrainingJob" => json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob",
            "metadata": {"name": "paul-v1", "namespace": "twins"},
            "spec": {
                "datasetRef": {"name": "paul"},
                "baseModel": {"uri": "hf://meta-llama/Llama-3.1-8B"},
                "backend": {"kubernetes": {}},
                "output": {"uri": "s3://twins-bucket/twins"}
            }
        }),
        "TwinEndpoint" => json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEndpoint",
            "metadata": {"name": "paul", "namespace": "twins"},
            "spec": {"model": {"trainingJobRef": {"name": "paul-v1"}}}
        }),
        "TwinEngine" => json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEngine",
            "metadata": {"name": "llama-8b", "namespace": "twins"},
            "spec": {"baseModel": {"uri": "hf://meta-llama/Llama-3.1-8B"}}
        }),
        other => panic!("no base object for {other}"),
    }
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn patched(kind: &str, patch: &Value) -> Value {
    let mut object = base(kind);
    merge(&mut object, patch);
    object
}

/// One object checked against one rule: `accepts` or rejects with the rule's message.
struct Case {
    kind: &'static str,
    /// The rule's message, which a rejection must carry.
    rule_message: &'static str,
    /// Merge patch on the base object.
    patch: Value,
    /// For transition rules: merge patch giving the stored (old) object.
    old_patch: Option<Value>,
    accepts: bool,
}

fn accept(kind: &'static str, rule_message: &'static str, patch: Value) -> Case {
    Case { kind, rule_message, patch, old_patch: None, accepts: true }
}

fn reject(kind: &'static str, rule_message: &'static str, patch: Value) -> Case {
    Case { kind, rule_message, patch, old_patch: None, accepts: false }
}

fn update(kind: &'static str, rule_message: &'static str, old: Value, new: Value, accepts: bool) -> Case {
    Case { kind, rule_message, patch: new, old_patch: Some(old), accepts }
}

const STORAGE_URI: &str = "must be s3://bucket/prefix, pvc://claim/sub/path or file:///absolute/path";
const STORAGE_S3_ONLY: &str = "endpointUrl, region and credentialsSecretRef apply only to s3:// URIs";
const HTTP_URL: &str = "must be an http:// or https:// URL";
const MODEL_URI: &str =
    "must be hf://org/name[@revision], s3://bucket/prefix, pvc://claim/sub/path or file:///absolute/path";

/// Cases for the rules of `StorageLocation` under `spec.output`, shared by two kinds.
fn storage_cases(kind: &'static str) -> Vec<Case> {
    let output = |o: Value| json!({"spec": {"output": o}});
    vec![
        reject(kind, STORAGE_URI, output(json!({"uri": "https://bucket.example.com/twins"}))),
        reject(kind, STORAGE_URI, output(json!({"uri": "file://relative/path"}))),
        accept(kind, STORAGE_URI, output(json!({"uri": "s3://twins-bucket/a/b"}))),
        reject(kind, STORAGE_S3_ONLY, output(json!({"uri": "pvc://twins-claim/out", "region": "eu-west-1"}))),
        accept(
            kind,
            STORAGE_S3_ONLY,
            output(json!({"region": "eu-west-1", "credentialsSecretRef": {"name": "aws"}})),
        ),
        reject(kind, HTTP_URL, output(json!({"endpointUrl": "minio.minio.svc:9000"}))),
        accept(kind, HTTP_URL, output(json!({"endpointUrl": "http://minio.minio.svc:9000"}))),
    ]
}

fn dataset_cases() -> Vec<Case> {
    const K: &str = "TwinDataset";
    let source = |s: Value| json!({"spec": {"sources": [s]}});
    let one_of = "each source sets exactly one of feed, git, web, archive, configMap or files";
    let cron = "must be a cron expression of five fields (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly";
    let mut cases = storage_cases(K);
    cases.extend([
        update(K, "output.uri is immutable: published revisions live there; create a new TwinDataset to write elsewhere",
            json!({}), json!({"spec": {"output": {"uri": "s3://other-bucket/twins"}}}), false),
        update(K, "output.uri is immutable: published revisions live there; create a new TwinDataset to write elsewhere",
            json!({}), json!({"spec": {"author": {"name": "P. Iusztin"}}}), true),
        reject(K, one_of, source(json!({"name": "two", "feed": {"url": "https://a.example/feed"}, "git": {"url": "https://github.com/a/b"}}))),
        reject(K, one_of, source(json!({"name": "none"}))),
        accept(K, one_of, source(json!({"name": "notes", "configMap": {"name": "notes"}}))),
        reject(K, HTTP_URL, source(json!({"name": "blog", "feed": {"url": "ftp://example.com/feed"}}))),
        reject(K, "must be an https://, http:// or ssh:// clone URL", source(json!({"name": "code", "git": {"url": "git@github.com:org/repo.git"}}))),
        accept(K, "must be an https://, http:// or ssh:// clone URL", source(json!({"name": "code", "git": {"url": "ssh://git@github.com/org/repo.git", "ref": "v1.2.0"}}))),
        accept(K, one_of, source(json!({"name": "pages", "web": {"urls": ["https://a.example/", "http://b.example/x?y=1"], "maxDepth": 2}}))),
        reject(K, "must be an s3://, pvc://, file://, http:// or https:// URI", source(json!({"name": "li", "archive": {"uri": "linkedin.zip", "format": "linkedin"}}))),
        accept(K, "must be an s3://, pvc://, file://, http:// or https:// URI", source(json!({"name": "li", "archive": {"uri": "s3://exports/linkedin.zip", "format": "linkedin"}}))),
        accept(K, "must be an s3://, pvc://, file://, http:// or https:// URI", source(json!({"name": "md", "archive": {"uri": "https://example.com/medium.zip", "format": "medium"}}))),
        reject(K, "must be pvc://claim/sub/path or file:///absolute/path", source(json!({"name": "drafts", "files": {"uri": "s3://bucket/drafts"}}))),
        accept(K, "must be pvc://claim/sub/path or file:///absolute/path", source(json!({"name": "drafts", "files": {"uri": "pvc://drafts/posts", "include": ["**/*.md"]}}))),
        reject(K, "overlapTokens must be less than maxTokens", json!({"spec": {"chunking": {"maxTokens": 64, "overlapTokens": 64}}})),
        reject(K, "overlapTokens must be less than maxTokens", json!({"spec": {"chunking": {"maxTokens": 16}}})),
        accept(K, "overlapTokens must be less than maxTokens", json!({"spec": {"chunking": {"maxTokens": 512, "overlapTokens": 64}}})),
        reject(K, MODEL_URI, json!({"spec": {"embedding": {"model": "sentence-transformers/all-MiniLM-L6-v2"}}})),
        accept(K, MODEL_URI, json!({"spec": {"embedding": {"model": "hf://BAAI/bge-small-en-v1.5@main"}}})),
        accept(K, MODEL_URI, json!({"spec": {"embedding": {"model": "file:///models/all-MiniLM-L6-v2"}}})),
        reject(K, "preference pairs need a generator: it writes the rejected answers", json!({"spec": {"instruct": {"preference": true}}})),
        accept(K, "preference pairs need a generator: it writes the rejected answers",
            json!({"spec": {"instruct": {"preference": true, "generator": {"url": "https://api.openai.com/v1", "model": "gpt-4o-mini", "apiKeySecretRef": {"name": "openai", "key": "api-key"}}}}})),
        reject(K, HTTP_URL, json!({"spec": {"instruct": {"generator": {"url": "localhost:8000/v1", "model": "m"}}}})),
        reject(K, cron, json!({"spec": {"schedule": "every day at 4"}})),
        reject(K, cron, json!({"spec": {"schedule": "0 4 * *"}})),
        accept(K, cron, json!({"spec": {"schedule": "0 4 * * *"}})),
        accept(K, cron, json!({"spec": {"schedule": "@daily"}})),
    ]);
    cases
}

fn training_cases() -> Vec<Case> {
    const K: &str = "TwinTrainingJob";
    let sagemaker = json!({"region": "eu-west-1", "roleArn": "arn:aws:iam::123456789012:role/twin-trainer",
        "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/twin-trainer:0.1.0"});
    let with_sagemaker = |extra: Value| {
        let mut sm = sagemaker.clone();
        merge(&mut sm, &extra);
        json!({"spec": {"backend": {"kubernetes": null, "sagemaker": sm}}})
    };
    let mut cases = storage_cases(K);
    cases.extend([
        update(K, "datasetRef is immutable: create a new TwinTrainingJob to train on another dataset",
            json!({}), json!({"spec": {"datasetRef": {"name": "other"}}}), false),
        update(K, "datasetRef is immutable: create a new TwinTrainingJob to train on another dataset",
            json!({}), json!({"spec": {"sft": {"epochs": 5}}}), true),
        update(K, "baseModel.uri is immutable: an adapter only fits the base model it was trained on",
            json!({}), json!({"spec": {"baseModel": {"uri": "hf://mistralai/Mistral-7B-v0.3"}}}), false),
        update(K, "baseModel.uri is immutable: an adapter only fits the base model it was trained on",
            json!({}), json!({"spec": {"baseModel": {"tokenSecretRef": {"name": "hf", "key": "token"}}}}), true),
        update(K, "the backend kind is immutable: a run cannot move between Kubernetes and SageMaker",
            json!({}), with_sagemaker(json!({})), false),
        update(K, "the backend kind is immutable: a run cannot move between Kubernetes and SageMaker",
            json!({}), json!({"spec": {"backend": {"kubernetes": {"gpus": 2}}}}), true),
        update(K, "output.uri is immutable: adapters already written live there",
            json!({}), json!({"spec": {"output": {"uri": "s3://twins-bucket/elsewhere"}}}), false),
        update(K, "output.uri is immutable: adapters already written live there",
            json!({}), json!({"spec": {"output": {"region": "us-east-1"}}}), true),
        reject(K, "the sagemaker backend reads and writes S3: output.uri must be an s3:// URI", {
            let mut p = with_sagemaker(json!({}));
            merge(&mut p, &json!({"spec": {"output": {"uri": "pvc://models/twins"}}}));
            p
        }),
        accept(K, "the sagemaker backend reads and writes S3: output.uri must be an s3:// URI", with_sagemaker(json!({"spot": true}))),
        reject(K, "a gate needs the evaluation: set evaluation.enabled to true or remove evaluation.gate",
            json!({"spec": {"evaluation": {"enabled": false, "gate": {"minimums": {"winRate": 0.5}}}}})),
        accept(K, "a gate needs the evaluation: set evaluation.enabled to true or remove evaluation.gate",
            json!({"spec": {"evaluation": {"gate": {"minimums": {"winRate": 0.5}, "mustBeat": "serving"}}}})),
        reject(K, "evaluation.control must be builtin:opticks or a text file: pvc://claim/path in a cluster, file:///path with twin up",
            json!({"spec": {"evaluation": {"control": "https://example.com/other.txt"}}})),
        accept(K, "evaluation.control must be builtin:opticks or a text file: pvc://claim/path in a cluster, file:///path with twin up",
            json!({"spec": {"evaluation": {"control": "pvc://texts/control.txt"}}})),
        reject(K, "set exactly one backend: kubernetes or sagemaker", json!({"spec": {"backend": {"kubernetes": {}, "sagemaker": sagemaker.clone()}}})),
        reject(K, "set exactly one backend: kubernetes or sagemaker", json!({"spec": {"backend": {"kubernetes": null}}})),
        accept(K, "set exactly one backend: kubernetes or sagemaker", json!({"spec": {"backend": {"kubernetes": {"gpus": 4, "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}}}})),
        reject(K, "maxWaitSeconds applies only to spot training", with_sagemaker(json!({"maxWaitSeconds": 172800}))),
        accept(K, "maxWaitSeconds applies only to spot training", with_sagemaker(json!({"spot": true, "maxWaitSeconds": 172800}))),
        reject(K, "maxWaitSeconds must be at least maxRuntimeSeconds", with_sagemaker(json!({"spot": true, "maxWaitSeconds": 3600}))),
        reject(K, "maxWaitSeconds must be at least maxRuntimeSeconds", with_sagemaker(json!({"spot": true, "maxRuntimeSeconds": 7200, "maxWaitSeconds": 7199}))),
        accept(K, "maxWaitSeconds must be at least maxRuntimeSeconds", with_sagemaker(json!({"spot": true, "maxRuntimeSeconds": 7200, "maxWaitSeconds": 7200}))),
        reject(K, MODEL_URI, json!({"spec": {"baseModel": {"uri": "meta-llama/Llama-3.1-8B"}}})),
        accept(K, MODEL_URI, json!({"spec": {"baseModel": {"uri": "pvc://models/llama-3.1-8b"}}})),
    ]);
    cases
}

fn endpoint_cases() -> Vec<Case> {
    const K: &str = "TwinEndpoint";
    let model_one_of = "set exactly one of model.trainingJobRef or model.baseModel";
    let adapter_with_base = "adapterUri goes with baseModel; a trainingJobRef brings its own adapter";
    let external_url = "url is required for, and only for, the external engine";
    let vllm_only = "image, gpus, maxModelLen, extraArgs and sharedMemory apply only to the vllm engine";
    let cache = "modelCache applies to the vllm and embedded engines, which load a model (a shared engine's is its TwinEngine's)";
    let shared_ref = "engineRef is required for, and only for, the shared engine";
    let scale_to_zero = "minReplicas 0 (scale to zero) needs keda: a HorizontalPodAutoscaler cannot scale to zero, and KEDA wakes the engine on the gateway's requests";
    let shared_scaling = "a shared engine is scaled by its TwinEngine: remove autoscaling, or scale the gateway with gateway.maxReplicas";
    let shared = json!({"kind": "shared", "engineRef": {"name": "llama-8b"}});
    let cache_size = "sizeLimit bounds the emptyDir used without claimName; a claim's size is its own";
    let external_scaling = "the external engine is scaled by whoever runs it: remove autoscaling, or scale the gateway with gateway.maxReplicas";
    let gateway_max = "gateway.maxReplicas must be at least gateway.replicas";
    let external = json!({"kind": "external", "url": "http://llm:8000/v1"});
    let embedded = "the embedded engine runs in the gateway process and cannot be autoscaled: set autoscaling.maxReplicas to 1 or use vllm";
    let base_model = json!({"uri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct"});
    vec![
        reject(K, model_one_of, json!({"spec": {"model": {"baseModel": base_model.clone()}}})),
        reject(K, model_one_of, json!({"spec": {"model": {"trainingJobRef": null}}})),
        accept(
            K,
            model_one_of,
            json!({"spec": {"model": {"trainingJobRef": null, "baseModel": base_model.clone()}}}),
        ),
        reject(
            K,
            adapter_with_base,
            json!({"spec": {"model": {"adapterUri": "s3://twins-bucket/models/paul-v1/1/adapter"}}}),
        ),
        accept(
            K,
            adapter_with_base,
            json!({"spec": {"model": {"trainingJobRef": null, "baseModel": base_model.clone(), "adapterUri": "s3://twins-bucket/models/paul-v1/1/adapter"}}}),
        ),
        reject(
            K,
            MODEL_URI,
            json!({"spec": {"model": {"trainingJobRef": null, "baseModel": base_model.clone(), "adapterUri": "./adapter"}}}),
        ),
        reject(
            K,
            MODEL_URI,
            json!({"spec": {"model": {"trainingJobRef": null, "baseModel": {"uri": "SmolLM2"}}}}),
        ),
        accept(
            K,
            MODEL_URI,
            json!({"spec": {"model": {"trainingJobRef": null, "baseModel": {"uri": "file:///models/smollm2.gguf"}}}}),
        ),
        reject(K, shared_ref, json!({"spec": {"engine": {"kind": "shared"}}})),
        reject(
            K,
            shared_ref,
            json!({"spec": {"engine": {"kind": "vllm", "engineRef": {"name": "llama-8b"}}}}),
        ),
        accept(K, shared_ref, json!({"spec": {"engine": shared.clone()}})),
        reject(
            K,
            shared_scaling,
            json!({"spec": {"engine": shared.clone(), "autoscaling": {"maxReplicas": 2}}}),
        ),
        accept(K, shared_scaling, json!({"spec": {"engine": shared.clone(), "gateway": {"maxReplicas": 4}}})),
        reject(
            K,
            cache,
            json!({"spec": {"engine": {"kind": "shared", "engineRef": {"name": "llama-8b"}, "modelCache": {"sizeLimit": "10Gi"}}}}),
        ),
        reject(K, external_url, json!({"spec": {"engine": {"kind": "external"}}})),
        reject(K, external_url, json!({"spec": {"engine": {"kind": "vllm", "url": "http://vllm:8000/v1"}}})),
        accept(
            K,
            external_url,
            json!({"spec": {"engine": {"kind": "external", "url": "https://llm.internal.example/v1"}}}),
        ),
        reject(K, HTTP_URL, json!({"spec": {"engine": {"kind": "external", "url": "llm.internal:8000"}}})),
        accept(
            K,
            HTTP_URL,
            json!({"spec": {"engine": {"kind": "external", "url": "http://10.0.0.7:8000/v1"}}}),
        ),
        reject(
            K,
            vllm_only,
            json!({"spec": {"engine": {"kind": "external", "url": "http://llm:8000/v1", "gpus": 2}}}),
        ),
        accept(
            K,
            vllm_only,
            json!({"spec": {"engine": {"kind": "vllm", "gpus": 2, "maxModelLen": 8192, "extraArgs": ["--enable-prefix-caching"]}}}),
        ),
        reject(
            K,
            "minReplicas must not exceed maxReplicas",
            json!({"spec": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}),
        ),
        reject(
            K,
            "minReplicas must not exceed maxReplicas",
            json!({"spec": {"autoscaling": {"minReplicas": 5}}}),
        ),
        accept(
            K,
            "minReplicas must not exceed maxReplicas",
            json!({"spec": {"autoscaling": {"minReplicas": 2, "maxReplicas": 2}}}),
        ),
        reject(K, scale_to_zero, json!({"spec": {"autoscaling": {"minReplicas": 0, "maxReplicas": 2}}})),
        accept(
            K,
            scale_to_zero,
            json!({"spec": {"autoscaling": {"minReplicas": 0, "maxReplicas": 2, "keda": {"serverAddress": "http://prometheus:9090"}}}}),
        ),
        reject(
            K,
            embedded,
            json!({"spec": {"engine": {"kind": "embedded"}, "autoscaling": {"maxReplicas": 3}}}),
        ),
        accept(
            K,
            embedded,
            json!({"spec": {"engine": {"kind": "embedded"}, "autoscaling": {"maxReplicas": 1}}}),
        ),
        accept(K, embedded, json!({"spec": {"engine": {"kind": "embedded"}}})),
        reject(K, vllm_only, json!({"spec": {"engine": {"kind": "embedded", "sharedMemory": "4Gi"}}})),
        reject(
            K,
            cache,
            json!({"spec": {"engine": {"kind": "external", "url": "http://llm:8000/v1", "modelCache": {}}}}),
        ),
        accept(
            K,
            cache,
            json!({"spec": {"engine": {"kind": "embedded", "modelCache": {"sizeLimit": "20Gi"}}}}),
        ),
        reject(
            K,
            cache_size,
            json!({"spec": {"engine": {"modelCache": {"claimName": "models", "sizeLimit": "20Gi"}}}}),
        ),
        accept(
            K,
            cache_size,
            json!({"spec": {"engine": {"modelCache": {"claimName": "models"}, "sharedMemory": "8Gi"}}}),
        ),
        reject(
            K,
            external_scaling,
            json!({"spec": {"engine": external.clone(), "autoscaling": {"maxReplicas": 2}}}),
        ),
        accept(
            K,
            external_scaling,
            json!({"spec": {"engine": external.clone(), "gateway": {"replicas": 2, "maxReplicas": 4}}}),
        ),
        reject(K, gateway_max, json!({"spec": {"gateway": {"replicas": 3, "maxReplicas": 2}}})),
        accept(K, gateway_max, json!({"spec": {"gateway": {"replicas": 2, "maxReplicas": 2}}})),
        reject(K, STORAGE_URI, json!({"spec": {"gateway": {"promptLogUri": "hf://org/logs"}}})),
        accept(K, STORAGE_URI, json!({"spec": {"gateway": {"promptLogUri": "s3://twins/prompt-logs/paul"}}})),
        reject(K, HTTP_URL, json!({"spec": {"autoscaling": {"keda": {"serverAddress": "prometheus:9090"}}}})),
        accept(
            K,
            HTTP_URL,
            json!({"spec": {"autoscaling": {"keda": {"serverAddress": "http://prometheus.monitoring.svc:9090"}}}}),
        ),
    ]
}

/// What is wrong when a checker (`Err` with its messages) gives a case another verdict than
/// expected: accepted when it should reject, or rejected without the rule's message.
fn wrong_verdict<T: std::fmt::Debug>(
    case: &Case,
    checker: &str,
    result: &Result<T, Vec<String>>,
) -> Option<String> {
    match (case.accepts, result) {
        (true, Ok(_)) => None,
        (false, Err(messages)) if messages.iter().any(|m| m.contains(case.rule_message)) => None,
        _ => Some(format!(
            "{} {} ({}): expected {}, {checker} said {result:?}",
            case.kind,
            case.patch,
            case.rule_message,
            if case.accepts { "acceptance" } else { "rejection with the rule's message" }
        )),
    }
}

fn all_cases() -> Vec<Case> {
    let mut cases = dataset_cases();
    cases.extend(training_cases());
    cases.extend(endpoint_cases());
    cases.extend(engine_cases());
    cases
}

fn engine_cases() -> Vec<Case> {
    const K: &str = "TwinEngine";
    let runs_vllm = "a TwinEngine runs vLLM: vllm.kind must be vllm (or unset)";
    let slots = "adapters.maxCpu must be at least adapters.maxLoaded";
    // The rules of the engine settings a TwinEngine shares with a TwinEndpoint's engine.
    let external_url = "url is required for, and only for, the external engine";
    let shared_ref = "engineRef is required for, and only for, the shared engine";
    let vllm_only = "image, gpus, maxModelLen, extraArgs and sharedMemory apply only to the vllm engine";
    let cache = "modelCache applies to the vllm and embedded engines, which load a model (a shared engine's is its TwinEngine's)";
    let cache_size = "sizeLimit bounds the emptyDir used without claimName; a claim's size is its own";
    let min_max = "minReplicas must not exceed maxReplicas";
    let scale_to_zero = "minReplicas 0 (scale to zero) needs keda: a HorizontalPodAutoscaler cannot scale to zero, and KEDA wakes the engine on the gateway's requests";
    vec![
        reject(K, runs_vllm, json!({"spec": {"vllm": {"kind": "embedded"}}})),
        accept(K, runs_vllm, json!({"spec": {"vllm": {"kind": "vllm", "gpus": 2}}})),
        reject(K, slots, json!({"spec": {"adapters": {"maxLoaded": 8, "maxCpu": 4}}})),
        reject(K, slots, json!({"spec": {"adapters": {"maxLoaded": 32}}})),
        accept(K, slots, json!({"spec": {"adapters": {"maxLoaded": 8, "maxCpu": 8, "maxRank": 64}}})),
        reject(
            K,
            STORAGE_S3_ONLY,
            json!({"spec": {"adapters": {"store": {"uri": "pvc://adapters", "region": "eu-west-1"}}}}),
        ),
        accept(
            K,
            STORAGE_S3_ONLY,
            json!({"spec": {"adapters": {"store": {"uri": "s3://twins-bucket/twins", "region": "eu-west-1", "credentialsSecretRef": {"name": "s3"}}}}}),
        ),
        reject(K, external_url, json!({"spec": {"vllm": {"url": "http://vllm:8000/v1"}}})),
        accept(K, external_url, json!({"spec": {"vllm": {"maxModelLen": 8192}}})),
        reject(K, shared_ref, json!({"spec": {"vllm": {"engineRef": {"name": "other"}}}})),
        accept(K, shared_ref, json!({"spec": {"vllm": {"gpus": 1}}})),
        reject(
            K,
            vllm_only,
            json!({"spec": {"vllm": {"kind": "external", "url": "http://llm:8000/v1", "gpus": 2}}}),
        ),
        accept(
            K,
            vllm_only,
            json!({"spec": {"vllm": {"image": "vllm/vllm-openai:v0.11.0", "sharedMemory": "8Gi"}}}),
        ),
        reject(
            K,
            cache,
            json!({"spec": {"vllm": {"kind": "external", "url": "http://llm:8000/v1", "modelCache": {"sizeLimit": "1Gi"}}}}),
        ),
        accept(K, cache, json!({"spec": {"vllm": {"modelCache": {"claimName": "model-cache"}}}})),
        reject(
            K,
            cache_size,
            json!({"spec": {"vllm": {"modelCache": {"claimName": "model-cache", "sizeLimit": "1Gi"}}}}),
        ),
        accept(K, cache_size, json!({"spec": {"vllm": {"modelCache": {"sizeLimit": "100Gi"}}}})),
        reject(K, min_max, json!({"spec": {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}})),
        accept(K, min_max, json!({"spec": {"autoscaling": {"minReplicas": 1, "maxReplicas": 2}}})),
        reject(K, scale_to_zero, json!({"spec": {"autoscaling": {"minReplicas": 0}}})),
        accept(
            K,
            scale_to_zero,
            json!({"spec": {"autoscaling": {"minReplicas": 0, "wakeSeconds": 120, "keda": {"serverAddress": "http://prometheus:9090"}}}}),
        ),
        reject(K, MODEL_URI, json!({"spec": {"baseModel": {"uri": "Llama-3.1-8B"}}})),
        accept(K, MODEL_URI, json!({"spec": {"baseModel": {"uri": "s3://twins-bucket/models/llama"}}})),
        reject(K, STORAGE_URI, json!({"spec": {"adapters": {"store": {"uri": "hf://org/adapters"}}}})),
        accept(K, STORAGE_URI, json!({"spec": {"adapters": {"store": {"uri": "pvc://adapters/twins"}}}})),
        reject(
            K,
            HTTP_URL,
            json!({"spec": {"adapters": {"store": {"uri": "s3://twins-bucket/twins", "endpointUrl": "minio:9000"}}}}),
        ),
        accept(
            K,
            HTTP_URL,
            json!({"spec": {"adapters": {"store": {"uri": "s3://twins-bucket/twins", "endpointUrl": "http://minio:9000"}}}}),
        ),
    ]
}

#[test]
fn every_case_gets_the_expected_verdict() {
    let catalog = CrdCatalog::generated();
    let mut failures = Vec::new();
    for case in all_cases() {
        let new = patched(case.kind, &case.patch);
        let old = case.old_patch.as_ref().map(|p| patched(case.kind, p));
        if let Some(old) = &old {
            catalog
                .check(old, None)
                .unwrap_or_else(|e| panic!("the stored object of a {} case is invalid: {e:?}", case.kind));
        }
        failures.extend(wrong_verdict(&case, "twin up's checks", &catalog.check(&new, old.as_ref())));
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_cel_rule_has_a_rejecting_and_an_accepting_case() {
    let catalog = CrdCatalog::generated();
    let cases = all_cases();
    let mut missing = Vec::new();
    for schema in &catalog.schemas {
        let messages: BTreeSet<String> = schema.rules().into_iter().map(|(_, message)| message).collect();
        assert!(!messages.is_empty(), "{} has no CEL rules", schema.kind);
        for message in messages {
            for accepts in [true, false] {
                let covered = cases
                    .iter()
                    .any(|c| c.kind == schema.kind && c.rule_message == message && c.accepts == accepts);
                if !covered {
                    missing.push(format!(
                        "{}: no {} case for rule {message:?}",
                        schema.kind,
                        if accepts { "accepting" } else { "rejecting" }
                    ));
                }
            }
        }
        for (rule, message) in schema.rules() {
            assert!(!message.is_empty(), "{}: rule {rule:?} has no message", schema.kind);
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The API server refuses a CRD with a rule whose estimated cost, times the most times it can
/// run, is over 10,000,000, or whose rules sum over 100,000,000. Measured with its own code
/// (`crd-cost`, built with the control plane from the same release), each rule stays under a
/// quarter of that, and each CRD too, so that a new field or rule has room.
#[test]
fn cel_rules_cost_at_most_a_quarter_of_the_api_servers_budget() {
    const RULE_LIMIT: u64 = 10_000_000;
    const CRD_LIMIT: u64 = 100_000_000;
    let build = std::process::Command::new(crate::support::repo::path("scripts/control-plane"))
        .arg("build")
        .output()
        .expect("scripts/control-plane starts");
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let bin = std::path::PathBuf::from(String::from_utf8(build.stdout).unwrap().trim());
    let crds = crate::support::repo::files_with_extension("crds", "yaml");
    let output =
        std::process::Command::new(bin.join("crd-cost")).args(&crds).output().expect("crd-cost runs");
    assert!(output.status.success(), "crd-cost: {}", String::from_utf8_lossy(&output.stderr));
    let rules: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(rules.len() >= 30, "crd-cost found {} rules: it must see every CRD's", rules.len());
    let mut totals = std::collections::BTreeMap::<String, u64>::new();
    for rule in &rules {
        let cost = rule["cost"].as_u64().unwrap();
        *totals.entry(rule["crd"].as_str().unwrap().to_string()).or_default() += cost;
        assert!(
            cost <= RULE_LIMIT / 4,
            "{} {}: {} costs {cost}, over a quarter of {RULE_LIMIT}",
            rule["crd"],
            rule["path"],
            rule["rule"]
        );
    }
    assert_eq!(totals.len(), 4, "{totals:?}");
    for (crd, total) in totals {
        assert!(
            total <= CRD_LIMIT / 4,
            "{crd}: its rules cost {total} in all, over a quarter of {CRD_LIMIT}"
        );
    }
}

/// Objects the OpenAPI part of the schema refuses, each with the field its error names.
fn malformed_objects() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("TwinDataset", json!({"spec": {"author": null}}), "spec"),
        ("TwinDataset", json!({"spec": {"sources": []}}), "spec.sources"),
        (
            "TwinDataset",
            json!({"spec": {"sources": [{"name": "Blog!", "feed": {"url": "https://a.example/feed"}}]}}),
            "spec.sources[0].name",
        ),
        (
            "TwinDataset",
            json!({"spec": {"sources": [
            {"name": "blog", "feed": {"url": "https://a.example/feed"}},
            {"name": "blog", "web": {"urls": ["https://a.example/"]}}]}}),
            "Duplicate value",
        ),
        (
            "TwinDataset",
            json!({"spec": {"sources": [{"name": "li", "archive": {"uri": "s3://b/x.zip", "format": "facebook"}}]}}),
            "spec.sources[0].archive.format",
        ),
        (
            "TwinDataset",
            json!({"spec": {"sources": [{"name": "pages", "web": {"urls": ["https://a.example/", "a.example/about"]}}]}}),
            "spec.sources[0].web.urls[1]",
        ),
        ("TwinDataset", json!({"spec": {"chunking": {"maxTokens": "many"}}}), "spec.chunking.maxTokens"),
        ("TwinDataset", json!({"spec": {"chunking": {"maxTokens": 100000}}}), "spec.chunking.maxTokens"),
        ("TwinDataset", json!({"spec": {"chunkking": {"maxTokens": 128}}}), "spec"),
        ("TwinDataset", json!({"spec": {"instruct": {"testFraction": 0.9}}}), "spec.instruct.testFraction"),
        ("TwinTrainingJob", json!({"spec": {"sft": {"method": "full"}}}), "spec.sft.method"),
        ("TwinTrainingJob", json!({"spec": {"sft": {"loraRank": 0}}}), "spec.sft.loraRank"),
        (
            "TwinTrainingJob",
            json!({"spec": {"backend": {"kubernetes": null, "sagemaker": {"region": "eu-west-1", "roleArn": "not-an-arn", "image": "x"}}}}),
            "spec.backend.sagemaker.roleArn",
        ),
        (
            "TwinTrainingJob",
            json!({"spec": {"backend": {"kubernetes": {"gpus": 64}}}}),
            "spec.backend.kubernetes.gpus",
        ),
        ("TwinEndpoint", json!({"spec": {"engine": {"kind": "tgi"}}}), "spec.engine.kind"),
        ("TwinEndpoint", json!({"spec": {"gateway": {"rag": {"topK": -1}}}}), "spec.gateway.rag.topK"),
        (
            "TwinEndpoint",
            json!({"spec": {"model": {"trainingJobRef": {"name": ""}}}}),
            "spec.model.trainingJobRef.name",
        ),
        ("TwinEndpoint", json!({"apiVersion": "llmtwin.dev/v1"}), "llmtwin.dev/v1"),
    ]
}

/// The OpenAPI part of the schema: each object is refused with an error naming the field.
#[test]
fn openapi_schema_refuses_malformed_objects() {
    let catalog = CrdCatalog::generated();
    for (kind, patch, expected_path) in malformed_objects() {
        let object = patched(kind, &patch);
        let errors = catalog.check(&object, None).expect_err(&format!("{kind} {patch} must be refused"));
        assert!(
            errors.iter().any(|e| e.contains(expected_path)),
            "{kind} {patch}: errors {errors:?} do not name {expected_path}"
        );
    }
}

#[test]
fn defaults_are_filled_in_as_the_api_server_would() {
    let catalog = CrdCatalog::generated();
    let dataset = catalog.check(&base("TwinDataset"), None).expect("base dataset is valid");
    assert_eq!(dataset["spec"]["chunking"], json!({"maxTokens": 256, "overlapTokens": 32}));
    assert_eq!(dataset["spec"]["embedding"]["model"], "hf://sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(dataset["spec"]["sources"][0]["feed"]["maxItems"], 500);
    let training = catalog.check(&base("TwinTrainingJob"), None).expect("base training job is valid");
    assert_eq!(training["spec"]["sft"]["method"], "lora");
    assert_eq!(training["spec"]["sft"]["epochs"], 3);
    assert_eq!(training["spec"]["dpo"]["enabled"], true);
    assert_eq!(training["spec"]["backend"]["kubernetes"]["gpus"], 1);
    assert_eq!(training["spec"]["backend"]["kubernetes"]["gpuResourceName"], "nvidia.com/gpu");
    let endpoint = catalog.check(&base("TwinEndpoint"), None).expect("base endpoint is valid");
    assert_eq!(endpoint["spec"]["engine"]["kind"], "vllm");
    assert_eq!(endpoint["spec"]["gateway"]["rag"]["topK"], 4);
    // The defaulted objects still deserialise into the Rust types the operator uses.
    let _: twin_operator::api::TwinDataset = serde_json::from_value(dataset).unwrap();
    let _: twin_operator::api::TwinTrainingJob = serde_json::from_value(training).unwrap();
    let _: twin_operator::api::TwinEndpoint = serde_json::from_value(endpoint).unwrap();
}

/// A case's object as a kubectl document: named `name`, in `namespace`.
fn document(kind: &str, patch: &Value, name: &str, namespace: &str) -> String {
    let mut object = patched(kind, patch);
    object["metadata"] = json!({"name": name, "namespace": namespace});
    object.to_string()
}

#[tokio::test]
async fn the_real_api_server_gives_every_case_its_verdict_with_the_rules_message() {
    let plane = control_plane::shared();
    let namespace = plane.namespace("validation").await;
    let mut failures = Vec::new();
    for (i, case) in all_cases().iter().enumerate() {
        let name = format!("case-{i}");
        let new = document(case.kind, &case.patch, &name, &namespace);
        let result = match &case.old_patch {
            None => plane.kubectl_with_input(&["create", "--dry-run=server", "-f", "-"], &new),
            Some(old_patch) => {
                let old = document(case.kind, old_patch, &name, &namespace);
                plane
                    .kubectl_with_input(&["create", "-f", "-"], &old)
                    .unwrap_or_else(|e| panic!("the stored object of case {i} is refused: {e}"));
                plane.kubectl_with_input(&["replace", "--dry-run=server", "-f", "-"], &new)
            }
        };
        failures.extend(wrong_verdict(case, "kubectl", &result.map_err(|message| vec![message])));
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn the_real_api_server_refuses_every_malformed_object_naming_the_field() {
    let plane = control_plane::shared();
    let namespace = plane.namespace("malformed").await;
    for (i, (kind, patch, expected_path)) in malformed_objects().into_iter().enumerate() {
        let object = document(kind, &patch, &format!("bad-{i}"), &namespace);
        // kubectl's default field validation is Strict: an unknown field is an error, as in
        // `twin up`; a client that asks for less gets it pruned instead.
        let message = plane
            .kubectl_with_input(&["create", "--dry-run=server", "-f", "-"], &object)
            .expect_err(&format!("{kind} {patch} must be refused"));
        assert!(
            message.contains(expected_path),
            "{kind} {patch}: kubectl said {message:?}, not naming {expected_path}"
        );
    }
}

#[tokio::test]
async fn the_real_api_server_fills_in_the_same_defaults() {
    let plane = control_plane::shared();
    let namespace = plane.namespace("defaults").await;
    let catalog = CrdCatalog::generated();
    for kind in ["TwinDataset", "TwinTrainingJob", "TwinEndpoint", "TwinEngine"] {
        let created = plane
            .kubectl_with_input(
                &["create", "--dry-run=server", "-o", "json", "-f", "-"],
                &document(kind, &json!({}), "defaults", &namespace),
            )
            .unwrap_or_else(|e| panic!("the base {kind} is refused: {e}"));
        let created: Value = serde_json::from_str(&created).unwrap();
        let mut local = base(kind);
        local["metadata"] = json!({"name": "defaults", "namespace": namespace});
        let local = catalog.check(&local, None).expect("the base object is valid");
        assert_eq!(created["spec"], local["spec"], "{kind}: the API server and twin up default differently");
    }
}

/// Optional blocks of each kind, with a field set inside each (their other fields defaulted).
fn optional_blocks(kind: &str) -> Value {
    match kind {
        "TwinDataset" => json!({"spec": {
            "chunking": {"maxTokens": 128},
            "embedding": {"model": "hf://sentence-transformers/all-mpnet-base-v2"},
            "schedule": "0 4 * * *",
            "job": {"serviceAccountName": "twin-datasets"}
        }}),
        "TwinTrainingJob" => json!({"spec": {
            "sft": {"epochs": 1},
            "dpo": {"beta": 0.1}
        }}),
        "TwinEndpoint" => json!({"spec": {
            "autoscaling": {"maxReplicas": 3},
            "monitoring": {"serviceMonitor": true},
            "gateway": {"replicas": 3, "maxReplicas": 5},
            "engine": {"gpus": 2}
        }}),
        "TwinEngine" => json!({"spec": {
            "vllm": {"gpus": 2, "maxModelLen": 8192},
            "adapters": {"maxLoaded": 8, "maxCpu": 32},
            "monitoring": {"serviceMonitor": true}
        }}),
        other => panic!("no optional blocks for {other}"),
    }
}

/// A user who removes optional blocks from their YAML and re-applies it server-side (as
/// `kubectl apply --server-side` and Argo CD do) gets what a fresh object gets: the defaults
/// inside a block do not keep the block alive.
#[tokio::test]
async fn removing_optional_blocks_and_applying_server_side_returns_to_the_defaults() {
    let plane = control_plane::shared();
    let namespace = plane.namespace("removal").await;
    for kind in ["TwinDataset", "TwinTrainingJob", "TwinEndpoint", "TwinEngine"] {
        let apply = |patch: &Value, name: &str| {
            plane
                .kubectl_with_input(
                    &[
                        "apply",
                        "--server-side",
                        "--field-manager",
                        "argocd-controller",
                        "-o",
                        "json",
                        "-f",
                        "-",
                    ],
                    &document(kind, patch, name, &namespace),
                )
                .map(|out| serde_json::from_str::<Value>(&out).unwrap())
                .unwrap_or_else(|e| panic!("applying {kind}: {e}"))
        };
        let full = apply(&optional_blocks(kind), "edited");
        assert_ne!(full["spec"], apply(&json!({}), "fresh")["spec"], "{kind}: the blocks changed nothing");
        let removed = apply(&json!({}), "edited");
        let fresh = apply(&json!({}), "fresh");
        assert_eq!(
            removed["spec"], fresh["spec"],
            "{kind}: removing the optional blocks left them in the stored spec"
        );
    }
}
