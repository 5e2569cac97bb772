//! Counts of what the store holds, for `satellite status`.

use diesel::prelude::*;

use super::schema::*;
use crate::error::Result;

#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct Counts {
    pub virtual_accounts: i64,
    pub licenses: i64,
    pub tokens: i64,
    pub product_instances: i64,
    pub active_alerts: i64,
    pub events: i64,
}

pub fn counts(conn: &mut SqliteConnection) -> Result<Counts> {
    Ok(Counts {
        virtual_accounts: virtual_accounts::table.count().get_result(conn)?,
        licenses: licenses::table.count().get_result(conn)?,
        tokens: registration_tokens::table.count().get_result(conn)?,
        product_instances: product_instances::table
            .filter(product_instances::state.eq(crate::states::PiState::Active))
            .count()
            .get_result(conn)?,
        active_alerts: alerts::table
            .filter(alerts::state.eq("active"))
            .count()
            .get_result(conn)?,
        events: events::table.count().get_result(conn)?,
    })
}
