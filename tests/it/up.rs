//! `twin up` and `twin status` as a user runs them: a dataset built from local files and kept
//! in the state folder, a rerun that keeps the revision, and YAML that cannot run (a schema
//! error, an unknown kind, a missing reference, a corpus folder that does not exist, a
//! cluster-only location) refused with the file and field named, nothing run or written.

use std::path::Path;
use std::process::{Command, Output};

use super::pipeline::{Scratch, model_dir};
use crate::support::repo;

fn twin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twin"))
        .args(args)
        .env_remove("TWIN_STATE_DIR")
        .output()
        .expect("twin runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A TwinDataset over `corpus`, written to `out`, as YAML.
fn dataset_yaml(name: &str, corpus: &Path, out: &Path) -> String {
    format!(
        "apiVersion: llmtwin.dev/v1alpha1\nkind: TwinDataset\nmetadata:\n  name: {name}\nspec:\n  author:\n    name: Paul\n  sources:\n    - name: blog\n      files:\n        uri: file://{}\n        include: [\"*.md\"]\n  chunking:\n    maxTokens: 128\n    overlapTokens: 8\n  embedding:\n    model: file://{}\n    batchSize: 8\n  output:\n    uri: file://{}\n",
        corpus.display(),
        model_dir().display(),
        out.display()
    )
}

#[test]
fn twin_up_builds_a_dataset_keeps_its_status_and_reuses_the_revision() {
    let scratch = Scratch::new("up-dataset");
    scratch.write("corpus/retries.md", "# Why my operator retries\n\nWhen a reconcile fails, the operator waits and tries again, doubling the wait each time up to five minutes.");
    scratch.write("corpus/voice.md", "# Writing in your own voice\n\nI write the way I talk: short sentences, first person, and one idea a paragraph.");
    scratch.write("twins/paul.yaml", dataset_yaml("paul", &scratch.0.join("corpus"), &scratch.0.join("out")));
    let state = scratch.0.join("state");
    let (twins, state_dir) = (scratch.0.join("twins").display().to_string(), state.display().to_string());

    let first = twin(&["up", "-f", &twins, "--state-dir", &state_dir]);
    let stdout = text(&first.stdout);
    assert!(first.status.success(), "{stdout}\n{}", text(&first.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("twindataset/paul Running (Building): "), "{stdout}");
    assert!(lines[1].starts_with("twindataset/paul Ready (RevisionPublished): revision "), "{stdout}");
    assert!(lines[1].contains(": 2 documents, "), "{stdout}");
    let revision = lines[1].split("revision ").nth(1).unwrap().split(':').next().unwrap().to_string();
    assert!(scratch.0.join(format!("out/datasets/paul/{revision}/manifest.json")).is_file());

    let status = twin(&["status", "--state-dir", &state_dir]);
    let table = text(&status.stdout);
    assert!(status.status.success());
    assert!(table.starts_with("NAMESPACE"), "{table}");
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.starts_with("default")
            && row.contains("twindataset/paul")
            && row.contains("Ready")
            && row.contains(&revision),
        "{table}"
    );

    // The same corpus again: the same revision, nothing rewritten.
    let again = twin(&["up", "-f", &twins, "--state-dir", &state_dir]);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("twindataset/paul Ready (RevisionUnchanged): revision {revision}:")),
        "{stdout}"
    );
}

#[test]
fn yaml_that_cannot_run_is_refused_with_its_file_and_field_and_nothing_is_written() {
    let scratch = Scratch::new("up-refused");
    scratch.write("corpus/a.md", "# A\n\nSome text.");
    let corpus = scratch.0.join("corpus");
    let out = scratch.0.join("out");
    let good = dataset_yaml("paul", &corpus, &out);
    let training = "apiVersion: llmtwin.dev/v1alpha1\nkind: TwinTrainingJob\nmetadata:\n  name: paul-v1\nspec:\n  datasetRef:\n    name: nobody\n  baseModel:\n    uri: hf://HuggingFaceTB/SmolLM2-135M\n  backend:\n    kubernetes: {}\n  output:\n    uri: file:///tmp/twin-models\n";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "schema",
            good.replace("    maxTokens: 128\n", "    maxTokens: 128\n    colour: blue\n"),
            vec!["schema.yaml, document 1 (TwinDataset paul): spec.chunking"],
        ),
        (
            "cel",
            good.replace("overlapTokens: 8", "overlapTokens: 512"),
            vec!["cel.yaml, document 1 (TwinDataset paul): ", "overlapTokens must be less than maxTokens"],
        ),
        (
            "kind",
            format!("{good}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"),
            vec!["kind.yaml, document 2 (ConfigMap notes): kind \"ConfigMap\" is not one `twin up` runs"],
        ),
        (
            "reference",
            format!("{good}---\n{training}"),
            vec![
                "reference.yaml, document 2 (TwinTrainingJob paul-v1): spec.datasetRef.name: TwinDataset \"nobody\" is not in the YAML",
            ],
        ),
        (
            "corpus",
            dataset_yaml("paul", &scratch.0.join("no-such-folder"), &out),
            vec![
                "corpus.yaml, document 1 (TwinDataset paul): spec.sources[0].files.uri: the folder",
                "no-such-folder does not exist",
            ],
        ),
        (
            "pvc",
            good.replace(&format!("uri: file://{}\n", out.display()), "uri: pvc://twins-data/out\n"),
            vec![
                "pvc.yaml, document 1 (TwinDataset paul): spec.output.uri: pvc:// locations exist only in a cluster",
            ],
        ),
        ("yaml", "kind: [unclosed\n".to_string(), vec!["yaml.yaml: not YAML"]),
    ];
    for (name, yaml, expected) in cases {
        scratch.write(&format!("cases/{name}.yaml"), &yaml);
        let state = scratch.0.join(format!("state-{name}"));
        let file = scratch.0.join(format!("cases/{name}.yaml")).display().to_string();
        let output = twin(&["up", "-f", &file, "--state-dir", &state.display().to_string()]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        for says in expected {
            assert!(stderr.contains(says), "{name}: expected {says:?} in:\n{stderr}");
        }
        assert!(text(&output.stdout).is_empty(), "{name}: nothing ran");
        assert!(!state.exists(), "{name}: no state written");
        assert!(!out.exists(), "{name}: no dataset written");
    }
    let missing = twin(&["up", "-f", &scratch.0.join("nowhere").display().to_string()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("nowhere: No such file or directory"),
        "{}",
        text(&missing.stderr)
    );
    let nothing = twin(&["status", "--state-dir", &scratch.0.join("no-state").display().to_string()]);
    assert!(!nothing.status.success());
    assert!(text(&nothing.stderr).contains("nothing has run here yet"));
}

/// The trainer's Python (`scripts/trainer-env` builds its environment once, then prints it).
fn trainer_python() -> String {
    let output = Command::new(repo::path("scripts/trainer-env")).output().expect("scripts/trainer-env runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).trim().to_string()
}

/// A randomly initialised two-layer Llama with a tokenizer trained on the spot, in `folder`.
fn tiny_llama(python: &str, folder: &Path) {
    let script = "import sys\nfrom twin_trainer import synthetic\n\
                  texts = ['Why my operator retries when a reconcile fails', 'Writing in your own voice, short sentences'] * 8\n\
                  tok = synthetic.tokenizer(texts)\n\
                  synthetic.llama(sys.argv[1], tok, hidden_size=64, intermediate_size=128, num_hidden_layers=2, \
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True)\n";
    let output = Command::new(python)
        .args(["-c", script])
        .arg(folder)
        .env("PYTHONPATH", repo::path("trainer/src"))
        .output()
        .expect("python runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn twin_up_trains_on_the_dataset_it_built_and_reuses_the_adapter() {
    let scratch = Scratch::new("up-training");
    for (file, title, body) in [
        (
            "retries.md",
            "Why my operator retries",
            "When a reconcile fails, the operator waits and tries again, doubling the wait each time up to five minutes, with jitter.",
        ),
        (
            "voice.md",
            "Writing in your own voice",
            "I write the way I talk: short sentences, first person, and one idea a paragraph.",
        ),
        ("gpus.md", "Renting GPUs", "I rent one GPU for a fine-tune and give it back the same afternoon."),
        (
            "outage.md",
            "The worst outage I ran",
            "A certificate expired at three in the morning and every request failed for an hour.",
        ),
    ] {
        scratch.write(
            &format!("corpus/{file}"),
            format!("# {title}\n\n## What happened\n\n{body}\n\n## What I learned\n\n{body}\n"),
        );
    }
    let python = trainer_python();
    let model = scratch.0.join("tiny-llama");
    tiny_llama(&python, &model);
    let dataset = dataset_yaml("paul", &scratch.0.join("corpus"), &scratch.0.join("out"))
        .replace("  output:\n", "  instruct:\n    testFraction: 0.25\n  output:\n");
    let training = format!(
        "apiVersion: llmtwin.dev/v1alpha1\nkind: TwinTrainingJob\nmetadata:\n  name: paul-v1\nspec:\n  datasetRef:\n    name: paul\n  baseModel:\n    uri: file://{}\n  sft:\n    loraRank: 8\n  backend:\n    kubernetes: {{}}\n  output:\n    uri: file://{}\n  maxSteps: 2\n",
        model.display(),
        scratch.0.join("out").display()
    );
    // The training job first: twin up orders them by reference.
    scratch.write("twins/twins.yaml", format!("{training}---\n{dataset}"));
    let (twins, state_dir) =
        (scratch.0.join("twins").display().to_string(), scratch.0.join("state").display().to_string());
    let up = || {
        Command::new(env!("CARGO_BIN_EXE_twin"))
            .args(["up", "-f", &twins, "--state-dir", &state_dir, "--trainer-python", &python])
            .arg("--trainer-src")
            .arg(repo::path("trainer/src"))
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("twin up runs")
    };
    let first = up();
    let stdout = text(&first.stdout);
    assert!(first.status.success(), "{stdout}\n{}", text(&first.stderr));
    let statuses: Vec<&str> = stdout.lines().filter(|l| l.starts_with("twin")).collect();
    assert!(statuses[0].starts_with("twindataset/paul Running"), "{stdout}");
    assert!(statuses[1].starts_with("twindataset/paul Ready (RevisionPublished)"), "{stdout}");
    assert!(
        statuses[2].starts_with("twintrainingjob/paul-v1 Running (Training): training on dataset revision "),
        "{stdout}"
    );
    assert!(
        statuses[3].starts_with(
            "twintrainingjob/paul-v1 Succeeded (AdapterPublished): adapter published at file://"
        ),
        "{stdout}"
    );
    let revision = statuses[1].split("revision ").nth(1).unwrap().split(':').next().unwrap().to_string();
    let run = format!(
        "g1-{}",
        revision.chars().filter(char::is_ascii_alphanumeric).take(12).collect::<String>().to_lowercase()
    );
    let folder = scratch.0.join(format!("out/models/paul-v1/{run}"));
    for artifact in
        ["adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter.gguf", "metrics.json"]
    {
        assert!(folder.join(artifact).is_file(), "{artifact} in {}", folder.display());
    }
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["sft"]["steps"], 2, "{metrics}");
    assert_eq!(metrics["datasetRevision"], revision.as_str());

    // Again: the same revision, the adapter reused, nothing trained.
    let again = up();
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}\n{}", text(&again.stderr));
    assert!(stdout.contains("twindataset/paul Ready (RevisionUnchanged)"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "twintrainingjob/paul-v1 Succeeded (AdapterReused): run {run} on revision {revision}"
        )),
        "{stdout}"
    );

    // Without the trainer's environment a job that has not trained waits, saying how to set it up.
    let elsewhere = training.replace(
        &format!("uri: file://{}\n  maxSteps", scratch.0.join("out").display()),
        &format!("uri: file://{}\n  maxSteps", scratch.0.join("out-2").display()),
    );
    scratch.write("twins-2/twins.yaml", format!("{dataset}---\n{elsewhere}"));
    let without = Command::new(env!("CARGO_BIN_EXE_twin"))
        .args(["up", "-f", &scratch.0.join("twins-2").display().to_string()])
        .args(["--state-dir", &scratch.0.join("state-2").display().to_string()])
        .env_remove("TWIN_TRAINER_PYTHON")
        .output()
        .unwrap();
    let stdout = text(&without.stdout);
    assert_eq!(without.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("twintrainingjob/paul-v1 Pending (TrainerNotInstalled): "), "{stdout}");
    assert!(stdout.contains("scripts/trainer-env") && stdout.contains("--trainer-python"), "{stdout}");
}
