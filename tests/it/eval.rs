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
