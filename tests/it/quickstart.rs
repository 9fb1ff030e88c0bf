//! The quickstart end to end, as `twin up` runs it: the quickstart's own three YAML files (a
//! smaller corpus of book pages and 2 training steps) built, trained on the real SmolLM2 and
//! served with the embedded engine; the twin asked over HTTP, its answer citing passages of the
//! corpus and naming the adapter it came from; a second run reusing the revision and the
//! adapter; a new page with a gate no run passes (the new page cited at once, the rejected run
//! not served); and, without the trainer, the base model served and said to be only that.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::pipeline::Scratch;
use crate::support::{gateway, repo};

/// Pages shaped like the book's (mdBook HTML with the site's name in the title).
const PAGES: [(&str, &str, &str); 4] = [
    (
        "ch04-01-what-is-ownership.html",
        "What Is Ownership?",
        "Ownership is a set of rules that govern how a Rust program manages memory. Each value in Rust has an owner. There can only be one owner at a time. When the owner goes out of scope, the value will be dropped.",
    ),
    (
        "ch04-02-references-and-borrowing.html",
        "References and Borrowing",
        "A reference is like a pointer in that it is an address we can follow to access the data stored at that address. At any given time, you can have either one mutable reference or any number of immutable references. References must always be valid.",
    ),
    (
        "ch05-01-defining-structs.html",
        "Defining and Instantiating Structs",
        "Structs are similar to tuples in that both hold multiple related values. Unlike with tuples, in a struct you name each piece of data so it is clear what the values mean. To use a struct after we have defined it, we create an instance of that struct by specifying concrete values for each of the fields.",
    ),
    (
        "ch06-01-defining-an-enum.html",
        "Defining an Enum",
        "Where structs give you a way of grouping together related fields and data, enums give you a way of saying a value is one of a possible set of values. The Option enum encodes the very common scenario in which a value could be something or it could be nothing.",
    ),
];

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><title>{title} - The Rust Programming Language</title></head><body>\
         <nav><a href=\"index.html\">Contents</a></nav><main><h1>{title}</h1><p>{body}</p>\
         <h2>In practice</h2><p>{body}</p></main></body></html>"
    )
}

/// The quickstart's YAML with its places moved under `root` and its run made short.
fn quickstart_yaml(root: &Path) -> String {
    let folder = repo::path("manifests/examples/quickstart");
    let mut documents = Vec::new();
    for file in ["twindataset.yaml", "twintrainingjob.yaml", "twinendpoint.yaml"] {
        documents.push(std::fs::read_to_string(folder.join(file)).unwrap());
    }
    let yaml = documents.join("---\n");
    assert!(yaml.contains("maxSteps: 12") && yaml.contains("/tmp/twin-quickstart/"), "{yaml}");
    yaml.replace("/tmp/twin-quickstart/", &format!("{}/", root.display()))
        .replace("maxSteps: 12", "maxSteps: 2")
}

/// `twin up` running, its status lines read as they come.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Up {
    fn start(root: &Path, trainer_python: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_twin"));
        command
            .args(["up", "-f"])
            .arg(root.join("twins"))
            .arg("--state-dir")
            .arg(root.join("state"))
            .arg("--models-dir")
            .arg(repo::path(".cache/models"))
            .args(["--listen", "127.0.0.1:0", "--trainer-src"])
            .arg(repo::path("trainer/src"))
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("TWIN_TRAINER_PYTHON")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(python) = trainer_python {
            command.args(["--trainer-python", python]);
        }
        let mut child = command.spawn().expect("twin up starts");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits for the line that starts with `start`; fails on one that starts with `not`.
    fn wait_for(&mut self, start: &str, not: &[&str], limit: Duration) -> String {
        let began = Instant::now();
        loop {
            let left = limit.saturating_sub(began.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(start) {
                        return line;
                    }
                    assert!(!not.iter().any(|n| line.starts_with(n)), "{}", self.seen.join("\n"));
                }
                Err(_) => panic!("no {start:?} within {limit:?}; twin up said:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Stops it with SIGTERM; its exit code and every line it printed.
    fn stop(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base URL in an endpoint's Ready line.
fn url_in(line: &str) -> String {
    let start = line.find("http://").expect("a URL");
    line[start..].split_whitespace().next().unwrap().trim_end_matches([';', ',', '.']).to_string()
}

/// Asks the twin one question, not streamed; the answer's JSON.
fn ask(api: &str, question: &str) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let response = gateway::client()
            .post(format!("{api}/chat/completions"))
            .json(&json!({"messages": [{"role": "user", "content": question}], "max_tokens": 24}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    })
}

/// The trainer's Python (`scripts/trainer-env` builds its environment once, then prints it).
fn trainer_python() -> String {
    let output = Command::new(repo::path("scripts/trainer-env")).output().expect("scripts/trainer-env runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The chunk ids of a revision's passages.
fn chunk_ids(revision_folder: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(revision_folder.join("chunks.jsonl")).unwrap();
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_quickstart_builds_trains_and_serves_a_twin_that_cites_its_corpus_and_reuses_it_on_rerun() {
    let scratch = Scratch::new("quickstart");
    let root = scratch.0.clone();
    for (file, title, body) in PAGES {
        scratch.write(&format!("book/{file}"), page(title, body));
    }
    // The whole book on one page repeats the chapters: not collected.
    scratch.write("book/print.html", page("The whole book", "Every chapter again."));
    std::os::unix::fs::symlink(repo::path(".cache/models"), root.join("models")).unwrap();
    scratch.write("twins/quickstart.yaml", quickstart_yaml(&root));
    let python = trainer_python();
    let limit = Duration::from_secs(900);
    let failed = [
        "twindataset/rust-book Failed",
        "twintrainingjob/rust-book-v1 Failed",
        "twinendpoint/rust-book Failed",
    ];

    let mut up = Up::start(&root, Some(&python));
    let built = up.wait_for("twindataset/rust-book Ready (RevisionPublished)", &failed, limit);
    assert!(built.contains(": 4 documents, "), "print.html is not collected: {built}");
    let revision = built.split("revision ").nth(1).unwrap().split(':').next().unwrap().to_string();
    up.wait_for("twintrainingjob/rust-book-v1 Succeeded (AdapterPublished)", &failed, limit);
    let ready = up.wait_for("twinendpoint/rust-book Ready (Serving)", &failed, limit);
    let api = url_in(&ready);
    assert!(api.starts_with("http://127.0.0.1:") && api.ends_with("/v1"), "{ready}");

    let answer = ask(&api, "What is ownership in Rust?");
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.trim().is_empty(), "{answer}");
    let folder = root.join(format!("out/datasets/rust-book/{revision}"));
    let ids = chunk_ids(&folder);
    let sources = answer["sources"].as_array().unwrap();
    assert!(!sources.is_empty(), "{answer}");
    for source in sources {
        assert!(ids.iter().any(|id| id == source["chunk_id"].as_str().unwrap()), "{source} not in {ids:?}");
        assert!(source["url"].as_str().unwrap().starts_with(&format!("file://{}/book/", root.display())));
    }
    assert_eq!(sources[0]["title"], "What Is Ownership?", "{answer}");
    let run = format!(
        "g1-{}",
        revision.chars().filter(char::is_ascii_alphanumeric).take(12).collect::<String>().to_lowercase()
    );
    let run_folder = root.join(format!("out/models/rust-book-v1/{run}"));
    for artifact in
        ["adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter.gguf", "metrics.json"]
    {
        assert!(run_folder.join(artifact).is_file(), "{artifact} in {}", run_folder.display());
    }
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(run_folder.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["sft"]["steps"], 2, "{metrics}");
    assert_eq!(metrics["datasetRevision"], revision.as_str());
    let adapter = run_folder.join("adapter.gguf");
    let lineage = &answer["lineage"];
    assert_eq!(lineage["adapter"], adapter.display().to_string(), "{answer}");
    assert_eq!(lineage["revision"], revision.as_str(), "{answer}");
    assert_eq!(lineage["dataset"], "rust-book");
    assert!(lineage["baseModel"].as_str().unwrap().ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"), "{answer}");
    let (code, said) = up.stop();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("twinendpoint/rust-book Pending (Stopped): served at "), "{said}");

    // Again: nothing rebuilt or retrained, the same adapter served.
    let mut again = Up::start(&root, Some(&python));
    let kept = again.wait_for("twindataset/rust-book Ready", &failed, limit);
    assert!(
        kept.starts_with(&format!("twindataset/rust-book Ready (RevisionUnchanged): revision {revision}:")),
        "{kept}"
    );
    let reused = again.wait_for("twintrainingjob/rust-book-v1 Succeeded", &failed, limit);
    assert!(
        reused.starts_with(&format!("twintrainingjob/rust-book-v1 Succeeded (AdapterReused): run {run}")),
        "{reused}"
    );
    let ready = again.wait_for("twinendpoint/rust-book Ready (Serving)", &failed, limit);
    assert!(ready.contains(&adapter.display().to_string()), "{ready}");
    let answer = ask(&url_in(&ready), "How do I define a struct?");
    assert_eq!(answer["lineage"]["adapter"], adapter.display().to_string(), "{answer}");
    assert_eq!(again.stop().0, Some(0));

    // A new page, and a gate no run can pass: the dataset publishes a new revision, which the
    // endpoint retrieves from at once; the run on it trains, fails its gate and is not served.
    scratch.write(
        "book/ch04-03-slices.html",
        page(
            "The Slice Type",
            "Slices let you reference a contiguous sequence of elements in a collection rather than the whole collection. A string slice is a reference to part of a String.",
        ),
    );
    let gated = quickstart_yaml(&root).replace(
        "    enabled: false",
        "    passages: 2\n    questions: 0\n    gate: {minimums: {nllReduction: 100}}",
    );
    assert!(gated.contains("gate:"), "{gated}");
    scratch.write("twins/quickstart.yaml", gated);
    let mut held = Up::start(&root, Some(&python));
    let rebuilt = held.wait_for("twindataset/rust-book Ready (RevisionPublished)", &failed, limit);
    let fresh = rebuilt.split("revision ").nth(1).unwrap().split(':').next().unwrap().to_string();
    assert_ne!(fresh, revision);
    let rejected = held.wait_for("twintrainingjob/rust-book-v1 Rejected (GateFailed)", &failed, limit);
    for part in [
        "failed its evaluation gate (nllReduction ",
        "< minimum +100.000",
        &format!("(run {run}) stays served"),
    ] {
        assert!(rejected.contains(part), "{part:?} not in {rejected}");
    }
    let ready = held.wait_for("twinendpoint/rust-book Ready (Serving)", &failed, limit);
    assert!(ready.contains(&adapter.display().to_string()) && ready.contains("PromotionHeld"), "{ready}");
    let answer = ask(&url_in(&ready), "What is a slice in Rust?");
    assert_eq!(
        answer["lineage"]["adapter"],
        adapter.display().to_string(),
        "the held run is not served: {answer}"
    );
    assert_eq!(
        answer["lineage"]["revision"],
        fresh.as_str(),
        "retrieval moved to the new revision: {answer}"
    );
    assert_eq!(
        answer["lineage"]["adapterRevision"],
        revision.as_str(),
        "the adapter's own revision: {answer}"
    );
    let cited = answer["sources"].as_array().unwrap();
    assert!(
        cited.iter().any(|s| s["url"].as_str().unwrap().ends_with("/book/ch04-03-slices.html")),
        "the new page is cited with no training in between: {answer}"
    );
    let (code, said) = held.stop();
    assert_eq!(code, Some(1), "a rejected run is not a goal reached: {said}");
    // Piped, the progress is plain lines, one per change, with no control characters.
    for progress in [
        "twindataset/rust-book: embedding 0/",
        "twintrainingjob/rust-book-v1: loading the base model and the dataset",
        "twintrainingjob/rust-book-v1: training: SFT 2/2 steps (loss ",
        "twintrainingjob/rust-book-v1: evaluating: likelihood ",
    ] {
        assert!(said.contains(progress), "{progress:?} in {said}");
    }
    let control: Vec<char> = said.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(control.is_empty(), "no control characters when piped, found {control:?}: {said:?}");
    let state: Value =
        serde_json::from_slice(&std::fs::read(root.join("state/state.json")).unwrap()).unwrap();
    let job = state["resources"].as_array().unwrap().iter().find(|e| e["kind"] == "TwinTrainingJob").unwrap();
    assert_eq!(
        (job["phase"].as_str(), job["promoted"].as_str()),
        (Some("Rejected"), Some(revision.as_str()))
    );

    // Without the trainer, and with nothing trained in this output folder: the endpoint serves
    // the base model, and says it is only that.
    let elsewhere = quickstart_yaml(&root)
        .replace(&format!("{}/out", root.display()), &format!("{}/out-2", root.display()));
    scratch.write("twins/quickstart.yaml", elsewhere);
    let mut untrained = Up::start(&root, None);
    untrained.wait_for("twintrainingjob/rust-book-v1 Pending (TrainerNotInstalled)", &failed, limit);
    let degraded = untrained.wait_for("twinendpoint/rust-book Degraded (ServingBaseModel)", &failed, limit);
    assert!(degraded.contains("without the twin's adapter"), "{degraded}");
    let answer = ask(&url_in(&degraded), "What is a reference?");
    assert!(answer["lineage"].get("adapter").is_none(), "{answer}");
    let (code, said) = untrained.stop();
    assert_eq!(code, Some(1), "not everything reached its goal: {said}");
}
