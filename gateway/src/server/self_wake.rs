//! A connection future wrapper that turns the wake-ups a connection gives itself while it
//! is being polled into an immediate re-poll.
//!
//! hyper runs a request's handler inside its connection's task, and its request-body
//! channel wakes the body's sender (that same connection) whenever the handler takes a
//! chunk: the task wakes itself during its own poll, once or twice per request. Tokio's
//! multi-threaded scheduler treats that as a yield: it queues the task behind the others
//! and wakes an idle worker thread to come and steal it. On a lightly loaded machine that
//! is a futex call per request and often the connection moving to a cold core; profiles
//! showed ~1 extra thread wake-up per request, and the gateway's latency over the minimal
//! pass-through proxy at low load came mostly from it (see docs/benchmarks.md).
//! Polling again at once, a bounded number of times, makes the same progress without it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Not inside `poll`: a wake goes to the task's own waker.
const IDLE: u8 = 0;
/// Inside the inner future's `poll`.
const POLLING: u8 = 1;
/// Woken while `POLLING`: poll the inner future again before returning.
const WOKEN: u8 = 2;

/// Immediate re-polls allowed in one `poll`; past that the task yields the regular way so
/// that a connection that keeps waking itself cannot starve its worker thread.
const MAX_REPOLLS: u32 = 16;

/// Wraps a connection future; see the module documentation.
pub struct CoalesceSelfWakes<F> {
    inner: Pin<Box<F>>,
    shared: Arc<Shared>,
    /// The waker the inner future sees: one per connection, so `will_wake` holds across
    /// polls and wakers stored by the inner future stay valid.
    waker: Waker,
}

struct Shared {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            // Inside our poll (this thread or another): the poll loop goes round again.
            Ok(_) | Err(WOKEN) => {}
            Err(_) => self.task.wake(),
        }
    }
}

impl<F: Future> CoalesceSelfWakes<F> {
    pub fn new(inner: F) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        CoalesceSelfWakes {
            inner: Box::pin(inner),
            waker: Waker::from(shared.clone()),
            shared,
        }
    }
}

impl<F: Future> Future for CoalesceSelfWakes<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.shared.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..MAX_REPOLLS {
            this.shared.state.store(POLLING, Ordering::Release);
            if let Poll::Ready(output) = this.inner.as_mut().poll(&mut inner_cx) {
                this.shared.state.store(IDLE, Ordering::Release);
                return Poll::Ready(output);
            }
            // Back to IDLE unless a wake arrived during the poll; from IDLE on, wakes go
            // to the task waker registered above.
            if this
                .shared
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Pending;
            }
        }
        this.shared.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts how often the task waker is woken.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakes itself during its first `n` polls, then is ready.
    struct SelfWaking {
        left: u32,
        polls: u32,
    }

    impl Future for SelfWaking {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls += 1;
            if self.left == 0 {
                return Poll::Ready(self.polls);
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn self_wakes_become_re_polls_without_waking_the_task() {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = CoalesceSelfWakes::new(SelfWaking { left: 3, polls: 0 });
        assert_eq!(Pin::new(&mut fut).poll(&mut cx), Poll::Ready(4));
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn endless_self_wakes_yield_through_the_task_waker() {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = CoalesceSelfWakes::new(SelfWaking {
            left: u32::MAX,
            polls: 0,
        });
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        // Bounded: the task was told to come back instead of spinning here.
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(fut.inner.polls, MAX_REPOLLS);
    }

    /// A wake from outside, after the poll returned, reaches the task's waker.
    #[test]
    fn wakes_after_the_poll_reach_the_task() {
        struct Parked(Option<Waker>);
        impl Future for Parked {
            type Output = ();
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.0 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = CoalesceSelfWakes::new(Parked(None));
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        let stored = fut.inner.0.clone();
        assert!(stored.is_some());
        if let Some(w) = stored {
            w.wake();
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }
}
