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

/// An enum stored as TEXT: its variants and their texts, once; `as_str`, `parse`,
/// `Display`, serde, clap and diesel all follow from it.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
            AsExpression, FromSqlRow,
        )]
        #[serde(rename_all = "lowercase")]
        #[diesel(sql_type = Text)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql<Text, Sqlite> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
                out.set_value(self.as_str());
                Ok(IsNull::No)
            }
        }

        impl FromSql<Text, Sqlite> for $name {
            fn from_sql(value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
                let s = <String as FromSql<Text, Sqlite>>::from_sql(value)?;
                $name::parse(&s).ok_or_else(|| {
                    format!("unknown {} {s:?}", stringify!($name)).into()
                })
            }
        }
    };
}

text_enum! {
    /// Whether a product instance is registered and served, or removed (deregistered,
    /// removed by an operator, silent too long); a removed one keeps its row for the event
    /// log and may register again.
    PiState {
        Active => "active",
        Removed => "removed",
    }
}

text_enum! {
    /// Where the satellite stands with the cloud: not yet registered, waiting for the cloud
    /// to approve a network registration, registered, or removed (90 days without a sync, or
    /// by the cloud) and to be registered again.
    SatelliteState {
        Unregistered => "unregistered",
        Pending => "pending",
        Registered => "registered",
        Removed => "removed",
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
        for &s in PiState::ALL {
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
        for &s in SatelliteState::ALL {
            assert_eq!(SatelliteState::parse(s.as_str()), Some(s));
        }
    }
}
