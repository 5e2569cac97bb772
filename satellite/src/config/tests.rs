use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

#[test]
fn embedded_default_parses_and_has_documented_values() {
    let c = Config::load_from(None, &[]).unwrap();
    assert_eq!(c.server.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(c.storage.data_dir, PathBuf::from("./satellite-data"));
    assert!(!c.testing.manual_clock);
}

#[test]
fn every_default_key_is_commented() {
    // Each key line in the documented file is preceded by a comment line.
    let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.contains('=') && !t.starts_with('#') {
            assert!(
                i > 0 && lines[i - 1].trim_start().starts_with('#'),
                "key without a comment: {t}"
            );
        }
    }
}

#[test]
fn precedence_default_file_env() {
    let f = write("[server]\nlisten = \"127.0.0.1:9000\"\n[storage]\npool_size = 3\n");
    let c = Config::load_from(Some(f.path()), &[]).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.storage.pool_size, 3);
    // untouched keys keep their defaults
    assert_eq!(c.storage.busy_timeout_ms, 5000);

    let e = env(&[
        ("SATELLITE_SERVER_LISTEN", "127.0.0.1:9100"),
        ("SATELLITE_STORAGE_DATA_DIR", "/tmp/x"),
        ("SATELLITE_TESTING_MANUAL_CLOCK", "true"),
        ("SATELLITE_SERVER_HOSTNAMES", "a.example, 10.1.2.3"),
        ("UNRELATED", "x"),
    ]);
    let c = Config::load_from(Some(f.path()), &e).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.storage.pool_size, 3, "file value kept when env is silent");
    assert!(c.testing.manual_clock);
    assert_eq!(c.server.hostnames, vec!["a.example", "10.1.2.3"]);
}

#[test]
fn unknown_key_in_file_is_named() {
    let f = write("[server]\nlisen = \"127.0.0.1:9000\"\n");
    let err = Config::load_from(Some(f.path()), &[]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::UnknownKey { .. }), "{msg}");
    assert!(
        msg.contains("server.lisen") && msg.contains("listen"),
        "{msg}"
    );
}

#[test]
fn unknown_section_and_env_are_named() {
    let f = write("[sever]\nlisten = \"x\"\n");
    let msg = Config::load_from(Some(f.path()), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("[sever]"), "{msg}");
    let msg = Config::load_from(None, &env(&[("SATELLITE_SERVER_LISTN", "x")]))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("server.listn") && msg.contains("SATELLITE_SERVER_LISTN"),
        "{msg}"
    );
}

#[test]
fn bad_values_name_key_value_and_allowed() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[server]\nlisten = \"nowhere\"\n",
            "server.listen",
            "address:port",
        ),
        ("[storage]\npool_size = 0\n", "storage.pool_size", "1 to 64"),
        (
            "[storage]\npool_size = \"eight\"\n",
            "storage.pool_size",
            "1 to 64",
        ),
        (
            "[storage]\nsynchronous = \"off\"\n",
            "storage.synchronous",
            "\"full\"",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format", "json"),
        (
            "[testing]\nmanual_clock = \"yes\"\n",
            "testing.manual_clock",
            "true or false",
        ),
        (
            "[server]\nhostnames = [\"bad host\"]\n",
            "server.hostnames",
            "host names",
        ),
    ];
    for (text, key, allowed) in cases {
        let f = write(text);
        let msg = Config::load_from(Some(f.path()), &[])
            .unwrap_err()
            .to_string();
        assert!(msg.contains(key) && msg.contains(allowed), "{text}: {msg}");
    }
    let msg = Config::load_from(None, &env(&[("SATELLITE_STORAGE_POOL_SIZE", "many")]))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("\"many\"") && msg.contains("SATELLITE_STORAGE_POOL_SIZE"),
        "{msg}"
    );
    let msg = Config::load_from(
        None,
        &env(&[("SATELLITE_CONSOLE_ADMIN_PASSWORD", "tiny-pw")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("console.admin_password") && !msg.contains("tiny-pw"),
        "the password is not repeated: {msg}"
    );
    let c = Config::load_from(None, &env(&[("SATELLITE_CONSOLE_LISTEN", "")])).unwrap();
    assert_eq!(
        c.console.own_listener(),
        None,
        "empty: on the device listener"
    );
}

#[test]
fn syntax_error_and_missing_file() {
    let f = write("[server\n");
    assert!(matches!(
        Config::load_from(Some(f.path()), &[]).unwrap_err(),
        ConfigError::Syntax { .. }
    ));
    assert!(matches!(
        Config::load_from(Some(Path::new("/nonexistent/satellite.toml")), &[]).unwrap_err(),
        ConfigError::Unreadable { .. }
    ));
}
