//! Shared engines on the real control plane: TwinEndpoints of one base model share one
//! TwinEngine's vLLM Deployment, a second base model gets a second; each endpoint's adapter is
//! loaded at run time by the engine's agent (`twin engine-agent`, run here against the scripted
//! vLLM of tests/support/vllm.rs, with adapters fetched from moto's S3), so a new adapter
//! changes no pod template; a load the engine refuses fails that endpoint alone; deleted
//! endpoints' adapters are unloaded, and the last one takes the engine's Deployment with it.
//!
//! kwok runs no containers: the test stands in for the kubelet by copying the engine's
//! ConfigMap into the agent's file and a gateway's lineage ConfigMap into the lineage file of a
//! real `twin serve`, and the operator reads the agent at `agent_url`. One twin is trained by a
//! TwinTrainingJob that retrains on each new revision of its dataset (the trainer's Job ended as
//! kwok ends pods, with the trainer's result): the retrained adapter is loaded in place and its
//! gateway names it without a new pod.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DeleteParams;
use serde_json::{Value, json};
use twin_operator::agent::{Agent, AgentArgs};
use twin_operator::api::{TwinEndpoint, TwinEngine, TwinTrainingJob};

use crate::operator::ready_message;
use crate::support::gateway::{Gateway, client};
use crate::support::moto::{Moto, test_credentials};
use crate::support::scene::{Scene, eventually};
use crate::support::vllm::ScriptedVllm;

const LLAMA: &str = "hf://meta-llama/Llama-3.1-8B";
const QWEN: &str = "hf://Qwen/Qwen2.5-7B";

fn adapter(name: &str) -> String {
    format!("s3://twins-bucket/adapters/{name}")
}

/// Where the TwinTrainingJob ben-v1 publishes the adapter of its run `run` (the example job's
/// `output.uri`, then `models/<job>/<run>/adapter`).
fn trained(run: &str) -> String {
    format!("s3://twins-bucket/twins/models/ben-v1/{run}/adapter")
}

/// Puts a PEFT adapter of `rank` at `uri` (in moto's bucket twins-bucket).
async fn publish_adapter(moto: &Moto, uri: &str, rank: u32) {
    let key = uri.strip_prefix("s3://twins-bucket/").unwrap();
    let config =
        json!({"peft_type": "LORA", "r": rank, "lora_alpha": rank, "target_modules": ["q_proj", "v_proj"]});
    moto.put("twins-bucket", &format!("{key}/adapter_config.json"), config.to_string()).await;
    moto.put("twins-bucket", &format!("{key}/adapter_model.safetensors"), format!("weights of {key}")).await;
}

/// What the trainer reports in its termination message after a run on `revision`.
fn trainer_result(revision: &str) -> String {
    json!({"status": "Succeeded", "sftTrainLoss": 1.25, "vllmMaxLoraRank": 16, "datasetRevision": revision})
        .to_string()
}

fn engine(scene: &Scene, name: &str, base: &str) -> Value {
    json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEngine",
        "metadata": {"name": name, "namespace": scene.namespace},
        "spec": {
            "baseModel": {"uri": base},
            "vllm": {"pod": {
                "nodeSelector": {crate::support::scene::POOL_LABEL: scene.namespace},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}},
            "adapters": {"maxLoaded": 4, "maxCpu": 16}
        }
    })
}

/// An endpoint on the shared `engine` serving what the TwinTrainingJob `job` promotes, with
/// retrieval from the dataset paul.
fn trained_endpoint(scene: &Scene, name: &str, engine: &str, job: &str) -> Value {
    json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEndpoint",
        "metadata": {"name": name, "namespace": scene.namespace},
        "spec": {
            "model": {"trainingJobRef": {"name": job}},
            "datasetRef": {"name": "paul"},
            "engine": {"kind": "shared", "engineRef": {"name": engine}},
            "gateway": {"replicas": 1}
        }
    })
}

fn endpoint(scene: &Scene, name: &str, engine: &str, base: &str, adapter_uri: &str) -> Value {
    json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinEndpoint",
        "metadata": {"name": name, "namespace": scene.namespace},
        "spec": {
            "model": {"baseModel": {"uri": base}, "adapterUri": adapter_uri},
            "engine": {"kind": "shared", "engineRef": {"name": engine}},
            "gateway": {"replicas": 1}
        }
    })
}

/// The kubelet's part, which kwok does not play: a ConfigMap's `key`, as pods mount it, in
/// `file` (gone when the ConfigMap goes).
fn mount_config_map(
    scene: &Scene,
    name: &'static str,
    key: &'static str,
    file: PathBuf,
) -> tokio::task::JoinHandle<()> {
    let api = scene.api::<ConfigMap>();
    tokio::spawn(async move {
        loop {
            match api.get_opt(name).await {
                Ok(Some(config_map)) => {
                    let data = config_map.data.unwrap_or_default();
                    // Written whole and then moved, as the kubelet swaps a volume's files.
                    if let Some(value) = data.get(key) {
                        let fresh = file.with_extension("new");
                        std::fs::write(&fresh, value).unwrap();
                        std::fs::rename(&fresh, &file).unwrap();
                    }
                }
                Ok(None) => {
                    let _ = std::fs::remove_file(&file);
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn state_of(scene: &Scene, engine: &str, endpoint: &str) -> Option<Value> {
    let engine = scene.get::<TwinEngine>(engine).await?;
    engine["status"]["adapters"].as_array()?.iter().find(|a| a["endpoint"] == endpoint).cloned()
}

fn template(deployment: &Value) -> Value {
    deployment["spec"]["template"].clone()
}

#[tokio::test]
async fn twins_of_one_base_model_share_one_engine_whose_adapters_load_at_run_time() {
    test_credentials();
    let moto = Moto::start();
    moto.create_bucket("twins-bucket").await;
    for name in ["anna", "cleo", "dora"] {
        publish_adapter(&moto, &adapter(name), 16).await;
    }
    for run in ["g1-rev1", "g1-rev2"] {
        publish_adapter(&moto, &trained(run), 16).await;
    }
    // Rank 64 on an engine sized for 16: vLLM refuses it.
    publish_adapter(&moto, &adapter("eve"), 64).await;

    // The engine's pod, as it would run: the scripted vLLM and the real agent beside it.
    let vllm = ScriptedVllm::new("llama", 16);
    let vllm_url = vllm.start().await;
    let scratch = std::env::temp_dir().join(format!("twin-shared-engine-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let wanted = scratch.join("adapters.json");
    let agent = Arc::new(
        Agent::new(AgentArgs {
            vllm: vllm_url.clone(),
            wanted: wanted.display().to_string(),
            cache: scratch.join("cache"),
            listen: String::new(),
            interval: Duration::from_millis(200),
            retry: Duration::from_secs(600),
            s3_endpoint_url: Some(moto.endpoint()),
            s3_region: Some("us-east-1".into()),
        })
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(twin_operator::agent::serve(agent.clone(), listener));
    tokio::spawn(agent.clone().keep_in_step());

    let scene = Scene::new("shared").await;
    scene.gpu_node("kwok-l4", 8).await;
    let operator = scene.operator_with("replica-a", |s| s.agent_url = Some(agent_url)).await;
    let kubelet = mount_config_map(&scene, "llama-engine-adapters", "adapters.json", wanted.clone());

    // An engine no endpoint names runs nothing.
    scene.apply(&engine(&scene, "llama", LLAMA)).await;
    scene.apply(&engine(&scene, "qwen", QWEN)).await;
    let unused = scene.wait_for_phase::<TwinEngine>("llama", "Unused", "NoEndpoints").await;
    assert!(ready_message(&unused).contains("no TwinEndpoint names"), "{unused}");
    assert!(scene.get::<Deployment>("llama-engine").await.is_none());

    // ben's adapter comes from the TwinTrainingJob ben-v1 (the example job, on Llama), which
    // retrains on every new revision of the dataset paul; its first run trains on rev-1.
    scene.apply_example("twindataset.yaml", |_| {}).await;
    scene.publish_build("paul", "paul-build-1", "rev-1").await;
    scene
        .apply_example_as("twintrainingjob.yaml", "ben-v1", |job| {
            job["spec"]["retrainOnNewRevision"] = json!(true)
        })
        .await;
    scene.wait_for_phase::<TwinTrainingJob>("ben-v1", "Running", "Training").await;
    scene.end_job("ben-v1-train-g1-rev1", 0, &trainer_result("rev-1")).await;
    scene.wait_for_phase::<TwinTrainingJob>("ben-v1", "Succeeded", "AdapterPublished").await;
    let served = |name: &str| if name == "ben" { trained("g1-rev1") } else { adapter(name) };

    // Three twins of Llama: one engine Deployment, runtime LoRA on, no adapter in its arguments.
    scene.apply(&endpoint(&scene, "anna", "llama", LLAMA, &adapter("anna"))).await;
    scene.apply(&trained_endpoint(&scene, "ben", "llama", "ben-v1")).await;
    scene.apply(&endpoint(&scene, "cleo", "llama", LLAMA, &adapter("cleo"))).await;
    let deployment = scene.wait_for::<Deployment>("llama-engine").await;
    let pod = &deployment["spec"]["template"]["spec"];
    let args: Vec<String> = serde_json::from_value(pod["containers"][0]["args"].clone()).unwrap();
    for pair in [
        ["--enable-lora", "--max-loras"],
        ["--max-loras", "4"],
        ["--max-cpu-loras", "16"],
        ["--max-lora-rank", "16"],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    assert!(!args.iter().any(|a| a == "--lora-modules"), "adapters are loaded at run time: {args:?}");
    assert!(
        pod["containers"][0]["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"}))
    );
    assert_eq!(pod["containers"][1]["name"], "adapter-agent");
    assert_eq!(pod["containers"][1]["args"], json!(["engine-agent"]));
    let gateway = scene.wait_for::<Deployment>("ben").await;
    let env = gateway["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().clone();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
    assert_eq!(
        var("TWIN_SERVE_UPSTREAM"),
        Some(json!(format!("http://llama-engine.{}.svc:8000/v1", scene.namespace)))
    );
    assert_eq!(var("TWIN_SERVE_UPSTREAM_MODEL"), Some(json!("ben")), "the gateway asks for its twin by name");
    // What it serves is read from its lineage ConfigMap as it runs, not given to the pod.
    assert_eq!(var("TWIN_SERVE_LINEAGE_FILE"), Some(json!("/var/run/twin/lineage/model.json")));
    assert_eq!(var("TWIN_SERVE_UPSTREAM_ADAPTER"), None);
    assert_eq!(gateway["spec"]["template"]["metadata"].get("annotations"), None, "{gateway}");
    let volume = gateway["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "lineage")
        .cloned();
    assert_eq!(volume.map(|v| v["configMap"]["name"].clone()), Some(json!("ben-lineage")));

    for name in ["anna", "ben", "cleo"] {
        let ready = scene.wait_for_phase::<TwinEndpoint>(name, "Ready", "Serving").await;
        assert_eq!(ready["status"]["model"]["adapterUri"], served(name));
        let engine_ready = ready["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "EngineReady")
            .cloned()
            .unwrap();
        assert_eq!(engine_ready["reason"], "AdapterLoaded", "{ready}");
    }
    let loaded = vllm.loaded();
    assert_eq!(loaded.keys().collect::<Vec<_>>(), ["anna", "ben", "cleo"]);
    assert!(
        loaded["anna"].starts_with(&scratch.join("cache/anna").display().to_string()),
        "fetched into the cache first: {loaded:?}"
    );
    let ready = scene.wait_for_phase::<TwinEngine>("llama", "Ready", "Serving").await;
    assert_eq!(ready["status"]["adapterSummary"], "3/3");

    // ben's gateway, as its pod would run it: the real `twin serve`, its lineage file the
    // ConfigMap as mounted, asking the scripted vLLM for ben.
    let lineage_file = scratch.join("ben-lineage/model.json");
    std::fs::create_dir_all(lineage_file.parent().unwrap()).unwrap();
    let ben_lineage = mount_config_map(&scene, "ben-lineage", "model.json", lineage_file.clone());
    eventually("ben's lineage file", || async { lineage_file.is_file().then_some(()) }).await;
    let upstream = format!("{vllm_url}/v1");
    let lineage_arg = lineage_file.display().to_string();
    let args: Vec<String> =
        ["--engine", "openai", "--upstream", &upstream, "--upstream-model", "ben", "--name", "ben"]
            .into_iter()
            .chain(["--lineage-file", &lineage_arg])
            .map(String::from)
            .collect();
    let ben_gateway = tokio::task::spawn_blocking(move || {
        let gateway = Gateway::start(&args);
        gateway.wait_ready();
        gateway
    })
    .await
    .unwrap();
    let ask_ben = || async {
        let chat = format!("{}/v1/chat/completions", ben_gateway.url);
        let body = json!({"model": "ben", "messages": [{"role": "user", "content": "Hi"}]});
        let answer: Value = client().post(&chat).json(&body).send().await.unwrap().json().await.unwrap();
        answer
    };
    let answer = ask_ben().await;
    assert_eq!(answer["lineage"]["adapter"], trained("g1-rev1"), "{answer}");
    assert_eq!(answer["lineage"]["adapterRevision"], "rev-1", "{answer}");
    assert_eq!(answer["lineage"]["baseModel"], LLAMA);
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        format!("ben answers with {}", vllm.loaded()["ben"]),
        "ben's adapter answers"
    );

    // A twin of another base model makes a second engine.
    scene.apply(&endpoint(&scene, "dora", "qwen", QWEN, &adapter("dora"))).await;
    scene.wait_for::<Deployment>("qwen-engine").await;
    let engines = scene.list::<Deployment>().await;
    let engines: Vec<&str> = engines
        .iter()
        .filter(|d| d["metadata"]["labels"]["app.kubernetes.io/name"] == "twin-engine")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(engines, ["llama-engine", "qwen-engine"], "one engine per base model");
    // An endpoint that names an engine of another base model is told so.
    scene.apply(&endpoint(&scene, "finn", "qwen", LLAMA, &adapter("anna"))).await;
    let mismatch = scene.wait_for_phase::<TwinEndpoint>("finn", "Failed", "BaseModelMismatch").await;
    assert!(ready_message(&mismatch).contains("runs hf://Qwen/Qwen2.5-7B"), "{mismatch}");

    // A new revision of paul: ben-v1 retrains on it and promotes a new adapter, loaded in place;
    // no pod template changes, not the engine's and not a gateway's, ben's own included: its
    // gateway reads the new lineage (adapter and dataset revision) from its ConfigMap.
    let before = template(&scene.get::<Deployment>("llama-engine").await.unwrap());
    let others = [
        template(&scene.get::<Deployment>("anna").await.unwrap()),
        template(&scene.get::<Deployment>("ben").await.unwrap()),
        template(&scene.get::<Deployment>("cleo").await.unwrap()),
    ];
    scene
        .apply_example("twindataset.yaml", |dataset| dataset["spec"]["chunking"]["maxTokens"] = json!(384))
        .await;
    scene.publish_build("paul", "paul-build-2", "rev-2").await;
    let retraining = scene.wait_for_phase::<TwinTrainingJob>("ben-v1", "Running", "Training").await;
    assert_eq!(retraining["status"]["datasetRevision"], "rev-2");
    scene.end_job("ben-v1-train-g1-rev2", 0, &trainer_result("rev-2")).await;
    eventually("ben serving its retrained adapter", || async {
        let ben = scene.get::<TwinEndpoint>("ben").await?;
        (crate::support::wait::has_phase(&ben, "Ready", "Serving")
            && ben["status"]["model"]["adapterUri"] == trained("g1-rev2"))
        .then_some(())
    })
    .await;
    let reload = vllm.calls_of("load_lora_adapter").into_iter().rfind(|c| c["lora_name"] == "ben").unwrap();
    assert_eq!(reload["load_inplace"], true, "{reload}");
    assert!(
        reload["lora_path"].as_str().unwrap().starts_with(&scratch.join("cache/ben").display().to_string())
    );
    assert_eq!(
        template(&scene.get::<Deployment>("llama-engine").await.unwrap()),
        before,
        "the engine's pods are untouched"
    );
    let after = [
        template(&scene.get::<Deployment>("anna").await.unwrap()),
        template(&scene.get::<Deployment>("ben").await.unwrap()),
        template(&scene.get::<Deployment>("cleo").await.unwrap()),
    ];
    assert_eq!(after, others, "no gateway's pods are touched");
    assert_eq!(vllm.calls_of("unload_lora_adapter"), Vec::<Value>::new(), "nothing unloaded to replace ben");
    let lineage: ConfigMap = scene.api::<ConfigMap>().get("ben-lineage").await.unwrap();
    let named: Value = serde_json::from_str(&lineage.data.unwrap()["model.json"]).unwrap();
    assert_eq!(named["adapterUri"], trained("g1-rev2"));
    assert_eq!(named["adapterRevision"], "rev-2");
    assert_eq!(named["datasetRevision"], "rev-2", "retrieval moves to the new revision too");
    // The same gateway process answers with the new adapter and names it.
    let answer = eventually("ben's gateway naming the new adapter", || async {
        let answer = ask_ben().await;
        (answer["lineage"]["adapter"] == trained("g1-rev2")).then_some(answer)
    })
    .await;
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        format!("ben answers with {}", vllm.loaded()["ben"]),
        "the adapter loaded in place answers"
    );
    ben_lineage.abort();
    drop(ben_gateway);

    // An adapter vLLM refuses fails its endpoint alone, with vLLM's words.
    scene.apply(&endpoint(&scene, "eve", "llama", LLAMA, &adapter("eve"))).await;
    let failed = scene.wait_for_phase::<TwinEndpoint>("eve", "Failed", "AdapterLoadFailed").await;
    assert!(ready_message(&failed).contains("LoRA rank 64 is greater than max_lora_rank 16"), "{failed}");
    let engine_now = scene.wait_for_phase::<TwinEngine>("llama", "Ready", "AdaptersFailed").await;
    assert_eq!(engine_now["status"]["adapterSummary"], "3/4");
    assert_eq!(state_of(&scene, "llama", "eve").await.unwrap()["state"], "Failed");
    for name in ["anna", "ben", "cleo"] {
        scene.wait_for_phase::<TwinEndpoint>(name, "Ready", "Serving").await;
    }
    assert_eq!(template(&scene.get::<Deployment>("llama-engine").await.unwrap()), before);

    // Scale to zero: KEDA may take the shared engine to zero while none of its twins is asked,
    // woken by any of their gateways' requests, which hold meanwhile; the engine and its
    // endpoints are Idle, and Ready again once it runs. The pods are not touched to allow it.
    let mut scaled_llama = engine(&scene, "llama", LLAMA);
    scaled_llama["spec"]["autoscaling"] = json!({"minReplicas": 0, "maxReplicas": 2, "wakeSeconds": 120,
        "keda": {"serverAddress": "http://prometheus.monitoring.svc:9090"}});
    scene.apply(&scaled_llama).await;
    let scaled = eventually("the engine's ScaledObject", || async {
        let api = kube::Api::<kube::core::DynamicObject>::namespaced_with(
            scene.client.clone(),
            &scene.namespace,
            &twin_operator::operator::endpoint::scaling::scaled_object_resource(),
        );
        let scaled = serde_json::to_value(api.get_opt("llama-engine").await.ok()??).ok()?;
        (scaled["spec"]["minReplicaCount"] == 0).then_some(scaled)
    })
    .await;
    let query = scaled["spec"]["triggers"][0]["metadata"]["query"].as_str().unwrap().to_string();
    assert!(
        query.starts_with("sum(twin_gateway_in_flight{") && query.contains("pod=~\"(anna|ben|cleo|eve)-"),
        "{query}"
    );
    eventually("the gateways told to hold requests while the engine wakes", || async {
        let anna = scene.get::<Deployment>("anna").await?;
        let env = anna["spec"]["template"]["spec"]["containers"][0]["env"].as_array()?.clone();
        env.iter()
            .any(|e| e["name"] == "TWIN_SERVE_UPSTREAM_WAIT_SECONDS" && e["value"] == "120")
            .then_some(())
    })
    .await;
    assert_eq!(template(&scene.get::<Deployment>("llama-engine").await.unwrap()), before);
    scene.plane.run_kubectl(&["scale", "deployment/llama-engine", "--replicas=0", "-n", &scene.namespace]);
    let idle = scene.wait_for_phase::<TwinEngine>("llama", "Idle", "ScaledToZero").await;
    assert_eq!(idle["status"]["replicas"], "0/0");
    let anna = scene.wait_for_phase::<TwinEndpoint>("anna", "Idle", "ScaledToZero").await;
    assert!(ready_message(&anna).contains("waits up to 120 s"), "{anna}");
    scene.plane.run_kubectl(&["scale", "deployment/llama-engine", "--replicas=1", "-n", &scene.namespace]);
    scene.wait_for_phase::<TwinEndpoint>("anna", "Ready", "Serving").await;

    // Deleting endpoints unloads their adapters; the last one takes the engine's children.
    scene.api::<TwinEndpoint>().delete("cleo", &DeleteParams::default()).await.unwrap();
    eventually("cleo unloaded", || async { (!vllm.loaded().contains_key("cleo")).then_some(()) }).await;
    assert_eq!(vllm.calls_of("unload_lora_adapter"), [json!({"lora_name": "cleo"})]);
    // The agent removes them once vLLM has answered the unload.
    eventually("cleo's files to leave the cache", || async {
        (!scratch.join("cache/cleo").exists()).then_some(())
    })
    .await;
    for name in ["anna", "ben", "eve"] {
        scene.api::<TwinEndpoint>().delete(name, &DeleteParams::default()).await.unwrap();
    }
    scene.wait_gone::<Deployment>("llama-engine").await;
    scene.wait_gone::<ConfigMap>("llama-engine-adapters").await;
    scene.wait_for_phase::<TwinEngine>("llama", "Unused", "NoEndpoints").await;
    assert!(scene.get::<Deployment>("qwen-engine").await.is_some(), "the other engine stays");
    kubelet.abort();
    operator.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
}

#[tokio::test]
async fn the_agent_replaces_adapters_on_an_older_vllm_and_reloads_them_after_a_restart() {
    let scratch = std::env::temp_dir().join(format!("twin-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    for (name, rank) in [("v1", 8), ("v2", 8)] {
        let folder = scratch.join("published").join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("adapter_config.json"), json!({"r": rank}).to_string()).unwrap();
        std::fs::write(folder.join("adapter_model.safetensors"), name).unwrap();
    }
    let uri = |name: &str| format!("file://{}", scratch.join("published").join(name).display());
    let mut vllm = ScriptedVllm::new("llama", 16);
    // vLLM before January 2026: no load_inplace.
    vllm.load_inplace = false;
    let vllm_url = vllm.start().await;
    let wanted = scratch.join("adapters.json");
    let agent = Agent::new(AgentArgs {
        vllm: vllm_url,
        wanted: wanted.display().to_string(),
        cache: scratch.join("cache"),
        listen: String::new(),
        interval: Duration::from_millis(100),
        retry: Duration::from_secs(600),
        s3_endpoint_url: None,
        s3_region: None,
    })
    .unwrap();
    let want = |list: Value| std::fs::write(&wanted, list.to_string()).unwrap();

    want(json!({"adapters": [{"name": "paul", "uri": uri("v1")}]}));
    agent.pass().await;
    let first = vllm.loaded()["paul"].clone();
    assert!(first.starts_with(&scratch.join("cache/paul").display().to_string()), "{first}");
    assert_eq!(agent.report().adapters[0].state, twin_operator::contract::adapters::Loading::Loaded);

    // A new version: refused in place by this vLLM, so unloaded and loaded again.
    want(json!({"adapters": [{"name": "paul", "uri": uri("v2")}]}));
    agent.pass().await;
    let second = vllm.loaded()["paul"].clone();
    assert_ne!(second, first);
    let names = |route: &str| {
        vllm.calls_of(route)
            .iter()
            .map(|c| c["lora_path"].as_str().unwrap_or("-").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("load_lora_adapter"), [first.clone(), second.clone(), second.clone()]);
    assert_eq!(vllm.calls_of("unload_lora_adapter"), [json!({"lora_name": "paul"})]);
    assert!(!std::path::Path::new(&first).exists(), "the old version leaves the cache");

    // vLLM restarted and lost its adapters: the next pass loads them again.
    vllm.loaded.lock().unwrap().clear();
    agent.pass().await;
    assert_eq!(vllm.loaded()["paul"], second);

    // A broken list keeps the last one read; an empty one unloads everything.
    std::fs::write(&wanted, "{not json").unwrap();
    agent.pass().await;
    assert!(vllm.loaded().contains_key("paul"));
    want(json!({"adapters": []}));
    agent.pass().await;
    assert!(vllm.loaded().is_empty());
    assert!(!scratch.join("cache/paul").exists());
    let _ = std::fs::remove_dir_all(&scratch);
}
