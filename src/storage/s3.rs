//! An S3 bucket (or an S3-compatible store: MinIO, Ceph, moto) as an object store, through the
//! AWS SDK. Credentials come from the usual AWS chain: environment variables (which a Secret
//! given as `credentialsSecretRef` sets), web identity (IRSA), EKS Pod Identity, the instance
//! profile. Each object is written by one PUT, which S3 makes visible whole or not at all.

use aws_config::Region;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;

use super::StorageError;
use crate::aws::{self, describe};

/// Where and how to reach S3.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// An S3-compatible endpoint; unset means AWS S3 (or `AWS_ENDPOINT_URL_S3`).
    pub endpoint_url: Option<String>,
    /// The bucket's region; unset means the AWS configuration chain's.
    pub region: Option<String>,
}

/// A bucket and a key prefix.
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// A store for `s3://bucket/prefix`.
    pub async fn new(bucket: &str, prefix: &str, options: &S3Options) -> Self {
        let shared = aws::sdk_config(options.region.as_deref(), None).await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if shared.region().is_none() {
            // S3 needs a region to sign; us-east-1 reaches any bucket through redirects.
            config = config.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &options.endpoint_url {
            // Compatible stores rarely serve virtual-hosted buckets.
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        Self { client: Client::from_conf(config.build()), bucket: bucket.into(), prefix: prefix.into() }
    }

    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) }
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(key))
    }

    /// The object at a key, `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<GetObjectOutput>, StorageError> {
        match self.client.get_object().bucket(&self.bucket).key(self.key(key)).send().await {
            Ok(output) => Ok(Some(output)),
            Err(SdkError::ServiceError(service)) if service.err().is_no_such_key() => Ok(None),
            Err(error) => {
                Err(StorageError::Remote { op: "read", uri: self.uri(key), reason: describe(&error) })
            }
        }
    }

    /// Reads a key, `None` when absent.
    pub async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(output) = self.get(key).await? else { return Ok(None) };
        let bytes = output.body.collect().await.map_err(|e| StorageError::Remote {
            op: "read",
            uri: self.uri(key),
            reason: e.to_string(),
        })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    /// Writes a key with one PUT.
    pub async fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| StorageError::Remote { op: "write", uri: self.uri(key), reason: describe(&e) })?;
        Ok(())
    }

    /// The keys below `sub` (relative to `sub`), every page of the listing.
    pub async fn list(&self, sub: &str) -> Result<Vec<String>, StorageError> {
        let base = format!("{}/", self.key(sub).trim_end_matches('/'));
        let mut keys = Vec::new();
        let mut pages =
            self.client.list_objects_v2().bucket(&self.bucket).prefix(&base).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StorageError::Remote {
                op: "list",
                uri: self.uri(sub),
                reason: describe(&e),
            })?;
            for object in page.contents() {
                if let Some(relative) = object.key().and_then(|k| k.strip_prefix(&base))
                    && !relative.is_empty()
                    && !relative.ends_with('/')
                {
                    keys.push(relative.to_string());
                }
            }
        }
        Ok(keys)
    }

    /// Streams an object into a file; `false` when there is no such object.
    pub async fn download_to(&self, key: &str, path: &std::path::Path) -> Result<bool, StorageError> {
        use tokio::io::AsyncWriteExt;

        let Some(mut output) = self.get(key).await? else { return Ok(false) };
        let io = |op, source| StorageError::Io { op, path: path.display().to_string(), source };
        let mut file = tokio::fs::File::create(path).await.map_err(|e| io("create", e))?;
        while let Some(bytes) = output.body.try_next().await.map_err(|e| StorageError::Remote {
            op: "read",
            uri: self.uri(key),
            reason: e.to_string(),
        })? {
            file.write_all(&bytes).await.map_err(|e| io("write", e))?;
        }
        file.sync_all().await.map_err(|e| io("sync", e))?;
        Ok(true)
    }
}
