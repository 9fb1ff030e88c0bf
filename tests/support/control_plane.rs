//! A real Kubernetes control plane for the tests: `scripts/control-plane up` (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and kwok's nodes), started once per
//! test binary run, with the chart installed by `helm install` as a user would. Each test takes
//! a namespace of its own and runs its operator as the chart's ServiceAccount, so a verb the
//! chart does not grant fails the test. The control plane goes when the test binary exits: the
//! script's watchdog follows this process's pid, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use twin_operator::operator::OperatorSettings;

use super::repo;

/// The chart's release: its name, namespace and ServiceAccount.
pub const RELEASE: &str = "twin-operator";
pub const RELEASE_NAMESPACE: &str = "twin-system";

/// A running control plane with the chart installed.
pub struct ControlPlane {
    /// Where its state, logs and kubeconfigs are (removed when it stops).
    pub dir: PathBuf,
    /// An admin's kubeconfig (system:masters).
    pub admin_kubeconfig: PathBuf,
    /// A kubeconfig with a token of the chart's ServiceAccount: what the operator runs as.
    pub operator_kubeconfig: PathBuf,
    /// What `helm install` printed.
    pub helm_install_output: String,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();

/// The test binary's control plane, started by the first test that asks (the others wait).
pub fn shared() -> &'static ControlPlane {
    SHARED.get_or_init(ControlPlane::start)
}

fn run(what: &str, command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl ControlPlane {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("twin-control-plane-{}", std::process::id()));
        let up = run(
            "scripts/control-plane up",
            Command::new(repo::path("scripts/control-plane"))
                .args(["up", "--dir"])
                .arg(&dir)
                .args(["--owner-pid", &std::process::id().to_string()]),
        );
        let stdout = String::from_utf8_lossy(&up.stdout);
        let admin_kubeconfig = PathBuf::from(
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("export KUBECONFIG="))
                .unwrap_or_else(|| panic!("scripts/control-plane up printed no KUBECONFIG: {stdout}")),
        );
        let mut plane = Self {
            dir: dir.clone(),
            admin_kubeconfig,
            operator_kubeconfig: dir.join("operator.kubeconfig"),
            helm_install_output: String::new(),
        };
        // The chart as a user installs it: its CRDs, RBAC, ServiceAccount and Deployment (which
        // the Deployment controller rolls out onto a kwok node; --wait waits for it).
        let helm = run(
            "helm install",
            plane
                .helm()
                .args(["install", RELEASE, "charts/twin-operator", "--namespace", RELEASE_NAMESPACE])
                .args(["--create-namespace", "--wait", "--timeout", "120s"]),
        );
        plane.helm_install_output = String::from_utf8_lossy(&helm.stdout).into_owned();
        // The Prometheus Operator's and KEDA's kinds, which endpoints create when asked.
        run(
            "kubectl apply of the third-party CRDs",
            plane.kubectl().args(["apply", "-f", "tests/fixtures/crds/third-party.yaml"]),
        );
        run(
            "kubectl wait for the third-party CRDs",
            plane
                .kubectl()
                .args(["wait", "--for=condition=Established", "--timeout=60s"])
                .args(["crd/servicemonitors.monitoring.coreos.com", "crd/scaledobjects.keda.sh"]),
        );
        let token = run(
            "kubectl create token",
            plane.kubectl().args(["create", "token", RELEASE, "-n", RELEASE_NAMESPACE, "--duration", "24h"]),
        );
        let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
        let mut kubeconfig = Kubeconfig::read_from(&plane.admin_kubeconfig).expect("the admin kubeconfig");
        let user = &mut kubeconfig.auth_infos[0];
        user.name = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE}");
        user.auth_info.as_mut().unwrap().token = Some(token.into());
        kubeconfig.contexts[0].context.as_mut().unwrap().user = Some(user.name.clone());
        std::fs::write(&plane.operator_kubeconfig, serde_json::to_vec(&kubeconfig).unwrap()).unwrap();
        plane
    }

    /// kubectl as the admin, in the repository root.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(repo::kubectl());
        command.env("KUBECONFIG", &self.admin_kubeconfig).current_dir(repo::root());
        command
    }

    /// helm as the admin, in the repository root.
    pub fn helm(&self) -> Command {
        let mut command = Command::new(repo::helm());
        command.env("KUBECONFIG", &self.admin_kubeconfig).current_dir(repo::root());
        command
    }

    /// Runs kubectl as the admin; its output, or a panic with what it said.
    pub fn run_kubectl(&self, args: &[&str]) -> String {
        let output = run(&format!("kubectl {}", args.join(" ")), self.kubectl().args(args));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs helm as the admin; what it printed, or a panic with what it said.
    pub fn run_helm(&self, args: &[&str]) -> String {
        let output = run(&format!("helm {}", args.join(" ")), self.helm().args(args));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs kubectl as the admin with `input` on its standard input: Ok(what it printed) or
    /// Err(what it said on standard error), the words a user reads.
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Result<String, String> {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if output.status.success() { Ok(text(&output.stdout)) } else { Err(text(&output.stderr)) }
    }

    /// Lets the operator read these Secrets of `namespace`, through the chart's own
    /// `rbac.sagemakerCredentials` (`helm upgrade`), as a user of SageMaker credentials does.
    pub fn grant_secrets(&self, namespace: &str, names: &[&str]) {
        let grant = json!([{"namespace": namespace, "names": names}]);
        run(
            "helm upgrade",
            self.helm()
                .args(["upgrade", RELEASE, "charts/twin-operator", "--namespace", RELEASE_NAMESPACE])
                .args(["--reuse-values", "--set-json", &format!("rbac.sagemakerCredentials={grant}")]),
        );
    }

    /// A client with the admin's rights (the test's own hands).
    pub async fn admin(&self) -> Client {
        client(&self.admin_kubeconfig).await
    }

    /// A client with the rights the chart gives the operator, and nothing more.
    pub async fn as_operator(&self) -> Client {
        client(&self.operator_kubeconfig).await
    }

    /// A fresh namespace for one test, named after it.
    pub async fn namespace(&self, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.admin().await)
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        // Pods are admitted only once the namespace's default ServiceAccount exists.
        let accounts =
            Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(self.admin().await, &name);
        super::wait::eventually(
            &format!("the default ServiceAccount of {name}"),
            std::time::Duration::from_secs(20),
            std::time::Duration::from_millis(100),
            || async { accounts.get_opt("default").await.ok().flatten() },
        )
        .await;
        name
    }

    /// An operator replica's settings for tests in `namespace`, as the chart's ServiceAccount:
    /// that namespace watched; its leader Lease in the release namespace (where the chart lets it
    /// take one), named after the test's namespace so that tests running side by side do not
    /// share a leader; a SageMaker client that reaches nothing (no test calls out of the machine).
    pub async fn operator_settings(&self, namespace: &str, identity: &str) -> OperatorSettings {
        let mut settings = OperatorSettings::for_tests(identity);
        settings.watch_namespace = namespace.into();
        settings.lease_namespace = RELEASE_NAMESPACE.into();
        settings.lease_name = format!("twin-operator-{namespace}");
        settings.sagemaker_client = Some(super::sagemaker::unreachable().await);
        settings
    }
}

async fn client(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("a readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("a client for the control plane")
}

/// How a pod on a kwok node ends (control-plane/kwok-stages.yaml): its containers terminate
/// with `exit_code`, `reason` and `message`. A Job's pod then Succeeds or Fails; a
/// Deployment's crash-loops with that as its last state.
pub async fn end_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
    exit_code: i32,
    reason: Option<&str>,
    message: &str,
) {
    let mut annotations = json!({
        "kwok.llmtwin.dev/exit-code": exit_code.to_string(),
        "kwok.llmtwin.dev/message": message,
    });
    if let Some(reason) = reason {
        annotations["kwok.llmtwin.dev/reason"] = json!(reason);
    }
    Api::<Pod>::namespaced(client.clone(), namespace)
        .patch(pod, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": annotations}})))
        .await
        .unwrap_or_else(|e| panic!("annotate pod {pod}: {e}"));
}
