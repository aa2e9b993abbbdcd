//! Slow and idle connections, and the connection cap.

use serde_json::Value;
use sluice_tests::harness::{Gateway, poll_until};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::{CLOSE_DEADLINE, Sec, message};

// ---- 5. slow and idle connections ----------------------------------------------------

const TIGHT_SERVER: &str = "server.header_timeout_ms = 300\nserver.idle_timeout_ms = 600\n\
                            server.body_timeout_ms = 500\nserver.max_connections = 20";

/// Reads until the server closes the connection (end of stream or reset) and returns what
/// arrived; fails if it stays open past [`CLOSE_DEADLINE`].
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> String {
    let read_all = async {
        let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let read = tokio::time::timeout(CLOSE_DEADLINE, read_all).await;
    read.unwrap_or_else(|_| panic!("{what}: still open after {CLOSE_DEADLINE:?}"))
}

/// A connection that has sent `bytes`.
async fn connect_and_send(gw: &Gateway, bytes: &str) -> TcpStream {
    let mut stream = TcpStream::connect(gw.server.addr).await.unwrap();
    stream.write_all(bytes.as_bytes()).await.unwrap();
    stream
}

/// The error message in the JSON body of a raw HTTP/1.1 answer.
fn raw_message(answer: &str) -> String {
    let body = &answer[answer.find("\r\n\r\n").expect("no end of head")..];
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"));
    message(&v).to_owned()
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let g = Sec::start(TIGHT_SERVER, "", &[]).await;
    let half_head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConte";
    let mut slow_head = connect_and_send(&g.gw, half_head).await;
    read_until_closed(&mut slow_head, "half a request head").await;

    let mut idle = connect_and_send(&g.gw, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_until_closed(&mut idle, "an idle keep-alive connection").await;
    let ok = answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n");
    assert!(ok, "{answer}");

    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    let mut slow_body = connect_and_send(&g.gw, &format!("{head}{{\"model\":\"")).await;
    let answer = read_until_closed(&mut slow_body, "a body that stops after 10 bytes").await;
    let named = answer.starts_with("HTTP/1.1 408")
        && raw_message(&answer).contains("server.body_timeout_ms");
    assert!(named, "{answer}");
    assert_eq!(g.upstream_calls().await, 0);
}

#[tokio::test]
async fn connection_cap_answers_503_and_recovers() {
    let g = Sec::start(TIGHT_SERVER, "", &[]).await;
    // The stalled connections time out 300 ms after their first byte: on a machine too
    // slow to open 21 connections in that window the 21st is served (and closed idle,
    // with nothing read), and the round is repeated.
    let mut rounds = 0;
    let (mut stalled, refused) = loop {
        let mut stalled = Vec::new();
        for _ in 0..20 {
            stalled.push(connect_and_send(&g.gw, "GET /healthz HTTP/1.1\r\nHo").await);
        }
        let mut extra = TcpStream::connect(g.gw.server.addr).await.unwrap();
        let answer = read_until_closed(&mut extra, "the connection over the cap").await;
        rounds += 1;
        if !answer.is_empty() || rounds == 5 {
            break (stalled, answer);
        }
    };
    let named =
        refused.starts_with("HTTP/1.1 503") && raw_message(&refused).contains("max_connections");
    assert!(named, "after {rounds} rounds: {refused:?}");
    for s in &mut stalled {
        read_until_closed(s, "a stalled connection").await;
    }
    let healthz = || async { Ok(g.gw.http.get(g.gw.url("/healthz")).send().await?.status()) };
    let recovered = poll_until(CLOSE_DEADLINE, healthz, |s| *s == 200).await;
    recovered.expect("/healthz did not recover");
}
