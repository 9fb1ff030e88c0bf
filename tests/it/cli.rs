//! The `twin` command line: every documented subcommand exists, and those whose work ships in
//! a later release fail loudly instead of pretending to succeed.

use std::process::Command;

fn twin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_twin")).args(args).output().expect("twin runs")
}

#[test]
fn help_lists_every_role_of_the_binary() {
    let output = twin(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for command in ["operator", "crd", "dataset", "serve", "up", "status", "chat"] {
        assert!(help.contains(command), "`twin --help` does not list {command}:\n{help}");
    }
}

#[test]
fn serve_refuses_incomplete_settings_with_the_fix() {
    for (args, says) in [
        (&["serve", "--engine", "openai"][..], "--engine openai needs --upstream URL"),
        (
            &["serve", "--model", "/nonexistent/model.gguf", "--listen", "127.0.0.1:0"],
            "the GGUF model /nonexistent/model.gguf does not exist",
        ),
        (&["serve", "--engine", "openai", "--upstream", "ftp://x"], "must be http:// or https://"),
        (
            &[
                "serve",
                "--dataset",
                "s3://bucket",
                "--engine",
                "openai",
                "--upstream",
                "http://127.0.0.1:9/v1",
            ],
            "name a dataset's folder or a revision's",
        ),
        (&["serve", "--first-token-timeout", "soon"], "is not a duration"),
        (
            &["serve", "--model", "hf://org/repo", "--listen", "127.0.0.1:0"],
            "expected hf://org/repo/file.gguf",
        ),
    ] {
        let output = twin(args);
        assert!(!output.status.success(), "twin {args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "twin {args:?}: {stderr}");
    }
}

#[test]
fn crd_reports_an_unwritable_folder() {
    let output = twin(&["crd", "--output-dir", "/proc/twin-cannot-write-here"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("failed to write /proc/twin-cannot-write-here"));
}
