//! The example configurations in packaging/examples stay valid: each one passes
//! `bridge --check-config` (with the files it names created in a temp dir).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn check(config_text: &str, dir: &Path, name: &str) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, config_text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_example_config_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    // The files the production examples name, as the operator would have them.
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let certs = nemo_testkit::Certs::generate().unwrap();
    std::fs::copy(&certs.ca, etc.join("ca.pem")).unwrap();
    std::fs::copy(&certs.client_cert, etc.join("bridge.pem")).unwrap();
    std::fs::copy(&certs.client_key, etc.join("bridge.key")).unwrap();
    std::fs::write(etc.join("hmac.key"), "example-hmac-secret\n").unwrap();

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/etc/nemo-bridge", etc.to_str().unwrap());
        let name = path.file_name().unwrap().to_str().unwrap();
        let (ok, output) = check(&text, dir.path(), name);
        assert!(ok, "{name} does not pass --check-config:\n{output}");
        // Secrets written in the example never come back out.
        assert!(!output.contains("change-me"), "{name}: password printed");
        assert!(
            !output.contains("example-hmac-secret"),
            "{name}: HMAC key printed"
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the example configs, found {checked}"
    );
}

#[test]
fn a_broken_example_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, output) = check(
        "[mqtt]\nurl = \"http://broker:1883\"\n",
        dir.path(),
        "broken.toml",
    );
    assert!(!ok);
    assert!(output.contains("mqtt.url"), "{output}");
}
