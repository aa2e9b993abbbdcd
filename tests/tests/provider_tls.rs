//! End-to-end: a provider served over HTTPS with a certificate from a private CA (a
//! self-hosted vLLM or Ollama behind an internal CA), trusted through the provider's
//! `ca_file`, and refused with a clear error without it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is the failure"
)]

mod common;

use std::path::PathBuf;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::{Gateway, MockProvider, sse_events};

/// A private CA and a server certificate it issued for 127.0.0.1 and localhost, as PEM
/// files in a temporary directory.
struct PrivatePki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn private_pki() -> PrivatePki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Sluice test internal CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "mock provider");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("internal-ca.pem");
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf_cert.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    PrivatePki {
        _dir: dir,
        ca,
        cert,
        key,
    }
}

async fn tls_mock(pki: &PrivatePki) -> MockProvider {
    let cert = pki.cert.to_string_lossy().into_owned();
    let key = pki.key.to_string_lossy().into_owned();
    let mock = MockProvider::start(bins!(), &["--tls-cert", &cert, "--tls-key", &key])
        .await
        .unwrap();
    assert!(mock.base_url().starts_with("https://127.0.0.1:"));
    mock
}

fn provider_config(mock: &MockProvider, ca_file: Option<&PathBuf>) -> String {
    let ca = ca_file
        .map(|p| format!("ca_file = \"{}\"\n", p.display()))
        .unwrap_or_default();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[providers.internal]\nkind = \"vllm\"\nbase_url = \"{}/v1\"\nkeys = [{{ value = \"env:INTERNAL_KEY\" }}]\n{ca}connect_timeout_ms = 5000\n",
        mock.base_url()
    )
}

#[tokio::test]
async fn a_provider_behind_a_private_ca_is_reached_through_its_ca_file() {
    let pki = private_pki();
    let mock = tls_mock(&pki).await;
    let gw = Gateway::start(
        bins!(),
        &provider_config(&mock, Some(&pki.ca)),
        &[("INTERNAL_KEY", "sk-internal")],
    )
    .await
    .unwrap();

    let resp = gw
        .post(
            "/v1/chat/completions",
            &chat("internal/llama-3.1-8b", "hello over tls"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-provider"), "internal");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{v}"
    );

    // Streaming over the same TLS connection pool: events arrive and end with [DONE].
    let mut body = chat("internal/llama-3.1-8b", "stream over tls");
    body["stream"] = json!(true);
    let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    assert!(!openai_stream_text(&events).is_empty(), "{text}");
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
}

#[tokio::test]
async fn without_the_ca_file_the_certificate_is_refused_with_a_clear_error() {
    let pki = private_pki();
    let mock = tls_mock(&pki).await;
    let gw = Gateway::start(
        bins!(),
        &provider_config(&mock, None),
        &[("INTERNAL_KEY", "sk-internal")],
    )
    .await
    .unwrap();

    let resp = gw
        .post("/v1/chat/completions", &chat("internal/llama-3.1-8b", "hi"))
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_server_error(), "{status} {v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.to_ascii_lowercase().contains("certificate"),
        "the error should say the certificate was not trusted: {message}"
    );
}
