//! A record on its way to the writer, and the acknowledgement a strict request waits
//! for.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use sluice_shared::audit::AuditEntry;

/// Why a strict request's audit record is not durable. The response must fail: the
/// gateway promised (`durability = "strict"`) not to answer what it has not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The database did not commit the record, and the spill file, the fallback, could
    /// not be written and synced either.
    #[error(
        "the audit record of request {request_id} is not durable: the audit database did not commit it ({commit}), and the spill file {spill_path} could not be written and synced ({spill}); check the disk and permissions of both"
    )]
    NotStored {
        request_id: String,
        commit: String,
        spill_path: String,
        spill: String,
    },
    /// Neither the writer's queue nor the spill queue took the record: both were full,
    /// or the writer has stopped (the gateway is shutting down).
    #[error(
        "the audit record of request {request_id} was not recorded: the audit writer is stopping or overloaded (its queue and its spill queue are full)"
    )]
    Dropped { request_id: String },
    /// The writer let go of the acknowledgement without answering it.
    #[error("the audit writer stopped before it acknowledged the record of request {request_id}")]
    WriterStopped { request_id: String },
}

/// What a strict request waits for before its response completes: `Ok` once its record
/// is committed (or, if the commit failed, written to the spill file and fsynced), `Err`
/// when it is neither. Returned by [`AuditSink::submit`](super::AuditSink::submit) in
/// strict mode only.
#[derive(Debug)]
pub struct AuditAck {
    rx: oneshot::Receiver<Result<(), AuditError>>,
    /// For the error when the writer drops the sender without an answer.
    request_id: String,
}

impl Future for AuditAck {
    type Output = Result<(), AuditError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|answer| {
            answer.unwrap_or_else(|_| {
                Err(AuditError::WriterStopped {
                    request_id: std::mem::take(&mut self.request_id),
                })
            })
        })
    }
}

/// A record for the writer (or the spill file), with the sender of its acknowledgement
/// in strict mode.
pub(super) struct Job {
    pub(super) entry: AuditEntry,
    pub(super) ack: Option<Ack>,
}

/// The writer's side of an [`AuditAck`].
pub(super) type Ack = oneshot::Sender<Result<(), AuditError>>;

/// Answers a submitter, if it waits (strict mode). One that went away (its client
/// disconnected) no longer listens, which is fine.
pub(super) fn answer(ack: Option<Ack>, result: Result<(), AuditError>) {
    if let Some(ack) = ack {
        let _ = ack.send(result);
    }
}

impl Job {
    /// A job and, in strict mode, the acknowledgement its submitter waits for.
    pub(super) fn new(entry: AuditEntry, strict: bool) -> (Job, Option<AuditAck>) {
        if !strict {
            return (Job { entry, ack: None }, None);
        }
        let (tx, rx) = oneshot::channel();
        let ack = AuditAck {
            rx,
            request_id: entry.request_id.clone(),
        };
        (
            Job {
                entry,
                ack: Some(tx),
            },
            Some(ack),
        )
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("request_id", &self.entry.request_id)
            .field("acknowledged", &self.ack.is_some())
            .finish()
    }
}
