//! `twin eval` as a user runs it, on a dataset the real pipeline built and the real SmolLM2:
//! a twin that is its own baseline measures no difference and ties every question (the measures
//! invent nothing); a second run with the same seed gives the same figures; a gate it cannot
//! pass exits 3; the report renders in a real headless Chromium with its charts drawn and no
//! request leaving the page; and bad input (no test split, a control text or an endpoint that is
//! not there, an endpoint answering garbage, an unknown gate figure) is a clear error that
//! writes no figures.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use twin_operator::pipeline::build;

use super::gateway::models_dir;
use super::pipeline::{Scratch, model_dir};
use crate::support::browser::{Browser, chromedriver};
use crate::support::serve::serve;
use crate::support::sites;

const TOPICS: [&str; 10] =
    ["retries", "leases", "caches", "queues", "probes", "quotas", "tokens", "shards", "replicas", "budgets"];

/// Builds the dataset `paul` from ten articles with the real pipeline, half of its passages held
/// out; returns its folder's URI.
async fn dataset(scratch: &Scratch) -> String {
    for topic in TOPICS {
        let article =
            sites::article("blog", topic, "https://paul.example/other", "Other", "https://paul.example");
        scratch.write(&format!("corpus/{topic}.md"), sites::markdown(&article));
    }
    let dataset = serde_json::from_value(json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset", "metadata": {"name": "paul", "namespace": "twins"},
        "spec": {"author": {"name": "Paul"},
                 "sources": [{"name": "blog", "files": {"uri": format!("file://{}", scratch.0.join("corpus").display()), "include": ["*.md"]}}],
                 "chunking": {"maxTokens": 96, "overlapTokens": 8},
                 "embedding": {"model": format!("file://{}", model_dir().display()), "batchSize": 8},
                 "instruct": {"testFraction": 0.5},
                 "output": {"uri": format!("file://{}", scratch.0.join("out").display())}}
    }))
    .unwrap();
    build(&dataset, &Default::default()).await.expect("the dataset builds");
    format!("file://{}", scratch.0.join("out/datasets/paul").display())
}

/// An OpenAI-compatible endpoint whose every answer is `content`, after `delay`.
async fn answering(content: &'static str, delay: std::time::Duration) -> String {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        axum::Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}))
    });
    format!("http://{}/v1", serve(app).await)
}

const VERDICT: &str = "```json\n{\"accuracy\": {\"reason\": \"Matches the passage.\", \"score\": 2}, \
                       \"style\": {\"reason\": \"Reads like Paul.\", \"score\": 3}}\n```";

fn twin_eval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twin"))
        .arg("eval")
        .args(["--models-dir", &models_dir(), "--threads", "2"])
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("twin eval runs")
}

fn said(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn evaluation(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("evaluation.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_twin_against_itself_measures_no_difference_repeatably_and_its_report_renders() {
    let scratch = Scratch::new("eval");
    let uri = dataset(&scratch).await;
    let out = scratch.0.join("eval-1");
    let small = ["--passages", "3", "--max-tokens", "16", "--seed", "7"];
    let run = |out: &Path, more: &[&str]| {
        twin_eval(&[&["--dataset", uri.as_str(), "--out", out.to_str().unwrap()][..], &small, more].concat())
    };
    let judge = answering(VERDICT, std::time::Duration::ZERO).await;
    let first = run(&out, &["--questions", "2", "--judge", &judge]);
    assert!(first.status.success(), "{}", said(&first));
    let table = String::from_utf8_lossy(&first.stdout).to_string();
    for row in [
        "NLL/token, author's answers",
        "NLL/token, control text",
        "author-likeness (char n-grams)",
        "retrieval of the source passage: recall @1",
    ] {
        assert!(table.contains(row), "{row} missing from:\n{table}");
    }
    // The same model on both sides: every difference is nil and every question a tie.
    assert!(table.contains("win rate (char n-grams): +0.500 [+0.500, +0.500] n=2"), "{table}");
    let figures = evaluation(&out);
    let likelihood = &figures["likelihood"];
    for part in ["authorAnswers", "authorText", "controlText"] {
        assert_eq!(likelihood[part]["nll"]["difference"]["value"], 0.0, "{part}: {likelihood}");
        let nll = likelihood[part]["nll"]["twin"]["value"].as_f64().unwrap();
        assert!(nll > 0.5 && nll < 8.0, "{part}: {nll} nats per token is not a language model's");
    }
    assert_eq!(likelihood["authorText"]["nll"]["twin"]["n"], 3);
    let answers = &figures["answers"];
    assert_eq!(answers["items"].as_array().unwrap().len(), 2);
    for item in answers["items"].as_array().unwrap() {
        assert_eq!(item["twin"]["text"], item["baseline"]["text"], "{item}");
        assert!(
            !item["twin"]["sources"].as_array().unwrap().is_empty(),
            "the gateway names its passages: {item}"
        );
    }
    let retrieval = &figures["retrieval"];
    assert!(retrieval["questions"].as_u64().unwrap() > 0, "{retrieval}");
    assert!(retrieval["recall"][3].as_f64().unwrap() > 0.0, "{retrieval}");
    assert_eq!(figures["settings"]["decoding"], "greedy (temperature 0)");
    // The judge's verdicts, with their reasons, for both answers.
    assert!(table.contains("judge: style (1–3)"), "{table}");
    assert_eq!(answers["judge"]["style"]["twin"]["value"], 3.0, "{answers}");
    assert_eq!(answers["items"][0]["judge"][1]["accuracy"]["reason"], "Matches the passage.");
    assert!(figures["notMeasured"].get("judge").is_none(), "{figures}");
    assert!(figures.get("gate").is_none());

    // The same seed: the same figures, answers included.
    let again_out = scratch.0.join("eval-2");
    let again = run(&again_out, &["--questions", "2", "--judge", &judge]);
    assert!(again.status.success(), "{}", said(&again));
    let mut a = figures.clone();
    let mut b = evaluation(&again_out);
    a["seconds"] = Value::Null;
    b["seconds"] = Value::Null;
    assert_eq!(a, b);

    // A gate: a figure under its minimum fails it, and so does one not measured (no answers
    // here); exit 3, the shortfalls said and written.
    scratch.write("gate.yaml", "minimums:\n  nllReduction: 0.01\n  winRate: 0.5\n  recallAt5: 0.0\n");
    let gated_out = scratch.0.join("eval-gated");
    let gate = scratch.0.join("gate.yaml");
    let gated = run(&gated_out, &["--gate", gate.to_str().unwrap(), "--questions", "0"]);
    assert_eq!(gated.status.code(), Some(3), "{}", said(&gated));
    assert!(
        said(&gated).contains("gate: FAILED: nllReduction 0.000 < 0.01; winRate not measured (minimum 0.5)"),
        "{}",
        said(&gated)
    );
    let gated = evaluation(&gated_out);
    assert_eq!(gated["gate"]["passed"], false);
    assert_eq!(gated["gate"]["failed"].as_array().unwrap().len(), 2, "{gated}");
    assert_eq!(gated["notMeasured"]["answers"], "--questions 0");
    assert!(gated["headline"].get("winRate").is_none() && gated.get("answers").is_none(), "{gated}");

    // The report in a real browser: charts with data, and nothing fetched.
    let Some(driver) = chromedriver() else {
        panic!(
            "Chromium's WebDriver is missing: install Debian's chromium and chromium-driver (.ci/run does)"
        );
    };
    let (browser, session) = Browser::start(&driver).await;
    let at = |path: &str| format!("/session/{session}{path}");
    let page = format!("file://{}", out.join("report.html").display());
    browser.call("POST", &at("/url"), Some(json!({"url": page}))).await;
    let script = "return [document.querySelectorAll('circle.point').length, document.querySelectorAll('rect.bar').length, \
                  performance.getEntriesByType('resource').length, document.querySelectorAll('table.answers tr').length, document.title]";
    let seen = browser.call("POST", &at("/execute/sync"), Some(json!({"script": script, "args": []}))).await;
    assert_eq!(
        seen[0],
        3 + figures["likelihood"]["controlText"]["nll"]["twin"]["n"].as_u64().unwrap(),
        "{seen}"
    );
    assert_eq!(seen[1], 4, "{seen}");
    assert_eq!(seen[2], 0, "the report fetched something: {seen}");
    assert_eq!(seen[3], 3, "a header and two questions: {seen}");
    assert_eq!(seen[4], "Twin evaluation: paul");
    browser.call("DELETE", &format!("/session/{session}"), None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_clear_error_and_writes_no_figures() {
    let scratch = Scratch::new("eval-bad");
    let uri = dataset(&scratch).await;
    let out = scratch.0.join("eval");
    let out_arg = out.to_str().unwrap().to_string();
    let refused = |args: &[&str], expected: &[&str]| {
        let output = twin_eval(&[&["--dataset", uri.as_str(), "--out", out_arg.as_str()][..], args].concat());
        let text = said(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        for part in expected {
            assert!(text.contains(part), "{part:?} not in: {text}");
        }
        assert!(!out.join("evaluation.json").exists(), "figures written after: {text}");
    };
    // An earlier run's figures do not survive a failed one.
    scratch.write("eval/evaluation.json", "{}");
    refused(
        &["--control", "/nonexistent/control.txt"],
        &["--control /nonexistent/control.txt: cannot read it"],
    );
    scratch.write("gate.yaml", "minimums: {accuracy: 2}");
    refused(
        &["--gate", scratch.0.join("gate.yaml").to_str().unwrap()],
        &["\"accuracy\"", "known: nllReduction"],
    );
    // An endpoint that is not there, and ones that answer garbage.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let down = format!("http://{closed}/v1");
    refused(&["--endpoint", &down, "--baseline-endpoint", &down], &[&format!("{down}/chat/completions: ")]);
    let html = serve(axum::Router::new().fallback(|| async { "<html>hello</html>" })).await;
    let html = format!("http://{html}/v1");
    refused(&["--endpoint", &html, "--baseline-endpoint", &html], &["did not answer JSON"]);
    let empty = serve(axum::Router::new().fallback(|| async { axum::Json(json!({"choices": []})) })).await;
    let empty = format!("http://{empty}/v1");
    refused(&["--endpoint", &empty, "--baseline-endpoint", &empty], &["without choices[0].message.content"]);
    refused(&["--endpoint", &empty], &["the twin is an endpoint: give the baseline"]);
    // A judge that answers off its scale, and one that takes longer than --timeout.
    let twin = answering("Retries back off and then give up.", std::time::Duration::ZERO).await;
    let endpoints = ["--endpoint", twin.as_str(), "--baseline-endpoint", twin.as_str(), "--questions", "1"];
    let off_scale =
        answering("{\"accuracy\": {\"score\": 5}, \"style\": {\"score\": 2}}", std::time::Duration::ZERO)
            .await;
    refused(
        &[&endpoints[..], &["--judge", &off_scale]].concat(),
        &[&format!("the judge at {off_scale}: its accuracy score is not 1, 2 or 3")],
    );
    let slow = answering(VERDICT, std::time::Duration::from_secs(5)).await;
    refused(
        &[&endpoints[..], &["--judge", &slow, "--timeout", "1s"]].concat(),
        &[&format!("{slow}/chat/completions: timed out")],
    );
    // A revision without a test split.
    let revisions = scratch.0.join("out/datasets/paul");
    let latest = std::fs::read_to_string(revisions.join("LATEST")).unwrap();
    std::fs::remove_file(revisions.join(latest.trim()).join("instruct/test.jsonl")).unwrap();
    refused(&[], &["no held-out samples", "spec.instruct.testFraction"]);
}

/// The book pages the author's twin learns from: five chapters of "The Rust Programming
/// Language" (the HTML every Rust toolchain's rust-docs ships).
fn book_pages() -> Vec<std::path::PathBuf> {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().expect("rustc runs");
    let book = Path::new(String::from_utf8_lossy(&sysroot.stdout).trim()).join("share/doc/rust/html/book");
    assert!(
        book.is_dir(),
        "{} is missing: install the rust-docs component (rustup component add rust-docs)",
        book.display()
    );
    let mut pages: Vec<_> = std::fs::read_dir(&book)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            ["ch04-", "ch05-", "ch06-", "ch08-", "ch09-"].iter().any(|c| name.starts_with(c))
                && name.ends_with(".html")
        })
        .collect();
    pages.sort();
    pages
}

/// The measures mean something, on real text: a twin of the Rust book (five chapters, 12 steps)
/// and a twin of Newton's Opticks (the control text; 36 steps at a higher learning rate, two
/// and a half epochs of its 64 samples), both trained on SmolLM2 by the real trainer through
/// `twin up`. Newton's twin, asked its own held-out instructions, answers more like Newton than
/// the base model does, every time (the trainer's author-likeness figures). Then both are
/// evaluated by `twin eval` on the book's held-out passages against the base model, with one
/// gate: the book's twin lowers the author's NLL more than the control's and passes; Newton's,
/// the wrong twin for the book, lowers the control's more and fails. (The book's twin, after 12
/// CPU steps, does not yet answer more like the book than the base: its figures are printed.)
#[test]
#[ignore = "run alone by scripts/test: it trains two twins for many minutes on every core, which would starve the controller tests' timing"]
fn a_twin_of_the_author_passes_a_gate_that_a_twin_of_the_control_text_fails() {
    let scratch = Scratch::new("eval-right-wrong");
    for page in book_pages() {
        std::fs::create_dir_all(scratch.0.join("book")).unwrap();
        std::fs::copy(&page, scratch.0.join("book").join(page.file_name().unwrap())).unwrap();
    }
    let control =
        std::fs::read_to_string(crate::support::repo::path("trainer/src/twin_trainer/control/opticks.txt"))
            .unwrap();
    scratch.write("newton/opticks.md", format!("# Opticks\n\n{control}"));
    let model =
        crate::support::repo::path(".cache/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let root = scratch.0.display().to_string();
    let twin = |name: &str, author: &str, source: &str, include: &str, steps: u32, rate: &str| {
        format!(
            "apiVersion: llmtwin.dev/v1alpha1\nkind: TwinDataset\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  \
             author: {{name: {author}}}\n  sources:\n  - name: {name}\n    files: {{uri: \"file://{root}/{source}\", include: [\"{include}\"]}}\n  \
             chunking: {{maxTokens: 256, overlapTokens: 32}}\n  embedding: {{model: \"file://{minilm}\", batchSize: 8}}\n  \
             instruct: {{samplesPerChunk: 2, testFraction: 0.2}}\n  output: {{uri: \"file://{root}/out\"}}\n---\n\
             apiVersion: llmtwin.dev/v1alpha1\nkind: TwinTrainingJob\nmetadata: {{name: {name}-v1, namespace: default}}\nspec:\n  \
             datasetRef: {{name: {name}}}\n  baseModel: {{uri: \"file://{model}\"}}\n  \
             sft: {{method: lora, loraRank: 16, loraAlpha: 32, learningRate: {rate}, maxSeqLength: 384, perDeviceBatchSize: 4}}\n  \
             dpo: {{enabled: false}}\n  backend: {{kubernetes: {{}}}}\n  output: {{uri: \"file://{root}/out\"}}\n  maxSteps: {steps}\n  \
             evaluation: {{questions: 8, answerTokens: 64}}\n",
            minilm = model_dir().display(),
            model = model.display(),
        )
    };
    scratch.write(
        "twins/twins.yaml",
        format!(
            "{}---\n{}",
            twin("book", "Steve Klabnik and Carol Nichols", "book", "*.html", 12, "3.0e-4"),
            twin("newton", "Isaac Newton", "newton", "*.md", 36, "1.0e-3")
        ),
    );
    let python = Command::new(crate::support::repo::path("scripts/trainer-env"))
        .output()
        .expect("scripts/trainer-env runs");
    let python = String::from_utf8_lossy(&python.stdout).trim().to_string();
    let up = Command::new(env!("CARGO_BIN_EXE_twin"))
        .args(["up", "-f"])
        .arg(scratch.0.join("twins"))
        .arg("--state-dir")
        .arg(scratch.0.join("state"))
        .args(["--models-dir", &models_dir(), "--trainer-python", &python, "--trainer-src"])
        .arg(crate::support::repo::path("trainer/src"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("twin up runs");
    assert!(up.status.success(), "{}", said(&up));
    let adapter = |job: &str| {
        let runs = scratch.0.join(format!("out/models/{job}"));
        let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
        run.join("adapter.gguf").display().to_string()
    };
    scratch.write("gate.yaml", "minimums: {authorSpecificNllReduction: 0.01}\n");
    let evaluate = |job: &str| {
        let out = scratch.0.join(format!("eval-{job}"));
        let output = twin_eval(&[
            "--dataset",
            &format!("file://{root}/out/datasets/book"),
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            &adapter(job),
            "--passages",
            "16",
            "--questions",
            "0",
            "--gate",
            scratch.0.join("gate.yaml").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        (output, evaluation(&out))
    };
    // What the trainer measured of each twin's answers, against the base's.
    let trained = |job: &str| -> Value {
        let runs = scratch.0.join(format!("out/models/{job}"));
        let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
        serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap()
    };
    for job in ["book-v1", "newton-v1"] {
        let answers = &trained(job)["evaluation"]["answers"];
        println!("{job}: win rate {} author-likeness {}", answers["winRate"], answers["authorLikeness"]);
    }
    // Newton's twin answers Newton's held-out instructions more like Newton than the base does:
    // most questions won, and the paired interval of the likeness difference above zero.
    let newton = &trained("newton-v1")["evaluation"]["answers"];
    assert_eq!(newton["questions"], 8, "{newton}");
    assert!(newton["winRate"]["value"].as_f64().unwrap() > 0.5, "{newton:#}");
    assert!(newton["authorLikeness"]["difference"]["low"].as_f64().unwrap() > 0.0, "{newton:#}");
    let (right, right_figures) = evaluate("book-v1");
    let (wrong, wrong_figures) = evaluate("newton-v1");
    println!("the book's twin:\n{}\nNewton's twin:\n{}", said(&right), said(&wrong));
    let likelihood = |figures: &Value, part: &str| {
        figures["likelihood"][part]["nll"]["difference"]["value"].as_f64().unwrap()
    };
    // The book's twin: the author's text likelier, and more so than the control.
    assert!(
        likelihood(&right_figures, "authorText") < likelihood(&right_figures, "controlText"),
        "{}",
        said(&right)
    );
    assert_eq!(right.status.code(), Some(0), "{}", said(&right));
    // Newton's twin: the control text likelier than the author's, and the gate fails.
    assert!(
        likelihood(&wrong_figures, "controlText") < likelihood(&wrong_figures, "authorText"),
        "{}",
        said(&wrong)
    );
    assert_eq!(wrong.status.code(), Some(3), "{}", said(&wrong));
    assert!(said(&wrong).contains("gate: FAILED: authorSpecificNllReduction -"), "{}", said(&wrong));
}
