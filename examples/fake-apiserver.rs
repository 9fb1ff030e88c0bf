//! Runs the in-process fake Kubernetes API server of the tests on 127.0.0.1 and writes a
//! kubeconfig for it, so a person can try `kubectl` and `twin operator` by hand, and play the
//! cluster's controllers through its admin API (see README.md, "Try the operator without a
//! cluster"):
//!
//!   cargo run --example fake-apiserver -- --port 6443 --kubeconfig /tmp/twin.kubeconfig
//!   KUBECONFIG=/tmp/twin.kubeconfig kubectl apply --server-side -f manifests/examples/
//!   curl -X POST localhost:6443/admin/jobs/twins/paul-build-1/succeed --data-binary @examples/build-report.json

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(about = "An in-process fake Kubernetes API server for trying twin-operator by hand")]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write the kubeconfig.
    #[arg(long)]
    kubeconfig: PathBuf,
}

const ADMIN_API: &str = "admin API (POST unless said):
  /admin/jobs/NS/NAME/succeed | /fail          body: the pod's termination message
  /admin/pods/NS/NAME/succeed | /fail          body: the termination message
  /admin/cronjobs/NS/NAME/run                  a Job from the CronJob's template
  /admin/deployments/NS/NAME/available | /unavailable?reason=R&message=M
  /admin/faults                                JSON {verb, resource, subresource, code, message, count}; DELETE clears
  /admin/watches/close                         ends every open watch";

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let server = support::fake_apiserver::FakeApiServer::start_on(([127, 0, 0, 1], args.port).into()).await;
    std::fs::write(&args.kubeconfig, server.kubeconfig())?;
    println!("fake API server at {}; kubeconfig written to {}", server.url, args.kubeconfig.display());
    println!("try: KUBECONFIG={} kubectl get twin -A", args.kubeconfig.display());
    println!("{ADMIN_API}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
