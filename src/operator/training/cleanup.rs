//! What a deleted TwinTrainingJob leaves behind outside the cluster. Its Kubernetes children
//! go by owner reference; a SageMaker training job does not, so the finalizer holds the
//! object until this step has seen to it.

use std::sync::Arc;

use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use tracing::{info, warn};

use crate::api::TwinTrainingJob;
use crate::operator::context::Context;
use crate::operator::driver::object_key;
use crate::operator::error::Result;

/// Sees to the SageMaker job a deleted training job started. This release starts none (the
/// SageMaker backend ships with the trainer), so a job recorded in the status was started by
/// something else: it is named in a Warning Event, with how to stop it, rather than holding the
/// deletion forever.
pub async fn stop_outside_work(job: Arc<TwinTrainingJob>, ctx: Arc<Context>) -> Result<Action> {
    let recorded =
        job.status.as_ref().and_then(|s| s.backend.as_ref()).and_then(|b| b.training_job_arn.clone());
    let Some(arn) = recorded else {
        info!(object = %object_key(&*job), "no SageMaker job was started; releasing the finalizer");
        return Ok(Action::await_change());
    };
    let name = arn.rsplit('/').next().unwrap_or(&arn).to_string();
    let event = Event {
        type_: EventType::Warning,
        reason: "SageMakerJobNotStopped".into(),
        note: Some(format!(
            "SageMaker training job {arn} may still run: stop it with `aws sagemaker stop-training-job --training-job-name {name}`"
        )),
        action: "Cleanup".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        warn!(object = %object_key(&*job), "could not publish an Event: {error}");
    }
    Ok(Action::await_change())
}
