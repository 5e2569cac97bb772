//! The one writer. SQLite has a single writer at a time; many pooled connections writing at
//! once turn into busy waits and retries. The server sends every write here instead: one
//! thread, one connection, and each batch of queued writes shares one transaction (group
//! commit), each write in its own savepoint so one failing write rolls back only itself.
//! A caller hears back only after the batch committed. Reads use the pool.

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

type Done = Box<dyn FnOnce(bool) + Send>;
type Job = Box<dyn FnOnce(&mut SqliteConnection) -> Done + Send>;

/// A handle to the writer thread. Cloning shares the thread.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Job>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts the writer thread on a connection of `store`.
    pub fn start(store: &Store) -> Result<(Writer, WriterThread)> {
        let conn = store.conn()?;
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || run(conn, rx, &flag))
            .map_err(|e| Error::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok((Writer { tx }, WriterThread { handle, stop }))
    }

    /// Runs `f` in the writer's transaction and returns its result once committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T> + Send + 'static,
    {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let result = conn.transaction::<T, Error, _>(|c| f(c));
            Box::new(move |committed| {
                let result = match (result, committed) {
                    (Ok(_), false) => {
                        Err(Error::Internal("the write could not be committed".into()))
                    }
                    (r, _) => r,
                };
                let _ = done_tx.send(result);
            })
        });
        // A full queue: wait on the blocking pool instead of an async worker.
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
                return Err(Error::Internal("the writer has stopped".into()))
            }
        }
        done_rx
            .await
            .map_err(|_| Error::Internal("the writer dropped a write".into()))?
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

fn run(mut conn: Conn, rx: Receiver<Job>, stop: &AtomicBool) {
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
        let mut dones = Vec::with_capacity(batch.len());
        let committed = conn
            .immediate_transaction::<_, diesel::result::Error, _>(|c| {
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
