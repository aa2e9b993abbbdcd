use crate::env::MapEnv;

use super::*;

fn validate(text: &str, env: &MapEnv) -> Result<ValidConfig, ConfigError> {
    Config::from_toml(text, "test.toml")?.validate(env, "test.toml")
}

#[test]
fn example_file_is_valid() {
    let text = include_str!("../../../sluice.example.toml");
    let env = MapEnv::new([
        ("OPENAI_API_KEY", "a"),
        ("OPENAI_API_KEY_2", "b"),
        ("ANTHROPIC_API_KEY", "c"),
        ("GEMINI_API_KEY", "d"),
    ]);
    let cfg = validate(text, &env).unwrap();
    assert!(cfg.providers.iter().any(|p| p.name == "anthropic"));

    // The commented guardrails example is valid once uncommented.
    let start = text.find("# [guardrails]\n").unwrap();
    let guardrails: String = text[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
        .map(|l| format!("{l}\n"))
        .collect();
    let cfg = validate(&format!("{text}\n{guardrails}"), &env).unwrap();
    let policy = cfg.guardrails.unwrap();
    assert!(policy.rules().any(|r| r.id.as_str() == "project_codename"));
    assert!(policy.external_hook().is_some());
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let err = validate(
        "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n",
        &MapEnv::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("lisen"), "{err}");
}

#[test]
fn every_issue_is_reported_with_its_path() {
    let text = r#"
[providers.openai]
kind = "openai"
keys = [{ value = "sk-literal", weight = -1 }]

[providers.azure]
kind = "azure"
keys = [{ value = "env:AZ" }]

[aliases.default]
targets = [{ model = "nope/gpt" }, { model = "gpt-4o" }]
"#;
    let err = validate(text, &MapEnv::new([("AZ", "x")])).unwrap_err();
    let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
    assert!(
        paths.contains(&"providers.openai.keys[0].weight"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"providers.openai.keys[0].value"),
        "{paths:?}"
    );
    assert!(paths.contains(&"providers.azure.base_url"), "{paths:?}");
    assert!(
        paths.contains(&"aliases.default.targets[0].model"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"aliases.default.targets[1].model"),
        "{paths:?}"
    );
    assert!(
        !err.to_string().contains("sk-literal"),
        "secrets are never echoed"
    );
}

#[test]
fn guardrails_compile_at_load_and_errors_name_their_path() {
    let env = MapEnv::default();
    assert!(validate("", &env).unwrap().guardrails.is_none());
    let ok = validate(
        "[guardrails.detectors.email]\naction = \"block\"\n\n[[guardrails.rules]]\nid = \"codename\"\nkeywords = [\"bluebird\"]\naction = \"redact\"\n",
        &env,
    )
    .unwrap();
    assert!(ok.guardrails.is_some());

    let err = validate(
        "[[guardrails.rules]]\nid = \"codename\"\nregex = \"(unclosed\"\naction = \"block\"\n",
        &env,
    )
    .unwrap_err();
    assert_eq!(err.issues[0].path, "guardrails.rules[0]", "{err}");
    assert!(err.to_string().contains("codename"), "{err}");

    let err = validate("[guardrails.detectors.emial]\naction = \"block\"\n", &env).unwrap_err();
    assert_eq!(err.issues[0].path, "guardrails.detectors.emial", "{err}");

    let err = validate("[guardrails.detectors.email]\nacton = \"block\"\n", &env).unwrap_err();
    assert!(err.to_string().contains("acton"), "{err}");
}

#[test]
fn ca_file_is_read_at_load_and_errors_name_their_path() {
    let env = MapEnv::default();
    let dir = tempfile::tempdir().unwrap();
    let provider = |base: &str, file: &std::path::Path| {
        format!(
            "[providers.local]\nkind = \"vllm\"\nbase_url = \"{base}\"\nca_file = \"{}\"\n",
            file.display()
        )
    };
    let missing = dir.path().join("missing.pem");
    let err = validate(&provider("https://vllm.internal/v1", &missing), &env).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("providers.local.ca_file") && text.contains("cannot read"),
        "{text}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let text = validate(&provider("https://vllm.internal/v1", &garbage), &env)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("providers.local.ca_file") && text.contains("holds no certificate"),
        "{text}"
    );

    // A well-formed PEM block is loaded (whether it is a usable root is the TLS
    // client's check when the provider is built).
    let pem = dir.path().join("ca.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cfg = validate(&provider("https://vllm.internal/v1", &pem), &env).unwrap();
    assert_eq!(cfg.providers[0].ca_roots.len(), 1);

    let text = validate(&provider("http://vllm.internal/v1", &pem), &env)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("applies only to an https:// base_url"),
        "{text}"
    );
}

#[test]
fn zero_config_picks_up_key_variables() {
    let env = MapEnv::new([
        ("OPENAI_API_KEY", "a"),
        ("GOOGLE_API_KEY", "g"),
        ("AZURE_OPENAI_API_KEY", "z"),
        ("OLLAMA_HOST", "127.0.0.1:11434"),
    ]);
    let cfg = Config::from_environment(&env);
    let names: Vec<&String> = cfg.providers.keys().collect();
    assert_eq!(
        names,
        vec!["openai", "gemini", "ollama"],
        "azure needs its endpoint too; the order is the kinds' order"
    );
    let valid = cfg.validate(&env, "environment").unwrap();
    let gemini = valid.providers.iter().find(|p| p.name == "gemini").unwrap();
    assert_eq!(gemini.keys[0].secret.as_ref().unwrap().expose(), "g");
    assert_eq!(valid.server.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn the_audit_hmac_key_is_checked_with_the_rest() {
    let env = MapEnv::new([("SHORT", "0123456789")]);
    for (reference, expected) in [
        ("env:SHORT", "at least 32"),
        ("env:MISSING", "MISSING"),
        ("pasted-0123456789abcdef0123456789abcdef", "env:"),
    ] {
        let text = format!(
            "[providers.oa]\nkind = \"openai\"\nkeys = []\n\n[governance]\ndatabase = \"x.db\"\n\n[governance.audit]\nhmac_key = \"{reference}\"\n"
        );
        let err = validate(&text, &env).unwrap_err();
        let issue = err
            .issues
            .iter()
            .find(|i| i.path == "governance.audit.hmac_key")
            .unwrap_or_else(|| panic!("{reference}: {err}"));
        assert!(
            issue.message.contains(expected),
            "{reference}: {}",
            issue.message
        );
        assert!(
            !err.to_string().contains("0123456789"),
            "the key is never echoed: {err}"
        );
    }
}
