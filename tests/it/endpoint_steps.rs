//! The TwinEndpoint controller's pure steps on the YAML fixtures in `tests/fixtures/operator/`:
//! the children built for each engine kind, compared with a snapshot beside each fixture
//! (`TWIN_UPDATE_SNAPSHOTS=1` rewrites them after a deliberate change), and the status read
//! from Deployments and pods.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::{Value, json};
use twin_operator::api::endpoint::{EndpointPhase, RetrievalRevision, ServedModel, TwinEndpointStatus};
use twin_operator::api::training::TrainingPhase;
use twin_operator::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};
use twin_operator::operator::OperatorSettings;
use twin_operator::operator::driver::Validation;
use twin_operator::operator::endpoint::build::{self, EndpointChildren};
use twin_operator::operator::endpoint::parts::{self, Inputs};
use twin_operator::operator::endpoint::status::{self, Observed};
use twin_operator::operator::endpoint::{engine, scaling, validate};

use crate::steps::{assert_children_snapshot, fixture, of_kind};

/// The fixture's endpoint, training job and dataset, and the model validation resolves.
fn resolved(
    documents: &[Value],
) -> (TwinEndpoint, Option<TwinTrainingJob>, Option<TwinDataset>, ServedModel) {
    let endpoint: TwinEndpoint = of_kind(documents, "TwinEndpoint").remove(0);
    let job: Option<TwinTrainingJob> = of_kind(documents, "TwinTrainingJob").pop();
    let dataset: Option<TwinDataset> = of_kind(documents, "TwinDataset").pop();
    let Validation::Proceed(served) = validate::resolve_model(&endpoint, job.as_ref()) else {
        panic!("the fixture's model resolves")
    };
    let (served, waiting) = validate::resolve_dataset(&endpoint, dataset.as_ref(), served);
    assert!(waiting.is_none(), "{waiting:?}");
    (endpoint, job, dataset, served)
}

fn children_of(
    endpoint: &TwinEndpoint,
    job: Option<&TwinTrainingJob>,
    dataset: Option<&TwinDataset>,
    served: &ServedModel,
) -> Result<EndpointChildren, String> {
    children_beside(endpoint, job, dataset, served, None)
}

/// The children validation and the builders give for `served`, beside the engine Deployment
/// that runs now (if any); `Err` is the message of what validation refuses.
fn children_beside(
    endpoint: &TwinEndpoint,
    job: Option<&TwinTrainingJob>,
    dataset: Option<&TwinDataset>,
    served: &ServedModel,
    running_engine: Option<&Deployment>,
) -> Result<EndpointChildren, String> {
    let valid = match validate::validate(endpoint, job, dataset, None) {
        Validation::Proceed(valid) => valid,
        Validation::Wait(verdict) => return Err(verdict.assessment.message),
    };
    let trained = engine::trained_model(served, job, running_engine);
    let inputs = Inputs::new(endpoint, &valid, trained.as_ref(), served);
    Ok(build::build(&inputs, &OperatorSettings::for_tests("t")))
}

/// Builds a fixture's children and compares them with its snapshot.
fn built(name: &str) -> EndpointChildren {
    let documents = fixture(&format!("{name}.yaml"));
    let (endpoint, job, dataset, served) = resolved(&documents);
    let children = children_of(&endpoint, job.as_ref(), dataset.as_ref(), &served).unwrap();
    assert_children_snapshot(&children.child_set().unwrap(), name);
    children
}

/// The adapter the vLLM fixture's training job published.
fn served_adapter() -> Option<String> {
    Some("s3://twins/out/models/paul-v1/g1-r1/adapter".into())
}

fn pod_spec(deployment: &Deployment) -> PodSpec {
    deployment.spec.clone().unwrap().template.spec.unwrap()
}

fn env(container: &Container, name: &str) -> Option<String> {
    container.env.iter().flatten().find(|e| e.name == name).and_then(|e| e.value.clone())
}

fn order(children: &EndpointChildren) -> Vec<(String, String)> {
    children
        .child_set()
        .unwrap()
        .children()
        .iter()
        .map(|c| (c.resource.kind.clone(), c.name.clone()))
        .collect()
}

#[test]
fn a_vllm_endpoint_runs_the_adapter_on_gpus_behind_the_gateway() {
    let children = built("endpoint-vllm");
    let named = |kind: &str, name: &str| (kind.to_string(), name.to_string());
    assert_eq!(
        order(&children),
        [
            named("Service", "paul-engine"),
            named("Service", "paul"),
            named("Deployment", "paul-engine"),
            named("Deployment", "paul"),
            named("HorizontalPodAutoscaler", "paul"),
            named("HorizontalPodAutoscaler", "paul-engine"),
            named("PodDisruptionBudget", "paul-engine"),
            named("PodDisruptionBudget", "paul"),
            named("ServiceMonitor", "paul-engine"),
            named("ServiceMonitor", "paul"),
        ]
    );
    let engine = children.engine.as_ref().unwrap();
    assert_eq!(engine.spec.as_ref().unwrap().replicas, None, "the autoscaler owns the engine's replicas");
    let pod = pod_spec(engine);
    let vllm = &pod.containers[0];
    let args = vllm.args.clone().unwrap();
    let after = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].as_str());
    assert_eq!(args[0], "meta-llama/Llama-3.1-8B-Instruct");
    assert!(args.contains(&"--enable-lora".to_string()), "{args:?}");
    assert_eq!(
        after("--lora-modules"),
        Some("paul=/adapters/paul"),
        "the adapter is named after the endpoint"
    );
    assert_eq!(after("--served-model-name"), Some("paul-base"));
    assert_eq!(after("--max-lora-rank"), Some("32"), "the rank the training reported");
    assert_eq!(after("--max-model-len"), Some("8192"));
    assert_eq!(after("--tensor-parallel-size"), Some("2"));
    assert_eq!(&args[args.len() - 2..], ["--gpu-memory-utilization", "0.85"], "extraArgs come last");
    let limits = vllm.resources.clone().unwrap().limits.unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "2");
    let hub_token = vllm.env.iter().flatten().find(|e| e.name == "HF_TOKEN").unwrap();
    assert!(hub_token.value.is_none() && hub_token.value_from.as_ref().unwrap().secret_key_ref.is_some());
    let fetch = &pod.init_containers.clone().unwrap()[0];
    assert_eq!(
        fetch.args.clone().unwrap(),
        ["fetch", "s3://twins/out/models/paul-v1/g1-r1/adapter", "/adapters/paul"]
    );
    assert_eq!(env(fetch, "AWS_ENDPOINT_URL_S3").as_deref(), Some("http://minio.storage.svc:9000"));
    assert_eq!(fetch.env_from.clone().unwrap()[0].secret_ref.as_ref().unwrap().name, "minio");
    let volumes = pod.volumes.clone().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v.name == name).unwrap().clone();
    assert_eq!(volume("models").persistent_volume_claim.unwrap().claim_name, "model-cache");
    let shm = volume("shm").empty_dir.unwrap();
    assert_eq!((shm.medium.as_deref(), shm.size_limit.map(|q| q.0)), (Some("Memory"), Some("8Gi".into())));
    assert_eq!(vllm.startup_probe.as_ref().unwrap().failure_threshold, Some(360), "an hour to load");
    let security = pod.security_context.unwrap();
    assert_eq!((security.run_as_non_root, security.run_as_user), (Some(true), Some(1000)));
    let strategy = engine.spec.clone().unwrap().strategy.unwrap().rolling_update.unwrap();
    assert_eq!(
        strategy.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );

    let gateway = &pod_spec(&children.gateway).containers[0];
    assert_eq!(env(gateway, "TWIN_SERVE_UPSTREAM").as_deref(), Some("http://paul-engine.twins.svc:8000/v1"));
    assert_eq!(env(gateway, "TWIN_SERVE_UPSTREAM_MODEL").as_deref(), Some("paul"));
    assert_eq!(
        (env(gateway, "TWIN_SERVE_UPSTREAM_BASE_MODEL"), env(gateway, "TWIN_SERVE_UPSTREAM_ADAPTER")),
        (Some("hf://meta-llama/Llama-3.1-8B-Instruct".into()), served_adapter()),
        "every answer's lineage names what vLLM serves"
    );
    assert_eq!(
        (
            env(gateway, "TWIN_SERVE_DATASET").as_deref(),
            env(gateway, "TWIN_SERVE_ADAPTER_REVISION").as_deref()
        ),
        (Some("s3://twins/out/datasets/paul/r2"), Some("r1")),
        "retrieval reads the dataset's newest revision (r2); the lineage names the adapter's (r1) too"
    );
    assert_eq!(env(gateway, "TWIN_SERVE_API_KEY_FILE").as_deref(), Some("/var/run/twin/api-key/api-key"));
    assert_eq!(env(gateway, "TWIN_SERVE_PROMPT_LOG").as_deref(), Some("s3://twins/prompt-logs/paul"));
    assert_eq!(env(gateway, "TWIN_SERVE_TOP_K").as_deref(), Some("5"));
    assert_eq!(
        gateway.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(),
        Some("/readyz")
    );
    let engine_hpa = &children.autoscalers[1].spec.clone().unwrap();
    let pods_metric = engine_hpa.metrics.clone().unwrap()[0].pods.clone().unwrap();
    assert_eq!(
        (pods_metric.metric.name.as_str(), pods_metric.target.average_value.map(|q| q.0)),
        (scaling::ENGINE_HPA_METRIC, Some("8".into()))
    );
    assert_eq!((engine_hpa.min_replicas, engine_hpa.max_replicas), (Some(1), 3));
    let gateway_hpa = children.autoscalers[0].spec.clone().unwrap();
    assert_eq!((gateway_hpa.min_replicas, gateway_hpa.max_replicas), (Some(2), 6));
    assert_eq!(
        gateway_hpa.metrics.unwrap()[0].resource.clone().unwrap().target.average_utilization,
        Some(70)
    );
}

/// A twin of a base model without a chat template was trained with ChatML: vLLM is given the
/// template the run published in the adapter's folder, unless `extraArgs` names one; an adapter
/// published without one (an older run) gets no flag.
#[test]
fn vllm_serves_the_adapter_with_the_chat_template_it_was_trained_with() {
    let documents = fixture("endpoint-vllm.yaml");
    let (endpoint, job, dataset, served) = resolved(&documents);
    let mut job = job.unwrap();
    job.spec.base_model.uri = "hf://HuggingFaceTB/SmolLM2-135M".into();
    let served = ServedModel { base_model: job.spec.base_model.uri.clone(), ..served };
    let engine_args = |endpoint: &TwinEndpoint, job: &TwinTrainingJob| {
        let children = children_of(endpoint, Some(job), dataset.as_ref(), &served).unwrap();
        pod_spec(children.engine.as_ref().unwrap()).containers[0].args.clone().unwrap()
    };
    let model = job.status.as_mut().unwrap().model.as_mut().unwrap();
    model.chat_template = Some("chat_template.jinja".into());
    let args = engine_args(&endpoint, &job);
    let at = args.iter().position(|a| a == "--chat-template").expect("a --chat-template argument");
    assert_eq!(args[at + 1], "/adapters/paul/chat_template.jinja", "{args:?}");

    let mut own = endpoint.clone();
    own.spec.engine.extra_args = Some(vec!["--chat-template=/models/mine.jinja".into()]);
    let args = engine_args(&own, &job);
    assert_eq!(args.iter().filter(|a| a.starts_with("--chat-template")).count(), 1, "{args:?}");

    job.status.as_mut().unwrap().model.as_mut().unwrap().chat_template = None;
    assert!(!engine_args(&endpoint, &job).iter().any(|a| a == "--chat-template"));
}

#[test]
fn keda_scales_the_engine_on_vllms_queue_instead_of_an_autoscaler() {
    let mut documents = fixture("endpoint-vllm.yaml");
    documents[0]["spec"]["autoscaling"]["keda"] =
        json!({"serverAddress": "http://prometheus.monitoring.svc:9090"});
    let (endpoint, job, dataset, served) = resolved(&documents);
    let children = children_of(&endpoint, job.as_ref(), dataset.as_ref(), &served).unwrap();
    assert_eq!(children.autoscalers.len(), 1, "only the gateway's autoscaler is left");
    let scaled = &children.scaled_objects[0];
    assert_eq!(scaled.data["spec"]["scaleTargetRef"]["name"], "paul-engine");
    assert_eq!(
        (scaled.data["spec"]["minReplicaCount"].clone(), scaled.data["spec"]["maxReplicaCount"].clone()),
        (json!(1), json!(3))
    );
    let trigger = &scaled.data["spec"]["triggers"][0];
    assert_eq!(
        (trigger["type"].as_str(), trigger["metadata"]["threshold"].as_str()),
        (Some("prometheus"), Some("8"))
    );
    let query = trigger["metadata"]["query"].as_str().unwrap();
    promql_parser::parser::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    assert!(
        query.contains("vllm:num_requests_(running|waiting)") && query.contains(r#"namespace="twins""#),
        "{query}"
    );
    let set = children.child_set().unwrap();
    assert!(set.get("ScaledObject", "paul-engine").is_some());
}

#[test]
fn an_external_endpoint_runs_only_the_gateway_in_front_of_the_url() {
    let children = built("endpoint-external");
    assert!(children.engine.is_none() && children.engine_service.is_none());
    assert_eq!(children.gateway.spec.clone().unwrap().replicas, Some(2));
    let pod = pod_spec(&children.gateway);
    let gateway = &pod.containers[0];
    assert_eq!(env(gateway, "TWIN_SERVE_UPSTREAM").as_deref(), Some("http://llm-gateway.ai.svc:8000/v1"));
    assert_eq!(env(gateway, "TWIN_SERVE_UPSTREAM_MODEL"), None, "the upstream's first model");
    assert_eq!(
        env(gateway, "TWIN_SERVE_DATASET").as_deref(),
        Some("/mnt/twin/pvc/twins-data/out/datasets/paul/r7")
    );
    let mount =
        gateway.volume_mounts.iter().flatten().find(|m| m.mount_path == "/mnt/twin/pvc/twins-data").unwrap();
    assert_eq!(mount.read_only, Some(true), "the gateway only reads the dataset");
    assert_eq!(children.budgets.len(), 1, "two gateway replicas get a budget");
    assert!(children.autoscalers.is_empty() && children.monitors.is_empty());
}

#[test]
fn an_embedded_endpoint_runs_the_gguf_model_and_adapter_in_the_gateway() {
    let children = built("endpoint-embedded");
    assert!(children.engine.is_none() && children.budgets.is_empty(), "one replica, no budget");
    let pod = pod_spec(&children.gateway);
    let gateway = &pod.containers[0];
    assert_eq!(env(gateway, "TWIN_SERVE_ENGINE").as_deref(), Some("embedded"));
    assert_eq!(
        env(gateway, "TWIN_SERVE_MODEL").as_deref(),
        Some("/mnt/twin/pvc/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    assert_eq!(env(gateway, "TWIN_SERVE_ADAPTER").as_deref(), Some("/adapters/paul-small/adapter.gguf"));
    assert_eq!(env(gateway, "TWIN_SERVE_DATASET"), None, "no dataset, no retrieval");
    let fetch = &pod.init_containers.clone().unwrap()[0];
    assert_eq!(fetch.args.clone().unwrap()[1], "pvc://twins-data/out/models/paul-v1/g1-r1/adapter.gguf");
}

#[test]
fn what_an_engine_cannot_load_is_refused_with_the_reason() {
    let mut documents = fixture("endpoint-vllm.yaml");
    documents[1]["status"]["model"]["baseModel"] = json!("hf://org/model@main/model.Q4.gguf");
    let (endpoint, job, dataset, served) = resolved(&documents);
    let error = children_of(&endpoint, job.as_ref(), dataset.as_ref(), &served).unwrap_err();
    assert!(error.contains("GGUF") && error.contains("engine.kind embedded"), "{error}");
    let mut documents = fixture("endpoint-embedded.yaml");
    documents[0]["spec"]["model"]["baseModel"]["uri"] = json!("hf://meta-llama/Llama-3.1-8B");
    let (endpoint, _, _, served) = resolved(&documents);
    let error = children_of(&endpoint, None, None, &served).unwrap_err();
    assert!(error.contains("not a .gguf file"), "{error}");
    // A name that would collide with another endpoint's engine.
    let mut documents = fixture("endpoint-embedded.yaml");
    documents[0]["metadata"]["name"] = json!("paul-engine");
    let endpoint: TwinEndpoint = of_kind(&documents, "TwinEndpoint").remove(0);
    let Validation::Wait(verdict) = validate::resolve_model(&endpoint, None) else { panic!("-engine") };
    assert_eq!(verdict.assessment.reason, "InvalidName");
    // A local prompt log works with twin up only.
    let mut documents = fixture("endpoint-embedded.yaml");
    documents[0]["spec"]["gateway"]["promptLogUri"] = json!("file:///var/log/twin");
    let endpoint: TwinEndpoint = of_kind(&documents, "TwinEndpoint").remove(0);
    let Validation::Wait(verdict) = validate::resolve_model(&endpoint, None) else {
        panic!("file:// on a cluster")
    };
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (EndpointPhase::Failed, "InvalidSpec")
    );
    assert!(
        verdict.assessment.message.contains("spec.gateway.promptLogUri"),
        "{}",
        verdict.assessment.message
    );
}

/// A Deployment with this template annotation, `desired` replicas and the status given.
fn deployment(name: &str, component: &str, adapter: Option<&str>, desired: i32, status: Value) -> Deployment {
    let annotations = adapter.map(|a| json!({parts::ADAPTER_ANNOTATION: a})).unwrap_or(json!({}));
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "twins", "generation": 2, "annotations": annotations,
                     "labels": {"app.kubernetes.io/component": component}},
        "spec": {"replicas": desired, "selector": {}, "template": {}},
        "status": status,
    }))
    .unwrap()
}

fn available(replicas: i32) -> Value {
    json!({"observedGeneration": 2, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas})
}

fn pod(component: &str, status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("paul-{component}-7d9f-x1"), "namespace": "twins",
                     "labels": {"app.kubernetes.io/component": component}},
        "status": status,
    }))
    .unwrap()
}

fn waiting(container: &str, reason: &str, message: &str, last: Value) -> Value {
    json!({"phase": "Running", "containerStatuses": [{"name": container, "ready": false, "restartCount": 4,
        "image": "vllm/vllm-openai:v0.11.0", "imageID": "", "state": {"waiting": {"reason": reason, "message": message}},
        "lastState": last}]})
}

#[test]
fn status_comes_from_deployments_and_pods_and_never_says_ready_over_a_failing_pod() {
    let documents = fixture("endpoint-vllm.yaml");
    let (endpoint, _, _, served) = resolved(&documents);
    let adapter = served.adapter_uri.as_deref();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-12-03T00:00:00Z".parse().unwrap());
    let assess = |observed: &Observed| {
        status::from_observed(&endpoint, &served, observed, TwinEndpointStatus::default(), now.clone())
    };
    let both = |engine: Value, gateway: Value, pods: Vec<Pod>| Observed {
        engine: Some(deployment("paul-engine", "engine", adapter, 1, engine)),
        gateway: Some(deployment("paul", "gateway", None, 2, gateway)),
        pods,
        ..Default::default()
    };

    let (verdict, status) = assess(&both(json!({}), json!({}), vec![]));
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (EndpointPhase::Deploying, "EngineRollingOut")
    );
    assert_eq!(verdict.recheck, Some(status::UNSETTLED_RECHECK));
    assert_eq!(status.replicas.unwrap().engine, "0/1");

    let (verdict, status) = assess(&both(available(1), available(2), vec![]));
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.ready),
        (EndpointPhase::Ready, true),
        "{verdict:?}"
    );
    assert!(
        verdict.assessment.message.contains("http://paul.twins.svc:8080/v1"),
        "{}",
        verdict.assessment.message
    );
    assert_eq!(status.url.as_deref(), Some("http://paul.twins.svc:8080/v1"));
    let replicas = status.replicas.unwrap();
    assert_eq!((replicas.engine.as_str(), replicas.gateway.as_str()), ("1/1", "2/2"));
    let conditions: Vec<(&str, &str)> =
        status.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
    assert_eq!(conditions, [("EngineReady", "True"), ("GatewayReady", "True")]);
    assert_eq!(status.model.as_ref(), Some(&served));

    // A crash loop turns a Ready endpoint Degraded at once, with the container's last words.
    let last =
        json!({"terminated": {"exitCode": 1, "reason": "Error", "message": "CUDA error: no kernel image"}});
    let crashing = pod("engine", waiting("vllm", "CrashLoopBackOff", "back-off 40s", last));
    let (verdict, status) = assess(&both(available(1), available(2), vec![crashing]));
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (EndpointPhase::Degraded, "EngineCrashLoopBackOff")
    );
    assert!(
        verdict.assessment.message.contains("exit code 1 CUDA error: no kernel image"),
        "{}",
        verdict.assessment.message
    );
    let engine_condition = status.conditions.iter().find(|c| c.type_ == "EngineReady").unwrap();
    assert_eq!(
        (engine_condition.status.as_str(), engine_condition.reason.as_str()),
        ("False", "EngineCrashLoopBackOff")
    );

    let oom = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    let killed = pod("engine", waiting("vllm", "CrashLoopBackOff", "back-off", oom));
    let (verdict, _) = assess(&both(available(1), available(2), vec![killed]));
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (EndpointPhase::Degraded, "EngineOOMKilled")
    );
    assert!(verdict.assessment.message.contains("memory limit"));

    let pull = pod(
        "gateway",
        waiting("gateway", "ImagePullBackOff", "Back-off pulling image \"twin:typo\"", json!({})),
    );
    let (verdict, _) = assess(&both(available(1), available(2), vec![pull]));
    assert_eq!(verdict.assessment.reason, "GatewayImagePullFailed");

    let unschedulable = pod(
        "engine",
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}),
    );
    let (verdict, _) = assess(&both(
        json!({"observedGeneration": 2, "replicas": 1, "unavailableReplicas": 1}),
        available(2),
        vec![unschedulable],
    ));
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (EndpointPhase::Pending, "EngineUnschedulable")
    );
    assert!(
        verdict.assessment.message.contains("Insufficient nvidia.com/gpu"),
        "{}",
        verdict.assessment.message
    );
}

#[test]
fn a_new_adapter_rolls_the_engine_before_the_gateway_moves_to_its_revision() {
    let documents = fixture("endpoint-vllm.yaml");
    let (mut endpoint, job, dataset, latest) = resolved(&documents);
    assert_eq!(latest.dataset_revision.as_deref(), Some("r2"), "by default, the dataset's newest revision");
    // Retrieval pinned to the revision the adapter was trained on.
    endpoint.spec.gateway.rag.revision = RetrievalRevision::Adapter;
    let Validation::Proceed(model) = validate::resolve_model(&endpoint, job.as_ref()) else {
        panic!("the fixture's model resolves")
    };
    let (served, _) = validate::resolve_dataset(&endpoint, dataset.as_ref(), model);
    let old = ServedModel {
        adapter_uri: Some("s3://twins/out/models/paul-v1/g0-r0/adapter".into()),
        dataset_revision: Some("r0".into()),
        ..served.clone()
    };
    let gateway = deployment("paul", "gateway", None, 2, available(2));
    let mut gateway = gateway;
    let pinned = serde_json::to_string(&old).unwrap();
    gateway.metadata.annotations = Some([(parts::MODEL_ANNOTATION.to_string(), pinned)].into());
    let parts = |engine: &Deployment, gateway: &Deployment| Observed {
        engine: Some(engine.clone()),
        gateway: Some(gateway.clone()),
        ..Default::default()
    };
    // The engine still serves the old adapter: the gateway keeps its revision and lineage.
    let engine_old = deployment("paul-engine", "engine", old.adapter_uri.as_deref(), 1, available(1));
    assert_eq!(status::gateway_model(&endpoint, &served, &parts(&engine_old, &gateway)), old);
    // Applied: the new pod template is rolling (one surge pod, the old one still serves).
    let rolling = deployment(
        "paul-engine",
        "engine",
        served.adapter_uri.as_deref(),
        1,
        json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}),
    );
    assert_eq!(status::gateway_model(&endpoint, &served, &parts(&rolling, &gateway)), old);
    let shown = TwinEndpointStatus { model: Some(old.clone()), ..Default::default() };
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-12-03T00:00:00Z".parse().unwrap());
    let (verdict, status) =
        status::from_observed(&endpoint, &served, &parts(&rolling, &gateway), shown, now.clone());
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (EndpointPhase::Deploying, "RollingOutAdapter")
    );
    assert_eq!(status.model.as_ref(), Some(&old), "the status names the adapter still served");
    // Rolled out: the gateway pins the adapter's revision, and the status names the new model.
    let done = deployment("paul-engine", "engine", served.adapter_uri.as_deref(), 1, available(1));
    let moved = status::gateway_model(&endpoint, &served, &parts(&done, &gateway));
    assert_eq!((moved.dataset_revision.as_deref(), &moved), (Some("r1"), &served));
    // The engine serves the new adapter, but the gateway has not moved yet: still rolling out,
    // and the status still names what answers.
    let (verdict, status) =
        status::from_observed(&endpoint, &served, &parts(&done, &gateway), status, now.clone());
    assert_eq!(verdict.assessment.reason, "RollingOutAdapter");
    assert_eq!(status.model.as_ref(), Some(&old));
    // The gateway pins it and has rolled out: Ready, naming the new model.
    gateway.metadata.annotations =
        Some([(parts::MODEL_ANNOTATION.to_string(), serde_json::to_string(&moved).unwrap())].into());
    let (verdict, status) = status::from_observed(&endpoint, &served, &parts(&done, &gateway), status, now);
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (EndpointPhase::Ready, "Serving")
    );
    assert_eq!(status.model.as_ref(), Some(&served));
}

#[test]
fn a_new_run_or_a_failed_retrain_of_the_served_job_keeps_its_adapter_serving() {
    let documents = fixture("endpoint-vllm.yaml");
    let (mut endpoint, job, dataset, served) = resolved(&documents);
    let mut job = job.expect("the fixture's training job");
    job.status.as_mut().unwrap().model.as_mut().unwrap().chat_template = Some("chat_template.jinja".into());
    endpoint.status = Some(TwinEndpointStatus { model: Some(served.clone()), ..Default::default() });
    // The engine serving the adapter, as the job's run built it.
    let serving = children_of(&endpoint, Some(&job), dataset.as_ref(), &served).unwrap().engine.unwrap();
    let args = |engine: &Deployment| pod_spec(engine).containers[0].args.clone().unwrap();
    for phase in [TrainingPhase::Running, TrainingPhase::WaitingForDataset, TrainingPhase::Failed] {
        let status = job.status.as_mut().unwrap();
        status.phase = Some(phase);
        status.model = None;
        let Validation::Proceed(kept) = validate::resolve_model(&endpoint, Some(&job)) else {
            panic!("{phase:?}: the endpoint stops serving the last good adapter")
        };
        assert_eq!(kept, served, "{phase:?}");
        // The engine keeps its arguments (the rank and template of the adapter it serves), so
        // nothing rolls while the job trains again.
        let trained = engine::trained_model(&kept, Some(&job), Some(&serving));
        assert_eq!(trained.as_ref().and_then(|t| t.max_lora_rank), Some(32), "{phase:?}");
        let rebuilt = children_beside(&endpoint, Some(&job), dataset.as_ref(), &kept, Some(&serving))
            .unwrap()
            .engine
            .unwrap();
        assert_eq!(args(&rebuilt), args(&serving), "{phase:?}");
    }
    // Serving another job's adapter does not count: a new reference waits for its job.
    endpoint.status.as_mut().unwrap().model.as_mut().unwrap().training_job = Some("paul-v0".into());
    assert!(matches!(validate::resolve_model(&endpoint, Some(&job)), Validation::Wait(_)));
    // A job whose only run failed its gate has nothing to serve, and the endpoint says why.
    job.status.as_mut().unwrap().phase = Some(TrainingPhase::Rejected);
    let Validation::Wait(verdict) = validate::resolve_model(&endpoint, Some(&job)) else {
        panic!("a rejected adapter is served")
    };
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (EndpointPhase::Failed, "GateFailed")
    );
}

#[test]
fn the_promoted_model_is_served_whatever_the_jobs_latest_run_does() {
    let documents = fixture("endpoint-vllm.yaml");
    let (endpoint, job, _, served) = resolved(&documents);
    let mut job = job.expect("the fixture's training job");
    let promoted = job.status.as_ref().unwrap().model.clone().unwrap();
    // A model written by this operator names its run and revision; the latest run moves on.
    let model = job.status.as_mut().unwrap().model.as_mut().unwrap();
    model.run = Some("g1-rev1".into());
    model.dataset_revision = Some("rev-promoted".into());
    for phase in
        [TrainingPhase::Running, TrainingPhase::Failed, TrainingPhase::Rejected, TrainingPhase::Pending]
    {
        let status = job.status.as_mut().unwrap();
        status.phase = Some(phase);
        status.dataset_revision = Some("rev-latest".into());
        let Validation::Proceed(kept) = validate::resolve_model(&endpoint, Some(&job)) else {
            panic!("{phase:?}: the promoted model is not served")
        };
        assert_eq!(kept.adapter_uri.as_ref(), Some(&promoted.adapter_uri), "{phase:?}");
        assert_eq!(
            kept.dataset_revision.as_deref(),
            Some("rev-promoted"),
            "{phase:?}: the adapter's own revision"
        );
    }
    // Without a gate nothing is held, and no condition says otherwise.
    assert_eq!(status::promotion_held(Some(&job)), None);
    assert_eq!(served.adapter_uri, Some(promoted.adapter_uri));
}

#[test]
fn every_variable_set_on_the_gateway_and_fetchers_is_one_their_command_reads() {
    use clap::CommandFactory;
    let reads = |command: clap::Command| -> Vec<String> {
        command
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect()
    };
    let serve = reads(twin_operator::serve::config::ServeArgs::command());
    let fetch = reads(<twin_operator::storage::fetch::FetchArgs as clap::Args>::augment_args(
        clap::Command::new("fetch"),
    ));
    let mut gateways = 0;
    for name in ["endpoint-vllm", "endpoint-external", "endpoint-embedded"] {
        let children = built(name);
        let pods = children.engine.iter().chain([&children.gateway]).map(pod_spec);
        for pod in pods {
            for init in pod.init_containers.iter().flatten() {
                for variable in init.env.iter().flatten() {
                    assert!(
                        fetch.contains(&variable.name),
                        "{name}: twin fetch does not read {}",
                        variable.name
                    );
                }
            }
            let main = &pod.containers[0];
            if main.name == "gateway" {
                gateways += 1;
                for variable in main.env.iter().flatten() {
                    assert!(
                        serve.contains(&variable.name),
                        "{name}: twin serve does not read {}",
                        variable.name
                    );
                }
            }
        }
    }
    assert_eq!(gateways, 3);
}

/// The operator's gateway Deployment and `twin up` configure an endpoint's gateway from one
/// struct (`contract::gateway::GatewaySettings`): for the same endpoint they set the same
/// settings, but for the pod's own plumbing (its replica name, JSON logs, the models folder).
#[test]
fn the_operator_and_twin_up_configure_the_same_gateway_settings() {
    use std::collections::BTreeSet;

    use twin_operator::contract::gateway::GatewaySettings;
    use twin_operator::local::{endpoint as local_endpoint, manifest, state};

    let children = built("endpoint-external");
    let gateway = pod_spec(&children.gateway).containers[0].clone();
    let in_the_pod: BTreeSet<String> = gateway.env.iter().flatten().map(|v| v.name.clone()).collect();

    let dir = std::env::temp_dir().join(format!("twin-gateway-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = dir.join("twins.yaml");
    std::fs::copy(crate::support::repo::path("tests/fixtures/operator/endpoint-external.yaml"), &yaml)
        .unwrap();
    let resources = manifest::load(&yaml).unwrap();
    let mut ran = state::State::default();
    ran.record(state::Entry {
        phase: state::Phase::Dataset(twin_operator::api::dataset::DatasetPhase::Ready),
        namespace: "twins".into(),
        name: "paul".into(),
        reason: "RevisionPublished".into(),
        message: String::new(),
        updated: String::new(),
        revision: Some("r7".into()),
        promoted: None,
        file: yaml.display().to_string(),
    });
    let here = local_endpoint::Here { resources: &resources, state: &ran, models_dir: None, api_key: None };
    let endpoint = resources.iter().position(|r| r.twin.kind() == "TwinEndpoint").unwrap();
    let plan = local_endpoint::plan(&resources[endpoint], &here, "http://127.0.0.1:8080").unwrap();
    let here_too: BTreeSet<String> =
        plan.args.gateway.environment().into_iter().map(|(name, _)| name.to_string()).collect();
    let _ = std::fs::remove_dir_all(&dir);

    let pod_only: BTreeSet<String> = ["replica", "log_format", "models_dir"]
        .map(|field| GatewaySettings::variable(field).to_string())
        .into();
    let differ: Vec<&String> =
        in_the_pod.symmetric_difference(&here_too).filter(|n| !pod_only.contains(*n)).collect();
    assert!(
        differ.is_empty(),
        "set on one path only: {differ:?}\npod: {in_the_pod:?}\ntwin up: {here_too:?}"
    );
    assert!(
        here_too.contains(GatewaySettings::variable("upstream_base_model")),
        "the lineage names the base model"
    );
}
