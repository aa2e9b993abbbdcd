//! Authentication and validation errors in each provider's shape.

use serde_json::{Value, json};

use crate::{anthropic, chat_request, client, gemini, openai, start};

#[tokio::test]
async fn auth_errors_per_shape() {
    let mock = start().await;
    let chat = chat_request(false);

    let missing = client()
        .post(mock.url("/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "invalid_api_key");
    for (key, status, code) in [
        ("bad-key", 401, "invalid_api_key"),
        ("forbidden-key", 403, "permission_denied"),
    ] {
        let response = client()
            .post(mock.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code);
    }

    let messages =
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let missing = client()
        .post(mock.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(
        error,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}})
    );
    let no_version = client()
        .post(mock.url("/v1/messages"))
        .header("x-api-key", "k")
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), 400);
    let error: Value = no_version.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let forbidden = client()
        .post(mock.url("/v1/messages"))
        .header("x-api-key", "forbidden-k")
        .header("anthropic-version", "2023-06-01")
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let error: Value = forbidden.json().await.unwrap();
    assert_eq!(error["error"]["type"], "permission_error");

    let contents = json!({"contents": [{"parts": [{"text": "x"}]}]});
    let missing = client()
        .post(mock.url("/v1beta/models/g:generateContent"))
        .json(&contents)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], 401);
    assert_eq!(error["error"]["status"], "UNAUTHENTICATED");
    let by_query = client()
        .post(mock.url("/v1beta/models/g:generateContent?key=query-key"))
        .json(&contents)
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    let bad = client()
        .post(mock.url("/v1beta/models/g:generateContent?key=bad-key"))
        .json(&contents)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
}

#[tokio::test]
async fn validation_errors_in_each_shape() {
    let mock = start().await;
    let malformed = client()
        .post(mock.url("/v1/chat/completions"))
        .bearer_auth("k")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let error: Value = malformed.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");

    let malformed = client()
        .post(mock.url("/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .body("[")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let error: Value = malformed.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");

    let malformed = client()
        .post(mock.url("/v1beta/models/g:generateContent"))
        .header("x-goog-api-key", "k")
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let error: Value = malformed.json().await.unwrap();
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");

    for body in [
        json!({"messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m"}),
        json!({"model": "m", "messages": []}),
    ] {
        let response = openai(&mock, "/v1/chat/completions", &body).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    for body in [
        json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m", "messages": [], "max_tokens": 5}),
    ] {
        let response = anthropic(&mock, "/v1/messages", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    let response = gemini(
        &mock,
        "/v1beta/models/g:generateContent",
        &json!({"contents": []}),
    )
    .await;
    assert_eq!(response.status(), 400);
    for body in [json!({"model": "m"}), json!({"model": "m", "input": []})] {
        let response = openai(&mock, "/v1/embeddings", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let response = openai(&mock, "/v1/responses", &body).await;
        assert_eq!(response.status(), 400, "{body}");
    }
}
