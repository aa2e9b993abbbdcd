//! The gateway's config file: `Config::from_toml` then `Config::validate` (URLs, names,
//! weights, secret references, the guardrail policy and its regexes), then the runtime
//! providers built from what validated, as `sluice-gateway` does at start and on
//! `check-config`.
//!
//! The environment is a fixed map that reads no process variable and no file:
//! `MapEnv::read_file` reads the real file system, and a fuzzer-chosen `file:` secret
//! or `ca_file` path (`/dev/zero`, `/dev/stdin`) would hang or exhaust memory without
//! saying anything about the parser. For the same reason every `ca_file` is pointed at a
//! path that does not exist, which still runs its validation.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use sluice_gateway::config::Config;
use sluice_gateway::env::Environment;
use sluice_gateway::providers::Provider;

struct FuzzEnv;

impl Environment for FuzzEnv {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "EMPTY" => Some("  ".into()),
            "BAD_HEADER" => Some("sk-with\nnewline".into()),
            _ if name.contains("TOKEN") => Some("fuzz-admin-token-0123456789".into()),
            _ if name.contains("KEY") => Some("sk-fuzz-0123456789abcdef".into()),
            _ => None,
        }
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{path}: the fuzz environment has no files"),
        ))
    }
}

fuzz_target!(|data: &[u8]| {
    // A config file is read as UTF-8 (`read_to_string`).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut config) = Config::from_toml(text, "fuzz") else {
        return;
    };
    for provider in config.providers.values_mut() {
        if provider.ca_file.is_some() {
            provider.ca_file = Some("/nonexistent/sluice-fuzz/ca.pem".into());
        }
    }
    let Ok(valid) = config.validate(&FuzzEnv, "fuzz") else {
        return;
    };
    let epoch = Instant::now();
    for provider in valid.providers {
        let _ = Provider::new(provider, epoch);
    }
});
