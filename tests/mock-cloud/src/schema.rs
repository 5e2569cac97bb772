//! Diesel tables of the mock cloud, matching `tests/mock-cloud/migrations/`.

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
        next_sync_due -> Nullable<BigInt>,
        removed_at -> Nullable<BigInt>,
        renewed_key_pem -> Nullable<Text>,
        removal_reason -> Nullable<Text>,
    }
}

diesel::table! {
    product_instances (id) {
        id -> BigInt,
        uuid -> Text,
        satellite_row -> Nullable<BigInt>,
        va_id -> BigInt,
        pid -> Text,
        sn -> Text,
        name -> Text,
        registered_at -> BigInt,
        last_contact_at -> BigInt,
        state -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    pi_usage (pi_id, tag) {
        pi_id -> BigInt,
        tag -> Text,
        count -> BigInt,
    }
}

diesel::table! {
    syncs (id) {
        id -> BigInt,
        satellite_row -> BigInt,
        request_id -> Text,
        response_id -> Text,
        response -> Binary,
        received_at -> BigInt,
        full -> Bool,
        records -> BigInt,
        rejected -> BigInt,
    }
}

diesel::table! {
    satellite_events (satellite_row, event_id) {
        satellite_row -> BigInt,
        event_id -> BigInt,
        at -> BigInt,
        kind -> Text,
        message -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    event_chain_breaks (id) {
        id -> BigInt,
        satellite_row -> BigInt,
        event_id -> BigInt,
        reason -> Text,
        detected_at -> BigInt,
    }
}

diesel::table! {
    shortages (va_id, tag) {
        va_id -> BigInt,
        tag -> Text,
        purchased -> BigInt,
        in_use -> BigInt,
        flagged_at -> BigInt,
    }
}

diesel::table! {
    satellite_vas (satellite_row, va_id) {
        satellite_row -> BigInt,
        va_id -> BigInt,
    }
}

diesel::table! {
    export_answers (request_id) {
        request_id -> Text,
        satellite_row -> BigInt,
        op -> Text,
        pi_uuid -> Text,
        tag -> Text,
        count -> BigInt,
        status -> Text,
        reason_code -> Nullable<Text>,
        reason -> Nullable<Text>,
        license_name -> Text,
        license_kind -> Text,
        answered_at -> BigInt,
    }
}

diesel::table! {
    export_locks (id) {
        id -> BigInt,
        request_id -> Text,
        pi_id -> BigInt,
        tag -> Text,
        count -> BigInt,
        granted_at -> BigInt,
        released_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(virtual_accounts -> accounts (account_id));
diesel::joinable!(export_locks -> product_instances (pi_id));
diesel::joinable!(export_answers -> satellites (satellite_row));
diesel::joinable!(licenses -> virtual_accounts (va_id));
diesel::joinable!(satellite_vas -> virtual_accounts (va_id));
diesel::joinable!(satellite_vas -> satellites (satellite_row));
diesel::joinable!(product_instances -> virtual_accounts (va_id));
diesel::joinable!(product_instances -> satellites (satellite_row));
diesel::joinable!(pi_usage -> product_instances (pi_id));
diesel::joinable!(shortages -> virtual_accounts (va_id));

diesel::allow_tables_to_appear_in_same_query!(
    cloud,
    accounts,
    virtual_accounts,
    licenses,
    satellites,
    satellite_vas,
    product_instances,
    pi_usage,
    syncs,
    satellite_events,
    shortages,
    export_answers,
    export_locks,
    event_chain_breaks,
);
