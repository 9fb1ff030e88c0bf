//! What a run asks SageMaker for (pure): the training job's deterministic name, and the
//! CreateTrainingJob request built from the TwinTrainingJob, its dataset and the run. The
//! spec's own problems (a dataset outside S3, a gated model whose token SageMaker would show)
//! are found here, before anything is created.

use kube::ResourceExt;

use super::super::build::Run;
use super::super::validate::ValidRun;
use crate::api::training::SageMakerBackend;
use crate::api::{TwinDataset, TwinTrainingJob};
use crate::contract::TrainerConfig;
use crate::hashing::sha256_hex;
use crate::storage::StorageUri;

/// The longest training job name SageMaker accepts.
const NAME_LIMIT: usize = 63;
/// The longest hyperparameter value SageMaker accepts.
pub const HYPERPARAMETER_LIMIT: usize = 2500;
/// The training instance's volume: the base model, its checkpoints and the dataset's splits.
pub const VOLUME_GB: i32 = 100;
/// The trainer's configuration is passed whole, as this one hyperparameter (trainer/README.md).
pub const CONFIG_HYPERPARAMETER: &str = "config";

/// SageMaker metrics read from the trainer's one-line result, which it prints to its log:
/// (metric, the result's field). SageMaker keeps each one's final value, which
/// DescribeTrainingJob returns and the status mirrors, and charts them in its console.
pub const RESULT_METRICS: [(&str, &str); 9] = [
    ("sft:train_loss", "sftTrainLoss"),
    ("sft:eval_loss", "sftEvalLoss"),
    ("dpo:reward_accuracy", "dpoRewardAccuracy"),
    ("vllm:max_lora_rank", "vllmMaxLoraRank"),
    // 1 when the adapter folder holds its chat template (metrics are numbers only).
    ("twin:chat_template", "chatTemplateWritten"),
    // The run's evaluation against its base model (docs/evaluation.md).
    ("twin:nll_reduction", "evaluationNllReduction"),
    ("twin:author_specific_nll_reduction", "evaluationAuthorSpecificNllReduction"),
    ("twin:win_rate", "evaluationWinRate"),
    ("twin:serving_nll_reduction", "evaluationServingNllReduction"),
];

/// The regular expression that reads a number field of the result line, e.g. `"sftTrainLoss":1.25`
/// (the trainer writes compact JSON; a `null` matches nothing, so no value is recorded).
pub fn metric_regex(field: &str) -> String {
    format!(r#""{field}":(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"#)
}

/// CreateTrainingJob's request, in the operator's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingJobRequest {
    /// The training job's name: the same for the same run, whoever asks.
    pub name: String,
    /// The trainer image in ECR.
    pub image: String,
    /// The role SageMaker assumes.
    pub role_arn: String,
    /// The training instance type.
    pub instance_type: String,
    /// The trainer's JSON configuration, passed as the `config` hyperparameter.
    pub config: String,
    /// Input channels: (channel name, S3 prefix), one per split of the dataset revision.
    pub channels: Vec<(String, String)>,
    /// Where SageMaker uploads the model folder as `<path>/<name>/output/model.tar.gz`.
    pub output_path: String,
    /// The run's longest run time.
    pub max_runtime_seconds: i64,
    /// Managed spot training.
    pub spot: bool,
    /// Spot only: the longest wait for capacity plus run time.
    pub max_wait_seconds: Option<i64>,
    /// Tags naming the object that started the job (cost allocation, finding it again).
    pub tags: Vec<(String, String)>,
}

/// The training job's name for a run: `<object>-<run>-<hash>`, cut to 63 characters. SageMaker
/// names are per account and region and can never be reused, even after the job is gone, so
/// the hash covers the namespace and the object's UID (a recreated object with the same name
/// starts new jobs) and the run (each generation and revision is its own job).
pub fn training_job_name(job: &TwinTrainingJob, run: &Run) -> String {
    let identity = format!(
        "{}/{}/{}/{}",
        job.namespace().unwrap_or_default(),
        job.name_any(),
        job.metadata.uid.as_deref().unwrap_or_default(),
        run.name
    );
    let hash = &sha256_hex(identity.as_bytes())[..10];
    // Kubernetes names may hold dots; SageMaker's only letters, digits and hyphens.
    let stem: String = format!("{}-{}", job.name_any(), run.name)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(NAME_LIMIT - hash.len() - 1)
        .collect();
    let stem = stem.trim_matches('-');
    if stem.is_empty() { format!("twin-{hash}") } else { format!("{stem}-{hash}") }
}

/// An S3 URI SageMaker can read or write: AWS S3, not a compatible store at another endpoint.
fn aws_s3(uri: &str, endpoint: Option<&String>, field: &str) -> Result<(), String> {
    if !matches!(uri.parse::<StorageUri>(), Ok(StorageUri::S3 { .. })) {
        return Err(format!("the sagemaker backend reads and writes AWS S3, but {field} is {uri:?}"));
    }
    if let Some(endpoint) = endpoint {
        return Err(format!(
            "{field} is on the S3-compatible store at {endpoint}, which SageMaker cannot reach: it reads and \
             writes AWS S3 only"
        ));
    }
    Ok(())
}

/// The image a job trains with: its own, else the operator's default; `None` when neither is set.
pub fn image<'a>(backend: &'a SageMakerBackend, default: &'a str) -> Option<&'a str> {
    backend.image.as_deref().filter(|i| !i.is_empty()).or(Some(default).filter(|d| !d.is_empty()))
}

/// What in the spec SageMaker cannot work with, if anything: a dataset or output outside AWS S3,
/// a base model it cannot load, a gated model's token it would show, a configuration too long
/// for a hyperparameter.
pub fn unreachable_by_sagemaker(
    job: &TwinTrainingJob,
    dataset: &TwinDataset,
    config: &TrainerConfig,
) -> Option<String> {
    let dataset_field = format!("the output.uri of TwinDataset {:?}", dataset.name_any());
    let outside_s3 =
        aws_s3(&dataset.spec.output.uri, dataset.spec.output.endpoint_url.as_ref(), &dataset_field).and_then(
            |()| aws_s3(&job.spec.output.uri, job.spec.output.endpoint_url.as_ref(), "spec.output.uri"),
        );
    if let Err(message) = outside_s3 {
        return Some(message);
    }
    let model = &job.spec.base_model;
    if !(model.uri.starts_with("hf://") || model.uri.starts_with("s3://")) {
        return Some(format!(
            "spec.baseModel.uri {:?}: SageMaker loads the base model from the Hugging Face Hub (hf://) or S3",
            model.uri
        ));
    }
    if model.token_secret_ref.is_some() {
        // SageMaker passes environment variables in the clear: DescribeTrainingJob would show
        // the token to anyone allowed to describe training jobs.
        return Some(
            "spec.baseModel.tokenSecretRef: SageMaker would show the Hub token to anyone who can \
             describe the training job; copy the gated model to S3 and set spec.baseModel.uri to it"
                .into(),
        );
    }
    let length = serialized(config).len();
    (length > HYPERPARAMETER_LIMIT).then(|| {
        format!(
            "the trainer configuration is {length} characters, more than the {HYPERPARAMETER_LIMIT} SageMaker \
             allows in a hyperparameter; shorten the URIs"
        )
    })
}

fn serialized(config: &TrainerConfig) -> String {
    serde_json::to_string(config).expect("the trainer configuration serialises")
}

/// The request for a valid run on SageMaker ([`unreachable_by_sagemaker`] found nothing).
pub fn training_job_request(
    job: &TwinTrainingJob,
    backend: &SageMakerBackend,
    valid: &ValidRun,
    image: &str,
) -> TrainingJobRequest {
    let (run, dataset, places) = (&valid.run, valid.dataset, &valid.places);
    let mut channels = vec![("instruct".to_string(), format!("{}/", places.dataset.join("instruct")))];
    // A channel over an empty prefix fails the job, so preference triples are asked for only
    // when the dataset publishes them (without them the trainer skips DPO and says so).
    let preference =
        dataset.status.as_ref().and_then(|s| s.artifacts.as_ref()).and_then(|a| a.preference.as_ref());
    if job.spec.dpo.enabled && preference.is_some() {
        channels.push(("preference".into(), format!("{}/", places.dataset.join("preference"))));
    }
    let tag = |key: &str, value: String| (format!("llmtwin.dev/{key}"), value);
    TrainingJobRequest {
        name: training_job_name(job, run),
        image: image.to_string(),
        role_arn: backend.role_arn.clone(),
        instance_type: backend.instance_type.clone(),
        config: serialized(&valid.config),
        channels,
        output_path: places.output.join("sagemaker").to_string(),
        max_runtime_seconds: backend.max_runtime_seconds,
        spot: backend.spot,
        max_wait_seconds: backend.max_wait_seconds.filter(|_| backend.spot),
        tags: vec![
            tag("namespace", job.namespace().unwrap_or_default()),
            tag("training-job", job.name_any()),
            tag("uid", job.metadata.uid.clone().unwrap_or_default()),
            tag("run", run.name.clone()),
            tag("dataset-revision", run.revision.clone()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::operator::training::build::{RunPlaces, trainer_config};
    use crate::operator::training::validate::Backend;

    /// A training job on the sagemaker backend, with `patch` merged into its spec.
    fn job(name: &str, patch: serde_json::Value) -> TwinTrainingJob {
        let mut object = json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinTrainingJob",
            "metadata": {"name": name, "namespace": "twins", "uid": "5f0c", "generation": 2},
            "spec": {
                "datasetRef": {"name": "paul"},
                "baseModel": {"uri": "hf://HuggingFaceTB/SmolLM2-135M"},
                "backend": {"sagemaker": {"region": "eu-west-1", "roleArn": "arn:aws:iam::123456789012:role/twin-training"}},
                "output": {"uri": "s3://twins-bucket/twins"}
            }
        });
        merge(&mut object["spec"], &patch);
        serde_json::from_value(object).unwrap()
    }

    fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
        match (target, patch) {
            (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
                for (key, value) in patch {
                    merge(target.entry(key.clone()).or_insert(serde_json::Value::Null), value);
                }
            }
            (target, patch) => *target = patch.clone(),
        }
    }

    fn dataset(output: serde_json::Value, preference: bool) -> TwinDataset {
        let root = "s3://twins-bucket/twins/datasets/paul/rev-1";
        let preference = preference.then(|| format!("{root}/preference"));
        serde_json::from_value(json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset",
            "metadata": {"name": "paul", "namespace": "twins"},
            "spec": {"author": {"name": "Paul"}, "sources": [{"name": "blog", "feed": {"url": "https://example.com/feed"}}], "output": output},
            "status": {"phase": "Ready", "revision": "rev-1", "artifacts": {
                "root": root, "documents": format!("{root}/documents.jsonl"), "chunks": format!("{root}/chunks.jsonl"),
                "embeddings": format!("{root}/embeddings.safetensors"), "instruct": format!("{root}/instruct"),
                "preference": preference
            }}
        }))
        .unwrap()
    }

    fn backend(job: &TwinTrainingJob) -> SageMakerBackend {
        job.spec.backend.sagemaker.clone().unwrap()
    }

    /// The request for `run`, or what validation finds in the spec that stops it.
    fn requested(
        job: &TwinTrainingJob,
        dataset: &TwinDataset,
        run: &Run,
        image: &str,
    ) -> Result<TrainingJobRequest, String> {
        let places = RunPlaces::of(job, dataset, run)?;
        let config = trainer_config(job, run, &places);
        if let Some(problem) = unreachable_by_sagemaker(job, dataset, &config) {
            return Err(problem);
        }
        let backend = backend(job);
        let valid = ValidRun {
            dataset,
            run: run.clone(),
            places,
            config,
            backend: Backend::Sagemaker(&backend, image),
        };
        Ok(training_job_request(job, &backend, &valid, image))
    }

    #[test]
    fn the_request_reads_each_split_from_its_channel_and_writes_under_the_run() {
        let job =
            job("paul-twin", json!({"backend": {"sagemaker": {"spot": true, "maxWaitSeconds": 172800}}}));
        let dataset = dataset(json!({"uri": "s3://twins-bucket/twins"}), true);
        let run = Run::new(&job, "rev-1");
        let request = requested(&job, &dataset, &run, "1234.dkr.ecr/twin-trainer:1").unwrap();
        assert_eq!(request.name, training_job_name(&job, &run));
        assert_eq!(
            request.channels,
            vec![
                ("instruct".to_string(), "s3://twins-bucket/twins/datasets/paul/rev-1/instruct/".to_string()),
                (
                    "preference".to_string(),
                    "s3://twins-bucket/twins/datasets/paul/rev-1/preference/".to_string()
                ),
            ]
        );
        assert_eq!(request.output_path, "s3://twins-bucket/twins/models/paul-twin/g2-rev1/sagemaker");
        assert_eq!(
            (request.spot, request.max_wait_seconds, request.max_runtime_seconds),
            (true, Some(172800), 86400)
        );
        assert_eq!(request.instance_type, "ml.g5.2xlarge");
        let config: serde_json::Value = serde_json::from_str(&request.config).unwrap();
        assert_eq!(config["outputUri"], "s3://twins-bucket/twins/models/paul-twin/g2-rev1");
        assert_eq!(config["baseModelUri"], "hf://HuggingFaceTB/SmolLM2-135M");
        assert_eq!(config["datasetRevision"], "rev-1");
        assert!(request.tags.contains(&("llmtwin.dev/uid".into(), "5f0c".into())));
    }

    #[test]
    fn no_preference_channel_without_triples_or_with_dpo_off() {
        let with_dpo = job("paul-twin", json!({}));
        let run = Run::new(&with_dpo, "rev-1");
        let no_triples = dataset(json!({"uri": "s3://twins-bucket/twins"}), false);
        let request = requested(&with_dpo, &no_triples, &run, "image").unwrap();
        assert_eq!(request.channels.len(), 1);
        let dpo_off = job("paul-twin", json!({"dpo": {"enabled": false}}));
        let triples = dataset(json!({"uri": "s3://twins-bucket/twins"}), true);
        let request = requested(&dpo_off, &triples, &run, "image").unwrap();
        assert_eq!(request.channels.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["instruct"]);
    }

    #[test]
    fn names_fit_sagemaker_and_differ_per_object_and_run() {
        let long = job(&format!("{}.twin", "a".repeat(70)), json!({}));
        let name = training_job_name(&long, &Run::new(&long, "rev-1"));
        assert!(name.len() <= 63, "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{name}");
        assert!(name.starts_with('a') && !name.ends_with('-'));
        let job_a = job("paul-twin", json!({}));
        let mut recreated = job_a.clone();
        recreated.metadata.uid = Some("9e1d".into());
        let run = Run::new(&job_a, "rev-1");
        assert_eq!(training_job_name(&job_a, &run), training_job_name(&job_a.clone(), &run));
        assert_ne!(training_job_name(&job_a, &run), training_job_name(&recreated, &run));
        assert_ne!(training_job_name(&job_a, &run), training_job_name(&job_a, &Run::new(&job_a, "rev-2")));
    }

    #[test]
    fn what_sagemaker_cannot_reach_is_refused_with_the_field() {
        let job_a = job("paul-twin", json!({}));
        let run = Run::new(&job_a, "rev-1");
        let on_pvc = dataset(json!({"uri": "pvc://twin-data/twins"}), false);
        let error = requested(&job_a, &on_pvc, &run, "image").unwrap_err();
        assert!(error.contains("TwinDataset \"paul\"") && error.contains("pvc://twin-data/twins"), "{error}");
        let on_minio = dataset(json!({"uri": "s3://twins/x", "endpointUrl": "http://minio:9000"}), false);
        let error = requested(&job_a, &on_minio, &run, "image").unwrap_err();
        assert!(error.contains("http://minio:9000"), "{error}");
        let s3 = dataset(json!({"uri": "s3://twins-bucket/twins"}), false);
        let gated =
            job("paul-twin", json!({"baseModel": {"tokenSecretRef": {"name": "hf", "key": "token"}}}));
        let error = requested(&gated, &s3, &run, "image").unwrap_err();
        assert!(error.starts_with("spec.baseModel.tokenSecretRef"), "{error}");
        let on_pvc_model = job("paul-twin", json!({"baseModel": {"uri": "pvc://models/llama"}}));
        let error = requested(&on_pvc_model, &s3, &run, "image").unwrap_err();
        assert!(error.starts_with("spec.baseModel.uri"), "{error}");
    }

    #[test]
    fn the_metric_regexes_read_the_result_line() {
        let line = r#"{"chatTemplate":"chat_template.jinja","chatTemplateWritten":1,"dpoRewardAccuracy":0.75,"evaluationAuthorSpecificNllReduction":-0.0123,"evaluationNllReduction":0.0912,"evaluationServingNllReduction":0.004,"evaluationWinRate":0.5,"sftEvalLoss":null,"sftTrainLoss":1.5e-2,"status":"Succeeded","vllmMaxLoraRank":16}"#;
        let value = |field: &str| {
            let regex = regex_lite::Regex::new(&metric_regex(field)).unwrap();
            regex.captures(line).map(|c| c[1].parse::<f64>().unwrap())
        };
        assert_eq!(value("sftTrainLoss"), Some(0.015));
        assert_eq!(value("dpoRewardAccuracy"), Some(0.75));
        assert_eq!(value("vllmMaxLoraRank"), Some(16.0));
        assert_eq!(value("chatTemplateWritten"), Some(1.0));
        assert_eq!(value("sftEvalLoss"), None, "a null is no value");
        assert_eq!(value("evaluationNllReduction"), Some(0.0912));
        assert_eq!(value("evaluationAuthorSpecificNllReduction"), Some(-0.0123), "negative figures too");
        assert_eq!(
            (value("evaluationWinRate"), value("evaluationServingNllReduction")),
            (Some(0.5), Some(0.004))
        );
        assert!(RESULT_METRICS.iter().all(|(_, field)| line.contains(field)));
    }
}
