//! The README's commands, as written: every command of its `sh` blocks is checked by what it
//! runs. `scripts/*` exist and are executable (CI runs `scripts/test` itself); `twin`
//! subcommands take every flag given (their `--help`, from the built binary); `helm install` and
//! `helm upgrade` render with the real helm (`helm template`, same chart and flags); files and
//! folders given to `kubectl` and `docker` exist (a Dockerfile in each build context), and the
//! YAML ones parse. A command no checker knows fails the test, so a new one gets a checker.

use std::path::Path;
use std::process::Command;

use crate::support::repo;

/// The commands of the README's `sh` blocks: comments dropped, continued lines joined, and
/// `a && b` split in two.
fn readme_commands() -> Vec<String> {
    let readme = repo::read("README.md");
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = !in_block && line.trim() == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let code = match line.find(" #") {
            Some(comment) => &line[..comment],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        };
        let code = code.trim_end();
        if let Some(continued) = code.strip_suffix('\\') {
            pending.push_str(continued);
            continue;
        }
        pending.push_str(code);
        for command in pending.split(" && ") {
            if !command.trim().is_empty() {
                commands.push(command.trim().to_string());
            }
        }
        pending.clear();
    }
    commands
}

fn words(command: &str) -> Vec<&str> {
    // Leading VARIABLE=value assignments set the environment; they are not the program.
    command.split_whitespace().skip_while(|word| word.contains('=') && !word.starts_with('-')).collect()
}

fn check_script(words: &[&str]) {
    let script = repo::path(words[0]);
    let mode = std::fs::metadata(&script).unwrap_or_else(|_| panic!("{} does not exist", words[0]));
    use std::os::unix::fs::PermissionsExt;
    assert!(mode.permissions().mode() & 0o111 != 0, "{} is not executable", words[0]);
}

fn check_twin(words: &[&str]) {
    let subcommand = words[1];
    let help = Command::new(env!("CARGO_BIN_EXE_twin")).args([subcommand, "--help"]).output().unwrap();
    assert!(help.status.success(), "twin {subcommand} is not a subcommand");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        let flag = flag.split('=').next().unwrap();
        assert!(help.contains(flag), "twin {subcommand} has no {flag}:\n{help}");
    }
}

fn check_helm(words: &[&str]) {
    assert!(matches!(words[1], "install" | "upgrade"), "no checker for helm {}", words[1]);
    // The same release, chart and flags, rendered: what the cluster would be given.
    let mut args = vec!["template"];
    args.extend(words[2..].iter().copied().filter(|w| *w != "--create-namespace"));
    repo::run_helm(&args);
}

fn check_files(words: &[&str]) {
    for pair in words.windows(2) {
        if matches!(pair[0], "-f" | "--patch-file") {
            let file = repo::path(pair[1]);
            let text =
                std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("{} does not exist", pair[1]));
            let documents: Result<Vec<serde_json::Value>, _> = serde_saphyr::from_str_multiple(&text);
            assert!(documents.is_ok_and(|d| !d.is_empty()), "{} is not YAML", pair[1]);
        }
    }
}

fn check_docker(words: &[&str]) {
    match words[1] {
        "build" => {
            let context = words.last().unwrap();
            assert!(repo::path(context).join("Dockerfile").is_file(), "no Dockerfile in {context}");
            let tag = words.windows(2).find(|w| w[0] == "-t").map(|w| w[1]).expect("an image tag");
            assert!(tag.contains(':'), "a versioned tag: {tag}");
        }
        "push" => {}
        other => panic!("no checker for docker {other}"),
    }
}

#[test]
fn every_command_in_the_readme_runs_as_written() {
    let commands = readme_commands();
    assert!(commands.len() >= 10, "{commands:#?}");
    let mut checked = std::collections::BTreeSet::new();
    for command in &commands {
        let words = words(command);
        let program = words[0];
        match program {
            p if p.starts_with("scripts/") => check_script(&words),
            "twin" => check_twin(&words),
            "helm" => check_helm(&words),
            "kubectl" => check_files(&words),
            "docker" => check_docker(&words),
            other => panic!("no checker for `{other}` ({command}): add one"),
        }
        checked.insert(program.to_string());
    }
    for program in ["scripts/quickstart", "scripts/test", "helm", "kubectl", "docker", "twin"] {
        assert!(checked.contains(program), "the README runs {program}: {commands:#?}");
    }
    assert!(Path::new(&repo::path("manifests/install.yaml")).is_file());
}
