//! What only the real control plane's own controllers show (tests/support/scene.rs): a build
//! Job run by the real Job controller on a kwok node, the real garbage collector's foreground
//! deletion of a dataset's children, and a trainer placed by the real scheduler (GPUs, taints,
//! node selectors). The operator runs as the chart's ServiceAccount, so any verb the chart does
//! not grant fails these tests; tests/it/operator.rs, training.rs, endpoint.rs and sagemaker.rs
//! run the rest of the controllers' tests on the same control plane.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::DeleteParams;
use twin_operator::api::{TwinDataset, TwinTrainingJob};

use crate::support::control_plane::end_pod;
use crate::support::scene::{Scene, eventually};

#[tokio::test]
async fn a_build_job_completing_on_a_kwok_node_makes_the_dataset_ready_and_deletion_collects_its_children() {
    let scene = Scene::new("dataset").await;
    let operator = scene.operator("replica-a").await;
    scene.apply_example("twindataset.yaml", |_| {}).await;
    let pod = scene.running_pod_of_job("paul-build-1").await;
    assert!(pod.spec.as_ref().unwrap().node_name.as_deref().unwrap().starts_with("kwok-"));
    let ready = scene.publish_build("paul", "paul-build-1", "rev-1").await;
    assert_eq!(ready["status"]["revision"], "rev-1");
    assert_eq!(ready["status"]["stats"]["documents"], 12);
    // The real Job controller saw the pod succeed and completed the Job.
    let job = scene.get::<Job>("paul-build-1").await.unwrap();
    assert_eq!(job["status"]["succeeded"], 1);
    assert!(!scene.list::<CronJob>().await.is_empty(), "the schedule's CronJob");

    // Foreground deletion: the dataset stays until the garbage collector has removed every
    // child (and the operator must not recreate them meanwhile), then it goes.
    scene.api::<TwinDataset>().delete("paul", &DeleteParams::foreground()).await.unwrap();
    eventually("the garbage collector to remove the dataset and its children", || async {
        let gone = scene.get::<TwinDataset>("paul").await.is_none()
            && scene.list::<Job>().await.is_empty()
            && scene.list::<CronJob>().await.is_empty()
            && scene.list::<Pod>().await.is_empty();
        gone.then_some(())
    })
    .await;
    operator.shutdown().await;
}

#[tokio::test]
async fn a_gpu_trainer_waits_unschedulable_until_a_node_with_gpus_exists_and_an_oom_is_reported() {
    let scene = Scene::new("training").await;
    let operator = scene.operator("replica-a").await;
    scene.apply_example("twindataset.yaml", |_| {}).await;
    scene.publish_build("paul", "paul-build-1", "rev-1").await;
    // The example asks for one GPU on an L4 node; there is none in this scene's pool yet.
    scene.apply_example("twintrainingjob.yaml", |_| {}).await;
    let pending = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Pending", "TrainerUnschedulable").await;
    let message = crate::operator::ready_message(&pending);
    assert!(message.contains("0/") && message.contains("nodes are available"), "{message}");
    // An L4 node without GPUs does not do: the scheduler now says what is missing.
    scene.gpu_node("kwok-l4-empty", 0).await;
    let insufficient = eventually("the scheduler to name the missing GPUs", || async {
        let message = crate::operator::ready_message(&scene.get::<TwinTrainingJob>("paul-v1").await?);
        message.contains("Insufficient nvidia.com/gpu").then_some(message)
    })
    .await;
    assert!(insufficient.contains("cannot be scheduled"), "{insufficient}");
    // One with GPUs does, and the trainer runs there.
    let gpu_node = scene.gpu_node("kwok-l4", 2).await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    let pod = scene.running_pod_of_job("paul-v1-train-g1-rev1").await;
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some(gpu_node.as_str()));

    // The trainer dies of CUDA OOM without writing its result (FallbackToLogsOnError leaves the
    // log tail as the message): exit code 1 fails the Job at once (its pod failure policy), and
    // the run fails with the reason and the tail.
    let log_tail = "Traceback (most recent call last):\n  File \"/app/trainer/sft.py\", line 88, in train\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB";
    end_pod(&scene.client, &scene.namespace, &pod.name_any(), 1, None, log_tail).await;
    let failed = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Failed", "OutOfMemory").await;
    let message = crate::operator::ready_message(&failed);
    assert!(
        message.contains("ran out of memory")
            && message.contains("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "{message}"
    );
    operator.shutdown().await;
}
