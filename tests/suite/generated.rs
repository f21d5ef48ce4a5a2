//! Shipping: the committed completions and man pages are what the binary generates,
//! every subcommand's help has a description, its defaults and examples, and the
//! `QP2P_*` environment variables set their options.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{free_udp_port, Listener, Proc, TestDir};

/// The command that regenerates `completions/` and `man/`.
const REGENERATE: &str = "scripts/generate.sh";

/// Each shell and the file its completions are committed as.
const COMPLETIONS: [(&str, &str); 5] = [
    ("bash", "qp2p.bash"),
    ("zsh", "_qp2p"),
    ("fish", "qp2p.fish"),
    ("elvish", "qp2p.elv"),
    ("powershell", "_qp2p.ps1"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files directly in `dir`, by name (empty when `dir` is missing).
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Guards issue 7: a flag, subcommand or help text changed without regenerating the
/// committed files. Fails listing every stale, missing or extra file, and says how to
/// regenerate them.
#[test]
fn committed_completions_and_man_pages_are_current() {
    let t = TestDir::new();
    let mut stale: Vec<String> = Vec::new();

    for (shell, file) in COMPLETIONS {
        let out = t.run(&["completions", shell]);
        out.assert_code(0);
        let committed = repo().join("completions").join(file);
        match fs::read(&committed) {
            Ok(bytes) if bytes == out.stdout => {}
            Ok(_) => stale.push(format!("completions/{file} differs")),
            Err(_) => stale.push(format!("completions/{file} is missing")),
        }
    }
    let extra: Vec<String> = files_in(&repo().join("completions"))
        .into_iter()
        .filter(|f| !COMPLETIONS.iter().any(|(_, c)| c == f))
        .collect();
    stale.extend(
        extra
            .iter()
            .map(|f| format!("completions/{f} is not generated")),
    );

    let generated = t.path().join("man");
    t.run(&["man", "--dir", generated.to_str().unwrap()])
        .assert_code(0);
    let want = files_in(&generated);
    assert!(want.contains(&"qp2p.1".to_string()), "no qp2p.1: {want:?}");
    for name in &want {
        let bytes = fs::read(generated.join(name)).unwrap();
        match fs::read(repo().join("man").join(name)) {
            Ok(committed) if committed == bytes => {}
            Ok(_) => stale.push(format!("man/{name} differs")),
            Err(_) => stale.push(format!("man/{name} is missing")),
        }
    }
    for name in files_in(&repo().join("man")) {
        if !want.contains(&name) {
            stale.push(format!("man/{name} is not generated (any more)"));
        }
    }

    assert!(
        stale.is_empty(),
        "the committed completions or man pages are stale:\n  {}\n\
         regenerate them (from the repository root) with:\n\n    {REGENERATE}\n\n\
         and commit completions/ and man/",
        stale.join("\n  ")
    );
}

/// `qp2p man` prints the main page and `qp2p man SUB` one subcommand's; the same
/// bytes that `--dir` writes. An unknown page is a usage error.
#[test]
fn man_prints_one_page_and_refuses_an_unknown_one() {
    let t = TestDir::new();
    let main = t.run(&["man"]);
    main.assert_code(0);
    let text = String::from_utf8_lossy(&main.stdout);
    assert!(text.contains(".TH qp2p 1"), "{main}");
    for section in ["EXAMPLES", "\"EXIT STATUS\"", "ENVIRONMENT", "\"SEE ALSO\""] {
        assert!(
            text.contains(&format!(".SH {section}")),
            "no {section}\n{main}"
        );
    }
    let send = t.run(&["man", "send"]);
    send.assert_code(0);
    assert!(String::from_utf8_lossy(&send.stdout).contains(".TH qp2p-send 1"));

    let bad = t.run(&["man", "nosuch"]);
    bad.assert_code(2);
    assert!(bad.stderr.contains("listen"), "lists the pages\n{bad}");
}

/// The subcommands, as `qp2p --help` lists them.
fn subcommands(t: &TestDir) -> Vec<String> {
    let out = t.run(&["--help"]);
    out.assert_code(0);
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect();
    assert!(names.len() >= 8, "too few subcommands in\n{text}");
    names
}

/// Every subcommand's help (short and long) has a description and an "Examples:"
/// section, and every option that takes a value shows its default (clap's
/// `[default: …]`, or the doc saying what happens without it).
#[test]
fn every_subcommand_help_has_examples_and_defaults() {
    let t = TestDir::new();
    let mut problems: Vec<String> = Vec::new();
    for sub in subcommands(&t) {
        for flag in ["-h", "--help"] {
            let out = t.run(&[sub.as_str(), flag]);
            out.assert_code(0);
            let text = String::from_utf8(out.stdout).unwrap();
            if !text.contains("\nExamples:\n  ") {
                problems.push(format!("qp2p {sub} {flag}: no Examples section"));
            }
            let first = text.lines().next().unwrap_or("");
            if first.trim().is_empty() || first.starts_with("Usage:") {
                problems.push(format!("qp2p {sub} {flag}: no description"));
            }
        }
        // Long help: an option's entry runs from its line to the next option or heading.
        let text = String::from_utf8(t.run(&[sub.as_str(), "--help"]).stdout).unwrap();
        let mut entries: Vec<String> = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let starts_option = (2..=6).contains(&indent) && trimmed.starts_with('-');
            if starts_option || (indent == 0 && !line.is_empty()) {
                entries.push(String::new());
            }
            if let Some(entry) = entries.last_mut() {
                entry.push_str(line);
                entry.push('\n');
            }
        }
        for entry in entries {
            let option = entry.lines().next().unwrap_or("").trim();
            let takes_value = option.starts_with('-') && option.contains(" <");
            if takes_value && !entry.contains("[default") {
                problems.push(format!("qp2p {sub}: {option} shows no default"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `QP2P_RETRY_FOR=0` and `QP2P_CONNECT_TIMEOUT=300ms` against a port where nobody
/// listens: exit 3 after one short attempt (the defaults, 2 s per attempt retried for
/// 30 s, would take far longer).
#[test]
fn environment_sets_retry_budget_and_connect_timeout() {
    let t = TestDir::new();
    let target = format!("127.0.0.1:{}", free_udp_port());
    let mut cmd = t.cmd();
    cmd.env("QP2P_RETRY_FOR", "0")
        .env("QP2P_CONNECT_TIMEOUT", "300ms")
        .args(["--json", "--ephemeral", "send", &target, "-"]);
    let out = Proc::spawn(cmd).finish(Duration::from_secs(30));
    out.assert_json_error(3);
    assert!(
        out.elapsed < Duration::from_millis(1500),
        "took {:?}: the variables were not honoured\n{out}",
        out.elapsed
    );
}

/// The command line wins over the environment.
#[test]
fn command_line_wins_over_environment() {
    let t = TestDir::new();
    let target = format!("127.0.0.1:{}", free_udp_port());
    let mut cmd = t.cmd();
    cmd.env("QP2P_RETRY_FOR", "30s")
        .env("QP2P_CONNECT_TIMEOUT", "20s")
        .args(["--json", "--ephemeral", "send", &target, "-"])
        .args(["--retry-for", "0", "--connect-timeout", "300ms"]);
    let out = Proc::spawn(cmd).finish(Duration::from_secs(30));
    out.assert_json_error(3);
    assert!(out.elapsed < Duration::from_millis(1500), "{out}");

    // A bad value in a variable is a usage error naming the variable's option.
    let mut cmd = t.cmd();
    cmd.env("QP2P_RETRY_FOR", "soon")
        .args(["--ephemeral", "send", &target, "-"]);
    let out = Proc::spawn(cmd).finish(Duration::from_secs(30));
    out.assert_code(2);
    assert!(out.stderr.contains("--retry-for"), "{out}");
}

/// `QP2P_BIND` is the listener's default address.
#[test]
fn environment_sets_listen_bind() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let mut cmd = t.cmd();
    cmd.env("QP2P_BIND", "127.0.0.1:0")
        .args(["--json", "--ephemeral", "listen", "--out"])
        .arg(&out);
    let l = Listener::start(Proc::spawn(cmd));
    assert!(
        l.addr.starts_with("127.0.0.1:") && l.port() != 0,
        "bound to {}",
        l.addr
    );
}

/// The bash completions parse; zsh and fish too where those shells are installed.
#[test]
fn completions_parse_in_their_shells() {
    let t = TestDir::new();
    for (shell, file, check) in [
        ("bash", "qp2p.bash", "-n"),
        ("zsh", "_qp2p", "-n"),
        ("fish", "qp2p.fish", "--no-execute"),
    ] {
        let out = t.run(&["completions", shell]);
        out.assert_code(0);
        let path = t.write(file, &out.stdout);
        let result = std::process::Command::new(shell)
            .arg(check)
            .arg(&path)
            .output();
        match result {
            Ok(r) => assert!(
                r.status.success(),
                "{shell} {check} rejects the completions: {}",
                String::from_utf8_lossy(&r.stderr)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && shell != "bash" => {}
            Err(e) => panic!("cannot run {shell}: {e}"),
        }
    }
}

/// Help is plain text when stdout is not a terminal, and `NO_COLOR` keeps it plain
/// even where colour is forced on otherwise.
#[test]
fn help_has_no_colour_off_a_terminal() {
    let t = TestDir::new();
    let out = t.run(&["send", "--help"]);
    out.assert_code(0);
    assert!(!out.stdout.contains(&0x1b), "escape codes in piped help");

    let mut cmd = t.cmd();
    cmd.env("CLICOLOR_FORCE", "1")
        .env_remove("NO_COLOR")
        .args(["send", "--help"]);
    let forced = Proc::spawn(cmd).finish(Duration::from_secs(30));
    assert!(forced.stdout.contains(&0x1b), "CLICOLOR_FORCE gives colour");

    let mut cmd = t.cmd();
    cmd.env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1")
        .args(["send", "--help"]);
    let plain = Proc::spawn(cmd).finish(Duration::from_secs(30));
    assert!(!plain.stdout.contains(&0x1b), "NO_COLOR is not respected");
}
