//! Virtual accounts and their license pools, as the cloud last told us.

use diesel::prelude::*;
use sync_format::payload::{LicenseLine, VirtualAccount};

use super::schema::{licenses, virtual_accounts};
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = virtual_accounts)]
pub struct VaRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_at: i64,
    /// Whether this satellite serves it (a registration again may leave it out).
    pub served: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = licenses)]
pub struct LicenseRow {
    pub id: i64,
    pub va_id: i64,
    pub tag: String,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub quantity: i64,
    pub start_at: Option<i64>,
    pub end_at: Option<i64>,
    pub restricted: bool,
    pub updated_at: i64,
}

/// Makes the store's VAs and pools exactly those of `vas` (a registration): VAs are added or
/// updated by name; the others are no longer served (never deleted: their devices and
/// history stay); every license line is replaced.
pub fn replace(conn: &mut SqliteConnection, now: i64, vas: &[VirtualAccount]) -> Result<()> {
    delete_lines(conn)?;
    diesel::update(virtual_accounts::table)
        .set(virtual_accounts::served.eq(false))
        .execute(conn)?;
    for va in vas {
        let va_id = upsert_va(conn, now, va)?;
        for l in &va.licenses {
            insert_line(conn, now, va_id, l)?;
        }
    }
    Ok(())
}

/// Whether the satellite serves the virtual account `id`.
pub fn served(conn: &mut SqliteConnection, id: i64) -> Result<bool> {
    Ok(virtual_accounts::table
        .select(virtual_accounts::served)
        .find(id)
        .first(conn)?)
}

pub fn insert_line(
    conn: &mut SqliteConnection,
    now: i64,
    va_id: i64,
    l: &LicenseLine,
) -> Result<()> {
    insert_lines(conn, now, &[(va_id, l)])
}

/// Adds a VA or brings its description up to date; returns its id.
pub fn upsert_va(conn: &mut SqliteConnection, now: i64, va: &VirtualAccount) -> Result<i64> {
    diesel::insert_into(virtual_accounts::table)
        .values((
            virtual_accounts::name.eq(&va.name),
            virtual_accounts::description.eq(&va.description),
            virtual_accounts::created_at.eq(now),
        ))
        .on_conflict(virtual_accounts::name)
        .do_update()
        .set((
            virtual_accounts::description.eq(&va.description),
            virtual_accounts::served.eq(true),
        ))
        .execute(conn)?;
    Ok(virtual_accounts::table
        .select(virtual_accounts::id)
        .filter(virtual_accounts::name.eq(&va.name))
        .first(conn)?)
}

/// Deletes every license line (a registration brings them all again).
pub fn delete_lines(conn: &mut SqliteConnection) -> Result<()> {
    diesel::delete(licenses::table).execute(conn)?;
    Ok(())
}

/// Deletes the license lines `ids`; returns how many there were.
pub fn delete_lines_by_id(conn: &mut SqliteConnection, ids: &[i64]) -> Result<usize> {
    let mut n = 0;
    for chunk in ids.chunks(10_000) {
        n += diesel::delete(licenses::table.filter(licenses::id.eq_any(chunk))).execute(conn)?;
    }
    Ok(n)
}

/// Inserts license lines, (VA id, line), many rows per statement.
pub fn insert_lines(
    conn: &mut SqliteConnection,
    now: i64,
    lines: &[(i64, &LicenseLine)],
) -> Result<()> {
    // Ten columns a row, well under SQLite's 32,766 parameters a statement.
    for chunk in lines.chunks(1_000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(va_id, l)| {
                (
                    licenses::va_id.eq(*va_id),
                    licenses::tag.eq(&l.tag),
                    licenses::name.eq(&l.name),
                    licenses::description.eq(&l.description),
                    licenses::kind.eq(l.kind.as_str()),
                    licenses::quantity.eq(l.quantity),
                    licenses::start_at.eq(l.start),
                    licenses::end_at.eq(l.end),
                    licenses::restricted.eq(l.restricted),
                    licenses::updated_at.eq(now),
                )
            })
            .collect();
        diesel::insert_into(licenses::table)
            .values(&rows)
            .execute(conn)?;
    }
    Ok(())
}

/// Calls `each` with every license line and its VA's name, by id, a page at a time.
pub fn each_line(
    conn: &mut SqliteConnection,
    mut each: impl FnMut(LicenseRow, String),
) -> Result<()> {
    let mut after = 0;
    loop {
        let page = lines_page(conn, after, 10_000)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.0.id;
        for (l, va) in page {
            each(l, va);
        }
    }
}

/// Up to `limit` license lines after the id `after`, by id, each with its VA's name.
pub fn lines_page(
    conn: &mut SqliteConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<(LicenseRow, String)>> {
    Ok(licenses::table
        .inner_join(virtual_accounts::table)
        .select((LicenseRow::as_select(), virtual_accounts::name))
        .filter(licenses::id.gt(after))
        .order(licenses::id)
        .limit(limit)
        .load(conn)?)
}

impl LicenseRow {
    /// The line as the cloud sends it.
    pub fn as_line(&self) -> LicenseLine {
        LicenseLine {
            tag: self.tag.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            // The column holds what `as_str` wrote.
            kind: sync_format::payload::LicenseKind::parse(&self.kind)
                .unwrap_or(sync_format::payload::LicenseKind::Perpetual),
            quantity: self.quantity,
            start: self.start_at,
            end: self.end_at,
            restricted: self.restricted,
        }
    }
}

/// Every VA the satellite serves, with its license lines, by name.
pub fn all(conn: &mut SqliteConnection) -> Result<Vec<(VaRow, Vec<LicenseRow>)>> {
    let vas: Vec<VaRow> = virtual_accounts::table
        .select(VaRow::as_select())
        .filter(virtual_accounts::served.eq(true))
        .order(virtual_accounts::name)
        .load(conn)?;
    let lines: Vec<LicenseRow> = licenses::table
        .select(LicenseRow::as_select())
        .order((licenses::tag, licenses::id))
        .load(conn)?;
    Ok(vas
        .into_iter()
        .map(|va| {
            let mine = lines.iter().filter(|l| l.va_id == va.id).cloned().collect();
            (va, mine)
        })
        .collect())
}

pub fn va_name(conn: &mut SqliteConnection, id: i64) -> Result<String> {
    Ok(virtual_accounts::table
        .select(virtual_accounts::name)
        .find(id)
        .first(conn)?)
}

pub fn va_id(conn: &mut SqliteConnection, name: &str) -> Result<Option<i64>> {
    Ok(virtual_accounts::table
        .select(virtual_accounts::id)
        .filter(virtual_accounts::name.eq(name))
        .first(conn)
        .optional()?)
}

/// Every license line that ends (term and demo), with its VA's name.
pub fn ending_lines(conn: &mut SqliteConnection) -> Result<Vec<(LicenseRow, String)>> {
    Ok(licenses::table
        .inner_join(virtual_accounts::table)
        .select((LicenseRow::as_select(), virtual_accounts::name))
        .filter(licenses::end_at.is_not_null())
        .order(licenses::id)
        .load(conn)?)
}

/// Every (VA id, tag) that has a license line.
pub fn line_keys(conn: &mut SqliteConnection) -> Result<Vec<(i64, String)>> {
    Ok(licenses::table
        .select((licenses::va_id, licenses::tag))
        .distinct()
        .load(conn)?)
}

/// Every virtual account's id and name (without their license lines), served or not.
pub fn va_names(conn: &mut SqliteConnection) -> Result<Vec<(i64, String)>> {
    Ok(virtual_accounts::table
        .select((virtual_accounts::id, virtual_accounts::name))
        .order(virtual_accounts::name)
        .load(conn)?)
}

/// The virtual accounts the satellite serves: id and name.
pub fn served_names(conn: &mut SqliteConnection) -> Result<Vec<(i64, String)>> {
    Ok(virtual_accounts::table
        .select((virtual_accounts::id, virtual_accounts::name))
        .filter(virtual_accounts::served.eq(true))
        .order(virtual_accounts::name)
        .load(conn)?)
}

// ---- a large change of the license lines, staged --------------------------------------
//
// A response that changes many lines (a first sync of 300,000) builds the new `licenses`
// table beside the old one in short writes, then swaps it in with one short write: devices
// are answered between the steps, and until the swap every reader sees the old lines.

/// Lines a store holds, to check that they did not change while a swap was staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinesMark {
    pub count: i64,
    pub max_id: i64,
}

pub fn lines_mark(conn: &mut SqliteConnection) -> Result<LinesMark> {
    let (count, max_id): (i64, Option<i64>) = licenses::table
        .select((diesel::dsl::count_star(), diesel::dsl::max(licenses::id)))
        .first(conn)?;
    Ok(LinesMark {
        count,
        max_id: max_id.unwrap_or(0),
    })
}

#[derive(QueryableByName)]
struct SqlText {
    #[diesel(sql_type = diesel::sql_types::Text)]
    text: String,
}

/// Names in the schema that start with `prefix`, of `kind` ("table", "index").
fn schema_names(conn: &mut SqliteConnection, kind: &str, prefix: &str) -> Result<Vec<String>> {
    Ok(diesel::sql_query(
        "SELECT name AS text FROM sqlite_master WHERE type = ? AND substr(name, 1, length(?)) = ?",
    )
    .bind::<diesel::sql_types::Text, _>(kind)
    .bind::<diesel::sql_types::Text, _>(prefix)
    .bind::<diesel::sql_types::Text, _>(prefix)
    .load::<SqlText>(conn)?
    .into_iter()
    .map(|r| r.text)
    .collect())
}

/// The staging table of a swap (`licenses_stage_<n>`).
pub fn stage_name(n: u64) -> String {
    format!("licenses_stage_{n}")
}

/// Creates the staging table `name` as `licenses` is (its own definition, so a later
/// migration of `licenses` carries over) with its index, after dropping any staging table
/// an interrupted swap left behind.
pub fn stage_create(conn: &mut SqliteConnection, name: &str) -> Result<()> {
    use diesel::connection::SimpleConnection;
    for old in schema_names(conn, "table", "licenses_stage_")? {
        conn.batch_execute(&format!("DROP TABLE \"{old}\""))?;
    }
    let def = diesel::sql_query("SELECT sql AS text FROM sqlite_master WHERE name = 'licenses'")
        .get_result::<SqlText>(conn)?
        .text;
    // "CREATE TABLE licenses (" at first, "CREATE TABLE \"licenses\" (" after a rename.
    let columns = def.find('(').map(|i| &def[i..]).ok_or_else(|| {
        crate::error::Error::Internal(format!("unexpected definition of licenses: {def}"))
    })?;
    let def = format!("CREATE TABLE \"{name}\" {columns}");
    // The index takes the name the live one does not have: they alternate at each swap.
    let index = if schema_names(conn, "index", "licenses_va_tag_b")?.is_empty() {
        "licenses_va_tag_b"
    } else {
        "licenses_va_tag"
    };
    conn.batch_execute(&format!(
        "{def}; CREATE INDEX \"{index}\" ON \"{name}\" (va_id, tag);"
    ))?;
    Ok(())
}

/// Copies the live lines with ids in (`after`, `upto`] into the staging table.
pub fn stage_copy(conn: &mut SqliteConnection, name: &str, after: i64, upto: i64) -> Result<usize> {
    Ok(diesel::sql_query(format!(
        "INSERT INTO \"{name}\" SELECT * FROM licenses WHERE id > ? AND id <= ?"
    ))
    .bind::<diesel::sql_types::BigInt, _>(after)
    .bind::<diesel::sql_types::BigInt, _>(upto)
    .execute(conn)?)
}

/// Deletes the lines `ids` from the staging table.
pub fn stage_delete(conn: &mut SqliteConnection, name: &str, ids: &[i64]) -> Result<usize> {
    let mut n = 0;
    for chunk in ids.chunks(5_000) {
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        n += diesel::sql_query(format!("DELETE FROM \"{name}\" WHERE id IN ({list})"))
            .execute(conn)?;
    }
    Ok(n)
}

/// Inserts license lines, (VA id, line), into the staging table.
pub fn stage_insert(
    conn: &mut SqliteConnection,
    name: &str,
    now: i64,
    lines: &[(i64, &LicenseLine)],
) -> Result<()> {
    use diesel::sql_types::{BigInt, Bool, Nullable, Text};
    for chunk in lines.chunks(500) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut q = diesel::sql_query(format!(
            "INSERT INTO \"{name}\" (va_id, tag, name, description, kind, quantity, start_at, \
             end_at, restricted, updated_at) VALUES {values}"
        ))
        .into_boxed();
        for (va_id, l) in chunk {
            q = q
                .bind::<BigInt, _>(*va_id)
                .bind::<Text, _>(l.tag.clone())
                .bind::<Text, _>(l.name.clone())
                .bind::<Text, _>(l.description.clone())
                .bind::<Text, _>(l.kind.as_str())
                .bind::<BigInt, _>(l.quantity)
                .bind::<Nullable<BigInt>, _>(l.start)
                .bind::<Nullable<BigInt>, _>(l.end)
                .bind::<Bool, _>(l.restricted)
                .bind::<BigInt, _>(now);
        }
        q.execute(conn)?;
    }
    Ok(())
}

/// Drops the staging table `name` (a swap given up).
pub fn stage_drop(conn: &mut SqliteConnection, name: &str) -> Result<()> {
    use diesel::connection::SimpleConnection;
    conn.batch_execute(&format!("DROP TABLE IF EXISTS \"{name}\""))?;
    Ok(())
}

/// Swaps the staging table in for `licenses`, if the live lines are still those `mark`
/// saw when the staging began; `false` (nothing changed) when they are not.
pub fn stage_swap(conn: &mut SqliteConnection, name: &str, mark: LinesMark) -> Result<bool> {
    use diesel::connection::SimpleConnection;
    let staged = schema_names(conn, "table", name)?.iter().any(|n| n == name);
    if !staged || lines_mark(conn)? != mark {
        return Ok(false);
    }
    conn.batch_execute(&format!(
        "DROP TABLE licenses; ALTER TABLE \"{name}\" RENAME TO licenses;"
    ))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_format::payload::LicenseKind;

    fn line(tag: &str, quantity: i64) -> LicenseLine {
        LicenseLine {
            tag: tag.into(),
            name: tag.into(),
            description: String::new(),
            kind: LicenseKind::Perpetual,
            quantity,
            start: None,
            end: None,
            restricted: false,
        }
    }

    /// A staged swap replaces the lines whole, twice in a row (the index name alternates),
    /// and refuses when the live lines changed meanwhile.
    #[test]
    fn staged_lines_swap_in_and_refuse_a_changed_store() {
        let (store, _dir) = crate::db::testing::store();
        let c = &mut *store.conn().unwrap();
        let va = VirtualAccount {
            name: "Lab".into(),
            description: String::new(),
            licenses: Vec::new(),
        };
        let va_id = upsert_va(c, 1, &va).unwrap();
        let (a, b) = (line("a", 1), line("b", 2));
        insert_lines(c, 1, &[(va_id, &a), (va_id, &b)]).unwrap();
        for round in 0..2 {
            let mark = lines_mark(c).unwrap();
            let name = stage_name(round);
            stage_create(c, &name).unwrap();
            assert_eq!(stage_copy(c, &name, 0, mark.max_id).unwrap(), 2);
            let first = lines_page(c, 0, 1).unwrap()[0].0.id;
            assert_eq!(stage_delete(c, &name, &[first]).unwrap(), 1);
            stage_insert(c, &name, 2, &[(va_id, &line("c", 3))]).unwrap();
            assert!(stage_swap(c, &name, mark).unwrap());
            let tags: Vec<String> = lines_page(c, 0, 10)
                .unwrap()
                .into_iter()
                .map(|(l, _)| l.tag)
                .collect();
            assert_eq!(tags.len(), 2, "round {round}: {tags:?}");
            assert!(tags.contains(&"c".to_string()));
        }
        let mark = lines_mark(c).unwrap();
        stage_create(c, "licenses_stage_9").unwrap();
        insert_lines(c, 3, &[(va_id, &line("d", 1))]).unwrap();
        assert!(!stage_swap(c, "licenses_stage_9", mark).unwrap());
        stage_drop(c, "licenses_stage_9").unwrap();
    }
}
