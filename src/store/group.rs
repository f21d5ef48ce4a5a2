//! Group commit: files that complete together are made durable together.
//!
//! A file received is acknowledged only once it is durable under its final name, as
//! [`Pending::commit`] does for one file: sync its data, name it, sync its directory.
//! Done file by file, a tree of 5,000 small files costs 10,000 syncs and as many trips
//! to a blocking thread. [`Committer::commit`] queues the file instead; one blocking
//! thread at a time takes everything queued (a *batch*) and commits it at once:
//!
//! 1. every file's data is made durable: one `syncfs` for the whole batch where the
//!    platform has it (Linux) and the batch has at least [`SYNCFS_FROM`] files, else
//!    one `fsync` per file;
//! 2. every file is given its final name, in the order they were queued;
//! 3. the names are made durable: one `syncfs` again, or one `fsync` per directory
//!    of the batch (not per file);
//! 4. each file's caller is told its path (or its error) and only then acks.
//!
//! Files that complete while a batch is being synced wait for the next one, so the
//! batches grow with the load and a lone file is committed at once.
//!
//! What could go wrong, and how it is prevented:
//! - *A partial file under a final name after a crash*: no file is named before its data
//!   is durable (step 1 ends before step 2 starts); the name is made durable (step 3)
//!   before anyone is told.
//! - *An ack for a file that is not durable*: the caller gets its path only after
//!   step 3; a file whose data sync fails is not named and fails (when the one
//!   `syncfs` fails, each file is synced by itself instead, so one bad file does not
//!   fail the batch). A directory that cannot be synced is no error, as for a single
//!   [`Pending::commit`]: Windows cannot open one, and its rename writes through.
//! - *A `syncfs` that waits for someone else's writes*: it is used only for batches of
//!   [`SYNCFS_FROM`] files or more, where one call costs less than that many `fsync`s
//!   whatever else is dirty.
//! - *Two files of one batch wanting the same name*: they are named one after the
//!   other, so the second gets `name.1.ext` as it would have alone.
//! - *The caller gone before its file is committed* (the listener stopping): the
//!   batch still commits the file whole; only the ack is missing, as with a crash after
//!   the commit.

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::pending::{sync_dir, Pending};
use super::sys;

/// Batches of at least this many files are synced with one `syncfs` where there is one.
pub const SYNCFS_FROM: usize = 16;

/// The most files one batch takes; the rest wait for the next.
const MAX_BATCH: usize = 4096;

/// A file queued for commit, and who waits for its path.
struct Job {
    pending: Pending,
    done: oneshot::Sender<io::Result<PathBuf>>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// A blocking thread is committing batches and will take what is queued.
    running: bool,
}

/// Commits received files in batches (see the module docs). Cheap to clone; clones share
/// the queue.
#[derive(Clone, Default)]
pub struct Committer {
    queue: Arc<Mutex<Queue>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Makes `pending` durable under its final name together with whatever else is
    /// queued; returns its path once the file and its name are durable.
    pub async fn commit(&self, pending: Pending) -> io::Result<PathBuf> {
        let (done, answer) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.jobs.push(Job { pending, done });
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            let queue = self.queue.clone();
            tokio::task::spawn_blocking(move || run(&queue));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the commit thread stopped")))
    }
}

/// Commits batches until nothing is queued.
fn run(queue: &Mutex<Queue>) {
    loop {
        let batch = {
            let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.jobs.is_empty() {
                queue.running = false;
                return;
            }
            let take = queue.jobs.len().min(MAX_BATCH);
            queue.jobs.drain(..take).collect::<Vec<_>>()
        };
        commit_batch(batch);
    }
}

/// Steps 1 to 4 of the module docs for one batch.
fn commit_batch(batch: Vec<Job>) {
    let mut jobs: Vec<(Job, io::Result<()>)> = batch
        .into_iter()
        .map(|mut job| {
            let ready = job.pending.finish_writes();
            (job, ready)
        })
        .collect();
    // 1. The data.
    let whole = jobs.len() >= SYNCFS_FROM
        && jobs
            .iter()
            .find(|(_, ready)| ready.is_ok())
            .is_some_and(|(job, _)| sys::sync_filesystem(&job.pending.file).is_ok());
    if !whole {
        for (job, ready) in &mut jobs {
            if ready.is_ok() {
                *ready = job.pending.file.sync_all();
            }
        }
    }
    // 2. The names.
    let named: Vec<(Job, io::Result<PathBuf>)> = jobs
        .into_iter()
        .map(|(mut job, ready)| {
            let named = ready.and_then(|()| job.pending.give_name());
            (job, named)
        })
        .collect();
    // 3. The names made durable: one filesystem sync, else each directory once.
    let dirs: BTreeSet<PathBuf> = named
        .iter()
        .filter(|(_, named)| named.is_ok())
        .map(|(job, _)| job.pending.dir.clone())
        .collect();
    let synced = whole
        && named
            .iter()
            .find(|(_, named)| named.is_ok())
            .is_some_and(|(job, _)| sys::sync_filesystem(&job.pending.file).is_ok());
    if !synced {
        for dir in &dirs {
            sync_dir(dir);
        }
    }
    // 4. Tell each caller.
    for (job, named) in named {
        let Job { pending, done } = job;
        drop(pending);
        let _ = done.send(named);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::path::Path;

    use super::super::Store;

    /// Many files committed at once land whole, each under its own name (two of the
    /// same name numbered), and nothing else is left in the directory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_committed_together_land_whole_under_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), false).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let rel = match i {
                    0 | 1 => "same.txt".to_string(),
                    i => format!("d{}/f{i}.txt", i % 7),
                };
                let mut pending = store.begin(Path::new(&rel), None).unwrap();
                pending.write_all(format!("file {i}").as_bytes()).unwrap();
                let path = store.commit(pending).await.unwrap();
                (i, path)
            }));
        }
        let mut paths = Vec::new();
        for task in tasks {
            let (i, path) = task.await.unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                format!("file {i}").as_bytes()
            );
            paths.push(path);
        }
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 200, "every file under a name of its own");
        assert!(dir.path().join("same.txt").exists() && dir.path().join("same.1.txt").exists());
        let files = walk(dir.path());
        assert_eq!(files, 200, "nothing but the files");
    }

    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
    }
}
