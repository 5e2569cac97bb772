//! Diesel table definitions, matching `migrations/`. Ids and times are `BigInt` (i64).

diesel::table! {
    satellite (id) {
        id -> BigInt,
        satellite_id -> Text,
        name -> Text,
        hostname -> Text,
        created_at -> BigInt,
        state -> Text,
        registered_at -> Nullable<BigInt>,
        removed_at -> Nullable<BigInt>,
        cloud_id -> Nullable<Text>,
        account_name -> Nullable<Text>,
        cloud_ca_pem -> Nullable<Text>,
        certificate_pem -> Nullable<Text>,
        export_controlled_allowed -> Bool,
        registration_request_id -> Nullable<Text>,
        last_sync_at -> Nullable<BigInt>,
        next_sync_due_at -> Nullable<BigInt>,
        cloud_ca_previous_pem -> Nullable<Text>,
    }
}

diesel::table! {
    registration_requests (bundle_id) {
        bundle_id -> Text,
        created_at -> BigInt,
        mode -> Text,
        cloud_url -> Nullable<Text>,
        answered_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    clock_state (id) {
        id -> BigInt,
        offset_seconds -> BigInt,
        high_water -> BigInt,
        last_clock -> BigInt,
    }
}

diesel::table! {
    virtual_accounts (id) {
        id -> BigInt,
        name -> Text,
        description -> Text,
        created_at -> BigInt,
        served -> Bool,
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
        updated_at -> BigInt,
    }
}

diesel::table! {
    registration_tokens (id) {
        id -> BigInt,
        va_id -> BigInt,
        lookup_id -> Text,
        hint -> Text,
        description -> Text,
        created_at -> BigInt,
        created_by -> Text,
        expires_at -> BigInt,
        max_uses -> Nullable<BigInt>,
        uses -> BigInt,
        export_controlled -> Bool,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    product_instances (id) {
        id -> BigInt,
        uuid -> Text,
        va_id -> BigInt,
        pid -> Text,
        sn -> Text,
        udi_uuid -> Nullable<Text>,
        host_id -> Nullable<Text>,
        mac -> Nullable<Text>,
        name -> Text,
        token_id -> Nullable<BigInt>,
        export_controlled -> Bool,
        public_key -> Text,
        cert_serial -> Nullable<Text>,
        cert_not_after -> Nullable<BigInt>,
        registered_at -> BigInt,
        last_contact_at -> BigInt,
        last_counter -> BigInt,
        state -> Text,
        removed_at -> Nullable<BigInt>,
        change_seq -> BigInt,
        reregister_allowed_until -> Nullable<BigInt>,
    }
}

diesel::table! {
    license_usage (pi_id, tag) {
        pi_id -> BigInt,
        tag -> Text,
        count -> BigInt,
        requested_at -> BigInt,
        status -> Text,
    }
}

diesel::table! {
    pool_usage (va_id, tag) {
        va_id -> BigInt,
        tag -> Text,
        in_use -> BigInt,
        authorized -> BigInt,
    }
}

diesel::table! {
    sync_history (id) {
        id -> BigInt,
        bundle_id -> Text,
        direction -> Text,
        mode -> Text,
        sequence -> BigInt,
        created_at -> BigInt,
        completed_at -> Nullable<BigInt>,
        status -> Text,
        message -> Text,
        full -> Bool,
        to_change -> BigInt,
        to_event -> BigInt,
        records -> BigInt,
    }
}

diesel::table! {
    sync_state (id) {
        id -> BigInt,
        change_seq -> BigInt,
        acked_change -> BigInt,
        acked_event_id -> BigInt,
        requests_made -> BigInt,
        last_response_id -> Nullable<Text>,
        last_response_seq -> BigInt,
        last_response_created_at -> Nullable<BigInt>,
        last_mode -> Nullable<Text>,
        failures -> BigInt,
        last_failure -> Nullable<Text>,
        last_attempt_at -> Nullable<BigInt>,
        next_attempt_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    sync_rejections (id) {
        id -> BigInt,
        pi_uuid -> Text,
        record -> Text,
        reason -> Text,
        response_id -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    export_requests (id) {
        id -> BigInt,
        request_uuid -> Text,
        pi_id -> BigInt,
        tag -> Text,
        count -> BigInt,
        direction -> Text,
        state -> Text,
        sync_id -> Nullable<BigInt>,
        reason -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        return_of -> Nullable<BigInt>,
        license_name -> Nullable<Text>,
        license_kind -> Nullable<Text>,
        answered_at -> Nullable<BigInt>,
        delivered_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    alerts (id) {
        id -> BigInt,
        kind -> Text,
        severity -> Text,
        source_type -> Text,
        source_id -> Nullable<Text>,
        va_id -> Nullable<BigInt>,
        message -> Text,
        action_due_at -> Nullable<BigInt>,
        state -> Text,
        remind_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        subject -> Nullable<Text>,
        period -> Nullable<Text>,
        dismissed_by -> Nullable<Text>,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        at -> BigInt,
        kind -> Text,
        va_name -> Nullable<Text>,
        pi_uuid -> Nullable<Text>,
        license_tag -> Nullable<Text>,
        message -> Text,
        actor -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    operators (id) {
        id -> BigInt,
        username -> Text,
        role -> Text,
        password_hash -> Text,
        created_at -> BigInt,
        password_changed_at -> BigInt,
        last_login_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    operator_sessions (id_hash) {
        id_hash -> Text,
        operator_id -> BigInt,
        csrf -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    operator_api_tokens (id) {
        id -> BigInt,
        operator_id -> BigInt,
        description -> Text,
        token_hash -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(licenses -> virtual_accounts (va_id));
diesel::joinable!(registration_tokens -> virtual_accounts (va_id));
diesel::joinable!(product_instances -> virtual_accounts (va_id));
diesel::joinable!(license_usage -> product_instances (pi_id));
diesel::joinable!(export_requests -> product_instances (pi_id));
diesel::joinable!(operator_sessions -> operators (operator_id));
diesel::joinable!(operator_api_tokens -> operators (operator_id));

diesel::allow_tables_to_appear_in_same_query!(
    satellite,
    registration_requests,
    clock_state,
    virtual_accounts,
    licenses,
    registration_tokens,
    product_instances,
    license_usage,
    pool_usage,
    sync_history,
    sync_state,
    sync_rejections,
    export_requests,
    alerts,
    events,
    operators,
    operator_sessions,
    operator_api_tokens,
);
