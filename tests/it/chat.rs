//! Chatting with a twin: `twin chat` in a terminal (one question, a conversation read from
//! standard input, an endpoint that is down or wants a key) and the gateway's chat page in a
//! real headless Chromium driven over WebDriver (a question typed, the answer streamed in, its
//! sources listed).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::gateway::{POSTS, models_dir, openai, publish};
use super::pipeline::Scratch;
use crate::support::browser::{Browser, chromedriver};
use crate::support::gateway::{Gateway, Upstream, client};

/// A gateway over a real dataset of Paul's posts, answering through the scripted upstream
/// ("Hello from upstream").
async fn gateway(scratch: &Scratch, upstream: &Upstream, more: &[&str]) -> Gateway {
    let dataset = publish(scratch, &POSTS).await;
    let base = upstream.start().await;
    let models = models_dir();
    let extra =
        [&["--dataset", dataset.as_str(), "--models-dir", models.as_str(), "--name", "paul"][..], more]
            .concat();
    let gateway = Gateway::start(&openai(&base, &extra));
    gateway.wait_ready();
    gateway
}

/// Runs `twin chat` with `args`, `stdin` as its input.
fn twin_chat(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twin"))
        .arg("chat")
        .args(args)
        .env_remove("TWIN_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("twin chat starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The titles of Paul's posts (each post's first heading).
fn titles() -> Vec<&'static str> {
    POSTS.iter().map(|(_, text)| text.lines().next().unwrap().trim_start_matches("# ")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn twin_chat_streams_the_answer_and_lists_its_sources() {
    let scratch = Scratch::new("chat-terminal");
    let upstream = Upstream::default();
    let gateway = gateway(&scratch, &upstream, &[]).await;

    let output = twin_chat(&[&gateway.url, "--question", "What happens when a reconcile fails?"], "");
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", text(&output.stderr));
    assert!(stdout.starts_with("Hello from upstream\n"), "{stdout}");
    let after = stdout.split("\nSources:\n").nth(1).expect("a sources section");
    let sources: Vec<&str> = after.lines().take_while(|line| line.starts_with("  ")).collect();
    // Then what answered: the gateway's lineage.
    let answered = after.lines().nth(sources.len()).unwrap_or_default();
    assert!(
        answered.starts_with("Answered by: ") && answered.contains(", passages from dataset paul revision "),
        "{stdout}"
    );
    assert!(!sources.is_empty(), "{stdout}");
    assert!(sources[0].starts_with("  1. "), "{stdout}");
    assert!(
        sources.iter().any(|line| titles().iter().any(|title| line.contains(title))),
        "the sources name Paul's posts: {stdout}"
    );
    assert!(sources.iter().all(|line| line.contains(", score ")), "{stdout}");

    // A conversation from standard input: the second question goes with the first turn.
    let output =
        twin_chat(&[&gateway.url], "What happens when a reconcile fails?\n\nAnd after five minutes?\n");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).matches("Hello from upstream").count(), 2);
    let sent = upstream.last();
    let roles: Vec<&str> =
        sent["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"], "{sent}");
    assert_eq!(sent["messages"][2]["content"], "Hello from upstream");
    assert_eq!(sent["messages"][3]["content"], "And after five minutes?");
}

#[tokio::test(flavor = "multi_thread")]
async fn twin_chat_says_why_it_cannot_chat() {
    // Nothing listens on port 9.
    let output = twin_chat(&["http://127.0.0.1:9", "--question", "hi"], "");
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("error: cannot reach http://127.0.0.1:9/v1: "), "{stderr}");

    let output = twin_chat(&["127.0.0.1:9", "-q", "hi"], "");
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("is not a URL"), "{}", text(&output.stderr));

    let scratch = Scratch::new("chat-key");
    scratch.write("key", "s3cret-key\n");
    let key_file = scratch.0.join("key").display().to_string();
    let upstream = Upstream::default();
    let gateway = gateway(&scratch, &upstream, &["--api-key-file", &key_file]).await;
    let output = twin_chat(&[&gateway.url, "-q", "hi"], "");
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("401 Unauthorized") && stderr.contains("--api-key or TWIN_API_KEY"), "{stderr}");
    let output = twin_chat(&[&gateway.url, "-q", "hi", "--api-key", "s3cret-key"], "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("Hello from upstream"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chat_page_streams_an_answer_and_shows_its_sources_in_a_browser() {
    let Some(driver) = chromedriver() else {
        panic!(
            "Chromium's WebDriver is missing: install Debian's chromium and chromium-driver (.ci/run does)"
        );
    };
    let scratch = Scratch::new("chat-page");
    let upstream = Upstream::default();
    let gateway = gateway(&scratch, &upstream, &[]).await;
    // The page is served with a policy that lets it load and call only this gateway.
    let page = client().get(format!("{}/", gateway.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"), "{policy}");

    let (browser, session) = Browser::start(&driver).await;
    let at = |path: &str| format!("/session/{session}{path}");
    browser.call("POST", &at("/url"), Some(json!({"url": format!("{}/", gateway.url)}))).await;
    let find = |css: &'static str| {
        let browser = &browser;
        let path = at("/element");
        async move {
            let found =
                browser.call("POST", &path, Some(json!({"using": "css selector", "value": css}))).await;
            found.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string()
        }
    };
    // The title names the twin, from /v1/models.
    let started = Instant::now();
    loop {
        let title = browser.call("GET", &at("/title"), None).await;
        if title.as_str().unwrap().starts_with("paul") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the page title stayed {title}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let question = find("#question").await;
    browser
        .call(
            "POST",
            &at(&format!("/element/{question}/value")),
            Some(json!({"text": "What happens when a reconcile fails?"})),
        )
        .await;
    let send = find("#send").await;
    browser.call("POST", &at(&format!("/element/{send}/click")), None).await;

    // The answer is written in, then its sources listed.
    let script = "const a = document.querySelector('.answer'); const s = [...document.querySelectorAll('.sources li')]; \
                  return {answer: a ? a.textContent : null, writing: a ? a.classList.contains('writing') : null, \
                  sources: s.map(li => li.textContent), alert: document.getElementById('error').textContent};";
    let started = Instant::now();
    let shown = loop {
        let shown =
            browser.call("POST", &at("/execute/sync"), Some(json!({"script": script, "args": []}))).await;
        if shown["writing"] == false && shown["sources"].as_array().is_some_and(|s| !s.is_empty()) {
            break shown;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no answer with sources on the page: {shown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shown["answer"], "Hello from upstream", "{shown}");
    assert_eq!(shown["alert"], "", "{shown}");
    let sources: Vec<&str> =
        shown["sources"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(sources.iter().any(|s| titles().iter().any(|t| s.contains(t))), "{sources:?}");
    assert!(sources.iter().all(|s| s.contains("score ")), "{sources:?}");
    // It was a streamed request with the question.
    let sent = upstream.last();
    assert_eq!(sent["stream"], true);
    assert!(
        sent["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["content"] == "What happens when a reconcile fails?")
    );
    browser.call("DELETE", &format!("/session/{session}"), None).await;
}
