//! Keeping client connections honest: the time a client may take to send a request's
//! headers and body, how long an idle connection is kept, how long a response may sit
//! unread, and how many connections are open at once. Without these, a few hundred
//! connections that never finish their headers (slowloris) hold the gateway's file
//! descriptors forever.
//!
//! Per connection, [`Activity`] is updated by the socket wrapper [`Watched`] (bytes read,
//! writes blocked on a full socket) and by the service wrapper [`Tracked`] (a request
//! starts; its response body ends), and the connection's task wakes at the next deadline
//! to ask [`Activity::verdict`] whether to keep it:
//!
//! | state | limit | then |
//! |---|---|---|
//! | no request in flight, no byte since the last one ended | `server.idle_timeout_ms` | closed |
//! | bytes arrived but no complete request head yet | `server.header_timeout_ms` from the first byte | closed |
//! | a request's body still arriving | `server.body_timeout_ms` from its head | 408 in the API's shape |
//! | a response written to a socket the client does not read | `server.idle_timeout_ms` blocked | closed |
//!
//! A request waiting on a slow provider is not idle: the provider's own timeouts bound it.
//! The same rules hold for HTTP/1.1 and HTTP/2 (where bytes that never become a stream,
//! pings included, count as an unfinished head).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The limits, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header: Duration,
    pub idle: Duration,
    pub body: Duration,
}

/// A millisecond clock shared by every connection of a server (0 means "unset" in the
/// atomics below, so the clock starts at 1).
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Default for Clock {
    fn default() -> Self {
        Clock(Instant::now())
    }
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self::default()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    fn instant(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms.saturating_sub(1))
    }
}

/// What one connection is doing, as the watchdog needs to know it.
#[derive(Debug)]
pub struct Activity {
    clock: Clock,
    /// Requests whose response has not ended.
    busy: AtomicUsize,
    /// When the connection last became idle (opened, or its last response ended).
    idle_since_ms: AtomicU64,
    /// First byte read while idle: a request head in the making. 0: none.
    head_started_ms: AtomicU64,
    /// Since when a write has been waiting for the client to read. 0: not blocked.
    write_blocked_ms: AtomicU64,
}

/// Why the watchdog closed a connection (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    Idle,
    HeaderTimeout,
    WriteStalled,
}

impl Close {
    pub fn label(self) -> &'static str {
        match self {
            Close::Idle => "idle",
            Close::HeaderTimeout => "header_timeout",
            Close::WriteStalled => "write_stalled",
        }
    }
}

impl Activity {
    pub fn new(clock: Clock) -> Arc<Self> {
        Arc::new(Activity {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(clock.now_ms()),
            head_started_ms: AtomicU64::new(0),
            write_blocked_ms: AtomicU64::new(0),
            clock,
        })
    }

    fn on_read(&self) {
        if self.busy.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
        {
            let _ = self.head_started_ms.compare_exchange(
                0,
                self.clock.now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn on_write(&self, blocked: bool) {
        let current = self.write_blocked_ms.load(Ordering::Relaxed);
        if blocked && current == 0 {
            self.write_blocked_ms
                .store(self.clock.now_ms(), Ordering::Relaxed);
        } else if !blocked && current != 0 {
            self.write_blocked_ms.store(0, Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        if self.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since_ms
                .store(self.clock.now_ms(), Ordering::Relaxed);
        }
    }

    /// `Err` to close the connection now; `Ok(at)` to look again at `at`.
    pub fn verdict(&self, limits: &Limits) -> Result<Instant, Close> {
        let now = self.clock.now_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let due = |since: u64, limit: Duration, why: Close| {
            let at = since.saturating_add(ms(limit));
            if now >= at {
                Err(why)
            } else {
                Ok(self.clock.instant(at))
            }
        };
        let blocked = self.write_blocked_ms.load(Ordering::Relaxed);
        if blocked != 0 {
            return due(blocked, limits.idle, Close::WriteStalled);
        }
        if self.busy.load(Ordering::Acquire) > 0 {
            // Waiting on a provider or streaming: look again after one idle period.
            return Ok(self.clock.instant(now.saturating_add(ms(limits.idle))));
        }
        match self.head_started_ms.load(Ordering::Relaxed) {
            0 => due(
                self.idle_since_ms.load(Ordering::Relaxed),
                limits.idle,
                Close::Idle,
            ),
            started => due(started, limits.header, Close::HeaderTimeout),
        }
    }
}

/// A client socket that reports reads and blocked writes to its [`Activity`].
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.on_write(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.on_write(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error a request body gives when it did not arrive within `server.body_timeout_ms`.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} ms (server.body_timeout_ms)",
            self.0.as_millis()
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body with a deadline for its last byte. The timer is only set up if the
/// body is not already complete when first read (the usual small request arrives with
/// its head).
pub struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    deadline: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells the connection's [`Activity`] when the response ends
/// (completed or dropped).
pub struct TrackedBody {
    inner: axum::body::Body,
    activity: Arc<Activity>,
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.activity.request_ended();
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Ends a request's busy period if the service future is dropped before it answers.
struct Pending(Option<Arc<Activity>>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            a.request_ended();
        }
    }
}

/// The hyper service of one connection: marks requests busy, gives their bodies a
/// deadline, and hands them to the application.
#[derive(Clone)]
pub struct Tracked<S> {
    pub inner: S,
    pub activity: Arc<Activity>,
    pub body_timeout: Duration,
}

impl<S> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<
            Request<DeadlineBody>,
            Response = Response<axum::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<TrackedBody>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.request_started();
        let limit = self.body_timeout;
        let request = request.map(|inner| DeadlineBody {
            inner,
            limit,
            deadline: Instant::now() + limit,
            timer: None,
        });
        let pending = Pending(Some(self.activity.clone()));
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut pending = pending;
            let response = future.await?;
            let activity = pending.0.take();
            Ok(response.map(|inner| TrackedBody {
                inner,
                activity: activity.unwrap_or_else(|| Activity::new(Clock::new())),
            }))
        })
    }
}

/// Counts open connections against `server.max_connections`; one is released on drop.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    /// A slot if fewer than `max` connections are open.
    pub fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let mut current = open.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match open.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(ConnectionSlot(open.clone())),
                Err(now) => current = now,
            }
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection over `server.max_connections` is told before it is closed: a
/// complete HTTP/1.1 answer in the OpenAI error shape (small enough for one write into
/// an empty socket buffer).
pub const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\nx-sluice-error: saturated\r\ncontent-length: 178\r\n\r\n{\"error\":{\"message\":\"this gateway is at its connection limit (server.max_connections); retry shortly or reuse connections\",\"type\":\"server_error\",\"param\":null,\"code\":\"saturated\"}}";

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header: Duration::from_millis(50),
            idle: Duration::from_millis(200),
            body: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_over_capacity_answer_declares_its_length() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{}",
            body.len()
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "saturated");
    }

    #[test]
    fn idle_header_and_busy_states_get_their_own_deadlines() {
        let clock = Clock(Instant::now() - Duration::from_secs(10));
        let a = Activity::new(clock);
        // Fresh and idle: the idle deadline, in the future.
        assert!(a.verdict(&limits()).is_ok());
        // Pretend the connection went idle long ago.
        a.idle_since_ms.store(1, Ordering::Relaxed);
        assert_eq!(a.verdict(&limits()), Err(Close::Idle));
        // A head started long ago and never finished.
        a.head_started_ms.store(2, Ordering::Relaxed);
        assert_eq!(a.verdict(&limits()), Err(Close::HeaderTimeout));
        // Busy: neither applies.
        a.request_started();
        assert!(a.verdict(&limits()).is_ok());
        // ...unless the client does not read what it is sent.
        a.write_blocked_ms.store(3, Ordering::Relaxed);
        assert_eq!(a.verdict(&limits()), Err(Close::WriteStalled));
        a.on_write(false);
        a.request_ended();
        assert!(a.verdict(&limits()).is_ok(), "idle again from now");
    }

    #[test]
    fn connection_slots_are_capped_and_released() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = ConnectionSlot::take(&open, 2).unwrap();
        let _b = ConnectionSlot::take(&open, 2).unwrap();
        assert!(ConnectionSlot::take(&open, 2).is_none());
        drop(a);
        assert!(ConnectionSlot::take(&open, 2).is_some());
    }
}
