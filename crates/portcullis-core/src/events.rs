//! Events recorded off the request path. `token.issued` happens at thousands
//! per second; issuance hands the event to this sink and returns, and one
//! task writes them in batched transactions (audit + outbox rows together,
//! as multi-row inserts).
//!
//! The queue is bounded: if the database falls behind for long, issuance
//! waits for room rather than dropping audit records or growing without
//! limit.

use portcullis_store::model::{Event, Origin};
use portcullis_store::{Db, now_micros};
use tokio::sync::mpsc;

/// Events written per transaction at most.
const BATCH: usize = 2000;
/// Events that may wait for the writer before issuance feels backpressure.
const QUEUE: usize = 10_000;

#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<(Origin, Event, i64)>,
}

impl EventSink {
    pub fn start(db: Db) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Origin, Event, i64)>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                // Retry a failed batch a few times before giving up on it, so
                // a brief database outage does not lose audit records.
                for attempt in 0..5 {
                    match db.append_events(&batch).await {
                        Ok(()) => break,
                        Err(error) if attempt < 4 => {
                            tracing::warn!(%error, "writing events failed; retrying");
                            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                        }
                        Err(error) => tracing::error!(%error, count = batch.len(), "events lost"),
                    }
                }
                batch.clear();
            }
        });
        EventSink { tx }
    }

    /// Queues an event, stamped now (not when it is written); waits only
    /// when the queue is full.
    pub async fn record(&self, origin: Origin, event: Event) {
        if self.tx.send((origin, event, now_micros())).await.is_err() {
            tracing::error!("event sink closed; event dropped");
        }
    }
}
