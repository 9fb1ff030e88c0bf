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

/// The status lines of `twin up`'s output, less its progress lines (`twindataset/paul: ...`).
fn statuses(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|line| line.split_whitespace().next().is_some_and(|word| !word.ends_with(':')))
        .collect()
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
    assert!(stdout.contains("twindataset/paul: embedding 0/"), "progress, as plain lines: {stdout}");
    let lines = statuses(&stdout);
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

/// A dataset over three posts in `root/corpus`, and a short training run on SmolLM2 (evaluation
/// off), as YAML in `root/twins/paul.yaml`; with `endpoint`, the embedded endpoint serving it.
fn trained_twin_yaml(root: &Path, endpoint: bool) -> String {
    let smollm =
        crate::support::repo::path(".cache/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut yaml = dataset_yaml("paul", &root.join("corpus"), &root.join("out"));
    yaml.push_str(&format!(
        "---\napiVersion: llmtwin.dev/v1alpha1\nkind: TwinTrainingJob\nmetadata:\n  name: paul-v1\nspec:\n  \
         datasetRef: {{name: paul}}\n  baseModel: {{uri: \"file://{}\"}}\n  \
         sft: {{method: lora, loraRank: 8, loraAlpha: 16, maxSeqLength: 128, perDeviceBatchSize: 2}}\n  \
         dpo: {{enabled: false}}\n  backend: {{kubernetes: {{}}}}\n  output: {{uri: \"file://{}/out\"}}\n  \
         maxSteps: 2\n  evaluation: {{enabled: false}}\n",
        smollm.display(),
        root.display()
    ));
    if endpoint {
        yaml.push_str(
            "---\napiVersion: llmtwin.dev/v1alpha1\nkind: TwinEndpoint\nmetadata:\n  name: paul\nspec:\n  \
             model: {trainingJobRef: {name: paul-v1}}\n  datasetRef: {name: paul}\n  engine: {kind: embedded}\n",
        );
    }
    yaml
}

fn write_posts(scratch: &Scratch) {
    scratch.write("corpus/retries.md", "# Why my operator retries\n\nWhen a reconcile fails, the operator waits and tries again, doubling the wait each time up to five minutes. I learned this the hard way, after a night of pages.");
    scratch.write("corpus/voice.md", "# Writing in your own voice\n\nI write the way I talk: short sentences, first person, and one idea a paragraph. Then I cut a third.");
    scratch.write("corpus/tests.md", "# Tests that fail for a reason\n\nA test earns its place when it fails for the bug it names and for nothing else. Mine did not, for years.");
}

/// What was drawn on a terminal, from `raw` output recorded from a pseudo-terminal: the text
/// written after each clearing of a line (`ESC [2K`), escape sequences and the padding that
/// fills the line removed.
fn drawn(raw: &str) -> Vec<String> {
    raw.split("\u{1b}[2K")
        .map(|segment| {
            let mut text = String::new();
            let mut chars = segment.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    // CSI: ESC [ parameters, ended by a letter.
                    if chars.peek() == Some(&'[') {
                        chars.next();
                        for end in chars.by_ref() {
                            if end.is_ascii_alphabetic() {
                                break;
                            }
                        }
                    }
                    continue;
                }
                text.push(c);
            }
            text.trim().to_string()
        })
        .filter(|text| !text.is_empty())
        .collect()
}

/// A `twin up` with its output piped and kept, from its start until its endpoints serve to
/// its stop by SIGTERM.
struct PipedUp {
    child: std::process::Child,
    reader: std::io::BufReader<std::process::ChildStdout>,
    /// What it has said so far.
    said: String,
}

impl PipedUp {
    /// Starts `command` (a `twin up`) with the Hub offline and its output piped, and reads it
    /// until `count` endpoints serve; their API URLs by name.
    fn start(mut command: Command, count: usize) -> (Self, std::collections::BTreeMap<String, String>) {
        let mut child = command
            .env("HF_HUB_OFFLINE", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("twin up starts");
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut said = String::new();
        let urls = serving_urls(&mut reader, &mut said, count);
        (Self { child, reader, said }, urls)
    }

    /// Stops it with SIGTERM, as Ctrl-C does, checks that it exits 0, and returns all it said.
    fn stop(mut self) -> String {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.reader, &mut rest).unwrap();
        self.said.push_str(&rest);
        assert_eq!(self.child.wait().unwrap().code(), Some(0), "{}", self.said);
        self.said
    }
}

/// Reads `twin up`'s output (kept in `said`) until `count` endpoints are `Ready (Serving)`;
/// their API URLs by name.
fn serving_urls(
    reader: &mut impl std::io::BufRead,
    said: &mut String,
    count: usize,
) -> std::collections::BTreeMap<String, String> {
    let mut urls = std::collections::BTreeMap::new();
    while urls.len() < count {
        let mut line = String::new();
        let read = reader.read_line(&mut line).unwrap();
        assert!(read > 0, "twin up ended before serving: {said}");
        said.push_str(&line);
        if let Some(rest) = line.strip_prefix("twinendpoint/")
            && line.contains(" Ready (Serving)")
        {
            let name = rest.split_whitespace().next().unwrap().to_string();
            let start = line.find("http://").expect("a URL");
            let url = line[start..].split_whitespace().next().unwrap().trim_end_matches([';', ',', '.']);
            urls.insert(name, url.to_string());
        }
    }
    urls
}

/// The trainer's Python, as the README has users set it up.
fn trainer_python() -> String {
    let output =
        Command::new(crate::support::repo::path("scripts/trainer-env")).output().expect("trainer-env runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).trim().to_string()
}

/// A user's own folder, outside the repository: `twin up -f twins/` run there (its state in
/// `./.twin`, no `--trainer-src`: the trainer installed in its environment runs) on a terminal
/// draws live progress (bars and spinners, from the pipeline and from the trainer's own
/// progress) and ends with the final statuses; then, piped, it serves the twin it trained, and
/// its output has no control characters.
#[test]
fn twin_up_in_a_users_own_folder_trains_with_live_progress_on_a_terminal_and_serves_with_plain_lines() {
    let scratch = Scratch::new("up-own-folder");
    write_posts(&scratch);
    scratch.write("twins/paul.yaml", trained_twin_yaml(&scratch.0, false));
    let python = trainer_python();
    let twin = env!("CARGO_BIN_EXE_twin");
    let models = crate::support::repo::path(".cache/models");
    // `script` gives the command a pseudo-terminal and copies what it draws to its output.
    let command = format!("{twin} up -f twins --models-dir {} --trainer-python {python}", models.display());
    let output = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .current_dir(&scratch.0)
        .env("TERM", "xterm-256color")
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("TWIN_STATE_DIR")
        .env_remove("TWIN_TRAINER_SRC")
        .env_remove("PYTHONPATH")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script runs");
    let raw = text(&output.stdout);
    let shown = drawn(&raw);
    assert!(output.status.success(), "{shown:#?}\n{}", text(&output.stderr));
    for progress in [
        "twindataset/paul",
        " embedding ",
        "/3 chunks",
        "twintrainingjob/paul-v1",
        "training: SFT ",
        "/2 steps, loss ",
    ] {
        assert!(raw.contains(progress), "{progress:?} drawn: {shown:#?}");
    }
    // Each status is said after the live line of its work; the job's is the last thing drawn.
    let position = |start: &str| shown.iter().position(|line| line.starts_with(start));
    let embedded = shown.iter().rposition(|line| line.contains(" embedding ")).unwrap();
    let built =
        position("twindataset/paul Ready (RevisionPublished): revision ").expect("the dataset's status");
    let trained = shown.iter().rposition(|line| line.contains("training: SFT ")).unwrap();
    assert!(embedded < built && built < trained, "{shown:#?}");
    let last = shown.last().unwrap();
    assert!(last.starts_with("twintrainingjob/paul-v1 Succeeded (AdapterPublished): "), "{shown:#?}");
    assert!(scratch.0.join(".twin/state.json").is_file(), "the state is kept in the user's folder");

    // Piped, with the endpoint: the adapter trained above is served.
    scratch.write("twins/paul.yaml", trained_twin_yaml(&scratch.0, true));
    let mut command = Command::new(twin);
    command
        .args(["up", "-f", "twins", "--listen", "127.0.0.1:0", "--models-dir"])
        .arg(&models)
        .args(["--trainer-python", &python])
        .current_dir(&scratch.0)
        .env_remove("TWIN_STATE_DIR");
    let (up, mut urls) = PipedUp::start(command, 1);
    let api = urls.remove("paul").expect("paul's URL");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answer: serde_json::Value = runtime.block_on(async {
        let body = serde_json::json!({"messages": [{"role": "user", "content": "Why do operators retry?"}], "max_tokens": 16});
        let response =
            crate::support::gateway::client().post(format!("{api}/chat/completions")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    });
    let adapter = answer["lineage"]["adapter"].as_str().unwrap_or_default().to_string();
    assert!(adapter.starts_with(&format!("{}/out/models/paul-v1/", scratch.0.display())), "{answer}");
    let said = up.stop();
    assert!(said.contains("twintrainingjob/paul-v1 Succeeded (AdapterReused)"), "{said}");
    let control: Vec<char> = said.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(control.is_empty(), "piped output has no control characters, found {control:?}: {said:?}");
}

/// The trainer's Python without the trainer in it (this machine's own python3), run from a
/// folder that holds no trainer source: the job fails, and its status quotes the trainer's
/// last lines, which name what is missing.
#[test]
fn a_trainer_that_cannot_start_says_why_in_the_jobs_status() {
    let scratch = Scratch::new("up-trainer-missing");
    write_posts(&scratch);
    scratch.write("twins/paul.yaml", trained_twin_yaml(&scratch.0, false));
    let python = Command::new("sh").args(["-c", "command -v python3"]).output().expect("sh runs");
    let python = text(&python.stdout).trim().to_string();
    let up = Command::new(env!("CARGO_BIN_EXE_twin"))
        .args(["up", "-f", "twins", "--trainer-python", &python])
        .current_dir(&scratch.0)
        .env_remove("TWIN_STATE_DIR")
        .env_remove("TWIN_TRAINER_SRC")
        .env_remove("PYTHONPATH")
        .output()
        .expect("twin up runs");
    let stdout = text(&up.stdout);
    assert_eq!(up.status.code(), Some(1), "{stdout}");
    let failed = statuses(&stdout)
        .into_iter()
        .find(|line| line.starts_with("twintrainingjob/paul-v1 Failed (TrainerFailed): "))
        .unwrap_or_else(|| panic!("the job failed: {stdout}"));
    for part in ["the trainer exited with exit status: 1", "No module named twin_trainer", ".twin/training/"]
    {
        assert!(failed.contains(part), "{part:?} in {failed}");
    }
}

/// Three twins of SmolLM2, each its own adapter (random, from scripts/make-adapters) and its own
/// dataset, served by one `twin up`: the model is mapped into the process once, and each twin
/// answers with its own adapter (the same prompt gets three different greedy answers, and the
/// lineage names the twin's adapter) and its own passages.
#[test]
fn twins_of_one_base_model_share_one_copy_of_it_in_twin_up_each_with_its_adapter_and_sources() {
    let scratch = Scratch::new("up-shared");
    let made = Command::new(crate::support::repo::path("scripts/make-adapters"))
        .arg(scratch.0.join("adapters"))
        .arg("3")
        .output()
        .expect("scripts/make-adapters runs");
    assert!(made.status.success(), "{}", text(&made.stderr));
    let smollm =
        crate::support::repo::path(".cache/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let twins = ["anna", "ben", "cleo"];
    let mut yaml = String::new();
    for (index, name) in twins.iter().enumerate() {
        scratch.write(
            &format!("corpus-{name}/post.md"),
            format!("# {name} on one subject\n\nThis post by {name} is about the subject only {name} writes about: {name}'s own work, told {name}'s way."),
        );
        yaml.push_str(&dataset_yaml(name, &scratch.0.join(format!("corpus-{name}")), &scratch.0.join("out")));
        yaml.push_str(&format!(
            "---\napiVersion: llmtwin.dev/v1alpha1\nkind: TwinEndpoint\nmetadata:\n  name: {name}\nspec:\n  \
             model: {{baseModel: {{uri: \"file://{}\"}}, adapterUri: \"file://{}/adapters/twin-{index}.gguf\"}}\n  \
             datasetRef: {{name: {name}}}\n  engine: {{kind: embedded}}\n---\n",
            smollm.display(),
            scratch.0.display()
        ));
    }
    scratch.write("twins.yaml", yaml);
    let mut command = Command::new(env!("CARGO_BIN_EXE_twin"));
    command
        .args(["up", "-f"])
        .arg(scratch.0.join("twins.yaml"))
        .arg("--state-dir")
        .arg(scratch.0.join("state"))
        .args(["--listen", "127.0.0.1:0", "--models-dir"])
        .arg(crate::support::repo::path(".cache/models"));
    let (up, urls) = PipedUp::start(command, twins.len());
    // The model is mapped into the process once, not once per twin.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", up.child.id())).unwrap();
    assert_eq!(maps.lines().filter(|l| l.ends_with(&smollm.display().to_string())).count(), 1, "{maps}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ask = |url: &str, body: serde_json::Value| {
        runtime.block_on(async {
            let response = crate::support::gateway::client()
                .post(format!("{url}/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        })
    };
    let mut greedy = std::collections::BTreeSet::new();
    for (index, name) in twins.iter().enumerate() {
        let url = &urls[*name];
        // The same prompt to each (no passages): only the adapter differs.
        let bare = ask(
            url,
            serde_json::json!({"messages": [{"role": "user", "content": "What do you write about?"}],
                               "max_tokens": 24, "temperature": 0, "rag": {"topK": 0}}),
        );
        let adapter = scratch.0.join(format!("adapters/twin-{index}.gguf")).display().to_string();
        assert_eq!(bare["lineage"]["adapter"], adapter, "{name}: {bare}");
        greedy.insert(bare["choices"][0]["message"]["content"].as_str().unwrap().to_string());
        // Its own passages.
        let grounded = ask(
            url,
            serde_json::json!({"messages": [{"role": "user", "content": format!("What does {name} write about?")}], "max_tokens": 8}),
        );
        let sources = grounded["sources"].as_array().unwrap();
        assert!(!sources.is_empty(), "{name}: {grounded}");
        assert!(sources.iter().all(|s| s["title"].as_str().unwrap().starts_with(name)), "{name}: {grounded}");
        assert_eq!(grounded["lineage"]["dataset"], *name, "{grounded}");
    }
    assert_eq!(greedy.len(), 3, "each twin answers with its own adapter: {greedy:?}");
    up.stop();
}
