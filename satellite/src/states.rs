//! The typed vocabulary: a state a row can be in is an enum, mapped once to its column
//! (diesel `ToSql`/`FromSql` on TEXT), its JSON (serde), its flag (clap `ValueEnum`) and its
//! text (`Display`, `as_str`, `parse`), never a string compared in six places.

/// An enum stored as TEXT: its variants and their texts, once; `as_str`, `parse`,
/// `Display`, serde, clap and diesel all follow from it (each by its text, so a text may
/// be "used-up" or "Licenses Expiring").
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
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

            /// Every text, for a message: "a, b or c".
            pub fn choices() -> String {
                $crate::states::choices($name::ALL.iter().map(|v| v.as_str()))
            }

            /// Parses a value an operator gave (`what` names it), or says which are known.
            pub fn parse_named(what: &str, s: &str) -> $crate::error::Result<$name> {
                $name::parse(s).ok_or_else(|| {
                    $crate::error::Error::invalid(format!(
                        "unknown {what} {s:?}: use {}",
                        $name::choices()
                    ))
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown value {s:?}: use {}", $name::choices()))
                })
            }
        }

        impl clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                $name::ALL
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.as_str()))
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::sqlite::Sqlite> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::sqlite::Sqlite>,
            ) -> diesel::serialize::Result {
                out.set_value(self.as_str());
                Ok(diesel::serialize::IsNull::No)
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::sqlite::Sqlite> for $name {
            fn from_sql(
                value: <diesel::sqlite::Sqlite as diesel::backend::Backend>::RawValue<'_>,
            ) -> diesel::deserialize::Result<Self> {
                let s = <String as diesel::deserialize::FromSql<
                    diesel::sql_types::Text,
                    diesel::sqlite::Sqlite,
                >>::from_sql(value)?;
                $name::parse(&s).ok_or_else(|| {
                    format!("unknown {} {s:?}", stringify!($name)).into()
                })
            }
        }
    };
}
pub(crate) use text_enum;

/// A count with its noun: "1 license line", "2 license lines", "0 events".
pub fn plural(n: impl Into<i64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "a, b or c".
pub fn choices<'a>(all: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = all.collect();
    match all.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.to_string(),
        None => String::new(),
    }
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
    /// The order of a list of product instances: by registration (the default), name,
    /// serial number or last contact (the longest silent first).
    DeviceSort {
        Registered => "registered",
        Name => "name",
        Serial => "serial",
        LastContact => "last-contact",
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

text_enum! {
    /// Where a token stands (registration tokens and operators' API tokens): usable,
    /// revoked, past its expiry, or used its maximum number of times (registration tokens).
    TokenState {
        Active => "active",
        Expired => "expired",
        UsedUp => "used-up",
        Revoked => "revoked",
    }
}

text_enum! {
    /// Where an export-controlled request or return stands: queued for the next sync, sent
    /// in one, answered by the cloud (granted, denied, or for a return: returned), and a
    /// grant delivered to its device.
    ExportState {
        Queued => "queued",
        Sent => "sent",
        Granted => "granted",
        Denied => "denied",
        Delivered => "delivered",
        Returned => "returned",
    }
}

impl ExportState {
    /// The states in which a request holds its restricted license (counted in its pool).
    pub const HOLDING: [ExportState; 2] = [ExportState::Granted, ExportState::Delivered];
    /// The states of a row waiting for the cloud.
    pub const WAITING: [ExportState; 2] = [ExportState::Queued, ExportState::Sent];

    pub fn holds(self) -> bool {
        ExportState::HOLDING.contains(&self)
    }

    pub fn waits(self) -> bool {
        ExportState::WAITING.contains(&self)
    }
}

text_enum! {
    /// Whether an export-controlled row asks for restricted licenses or gives them back.
    ExportDirection {
        Request => "request",
        Return => "return",
    }
}

text_enum! {
    /// How a registration or sync travels: as files an operator carries ("manual"), or over
    /// HTTPS to `[cloud] url` ("network").
    SyncMode {
        Manual => "manual",
        Network => "network",
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
                #[diesel(sql_type = diesel::sql_types::Text)]
                v: PiState,
            }
            let row: Row = diesel::sql_query("SELECT ? AS v")
                .bind::<diesel::sql_types::Text, _>(s)
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
