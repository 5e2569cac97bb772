//! Persistence: the SQLite store behind an r2d2 pool, its migrations, and one module per
//! table family. Nothing outside `db` writes SQL.

pub mod alerts;
pub mod backup;
pub mod clock;
pub mod devices;
pub mod events;
pub mod export;
pub mod identity;
pub mod operators;
pub mod pools;
pub mod registration;
pub mod schema;
pub mod stats;
pub mod sync;
pub mod tokens;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::{StorageConfig, Synchronous};
use crate::datadir;
use crate::error::{Error, Result};

/// The page cache of a connection that writes, in KiB (SQLite's default is 2,000).
const WRITE_CACHE_KIB: u32 = 32 * 1024;

/// The migrations in `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

pub type DbPool = Pool<ConnectionManager<SqliteConnection>>;
pub type Conn = PooledConnection<ConnectionManager<SqliteConnection>>;

/// Per-connection settings, applied every time a connection leaves the pool's factory.
/// `busy_timeout` comes first so the following statements already wait for a lock instead
/// of failing (diesel issue #2365).
#[derive(Debug, Clone, Copy)]
struct ConnectionSettings {
    busy_timeout_ms: u32,
    synchronous: Synchronous,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for ConnectionSettings {
    fn on_acquire(
        &self,
        conn: &mut SqliteConnection,
    ) -> std::result::Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = {};",
            self.busy_timeout_ms,
            self.synchronous.pragma()
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// `(a, b) > (x, y)` as an SQL row value: SQLite walks an index on (a, b) from that point,
/// so paging by it stays linear even when many rows share `a` (keyset paging).
fn after_pair(
    a: &'static str,
    b: &'static str,
    (x, y): (i64, i64),
) -> diesel::expression::SqlLiteral<
    diesel::sql_types::Bool,
    impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> + diesel::query_builder::QueryId,
> {
    use diesel::sql_types::BigInt;
    diesel::dsl::sql::<diesel::sql_types::Bool>(&format!("({a}, {b}) > ("))
        .bind::<BigInt, _>(x)
        .sql(", ")
        .bind::<BigInt, _>(y)
        .sql(")")
}

/// Runs `f` on one read snapshot of `conn` (a deferred transaction that only reads): what
/// `f` reads is consistent however long it takes, and holds no write lock.
pub fn read_snapshot<T>(
    conn: &mut SqliteConnection,
    f: impl FnOnce(&mut SqliteConnection) -> Result<T>,
) -> Result<T> {
    use diesel::Connection;
    conn.transaction(f)
}

/// Runs `f` inside the caller's write transaction and rolls back all it did, whatever it
/// returns: a preview (a dry run) of a change.
pub fn rolled_back<T>(
    conn: &mut SqliteConnection,
    f: impl FnOnce(&mut SqliteConnection) -> Result<T>,
) -> Result<T> {
    use diesel::Connection;
    enum Undo<T> {
        Done(T),
        Failed(Error),
    }
    impl<T> From<diesel::result::Error> for Undo<T> {
        fn from(e: diesel::result::Error) -> Self {
            Undo::Failed(e.into())
        }
    }
    match conn.transaction::<(), Undo<T>, _>(|c| match f(c) {
        Ok(v) => Err(Undo::Done(v)),
        Err(e) => Err(Undo::Failed(e)),
    }) {
        Err(Undo::Done(v)) => Ok(v),
        Err(Undo::Failed(e)) => Err(e),
        Ok(()) => Err(Error::Internal("a preview was not rolled back".into())),
    }
}

/// The satellite's store: the data directory and a pool of connections to its database.
///
/// One write path: [`Store::write`] is the only way anything outside `db` changes the
/// store. In the running server (a store [`Store::serving`] a [`writer::Writer`]) every
/// write goes through the one writer, and pooled connections are read-only
/// (`PRAGMA query_only`), so a write that bypasses the writer fails loudly instead of
/// contending for SQLite's lock. Elsewhere (CLI commands) a write is one short immediate
/// transaction on a pooled connection.
#[derive(Clone)]
pub struct Store {
    pool: DbPool,
    data_dir: PathBuf,
    db_path: PathBuf,
    writer: Option<writer::Writer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("db_path", &self.db_path)
            .finish()
    }
}

impl Store {
    /// Whether the database answers (a trivial query on a pooled connection).
    pub fn ping(&self) -> Result<()> {
        use diesel::connection::SimpleConnection;
        self.conn()?.batch_execute("SELECT 1")?;
        Ok(())
    }

    /// Opens (creating if needed) the data directory and the database, and applies pending
    /// migrations. Returns the store and the migrations it applied.
    pub fn open(cfg: &StorageConfig) -> Result<(Store, Vec<String>)> {
        datadir::ensure(&cfg.data_dir)?;
        let db_path = cfg.data_dir.join("satellite.db");
        let settings = ConnectionSettings {
            busy_timeout_ms: cfg.busy_timeout_ms,
            synchronous: cfg.synchronous,
        };
        let manager = ConnectionManager::<SqliteConnection>::new(db_path.to_string_lossy());
        let pool = Pool::builder()
            .max_size(cfg.pool_size)
            .connection_timeout(Duration::from_secs(30))
            .connection_customizer(Box::new(settings))
            .build(manager)
            .map_err(|e| Error::DataDir {
                path: cfg.data_dir.clone(),
                reason: format!("cannot open database {}: {e}", db_path.display()),
            })?;
        let store = Store {
            pool,
            data_dir: cfg.data_dir.clone(),
            db_path,
            writer: None,
        };
        let applied = store.migrate()?;
        datadir::restrict_file(&store.db_path)?;
        Ok((store, applied))
    }

    /// Applies pending migrations; returns the versions applied (empty when up to date).
    pub fn migrate(&self) -> Result<Vec<String>> {
        let mut conn = self.writable_conn()?;
        // WAL is a property of the database file: set once, it stays.
        conn.batch_execute("PRAGMA journal_mode = WAL;")?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| Error::Migration(e.to_string()))?;
        Ok(applied.iter().map(|v| v.to_string()).collect())
    }

    /// A pooled connection: read-only in the server (see [`Store::write`]).
    pub fn conn(&self) -> Result<Conn> {
        let mut conn = self.pool.get()?;
        conn.batch_execute(if self.writer.is_some() {
            "PRAGMA query_only = 1"
        } else {
            "PRAGMA query_only = 0"
        })?;
        Ok(conn)
    }

    /// A connection that may write, outside any writer: the writer's own, and migrations.
    fn writable_conn(&self) -> Result<Conn> {
        let mut conn = self.pool.get()?;
        // A write transaction's pages stay in memory until it commits (up to this much),
        // instead of spilling to the WAL and being written again and again: a large apply
        // holds the lock for a fraction of the time. Memory is taken only as pages are.
        conn.batch_execute(&format!(
            "PRAGMA query_only = 0; PRAGMA cache_size = -{WRITE_CACHE_KIB}"
        ))?;
        Ok(conn)
    }

    /// This store, with every write going through `writer` (the running server).
    pub fn serving(&self, writer: writer::Writer) -> Store {
        Store {
            writer: Some(writer),
            ..self.clone()
        }
    }

    /// Whether writes go through the server's writer.
    pub fn is_serving(&self) -> bool {
        self.writer.is_some()
    }

    /// Runs `f` in one write transaction and returns its result once committed; an error
    /// from `f` rolls back all it did. In the server, `f` joins the writer's queue (and
    /// this call blocks until its batch committed: call it off the async workers, or use
    /// [`writer::Writer::write`] there); elsewhere it runs in an immediate transaction on a
    /// pooled connection. Domain functions never begin a transaction of their own: they
    /// take the connection of the one that `write` began.
    pub fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T> + Send + 'static,
    {
        match &self.writer {
            Some(w) => w.write_blocking(f),
            None => writer::begin_immediate(&mut *self.writable_conn()?, f),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::config::Config;

    /// A store in a fresh temporary directory, kept alive by the returned guard.
    pub fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::load_from(None, &[]).unwrap();
        cfg.storage.data_dir = dir.path().join("data");
        let (store, _) = Store::open(&cfg.storage).unwrap();
        (store, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};

    #[derive(QueryableByName)]
    struct Pragma {
        #[diesel(sql_type = BigInt)]
        v: i64,
    }

    #[derive(QueryableByName)]
    struct Mode {
        #[diesel(sql_type = Text)]
        journal_mode: String,
    }

    #[test]
    fn migrations_apply_to_an_empty_database_and_are_idempotent() {
        let (store, _dir) = testing::store();
        // A second run applies nothing.
        assert!(store.migrate().unwrap().is_empty());
        let mut conn = store.conn().unwrap();
        let n: i64 = schema::clock_state::table
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(n, 1);
        // And the migrations can be reverted and re-applied cleanly.
        conn.revert_all_migrations(MIGRATIONS).unwrap();
        let applied = conn.run_pending_migrations(MIGRATIONS).unwrap();
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count();
        assert_eq!(applied.len(), on_disk);
    }

    #[test]
    fn every_connection_has_foreign_keys_busy_timeout_and_wal() {
        let (store, _dir) = testing::store();
        let mut conn = store.conn().unwrap();
        let fk: Pragma = diesel::sql_query("SELECT foreign_keys AS v FROM pragma_foreign_keys")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(fk.v, 1);
        let bt: Pragma = diesel::sql_query("SELECT timeout AS v FROM pragma_busy_timeout")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(bt.v, 5000);
        let sync: Pragma = diesel::sql_query("SELECT synchronous AS v FROM pragma_synchronous")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(sync.v, 1, "NORMAL");
        let mode: Mode = diesel::sql_query("PRAGMA journal_mode")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(mode.journal_mode, "wal");
    }

    #[derive(QueryableByName)]
    struct CompileOption {
        #[diesel(sql_type = Text)]
        compile_options: String,
    }

    /// The bundled SQLite is built with the query planner stability guarantee (the workspace's
    /// `.cargo/config.toml`). Without it every statement with `LIMIT ?` (each `.first()`) is
    /// compiled again each time it runs, which cost the writer more than half its time per
    /// registration (see BENCHMARKS.md).
    #[test]
    fn sqlite_plans_stay_prepared() {
        let (store, _dir) = testing::store();
        let mut conn = store.conn().unwrap();
        let options: Vec<CompileOption> = diesel::sql_query("PRAGMA compile_options")
            .load(&mut conn)
            .unwrap();
        assert!(
            options.iter().any(|o| o.compile_options == "ENABLE_QPSG"),
            "SQLite was built without SQLITE_ENABLE_QPSG: build from the workspace, whose \
             .cargo/config.toml sets LIBSQLITE3_FLAGS"
        );
    }

    #[test]
    fn foreign_keys_are_enforced() {
        let (store, _dir) = testing::store();
        let mut conn = store.conn().unwrap();
        let res = diesel::sql_query(
            "INSERT INTO licenses (va_id, tag, name, kind, quantity, updated_at) \
             VALUES (999, 't', 'n', 'perpetual', 1, 0)",
        )
        .execute(&mut conn);
        assert!(res.is_err(), "a license of an unknown VA must be refused");
    }

    #[test]
    fn event_log_is_append_only() {
        let (store, _dir) = testing::store();
        let mut conn = store.conn().unwrap();
        diesel::sql_query(
            "INSERT INTO events (at, kind, message, prev_hash, hash) VALUES (1, 'k', 'm', '', 'h')",
        )
        .execute(&mut conn)
        .unwrap();
        let err = diesel::sql_query("UPDATE events SET message = 'x'")
            .execute(&mut conn)
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        assert!(diesel::sql_query("DELETE FROM events")
            .execute(&mut conn)
            .is_err());
    }

    /// The single write path holds: in the server a pooled connection cannot write (a write
    /// that bypassed the writer would fail, not contend for the lock), `Store::write` goes
    /// through the writer, and a write that fails changes nothing.
    #[test]
    fn in_the_server_only_the_writer_writes() {
        let (store, _dir) = testing::store();
        let (writer, thread) = writer::Writer::start(&store).unwrap();
        let serving = store.serving(writer);
        let insert = "INSERT INTO events (at, kind, message, prev_hash, hash) \
                      VALUES (1, 'k', 'm', '', 'h')";
        let err = diesel::sql_query(insert)
            .execute(&mut *serving.conn().unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        let n = serving
            .write(move |c| Ok(diesel::sql_query(insert).execute(c)?))
            .unwrap();
        assert_eq!(n, 1);
        let failed: Result<()> = serving.write(move |c| {
            diesel::sql_query(insert).execute(c)?;
            Err(Error::invalid("refused"))
        });
        assert!(failed.is_err());
        let count: Vec<Pragma> = diesel::sql_query("SELECT count(*) AS v FROM events")
            .load(&mut *serving.conn().unwrap())
            .unwrap();
        assert_eq!(count[0].v, 1);
        // Outside the server (a CLI command) the same store writes on its own connections.
        diesel::sql_query(insert)
            .execute(&mut *store.conn().unwrap())
            .unwrap();
        thread.stop();
    }
}
