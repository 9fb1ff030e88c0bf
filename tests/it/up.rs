//! `twin up` and `twin status` as a user runs them: a dataset built from local files and kept
//! in the state folder, a rerun that keeps the revision, and YAML that cannot run (a schema
//! error, an unknown kind, a missing reference, a corpus folder that does not exist, a
//! cluster-only location, an endpoint's port in use) refused with the file and field named,
//! nothing run or written. Training and serving: `quickstart.rs`.

use std::path::Path;
use std::process::{Command, Output};

use super::pipeline::{Scratch, model_dir};

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
    let endpoint = "apiVersion: llmtwin.dev/v1alpha1\nkind: TwinEndpoint\nmetadata:\n  name: paul\nspec:\n  model:\n    baseModel:\n      uri: file:///models/smollm2.gguf\n  datasetRef:\n    name: paul\n  engine:\n    kind: embedded\n";
    // An address in use, as another program would hold it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap().to_string();
    let in_use = format!("port.yaml, document 2 (TwinEndpoint paul): cannot listen on {taken_address}: ");
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
        ("port", format!("{good}---\n{endpoint}"), vec![&in_use, "give twin up another --listen address"]),
    ];
    for (name, yaml, expected) in cases {
        scratch.write(&format!("cases/{name}.yaml"), &yaml);
        let state = scratch.0.join(format!("state-{name}"));
        let file = scratch.0.join(format!("cases/{name}.yaml")).display().to_string();
        let state_dir = state.display().to_string();
        let output = twin(&["up", "-f", &file, "--state-dir", &state_dir, "--listen", &taken_address]);
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
