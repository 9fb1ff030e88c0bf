//! What a deleted TwinTrainingJob leaves running on SageMaker. Its Kubernetes children go by
//! owner reference; a SageMaker training job does not, so the finalizer holds the object until
//! the job the status names has stopped (or finished, or never existed).

use std::time::Duration;

use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::client::{Refusal, describe_training_job, stop_training_job};
use super::wire::TrainingJobStatus;
use crate::api::TwinTrainingJob;
use crate::api::training::BackendKind;
use crate::operator::context::Context;
use crate::operator::driver::object_key;
use crate::operator::error::{Error, Result};

/// How often a stopping job is described again.
const STOPPING_RECHECK: Duration = Duration::from_secs(10);

async fn event(ctx: &Context, job: &TwinTrainingJob, type_: EventType, reason: &str, note: String) {
    let event =
        Event { type_, reason: reason.into(), note: Some(note), action: "Cleanup".into(), secondary: None };
    if let Err(error) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        warn!(object = %object_key(job), "could not publish an Event: {error}");
    }
}

/// Stops the training job of a deleted TwinTrainingJob. `Some(wait)` while it is still
/// stopping (the finalizer stays); `None` once nothing runs any more.
pub async fn stop_outside_work(job: &TwinTrainingJob, ctx: &Context) -> Result<Option<Duration>> {
    let recorded =
        job.status.as_ref().and_then(|s| s.backend.as_ref()).filter(|b| b.kind == BackendKind::Sagemaker);
    let (Some(name), Some(backend)) =
        (recorded.and_then(|b| b.job_name.clone()), job.spec.backend.sagemaker.as_ref())
    else {
        info!(object = %object_key(job), "no SageMaker training job was started; releasing the finalizer");
        return Ok(None);
    };
    let namespace = job.namespace().ok_or(Error::Unidentified("namespace"))?;
    let stop_by_hand = format!("stop it with `aws sagemaker stop-training-job --training-job-name {name}`");
    let client = match ctx.sagemaker.client(ctx, &namespace, backend).await? {
        Ok(client) => client,
        Err(unusable) => {
            // Without credentials the job cannot be reached: say so rather than hold the
            // deletion forever.
            let note =
                format!("SageMaker training job {name} may still run ({}); {stop_by_hand}", unusable.message);
            event(ctx, job, EventType::Warning, "TrainingJobNotStopped", note).await;
            return Ok(None);
        }
    };
    let described = match describe_training_job(&client, &name).await? {
        Ok(described) => described,
        Err(refusal) => {
            let said = match refusal {
                Refusal::Quota(said) | Refusal::Rejected(said) => said,
            };
            let note =
                format!("SageMaker training job {name} could not be described ({said}); {stop_by_hand}");
            event(ctx, job, EventType::Warning, "TrainingJobNotStopped", note).await;
            return Ok(None);
        }
    };
    let state = described.as_ref().and_then(|d| d.training_job_status.clone());
    match state {
        Some(TrainingJobStatus::InProgress) => {
            if let Err(Refusal::Quota(said) | Refusal::Rejected(said)) =
                stop_training_job(&client, &name).await?
            {
                let note = format!("SageMaker refused to stop training job {name} ({said}); {stop_by_hand}");
                event(ctx, job, EventType::Warning, "TrainingJobNotStopped", note).await;
                return Ok(None);
            }
            let note = format!("stopping SageMaker training job {name}; the object goes once it has stopped");
            event(ctx, job, EventType::Normal, "StoppingTrainingJob", note).await;
            Ok(Some(STOPPING_RECHECK))
        }
        Some(TrainingJobStatus::Stopping) => Ok(Some(STOPPING_RECHECK)),
        _ => {
            info!(object = %object_key(job), training_job = %name, state = ?state, "the SageMaker training job is not running; releasing the finalizer");
            Ok(None)
        }
    }
}
