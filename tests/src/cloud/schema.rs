//! Diesel tables of the mock cloud, matching `tests/cloud-migrations/`.

diesel::table! {
    cloud (id) {
        id -> BigInt,
        cloud_id -> Text,
        created_at -> BigInt,
        clock_offset -> BigInt,
    }
}

diesel::table! {
    accounts (id) {
        id -> BigInt,
        name -> Text,
        export_controlled -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    virtual_accounts (id) {
        id -> BigInt,
        account_id -> BigInt,
        name -> Text,
        description -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    licenses (id) {
        id -> BigInt,
        va_id -> BigInt,
        tag -> Text,
        name -> Text,
        description -> Text,
        kind -> Text,
        quantity -> BigInt,
        start_at -> Nullable<BigInt>,
        end_at -> Nullable<BigInt>,
        restricted -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    satellites (id) {
        id -> BigInt,
        satellite_id -> Text,
        request_id -> Text,
        name -> Text,
        hostname -> Text,
        software_version -> Text,
        public_key_pem -> Text,
        state -> Text,
        account_id -> Nullable<BigInt>,
        certificate_pem -> Nullable<Text>,
        authorization -> Nullable<Binary>,
        created_at -> BigInt,
        authorized_at -> Nullable<BigInt>,
        last_sync_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    satellite_vas (satellite_row, va_id) {
        satellite_row -> BigInt,
        va_id -> BigInt,
    }
}

diesel::joinable!(virtual_accounts -> accounts (account_id));
diesel::joinable!(licenses -> virtual_accounts (va_id));
diesel::joinable!(satellite_vas -> virtual_accounts (va_id));
diesel::joinable!(satellite_vas -> satellites (satellite_row));

diesel::allow_tables_to_appear_in_same_query!(
    cloud,
    accounts,
    virtual_accounts,
    licenses,
    satellites,
    satellite_vas,
);
