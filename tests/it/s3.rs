//! Artifacts in S3, against moto's emulator on 127.0.0.1: a revision published whole (manifest
//! last), not rewritten when unchanged, an export archive read from the bucket, a folder
//! fetched whole by `twin fetch`, and a missing bucket said plainly.

use serde_json::{Value, json};
use twin_operator::pipeline::{BuildError, build};
use twin_operator::storage::fetch::{FetchArgs, Fetched, fetch as twin_fetch};
use twin_operator::storage::{ObjectStore, S3Options, StorageUri};

use super::pipeline::{Scratch, corpus, dataset, options};
use crate::support::moto::Moto;

fn s3_output(spec: &mut twin_operator::api::TwinDataset, uri: &str, moto: &Moto) {
    spec.spec.output = serde_json::from_value(json!({
        "uri": uri, "endpointUrl": moto.endpoint(), "region": "eu-west-1",
        "credentialsSecretRef": {"name": "s3-credentials"}}))
    .unwrap();
}

/// Keys under a prefix, by S3's ListObjectsV2 (moto does not check signatures).
async fn list(moto: &Moto, bucket: &str, prefix: &str) -> Vec<String> {
    let xml = reqwest::Client::new()
        .get(format!("{}/{bucket}?list-type=2&prefix={prefix}", moto.endpoint()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    xml.split("<Key>").skip(1).map(|rest| rest.split("</Key>").next().unwrap().to_string()).collect()
}

#[tokio::test]
async fn artifacts_are_published_to_s3_and_an_unchanged_revision_is_not_rewritten() {
    // The Job gets these from the Secret; the SDK's chain reads them from the environment.
    crate::support::moto::test_credentials();
    let moto = Moto::start();
    moto.create_bucket("twins").await;
    let scratch = Scratch::new("s3");
    corpus(&scratch);
    let s3 = S3Options { endpoint_url: Some(moto.endpoint()), region: Some("eu-west-1".into()) };
    // An export archive in the same bucket.
    let store =
        ObjectStore::open(&"s3://twins/exports".parse().unwrap(), scratch.0.as_path(), &s3).await.unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("notes/evals.md", zip::write::SimpleFileOptions::default()).unwrap();
    std::io::Write::write_all(&mut zip, b"# Evals\n\nI write the evaluation questions before I train anything, and I keep them in git next to the dataset spec so that every change to the data is reviewed against them.\n").unwrap();
    store.write("notes.zip", &zip.finish().unwrap().into_inner()).await.unwrap();

    let mut spec = dataset(
        &scratch,
        Some(
            json!({"name": "exported", "archive": {"uri": "s3://twins/exports/notes.zip", "format": "markdown"}}),
        ),
    );
    s3_output(&mut spec, "s3://twins/team-a", &moto);
    let result = build(&spec, &options(&scratch)).await.unwrap();
    assert!(!result.unchanged);
    let exported = result.sources.iter().find(|s| s.name == "exported").unwrap();
    assert_eq!((exported.documents, exported.error.as_deref()), (1, None));
    let root = format!("team-a/datasets/paul/{}", result.revision);
    assert_eq!(result.artifacts.root, format!("s3://twins/{root}"));
    let mut keys = list(&moto, "twins", &root).await;
    keys.sort();
    let expected: Vec<String> = [
        "chunks.jsonl",
        "documents.jsonl",
        "embeddings.safetensors",
        "instruct/test.jsonl",
        "instruct/train.jsonl",
        "manifest.json",
    ]
    .iter()
    .map(|k| format!("{root}/{k}"))
    .collect();
    assert_eq!(keys, expected);
    // What is in the bucket is what the build reported.
    let output =
        ObjectStore::open(&"s3://twins/team-a".parse::<StorageUri>().unwrap(), scratch.0.as_path(), &s3)
            .await
            .unwrap();
    let manifest: Value = serde_json::from_slice(
        &output.read(&format!("datasets/paul/{}/manifest.json", result.revision)).await.unwrap().unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["stats"]["documents"], result.stats.documents);
    let documents =
        output.read(&format!("datasets/paul/{}/documents.jsonl", result.revision)).await.unwrap().unwrap();
    assert_eq!(String::from_utf8(documents).unwrap().lines().count() as u64, result.stats.documents);
    assert!(output.read("datasets/paul/missing.json").await.unwrap().is_none());
    assert_eq!(list(&moto, "twins", "team-a/datasets/paul/cache/").await.len(), 1, "the embedding cache");

    // The same inputs: the same revision, found in the bucket, nothing rewritten.
    let again = build(&spec, &options(&scratch)).await.unwrap();
    assert_eq!((again.revision.as_str(), again.unchanged), (result.revision.as_str(), true));
    assert_eq!(again.stats, result.stats);

    // `twin fetch` (an endpoint's init container) copies a folder whole, nested keys too, then
    // a single object by its own name; a prefix with nothing under it copies nothing.
    let fetch = |source: String, into: &str| FetchArgs {
        source,
        destination: scratch.0.join(into),
        pvc_root: scratch.0.clone(),
        s3_endpoint_url: Some(moto.endpoint()),
        s3_region: Some("eu-west-1".into()),
    };
    let revision = fetch(result.artifacts.root.clone(), "fetched/revision");
    assert_eq!(twin_fetch(&revision).await.unwrap(), Fetched::Copied(6));
    let copied = std::fs::read(scratch.0.join("fetched/revision/instruct/train.jsonl")).unwrap();
    let stored =
        output.read(&format!("datasets/paul/{}/instruct/train.jsonl", result.revision)).await.unwrap();
    assert_eq!(Some(copied), stored);
    assert_eq!(twin_fetch(&revision).await.unwrap(), Fetched::AlreadyThere);
    let one = fetch(format!("{}/manifest.json", result.artifacts.root), "fetched/one");
    assert_eq!(twin_fetch(&one).await.unwrap(), Fetched::Copied(1));
    assert!(scratch.0.join("fetched/one/manifest.json").is_file());
    let none = fetch("s3://twins/team-a/no-such-adapter".into(), "fetched/none");
    let error = twin_fetch(&none).await.unwrap_err().to_string();
    assert!(error.contains("nothing to fetch at s3://twins/team-a/no-such-adapter"), "{error}");
    assert!(!scratch.0.join("fetched/none").exists());

    // A bucket that does not exist: a storage failure that names it.
    let mut missing = dataset(&scratch, None);
    s3_output(&mut missing, "s3://no-such-bucket/x", &moto);
    let error = build(&missing, &options(&scratch)).await.unwrap_err();
    assert!(matches!(error, BuildError::Storage(_)), "{error}");
    assert!(
        error.to_string().contains("NoSuchBucket") && error.to_string().contains("s3://no-such-bucket/x/"),
        "{error}"
    );
}
