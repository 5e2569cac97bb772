//! The one writer. SQLite has a single writer at a time; many pooled connections writing at
//! once turn into busy waits and retries. The server sends every write here instead: one
//! thread, one connection, and each batch of queued writes shares one transaction (group
//! commit), each write in its own savepoint so one failing write rolls back only itself.
//! A caller hears back only after the batch committed. Reads use the pool.
//!
//! SQLite's lock may still be held by another process (a CLI command writing while the
//! server runs, a backup): the writer then waits for it, up to [`LOCK_WAIT`], instead of
//! failing its batch, so device requests are answered late rather than refused. Every
//! other writer keeps its transactions short (see [`super::Store::write`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use diesel::connection::Connection;
use diesel::sqlite::SqliteConnection;

use super::{Conn, Store};
use crate::error::{Error, Result};

/// Writes queued at most before callers wait.
const QUEUE: usize = 4096;
/// Writes committed together at most.
const BATCH: usize = 512;
/// Write transactions holding SQLite's lock at least this long are logged.
const LONG_HOLD: Duration = Duration::from_millis(100);

/// The longest any write transaction of this process held SQLite's lock, in microseconds.
static LONGEST_HOLD_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Notes how long a write transaction held the lock (from its start to its commit).
fn held(d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    LONGEST_HOLD_US.fetch_max(us, Ordering::Relaxed);
    if d >= LONG_HOLD {
        tracing::info!(
            held_ms = d.as_millis() as u64,
            "a write held the database lock"
        );
    }
}

/// The longest any write transaction of this process has held SQLite's lock so far.
pub fn longest_hold() -> Duration {
    Duration::from_micros(LONGEST_HOLD_US.load(Ordering::Relaxed))
}

/// How long a write transaction waits, in all, for SQLite's lock held by another process
/// (each try waits the connection's `busy_timeout`).
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

type Done = Box<dyn FnOnce(bool) + Send>;
type Job = Box<dyn FnOnce(&mut SqliteConnection) -> Done + Send>;

/// A handle to the writer thread. Cloning shares the thread.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Job>,
    /// Writes queued and not yet taken by the thread.
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts the writer thread on a connection of `store`.
    pub fn start(store: &Store) -> Result<(Writer, WriterThread)> {
        let conn = store.writable_conn()?;
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let taken = queued.clone();
        let handle = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || run(conn, rx, &flag, &taken))
            .map_err(|e| Error::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok((Writer { tx, queued }, WriterThread { handle, stop }))
    }

    /// Writes waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Runs `f` in the writer's transaction and returns its result once committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T> + Send + 'static,
    {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<T>>();
        let job = job(f, move |r| {
            let _ = done_tx.send(r);
        });
        // A full queue: wait on the blocking pool instead of an async worker.
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(j)) => {
                let tx = self.tx.clone();
                actix_web::web::block(move || tx.send(j))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?
                    .map_err(|_| Error::Internal("the writer has stopped".into()))?;
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(Error::Internal("the writer has stopped".into()));
            }
        }
        done_rx
            .await
            .map_err(|_| Error::Internal("the writer dropped a write".into()))?
    }

    /// [`Writer::write`] for a thread that may block (the scheduler, a blocking task):
    /// queues `f` and waits until its batch committed.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T> + Send + 'static,
    {
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Result<T>>(1);
        let job = job(f, move |r| {
            let _ = done_tx.send(r);
        });
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            Error::Internal("the writer has stopped".into())
        })?;
        done_rx
            .recv()
            .map_err(|_| Error::Internal("the writer dropped a write".into()))?
    }
}

/// A queued write: `f` in its own savepoint of the batch's transaction, its result handed
/// to `reply` once the batch committed (or failed to).
fn job<T, F>(f: F, reply: impl FnOnce(Result<T>) + Send + 'static) -> Job
where
    T: Send + 'static,
    F: FnOnce(&mut SqliteConnection) -> Result<T> + Send + 'static,
{
    Box::new(move |conn| {
        let result = conn.transaction::<T, Error, _>(|c| f(c));
        Box::new(move |committed| {
            reply(match (result, committed) {
                (Ok(_), false) => Err(Error::Internal("the write could not be committed".into())),
                (r, _) => r,
            })
        })
    })
}

/// Runs `f` in an immediate transaction on `conn`, waiting (up to [`LOCK_WAIT`]) while
/// another process holds SQLite's write lock. What `f` returns, error or not, is final:
/// only the transaction's start is tried again.
pub(super) fn begin_immediate<T>(
    conn: &mut SqliteConnection,
    f: impl FnOnce(&mut SqliteConnection) -> Result<T>,
) -> Result<T> {
    let started = std::time::Instant::now();
    let mut f = Some(f);
    loop {
        let mut locked = None;
        let r = conn.immediate_transaction::<T, Error, _>(|c| match f.take() {
            Some(f) => {
                locked = Some(std::time::Instant::now());
                f(c)
            }
            None => Err(Error::Internal("a write ran twice".into())),
        });
        if let Some(at) = locked {
            held(at.elapsed());
        }
        match r {
            Err(e) if f.is_some() && e.is_busy() && started.elapsed() < LOCK_WAIT => {
                tracing::warn!("the database is locked by another process; waiting");
            }
            r => return r,
        }
    }
}

/// The writer thread, to stop once nothing more will be written.
pub struct WriterThread {
    handle: JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl WriterThread {
    /// Finishes what is queued, closes the connection and ends the thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        if self.handle.join().is_err() {
            tracing::error!("the database writer thread panicked");
        }
    }
}

fn run(
    mut conn: Conn,
    rx: Receiver<Job>,
    stop: &AtomicBool,
    queued: &std::sync::atomic::AtomicUsize,
) {
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Acquire) => continue,
            Err(_) => return,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
        let mut dones = Vec::with_capacity(batch.len());
        let committed = begin_immediate(&mut conn, |c| {
            for job in batch.drain(..) {
                dones.push(job(c));
            }
            Ok(())
        })
        .is_ok();
        if !committed {
            tracing::error!("a batch of writes failed to commit; its callers get an error");
        }
        for done in dones {
            done(committed);
        }
    }
}
