//! What a backup reads of a database by plain SQL: a consistent copy (`VACUUM INTO`), and of
//! that copy (or of a database being restored over, of any schema version) its counts, its
//! newest migration and which satellite it holds.

use std::path::Path;

use diesel::prelude::*;
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub product_instances: i64,
    pub license_usage: i64,
    pub tokens: i64,
    pub events: i64,
}

/// A consistent copy of the database at `to`: `VACUUM INTO` reads in one transaction of its
/// own, so the copy is one moment, taken while the server writes.
pub fn vacuum_into(conn: &mut SqliteConnection, to: &Path) -> Result<()> {
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(to.to_string_lossy().to_string())
        .execute(conn)
        .map_err(|e| Error::Internal(format!("copying the database: {e}")))?;
    Ok(())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

pub fn counts(conn: &mut SqliteConnection) -> Result<Counts> {
    let n = |conn: &mut SqliteConnection, table: &str| -> Result<i64> {
        Ok(
            diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
                .get_result::<Count>(conn)?
                .n,
        )
    };
    Ok(Counts {
        product_instances: n(conn, "product_instances")?,
        license_usage: n(conn, "license_usage")?,
        tokens: n(conn, "registration_tokens")?,
        events: n(conn, "events")?,
    })
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    version: String,
}

pub fn schema_version(conn: &mut SqliteConnection) -> Result<String> {
    Ok(diesel::sql_query(
        "SELECT version FROM __diesel_schema_migrations ORDER BY version DESC LIMIT 1",
    )
    .get_result::<Version>(conn)
    .optional()?
    .map(|v| v.version)
    .unwrap_or_default())
}

#[derive(QueryableByName)]
struct Who {
    #[diesel(sql_type = Text)]
    satellite_id: String,
    #[diesel(sql_type = Text)]
    name: String,
}

/// (satellite id, name) of a database. Plain SQL on purpose: the target of a restore may
/// be of any schema version, and these two columns are in all of them.
pub fn identity_of(conn: &mut SqliteConnection) -> Result<(String, String)> {
    let who = diesel::sql_query("SELECT satellite_id, name FROM satellite ORDER BY id LIMIT 1")
        .get_result::<Who>(conn)
        .optional()?
        .ok_or_else(|| Error::State("the database holds no satellite".into()))?;
    Ok((who.satellite_id, who.name))
}
