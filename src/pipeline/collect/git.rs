//! Git repositories: a shallow bare clone (gitoxide, over HTTP(S) through the crawlers'
//! guarded resolver) of one ref, then the files of that commit's tree read straight from the object
//! database, filtered by include/exclude globs, binaries and vendored folders left out.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use gix::protocol::transport::client::blocking_io::http;
use reqwest::Url;

use super::CollectOptions;
use super::files::{document_from_file, glob_set};
use crate::api::dataset::GitSource;
use crate::contract::env;
use crate::net::http::{Fetcher, GuardedResolver};
use crate::pipeline::document::Document;

/// Folders of third-party code, never the author's writing.
const VENDORED: &[&str] =
    &["vendor", "vendored", "node_modules", "third_party", "third-party", "bower_components", ".git"];

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(source: &str) -> Result<Self, String> {
        let unique = format!(
            "twin-git-{}-{}-{}",
            std::process::id(),
            source.chars().filter(char::is_ascii_alphanumeric).collect::<String>(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Refuses a clone URL whose host the guard refuses (ssh too, which does not go through the
/// HTTP client's resolver).
async fn check_host(url: &str, fetcher: &Fetcher) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("invalid clone URL {url:?}: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| format!("{url} names no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(22);
    let guard = &fetcher.options().guard;
    let addresses: Vec<_> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    for address in &addresses {
        guard.check(address.ip()).map_err(|r| format!("{url}: {r}"))?;
    }
    Ok(())
}

/// One file of the commit.
struct GitFile {
    path: String,
    bytes: Vec<u8>,
}

/// Clones `spec.ref` bare into `dir` and returns the files the globs select, with the commit.
fn clone_and_read(
    spec: &GitSource,
    dir: PathBuf,
    token: Option<String>,
    fetcher: &Fetcher,
    options: &CollectOptions,
) -> Result<(String, Vec<GitFile>, Vec<String>), String> {
    let include = glob_set(&spec.include)?;
    let exclude = glob_set(&spec.exclude)?;
    let fetch_options = fetcher.options().clone();
    let mut prepare = gix::clone::PrepareFetch::new(
        spec.url.as_str(),
        &dir,
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        gix::open::Options::isolated(),
    )
    .map_err(|e| format!("cannot clone {}: {e}", spec.url))?;
    let is_object_id = spec.r#ref.len() == 40 && spec.r#ref.chars().all(|c| c.is_ascii_hexdigit());
    prepare = if spec.r#ref == "HEAD" {
        prepare
    } else if is_object_id || spec.r#ref.starts_with("refs/") {
        prepare
            .with_revision(Some(spec.r#ref.as_str()))
            .map_err(|e| format!("bad ref {:?}: {e}", spec.r#ref))?
    } else {
        prepare
            .with_ref_name(Some(spec.r#ref.as_str()))
            .map_err(|e| format!("bad ref {:?}: {e}", spec.r#ref))?
    };
    // Only the commit itself: history is not read.
    prepare = prepare.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(std::num::NonZeroU32::MIN));
    prepare = prepare.configure_connection(move |connection| {
        let guard = fetch_options.guard.clone();
        let user_agent = fetch_options.user_agent.clone();
        let timeout = fetch_options.timeout;
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(move |builder| {
                Ok(builder
                    .dns_resolver(Arc::new(GuardedResolver { guard: guard.clone() }))
                    .user_agent(user_agent.clone())
                    .connect_timeout(timeout)
                    .no_proxy())
            })),
            configure_request: None,
        };
        let backend: Arc<Mutex<dyn std::any::Any + Send + Sync>> = Arc::new(Mutex::new(backend));
        let transport = http::Options {
            backend: Some(backend),
            user_agent: Some(fetch_options.user_agent.clone()),
            connect_timeout: Some(timeout),
            ..Default::default()
        };
        connection.set_transport_options(Box::new(transport));
        if let Some(token) = token.clone() {
            connection.set_credentials(move |action| match action {
                gix::credentials::helper::Action::Get(context) => {
                    Ok(Some(gix::credentials::protocol::Outcome {
                        identity: gix::sec::identity::Account {
                            username: "x-access-token".into(),
                            password: token.clone(),
                            oauth_refresh_token: None,
                        },
                        next: context.into(),
                    }))
                }
                _ => Ok(None),
            });
        }
        Ok(())
    });
    let interrupt = AtomicBool::new(false);
    let (repo, _) = prepare
        .fetch_only(gix::progress::Discard, &interrupt)
        .map_err(|e| format!("cannot clone {} at {}: {e}", spec.url, spec.r#ref))?;
    let commit = repo.head_commit().map_err(|e| format!("{}: no commit at {}: {e}", spec.url, spec.r#ref))?;
    let commit_id = commit.id.to_string();
    let tree = commit.tree().map_err(|e| format!("{}: cannot read the tree: {e}", spec.url))?;
    let entries =
        tree.traverse().breadthfirst.files().map_err(|e| format!("{}: cannot list files: {e}", spec.url))?;
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut budget = options.archive.max_uncompressed_bytes;
    for entry in entries {
        if !entry.mode.is_blob() {
            continue;
        }
        let path = entry.filepath.to_string();
        if path.split('/').rev().skip(1).any(|folder| VENDORED.contains(&folder)) {
            continue;
        }
        if !include.is_match(&path) || exclude.is_match(&path) {
            continue;
        }
        let header = repo.find_header(entry.oid).map_err(|e| format!("{}: {path}: {e}", spec.url))?;
        if header.size() > options.max_document_bytes {
            skipped.push(format!("{path} is larger than {} bytes", options.max_document_bytes));
            continue;
        }
        if header.size() > budget {
            return Err(format!(
                "{}: the selected files exceed {} bytes in all",
                spec.url, options.archive.max_uncompressed_bytes
            ));
        }
        budget -= header.size();
        let blob = repo.find_object(entry.oid).map_err(|e| format!("{}: {path}: {e}", spec.url))?;
        files.push(GitFile { path, bytes: blob.data.clone() });
    }
    Ok((commit_id, files, skipped))
}

/// A `git` source.
pub async fn collect_git(
    source: &str,
    spec: &GitSource,
    options: &CollectOptions,
    fetcher: &Fetcher,
) -> Result<Vec<Document>, String> {
    check_host(&spec.url, fetcher).await?;
    let token = std::env::var(env::git_token(source)).ok().filter(|t| !t.is_empty());
    if spec.token_secret_ref.is_some() && token.is_none() {
        return Err(format!("the token of {source} is not in {}", env::git_token(source)));
    }
    let dir = TempDir::new(source)?;
    let (spec_owned, options_owned, fetcher_owned) = (spec.clone(), options.clone(), fetcher.clone());
    let path = dir.0.join("repo.git");
    let (commit, files, mut skipped) = tokio::task::spawn_blocking(move || {
        clone_and_read(&spec_owned, path, token, &fetcher_owned, &options_owned)
    })
    .await
    .map_err(|e| format!("the clone of {} stopped: {e}", spec.url))??;
    drop(dir);
    let mut documents = Vec::new();
    let base = spec.url.trim_end_matches('/').trim_end_matches(".git");
    for file in files {
        let location = format!("{base}/blob/{}/{}", spec.r#ref, file.path);
        match document_from_file(source, "git", &location, &file.path, &file.bytes) {
            Ok(Some(document)) => documents.push(document),
            Ok(None) => {}
            Err(error) => skipped.push(error),
        }
    }
    for reason in &skipped {
        tracing::warn!(source, "git file skipped: {reason}");
    }
    tracing::info!(source, commit, documents = documents.len(), "git repository read");
    Ok(documents)
}
