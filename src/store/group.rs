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
//!    one `fsync` per file (each of which commits the journal on ext4);
//! 2. every file is given its final name, in the order they were queued;
//! 3. the names are made durable: one `fsync` per directory of the batch (not per
//!    file), or one `syncfs` again when the batch spans many directories;
//! 4. each file's caller is told its path (or its error) and only then acks.
//!
//! Files that complete while a batch is being synced wait for the next one. And while
//! other files of the store are still being received, a batch waits for them a little
//! ([`GATHER`] at most) before it starts: a sync of the whole filesystem costs about
//! the same for one file as for a hundred, and each one holds up the journal for the
//! files being created meanwhile. A lone file is committed at once.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::pending::{sync_dir, Pending};
use super::sys;

/// Batches of at least this many files are synced with one `syncfs` where there is one.
pub const SYNCFS_FROM: usize = 4;

/// Up to this many directories in a batch are synced one by one after naming; more,
/// with one `syncfs`.
const DIRS_SYNCED_ONE_BY_ONE: usize = 8;

/// The most files one batch takes; the rest wait for the next.
const MAX_BATCH: usize = 4096;

/// How long a batch waits for files still being received before it starts.
pub const GATHER: Duration = Duration::from_millis(2);

/// A file of the store being received: counted from `Store::begin` until it
/// is queued for commit or dropped.
#[derive(Debug)]
pub struct Receiving(Arc<AtomicUsize>);

impl Drop for Receiving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a job commits: a file written already, or one to write first (on the commit
/// thread).
pub(super) enum Content {
    /// Written, not yet durable nor named (boxed: a queue entry stays small).
    Ready(Box<Pending>),
    /// Writes the file (a small one held in memory) and returns it.
    Write(Box<dyn FnOnce() -> io::Result<Pending> + Send>),
}

/// A file queued for commit, and who waits for its path.
struct Job {
    content: Content,
    done: oneshot::Sender<io::Result<PathBuf>>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// When the oldest job queued was queued.
    since: Option<Instant>,
    /// A blocking thread is committing batches and will take what is queued.
    running: bool,
}

/// Commits received files in batches (see the module docs). Cheap to clone; clones share
/// the queue.
#[derive(Clone, Default)]
pub struct Committer {
    queue: Arc<Mutex<Queue>>,
    /// Files being received, not yet queued.
    receiving: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Counts a file as being received until the guard is dropped.
    pub(super) fn receiving(&self) -> Receiving {
        self.receiving.fetch_add(1, Ordering::SeqCst);
        Receiving(self.receiving.clone())
    }

    /// Makes `pending` durable under its final name together with whatever else is
    /// queued; returns its path once the file and its name are durable.
    pub(crate) async fn commit(&self, mut pending: Pending) -> io::Result<PathBuf> {
        let receiving = pending.receiving.take();
        self.commit_with(Content::Ready(Box::new(pending)), receiving)
            .await
    }

    /// Queues `content` (no longer counted as being received from then on) and waits
    /// for its path.
    pub(super) async fn commit_with(
        &self,
        content: Content,
        receiving: Option<Receiving>,
    ) -> io::Result<PathBuf> {
        let (done, answer) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.since.get_or_insert_with(Instant::now);
            queue.jobs.push(Job { content, done });
            drop(receiving);
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            let (queue, receiving) = (self.queue.clone(), self.receiving.clone());
            tokio::task::spawn_blocking(move || run(&queue, &receiving));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the commit thread stopped")))
    }
}

/// Commits batches until nothing is queued; a batch waits up to [`GATHER`] for the
/// files still being received.
fn run(queue: &Mutex<Queue>, receiving: &AtomicUsize) {
    loop {
        let batch = {
            let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.jobs.is_empty() {
                queue.running = false;
                queue.since = None;
                return;
            }
            let waited = queue.since.map_or(GATHER, |since| since.elapsed());
            if waited < GATHER
                && queue.jobs.len() < MAX_BATCH
                && receiving.load(Ordering::SeqCst) > 0
            {
                drop(queue);
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            let take = queue.jobs.len().min(MAX_BATCH);
            let batch = queue.jobs.drain(..take).collect::<Vec<_>>();
            queue.since = (!queue.jobs.is_empty()).then(Instant::now);
            batch
        };
        commit_batch(batch);
    }
}

/// One file of a batch on its way through the steps.
struct Entry {
    /// The file; `None` when writing it failed.
    pending: Option<Pending>,
    done: oneshot::Sender<io::Result<PathBuf>>,
    /// Where it stands: its path once named, or why it failed.
    state: io::Result<Option<PathBuf>>,
}

impl Entry {
    /// The file, while nothing failed.
    fn live(&self) -> Option<&Pending> {
        self.state.as_ref().ok().and(self.pending.as_ref())
    }
}

/// Steps 1 to 4 of the module docs for one batch (files held in memory written first).
fn commit_batch(batch: Vec<Job>) {
    let mut entries: Vec<Entry> = batch
        .into_iter()
        .map(|job| {
            let pending = match job.content {
                Content::Ready(pending) => Ok(*pending),
                Content::Write(write) => write(),
            };
            let (pending, state) = match pending {
                Ok(mut pending) => {
                    let state = pending.finish_writes().map(|()| None);
                    (Some(pending), state)
                }
                Err(e) => (None, Err(e)),
            };
            Entry {
                pending,
                done: job.done,
                state,
            }
        })
        .collect();
    // One sync of the whole filesystem, through any file of the batch still going.
    let sync_all_at_once = |entries: &[Entry]| {
        entries
            .iter()
            .find_map(Entry::live)
            .is_some_and(|p| sys::sync_filesystem(&p.file).is_ok())
    };
    // 1. The data.
    let whole = entries.len() >= SYNCFS_FROM && sync_all_at_once(&entries);
    if !whole {
        for entry in &mut entries {
            if let Some(pending) = entry.live() {
                if let Err(e) = pending.file.sync_all() {
                    entry.state = Err(e);
                }
            }
        }
    }
    // 2. The names.
    for entry in &mut entries {
        if let (Some(pending), Ok(_)) = (entry.pending.as_mut(), &entry.state) {
            entry.state = pending.give_name().map(Some);
        }
    }
    // 3. The names made durable: each directory once, or one filesystem sync when the
    // batch spans many (a directory's sync commits the journal without writing back
    // what others have dirtied on the filesystem meanwhile).
    let dirs: BTreeSet<&std::path::Path> = entries
        .iter()
        .filter_map(Entry::live)
        .map(|p| p.dir.as_path())
        .collect();
    if !(whole && dirs.len() > DIRS_SYNCED_ONE_BY_ONE && sync_all_at_once(&entries)) {
        for dir in dirs {
            sync_dir(dir);
        }
    }
    // 4. Tell each caller.
    for entry in entries {
        let Entry {
            pending,
            done,
            state,
        } = entry;
        drop(pending);
        let _ = done.send(state.and_then(|path| path.ok_or_else(|| io::Error::other("not named"))));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::path::Path;

    use super::super::Store;

    /// Many files committed at once, written by their callers or in the batch, land
    /// whole, each under its own name (two of the same name numbered), and nothing else
    /// is left in the directory.
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
                let data = format!("file {i}").into_bytes();
                // Half written by the caller, half held in memory and written in the batch.
                let path = if i % 2 == 0 {
                    let mut pending = store.begin(Path::new(&rel), None).unwrap();
                    pending.write_all(&data).unwrap();
                    store.commit(pending).await.unwrap()
                } else {
                    let receiving = store.receiving();
                    store
                        .commit_bytes(rel.into(), data, receiving)
                        .await
                        .unwrap()
                };
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
