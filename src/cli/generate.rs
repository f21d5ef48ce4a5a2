//! `qp2p completions SHELL` and `qp2p man`: shell completions and man pages, generated
//! from the clap definitions (clap_complete, clap_mangen), as ripgrep and xh do.
//!
//! Both print to stdout; `qp2p man --dir DIR` writes every page (qp2p.1 and one page per
//! subcommand, qp2p-listen.1, …) into DIR instead. The output depends on nothing but
//! the clap definitions: no date, no version, no environment variable's value, no
//! terminal width. That is what lets `completions/` and `man/` be committed and checked:
//! `tests/suite/generated.rs` regenerates them from the binary and fails, printing
//! `scripts/generate.sh` (the command that regenerates them), when a committed file
//! differs.
//!
//! A man page is clap_mangen's (NAME, SYNOPSIS, DESCRIPTION, the options under their
//! help headings, SUBCOMMANDS) followed by sections clap has no place for: EXAMPLES
//! (from the help's "Examples:" section, see [`super::examples`]), EXIT STATUS (from
//! [`Exit`]), ENVIRONMENT (every option's `env` variable, found in the definitions, and
//! the variables qp2p reads itself) and SEE ALSO.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use super::{examples, Cli, EXAMPLES_HEADING};
use crate::error::{coded, Exit};

/// Print a shell completion script.
///
/// The script completes subcommands, options, their values (congestion controllers,
/// scenarios, shells) and paths. Where each shell looks for it is in README, "Shell
/// completions and man pages".
#[derive(Debug, clap::Args)]
#[command(after_help = examples(&[
    "qp2p completions bash > ~/.local/share/bash-completion/completions/qp2p",
    "qp2p completions zsh > ~/.zfunc/_qp2p       # with fpath+=(~/.zfunc) in ~/.zshrc",
    "qp2p completions fish > ~/.config/fish/completions/qp2p.fish",
    "source <(qp2p completions bash)              # this shell only",
]))]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Print the manual page (roff), or write every page into a directory.
///
/// Without --dir, prints qp2p.1, or the page of one subcommand (qp2p-listen.1 for
/// `qp2p man listen`). With --dir, writes qp2p.1 and one page per subcommand into DIR
/// (created if missing), replacing pages of the same name.
#[derive(Debug, clap::Args)]
#[command(after_help = examples(&[
    "qp2p man | man -l -                          # read it now",
    "qp2p man send | man -l -                     # the page of one subcommand",
    "qp2p man --dir ~/.local/share/man/man1       # install every page for `man qp2p`",
]))]
pub struct ManArgs {
    /// The subcommand whose page to print [default: qp2p.1, the main page].
    #[arg(value_name = "SUBCOMMAND", conflicts_with = "dir")]
    pub page: Option<String>,
    /// Write every page into DIR instead of printing one [default: print to stdout].
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` to stdout.
///
/// Synchronous: it needs no identity, network or runtime, so it also works where there
/// is no home directory (a packaging sandbox).
pub fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    print(&completion(args.shell))
}

/// Prints one man page to stdout, or writes every page into `--dir`.
pub fn man(args: ManArgs) -> anyhow::Result<()> {
    let pages = man_pages()?;
    if let Some(dir) = args.dir {
        return write_pages(&dir, &pages);
    }
    let file = match &args.page {
        None => "qp2p.1".to_string(),
        Some(name) => format!("qp2p-{name}.1"),
    };
    match pages.iter().find(|(f, _)| *f == file) {
        Some((_, text)) => print(text),
        None => Err(coded(
            Exit::Usage,
            format!(
                "no man page for {:?}; pages: {}",
                args.page.unwrap_or_default(),
                pages
                    .iter()
                    .filter_map(|(f, _)| f.strip_prefix("qp2p-")?.strip_suffix(".1"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The completion script for one shell.
pub fn completion(shell: clap_complete::Shell) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "qp2p", &mut buf);
    buf
}

/// Every man page as (file name, roff text): qp2p.1 first, then one per subcommand.
pub fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![("qp2p.1".to_string(), page(&cmd, &cmd)?)];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{}.1", sub.get_display_name().unwrap_or(sub.get_name()));
        pages.push((name, page(&cmd, sub)?));
    }
    Ok(pages)
}

/// One page: clap_mangen's sections, then ours.
fn page(root: &clap::Command, cmd: &clap::Command) -> anyhow::Result<Vec<u8>> {
    // The synopsis is the help's usage line (clap_mangen's own lists every option,
    // without its value, in no useful order).
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage:").trim().to_string();
    // The version would put a changing line into every page (and clap_mangen's VERSION
    // section); the examples get a section of their own instead of clap_mangen's EXTRA.
    let stripped = cmd
        .clone()
        .override_usage(usage)
        .version(None)
        .long_version(None)
        .after_help(None)
        .after_long_help(None);
    let mut buf = Vec::new();
    Man::new(stripped)
        .source("qp2p")
        .manual("User Commands")
        // An empty argument must be quoted, or .TH reads the next one as the date.
        .date("\"\"")
        .render(&mut buf)
        .context("failed to render the man page")?;

    let mut roff = Roff::new();
    examples_section(&mut roff, cmd);
    exit_status_section(&mut roff);
    environment_section(&mut roff, root, cmd);
    see_also_section(&mut roff, root, cmd);
    buf.extend_from_slice(roff.to_roff().as_bytes());
    Ok(buf)
}

/// EXAMPLES: the lines of the help's "Examples:" section, kept as they are.
fn examples_section(roff: &mut Roff, cmd: &clap::Command) {
    let Some(help) = cmd.get_after_long_help().or(cmd.get_after_help()) else {
        return;
    };
    let text = help.to_string(); // Display drops the styling.
    let Some(body) = text.split_once(EXAMPLES_HEADING).map(|(_, b)| b) else {
        return;
    };
    roff.control("SH", ["EXAMPLES"]);
    roff.control("nf", []);
    roff.control("RS", ["4"]);
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        roff.text([roman(line.trim())]);
    }
    roff.control("RE", []);
    roff.control("fi", []);
}

/// EXIT STATUS: the exit-code table.
fn exit_status_section(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for exit in Exit::ALL {
        roff.control("TP", []);
        roff.text([bold(exit.code().to_string())]);
        roff.text([roman(exit.meaning())]);
    }
}

/// ENVIRONMENT: each option's variable (on the main page, those of every subcommand),
/// then the variables qp2p reads itself.
fn environment_section(roff: &mut Roff, root: &clap::Command, cmd: &clap::Command) {
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "A variable sets the default of its option; the option given on the command line \
         wins.",
    )]);
    let mut seen: Vec<String> = Vec::new();
    let commands: Vec<&clap::Command> = if std::ptr::eq(root, cmd) {
        std::iter::once(root)
            .chain(root.get_subcommands())
            .collect()
    } else {
        vec![cmd]
    };
    for command in commands {
        for arg in command.get_arguments() {
            let Some(var) = arg.get_env().map(|v| v.to_string_lossy().into_owned()) else {
                continue;
            };
            if seen.contains(&var) || arg.is_hide_set() {
                continue;
            }
            let option = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => arg.get_id().to_string(),
            };
            // On the main page, say which subcommands take it.
            let takers: Vec<&str> = root
                .get_subcommands()
                .filter(|s| {
                    s.get_arguments()
                        .any(|a| a.get_id() == arg.get_id() && a.get_env() == arg.get_env())
                })
                .map(|s| s.get_name())
                .collect();
            let whose = if arg.is_global_set() || !std::ptr::eq(root, cmd) {
                String::new()
            } else {
                format!(" ({})", takers.join(", "))
            };
            // The help without its "[default: …]": here the variable is the default.
            let help = arg
                .get_help()
                .map(|h| h.to_string())
                .map(|h| match h.split_once(" [default:") {
                    Some((before, _)) => before.to_string(),
                    None => h,
                })
                .map(|h| format!(": {}", h.trim_end_matches('.')))
                .unwrap_or_default();
            roff.control("TP", []);
            roff.text([bold(var.clone())]);
            roff.text(vec![
                roman("The default of "),
                bold(option),
                roman(format!("{whose}{help}.")),
            ]);
            seen.push(var);
        }
    }
    let own = [
        (
            "RUST_LOG",
            "Which logs to print on stderr (tracing's EnvFilter syntax, e.g. qp2p=debug); \
             wins over -v and -q.",
        ),
        (
            "NO_COLOR",
            "When set to anything but the empty string, no colour in logs or help. Colour \
             is used only when the output is a terminal anyway.",
        ),
        (
            "XDG_CONFIG_HOME, HOME",
            "The identity is in $XDG_CONFIG_HOME/qp2p, else ~/.config/qp2p, when neither \
             --identity nor QP2P_HOME is given.",
        ),
    ];
    for (var, text) in own {
        roff.control("TP", []);
        roff.text([bold(var)]);
        roff.text([roman(text)]);
    }
}

/// SEE ALSO: the other pages.
fn see_also_section(roff: &mut Roff, root: &clap::Command, cmd: &clap::Command) {
    let mut refs: Vec<String> = Vec::new();
    if !std::ptr::eq(root, cmd) {
        refs.push("qp2p(1)".into());
    }
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_display_name().unwrap_or(sub.get_name());
        if name != cmd.get_display_name().unwrap_or(cmd.get_name()) {
            refs.push(format!("{name}(1)"));
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(format!(
        "{}. The wire protocol: PROTOCOL.md in the source.",
        refs.join(", ")
    ))]);
}

/// Writes the pages into `dir`, creating it if missing.
fn write_pages(dir: &Path, pages: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    for (name, text) in pages {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

/// Writes `bytes` to stdout; a closed pipe (`qp2p man | head`) is a clean exit.
fn print(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("failed to write to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_carry_no_date_or_version() {
        let version = env!("CARGO_PKG_VERSION");
        for (name, text) in man_pages().unwrap() {
            let text = String::from_utf8(text).unwrap();
            let th = text.lines().find(|l| l.starts_with(".TH")).unwrap();
            assert!(!th.contains(version), "{name}: {th}");
            assert!(!text.contains(".SH VERSION"), "{name}");
            assert!(text.contains(".SH \"EXIT STATUS\""), "{name}");
            assert!(text.contains(".SH ENVIRONMENT"), "{name}");
            assert!(text.contains(".SH EXAMPLES"), "{name} has no examples");
        }
    }

    #[test]
    fn main_page_lists_every_environment_variable() {
        let pages = man_pages().unwrap();
        let main = String::from_utf8(pages[0].1.clone()).unwrap();
        for var in [
            "QP2P_HOME",
            "QP2P_RETRY_FOR",
            "QP2P_BIND",
            "NO_COLOR",
            "RUST_LOG",
        ] {
            assert!(main.contains(var), "{var} missing from qp2p.1");
        }
    }

    #[test]
    fn every_subcommand_has_a_page() {
        let names: Vec<String> = man_pages().unwrap().into_iter().map(|(n, _)| n).collect();
        for sub in Cli::command().get_subcommands() {
            let want = format!("qp2p-{}.1", sub.get_name());
            assert!(names.contains(&want), "{want} missing: {names:?}");
        }
    }
}
