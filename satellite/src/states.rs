//! The typed vocabulary: a state a row can be in is an enum, mapped once to its column
//! (diesel `ToSql`/`FromSql` on TEXT), its JSON (serde), its flag (clap `ValueEnum`) and its
//! text (`Display`, `as_str`, `parse`), never a string compared in six places.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use diesel::sqlite::Sqlite;
use serde::{Deserialize, Serialize};

/// Whether a product instance is registered and served, or removed (deregistered, removed
/// by an operator, silent too long); a removed one keeps its row for the event log and may
/// register again.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    AsExpression,
    FromSqlRow,
)]
#[serde(rename_all = "lowercase")]
#[diesel(sql_type = Text)]
pub enum PiState {
    Active,
    Removed,
}

impl PiState {
    pub const ALL: [PiState; 2] = [PiState::Active, PiState::Removed];

    pub fn as_str(self) -> &'static str {
        match self {
            PiState::Active => "active",
            PiState::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<PiState> {
        PiState::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for PiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql<Text, Sqlite> for PiState {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.as_str());
        Ok(IsNull::No)
    }
}

impl FromSql<Text, Sqlite> for PiState {
    fn from_sql(value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let s = <String as FromSql<Text, Sqlite>>::from_sql(value)?;
        PiState::parse(&s).ok_or_else(|| format!("unknown product instance state {s:?}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_reads_back_from_its_text_json_and_column() {
        use diesel::prelude::*;
        let (store, _dir) = crate::db::testing::store();
        let c = &mut *store.conn().unwrap();
        for s in PiState::ALL {
            assert_eq!(PiState::parse(&s.to_string()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<PiState>(&json).unwrap(), s);
            #[derive(QueryableByName)]
            struct Row {
                #[diesel(sql_type = Text)]
                v: PiState,
            }
            let row: Row = diesel::sql_query("SELECT ? AS v")
                .bind::<Text, _>(s)
                .get_result(c)
                .unwrap();
            assert_eq!(row.v, s);
        }
        assert_eq!(PiState::parse("Active"), None);
    }
}
