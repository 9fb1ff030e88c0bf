//! The sagemaker training backend. Each run is one SageMaker training job: its name goes into
//! the status first, then the job is created once under that deterministic name (a restarted
//! operator describes it instead of creating a second), described with backoff while it runs,
//! and its state mirrored into the status. Deleting the TwinTrainingJob stops it (cleanup).

pub mod cleanup;
pub mod client;
pub mod observe;
pub mod request;
pub mod wire;

use std::time::Duration;

use kube::ResourceExt;

use super::validate::ValidRun;
use crate::api::TwinTrainingJob;
use crate::api::training::{BackendKind, SageMakerBackend, TrainingPhase, TwinTrainingJobStatus};
use crate::operator::conditions::Assessment;
use crate::operator::context::Context;
use crate::operator::driver::{Verdict, publish_status};
use crate::operator::error::{Error, Result};
use client::{Refusal, create_training_job, describe_training_job};

/// How long a refused or over-quota run waits before asking SageMaker again.
const REFUSED_RECHECK: Duration = Duration::from_secs(600);
const QUOTA_RECHECK: Duration = Duration::from_secs(300);

/// The status of a run SageMaker would not start or describe: over quota (it may free up), or
/// refused (the role, the image, a permission), in SageMaker's words.
fn refused(phase: TrainingPhase, op: &str, refusal: Refusal) -> Verdict<TrainingPhase> {
    let (reason, message, recheck) = match refusal {
        Refusal::Quota(said) => (
            "SageMakerQuotaExceeded",
            format!("SageMaker {op} refused for the account's quota, retrying: {said}"),
            QUOTA_RECHECK,
        ),
        Refusal::Rejected(said) => {
            ("SageMakerRejected", format!("SageMaker {op} refused: {said}"), REFUSED_RECHECK)
        }
    };
    Verdict { assessment: Assessment::not_ready(phase, reason, message), recheck: Some(recheck) }
}

/// Runs a valid run as a SageMaker training job (trained with `image`) and mirrors it into
/// the status. When SageMaker cannot be reached (or throttles beyond the SDK's retries), the
/// status says so before the error is retried with the controller's backoff.
pub async fn train(
    ctx: &Context,
    job: &TwinTrainingJob,
    valid: &ValidRun<'_>,
    backend: &SageMakerBackend,
    image: &str,
    mut status: TwinTrainingJobStatus,
) -> Result<(Verdict<TrainingPhase>, TwinTrainingJobStatus)> {
    status.dataset_revision = Some(valid.run.revision.clone());
    match run_training_job(ctx, job, valid, backend, image, &mut status).await {
        Ok(verdict) => Ok((verdict, status)),
        Err(error @ Error::SageMaker { .. }) => {
            let phase = job.status.as_ref().and_then(|s| s.phase).unwrap_or(TrainingPhase::Pending);
            let assessment =
                Assessment::not_ready(phase, "SageMakerUnavailable", format!("{error}; retrying"));
            publish_status(ctx, job, &assessment, status).await?;
            Err(error)
        }
        Err(error) => Err(error),
    }
}

async fn run_training_job(
    ctx: &Context,
    job: &TwinTrainingJob,
    valid: &ValidRun<'_>,
    backend: &SageMakerBackend,
    image: &str,
    status: &mut TwinTrainingJobStatus,
) -> Result<Verdict<TrainingPhase>> {
    let namespace = job.namespace().ok_or(Error::Unidentified("namespace"))?;
    let (run, revision, output) = (&valid.run, &valid.run.revision, &valid.places.output);
    let request = request::training_job_request(job, backend, valid, image);
    let client = match ctx.sagemaker.client(ctx, &namespace, backend).await? {
        Ok(client) => client,
        Err(unusable) => {
            let assessment = Assessment::not_ready(TrainingPhase::Pending, unusable.reason, unusable.message);
            return Ok(Verdict { assessment, recheck: Some(Duration::from_secs(60)) });
        }
    };
    let name = request.name.as_str();
    // The name is recorded before the job exists, so that a deletion in between still finds
    // (and stops) it.
    let recorded = status.backend.as_ref().and_then(|b| b.job_name.as_deref()) == Some(name);
    if !recorded {
        let creating = super::status::new_run(job, run, name, BackendKind::Sagemaker);
        let assessment = Assessment::not_ready(
            TrainingPhase::Pending,
            "CreatingTrainingJob",
            format!("dataset revision {revision} is pinned; creating SageMaker training job {name}"),
        );
        publish_status(ctx, job, &assessment, creating.clone()).await?;
        *status = creating;
    }
    let phase = status.phase.unwrap_or(TrainingPhase::Pending);
    let floor = Duration::from_secs(ctx.settings.sagemaker_poll_seconds);
    let described = match describe_training_job(&client, name).await? {
        Ok(Some(described)) => described,
        Ok(None) => {
            if let Err(refusal) = create_training_job(&client, &request).await? {
                return Ok(refused(TrainingPhase::Pending, "CreateTrainingJob", refusal));
            }
            match describe_training_job(&client, name).await? {
                Ok(Some(described)) => described,
                // Created but not yet visible to reads: looked at again shortly.
                Ok(None) => {
                    let assessment = Assessment::not_ready(
                        TrainingPhase::Pending,
                        "CreatingTrainingJob",
                        format!("SageMaker training job {name} was created"),
                    );
                    return Ok(Verdict { assessment, recheck: Some(floor) });
                }
                Err(refusal) => return Ok(refused(phase, "DescribeTrainingJob", refusal)),
            }
        }
        Err(refusal) => return Ok(refused(phase, "DescribeTrainingJob", refusal)),
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let (verdict, observed) =
        observe::from_training_job(job, run, output, name, &(&described).into(), now, floor);
    *status = observed;
    Ok(verdict)
}
