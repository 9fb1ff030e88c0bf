//! Runs the in-process fake Kubernetes API server of the tests on 127.0.0.1 and writes a
//! kubeconfig for it, so a person can try `kubectl` and `twin operator` by hand:
//!
//!   cargo run --example fake-apiserver -- --port 0 --kubeconfig /tmp/twin-fake.kubeconfig
//!   KUBECONFIG=/tmp/twin-fake.kubeconfig kubectl apply --server-side -f manifests/examples/
//!   KUBECONFIG=/tmp/twin-fake.kubeconfig kubectl get twin -A

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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let server = support::fake_apiserver::FakeApiServer::start_on(([127, 0, 0, 1], args.port).into()).await;
    std::fs::write(&args.kubeconfig, server.kubeconfig())?;
    println!("fake API server at {}; kubeconfig written to {}", server.url, args.kubeconfig.display());
    println!("try: KUBECONFIG={} kubectl get twin -A", args.kubeconfig.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
