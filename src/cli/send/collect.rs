//! What `send` sends: the PATHs walked into items (files, a tree's files named by
//! their relative paths, stdin, pipes), and an item opened as an outgoing message.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::Item;
use crate::cli::Context;
use crate::error::{coded, Exit};
use qp2p::Outgoing;

/// Turns PATHs into items: files as themselves, directories as their files (named by
/// their path from the directory's parent), `-` as stdin.
pub(crate) fn collect(
    paths: &[PathBuf],
    name: Option<&str>,
    ctx: &Context,
) -> anyhow::Result<Vec<Item>> {
    if let Some(name) = name {
        if qp2p::store::sanitize(name).is_none() {
            return Err(coded(
                Exit::Usage,
                format!(
                    "--name \"{}\" leaves no file name to store under (empty, `.` or `..`)",
                    crate::output::shown(name)
                ),
            ));
        }
    }
    let stdin_name = || name.unwrap_or("stdin").to_string();
    if paths.is_empty() {
        return Ok(vec![Item::Stdin {
            name: stdin_name(),
            path: None,
        }]);
    }
    if name.is_some() && paths.len() > 1 {
        return Err(coded(Exit::Usage, "--name needs a single PATH"));
    }
    if paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(coded(Exit::Usage, "stdin (-) can be sent only once"));
    }
    let mut items = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            items.push(Item::Stdin {
                name: stdin_name(),
                path: None,
            });
            continue;
        }
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                items.push(Item::unreadable(path, e));
                continue;
            }
        };
        if meta.is_dir() {
            if name.is_some() {
                return Err(coded(Exit::Usage, "--name cannot rename a directory"));
            }
            // The name given (a symlink keeps its own name); `.` and `..` say nothing,
            // so for them the directory's real name.
            let base = match path.components().next_back() {
                Some(std::path::Component::Normal(given)) => given.to_string_lossy().into_owned(),
                _ => path
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default(),
            };
            walk(path, &base, &mut items, ctx);
        } else if is_pipe(&meta) {
            // `<(cmd)` or a FIFO: sent like stdin, of unknown length and read once. It is
            // opened only when its turn comes (a FIFO blocks until a writer comes).
            let name = match name {
                Some(name) => name.to_string(),
                None => pipe_name(path),
            };
            items.push(Item::Stdin {
                name,
                path: Some(path.clone()),
            });
        } else if !meta.is_file() {
            items.push(Item::unreadable(
                path,
                "not a regular file (sockets and devices are not sent; a pipe or FIFO is, \
                 like stdin)",
            ));
        } else {
            let file_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into());
            items.push(Item::File {
                path: path.clone(),
                name: name.map(str::to_string).unwrap_or(file_name),
                len: meta.len(),
            });
        }
    }
    Ok(items)
}

/// The name a pipe given as a path is sent under: a FIFO's own name, `stdin` for the
/// numbered descriptors of `<(cmd)` (`/dev/fd/63`), which mean nothing to the receiver.
fn pipe_name(path: &Path) -> String {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let descriptor = path
        .parent()
        .is_some_and(|dir| dir.ends_with("fd") || dir.ends_with("fdinfo"));
    match file_name {
        Some(n) if !(descriptor && n.bytes().all(|b| b.is_ascii_digit())) => n,
        _ => "stdin".into(),
    }
}

/// A FIFO (or a pipe given as a path: `<(cmd)` is `/dev/fd/N`); Windows has none that
/// a path names.
fn is_pipe(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

/// Adds the files under `dir`, sorted, named `prefix/relative/path`. Symlinks to
/// directories are skipped (no loops); symlinks to files are sent as files. FIFOs,
/// sockets and devices are skipped with a warning (never opened, so never waited on);
/// what cannot be read (an unreadable directory, a dangling symlink) is an
/// [`Item::Unreadable`] and fails in its turn.
fn walk(dir: &Path, prefix: &str, items: &mut Vec<Item>, ctx: &Context) {
    let listed = std::fs::read_dir(dir).and_then(|entries| entries.collect::<Result<Vec<_>, _>>());
    let mut entries = match listed {
        Ok(entries) => entries,
        Err(e) => {
            items.push(Item::unreadable(
                dir,
                format!("cannot read the directory: {e}"),
            ));
            return;
        }
    };
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() && link => {
                ctx.out.warn(&format!(
                    "skipping {}: a symlink to a directory",
                    path.display()
                ));
            }
            Ok(meta) if meta.is_dir() => walk(&path, &rel, items, ctx),
            Ok(meta) if meta.is_file() => items.push(Item::File {
                path,
                name: rel,
                len: meta.len(),
            }),
            Ok(_) => ctx.out.warn(&format!(
                "skipping {}: not a regular file (FIFO, socket or device)",
                path.display()
            )),
            Err(e) => items.push(Item::unreadable(&path, e)),
        }
    }
}

/// An item as the sender takes it; an `Unreadable` one is its error, reported in its
/// turn and never sent.
pub(super) fn outgoing(item: Item) -> anyhow::Result<Outgoing> {
    Ok(match item {
        Item::File { path, name, len } => Outgoing::File { path, name, len },
        Item::Stdin { name, path: None } => Outgoing::Stream {
            name,
            open: Box::new(|| Ok(Box::new(std::io::stdin()) as Box<dyn Read + Send>)),
        },
        Item::Stdin {
            name,
            path: Some(path),
        } => Outgoing::Stream {
            name,
            open: Box::new(move || {
                std::fs::File::open(&path)
                    .map(|file| Box::new(file) as Box<dyn Read + Send>)
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("cannot open {}: {e}", path.display()),
                        )
                    })
            }),
        },
        Item::Text { text } => Outgoing::Text(text),
        Item::Unreadable { error, .. } => return Err(error),
    })
}
