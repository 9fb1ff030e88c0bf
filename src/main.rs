//! `twin`: the one binary of twin-operator. Parses the command line and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The embedding model allocates and frees large buffers at every layer; glibc's allocator
/// returns them to the kernel each time (a third of the run in system time), mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use twin_operator::crdgen;

#[derive(Parser)]
#[command(name = "twin", version, about = "Build, train and serve LLM Twins on Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers for TwinDataset, TwinTrainingJob and TwinEndpoint.
    Operator(Box<twin_operator::operator::OperatorSettings>),
    /// Print the CustomResourceDefinitions as YAML, or write them to a folder.
    Crd {
        /// Write one file per CRD into this folder instead of printing (as `crds/`).
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Write one Helm template per CRD into this folder (as the chart's `templates/crds/`).
        #[arg(long, value_name = "DIR")]
        helm_templates_dir: Option<PathBuf>,
        /// Print the Markdown field reference of the three resources instead (docs/reference.md's).
        #[arg(long, conflicts_with_all = ["output_dir", "helm_templates_dir"])]
        reference: bool,
    },
    /// The dataset pipeline.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Run the RAG gateway (OpenAI-compatible API); `twin serve --help` lists its settings.
    #[command(disable_help_flag = true)]
    Serve {
        /// The gateway's flags (each also an environment variable or a --config file setting).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run TwinDataset, TwinTrainingJob and TwinEndpoint YAML on this machine.
    Up(twin_operator::local::up::UpArgs),
    /// Show what `twin up` ran here, as `kubectl get` would.
    Status(twin_operator::local::up::StatusArgs),
    /// Evaluate a twin against a baseline on a dataset's held-out split: voice (likelihood,
    /// author-likeness of its answers) and grounding (retrieval, supported sentences).
    Eval(Box<twin_operator::eval::EvalArgs>),
    /// Chat with a twin endpoint from the terminal (the gateway also serves a chat page at /).
    Chat(twin_operator::local::chat::ChatArgs),
    /// Copy a model or adapter from s3://, pvc:// or file:// into a folder, whole or not at all
    /// (what a TwinEndpoint's init containers run).
    Fetch(twin_operator::storage::fetch::FetchArgs),
    /// Keep a shared engine's vLLM serving the adapters its TwinEngine wants (the sidecar of a
    /// TwinEngine's pods): fetch, load, replace and unload them at run time.
    EngineAgent(twin_operator::agent::AgentArgs),
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Collect, clean, chunk, embed and publish a TwinDataset (what its Job runs).
    Build(twin_operator::pipeline::command::BuildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { reference: true, .. } => {
            print!("{}", twin_operator::apidoc::api_reference());
            ExitCode::SUCCESS
        }
        Command::Crd { output_dir, helm_templates_dir, .. } => crd(output_dir, helm_templates_dir),
        Command::Operator(settings) => runtime().block_on(twin_operator::operator::main(*settings)),
        Command::Dataset(DatasetCommand::Build(args)) => {
            runtime().block_on(twin_operator::pipeline::command::run(args))
        }
        Command::Serve { args } => runtime().block_on(twin_operator::serve::run(args)),
        Command::Up(args) => runtime().block_on(twin_operator::local::up::run(args)),
        Command::Status(args) => twin_operator::local::up::status(args),
        Command::Eval(args) => runtime().block_on(twin_operator::eval::run(*args)),
        Command::Chat(args) => runtime().block_on(twin_operator::local::chat::run(args)),
        Command::Fetch(args) => runtime().block_on(twin_operator::storage::fetch::run(args)),
        Command::EngineAgent(args) => runtime().block_on(twin_operator::agent::run(args)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("start the async runtime")
}

fn crd(output_dir: Option<PathBuf>, helm_templates_dir: Option<PathBuf>) -> ExitCode {
    let result = if output_dir.is_none() && helm_templates_dir.is_none() {
        crdgen::all_crds_yaml().map(|yaml| print!("{yaml}"))
    } else {
        let mut written = Vec::new();
        let mut write = || -> Result<(), crdgen::CrdGenError> {
            if let Some(dir) = &output_dir {
                written.extend(crdgen::write_all(dir, crdgen::crd_file)?);
            }
            if let Some(dir) = &helm_templates_dir {
                written.extend(crdgen::write_all(dir, crdgen::chart_template)?);
            }
            Ok(())
        };
        let result = write();
        for path in &written {
            eprintln!("wrote {path}");
        }
        result
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
