//! The fault grammar: `;`-separated items such as `status=503;retry_after=1` or
//! `latency_ms=200;reset_after=3`. One spec applies to one API request.

use std::fmt;
use std::time::Duration;

use axum::http::StatusCode;

/// What a fault does to a streamed (or, where it makes sense, a buffered) body once a
/// number of content events have been sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFault {
    /// Abort the connection without terminating the body (`reset_after=N`).
    Reset { after: usize },
    /// Keep the connection open and send nothing more for [`STALL_DURATION`] (`stall_after=N`).
    Stall { after: usize },
    /// Send the provider's in-stream error event and end the body (`error_event_after=N`).
    ErrorEvent { after: usize },
}

/// How long `hang` and `stall_after` keep a request open: far longer than any sane
/// gateway timeout, short enough that a forgotten test eventually frees the socket.
pub const STALL_DURATION: Duration = Duration::from_secs(300);

/// One parsed fault spec. The default value is "no fault".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultSpec {
    /// Respond with this status and the provider-shaped error body.
    pub status: Option<StatusCode>,
    /// Value of a `Retry-After` header added to the response, in seconds.
    pub retry_after: Option<u64>,
    /// Sleep before sending response headers (overrides `--latency-ms`).
    pub latency: Option<Duration>,
    /// Sleep between streamed events (overrides `--chunk-delay-ms`).
    pub chunk_delay: Option<Duration>,
    /// Send no response headers for [`STALL_DURATION`].
    pub hang: bool,
    /// What to do to the body, if anything.
    pub body: Option<BodyFault>,
    /// The error message of a `status` answer or of the `error_event_after` event, in
    /// place of the mock's own (`message=TEXT`, no `;`): e.g. a provider that echoes the
    /// API key it was sent, as OpenAI's "Incorrect API key provided: sk-…" does.
    pub message: Option<String>,
    /// A `Retry-After` header sent exactly as written (`retry_after_raw=1e300`, an HTTP
    /// date), replacing any other: for upstreams that send values no sane client expects.
    pub retry_after_raw: Option<String>,
    /// Every token count in the answer's usage block, buffered or streamed
    /// (`usage_tokens=18446744073709551615`): a provider reporting absurd usage.
    pub usage_tokens: Option<u64>,
}

/// A fault spec that does not follow the grammar; the message names the bad item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultParseError(String);

impl fmt::Display for FaultParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultParseError {}

/// The grammar, quoted in every parse error so a test author can fix the spec at once.
const GRAMMAR: &str = "expected `;`-separated items: status=CODE (400-599), retry_after=SECS, \
latency_ms=N, chunk_delay_ms=N, hang, reset_after=N, stall_after=N, error_event_after=N, \
message=TEXT, retry_after_raw=TEXT, usage_tokens=N";

impl FaultSpec {
    /// Parses a spec; the empty string (or only separators) means "no fault".
    pub fn parse(spec: &str) -> Result<FaultSpec, FaultParseError> {
        let mut fault = FaultSpec::default();
        for item in spec
            .split(';')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            if item == "hang" {
                fault.hang = true;
                continue;
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(FaultParseError(format!(
                    "fault item `{item}` has no value; {GRAMMAR}"
                )));
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "message" => {
                    fault.message = Some(value.to_owned());
                    continue;
                }
                "retry_after_raw" => {
                    if axum::http::HeaderValue::from_str(value).is_err() {
                        return Err(FaultParseError(format!(
                            "fault item `{item}`: `{value}` is not a valid header value"
                        )));
                    }
                    fault.retry_after_raw = Some(value.to_owned());
                    continue;
                }
                _ => {}
            }
            let number = value.parse::<u64>().map_err(|_| {
                FaultParseError(format!(
                    "fault item `{item}`: `{value}` is not a non-negative integer; {GRAMMAR}"
                ))
            })?;
            let count = usize::try_from(number).unwrap_or(usize::MAX);
            let set_body = |fault: &mut FaultSpec, body: BodyFault| {
                if fault.body.is_some() {
                    return Err(FaultParseError(format!(
                        "fault item `{item}`: only one of reset_after, stall_after and \
                         error_event_after may be given"
                    )));
                }
                fault.body = Some(body);
                Ok(())
            };
            match key {
                "status" => {
                    let status = u16::try_from(number)
                        .ok()
                        .filter(|code| (400..=599).contains(code))
                        .and_then(|code| StatusCode::from_u16(code).ok())
                        .ok_or_else(|| {
                            FaultParseError(format!(
                                "fault item `{item}`: status must be an error status 400-599"
                            ))
                        })?;
                    fault.status = Some(status);
                }
                "retry_after" => fault.retry_after = Some(number),
                "usage_tokens" => fault.usage_tokens = Some(number),
                "latency_ms" => fault.latency = Some(Duration::from_millis(number)),
                "chunk_delay_ms" => fault.chunk_delay = Some(Duration::from_millis(number)),
                "reset_after" => set_body(&mut fault, BodyFault::Reset { after: count })?,
                "stall_after" => set_body(&mut fault, BodyFault::Stall { after: count })?,
                "error_event_after" => {
                    set_body(&mut fault, BodyFault::ErrorEvent { after: count })?;
                }
                _ => {
                    return Err(FaultParseError(format!(
                        "unknown fault item `{key}`; {GRAMMAR}"
                    )));
                }
            }
        }
        Ok(fault)
    }
}
