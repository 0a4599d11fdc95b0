//! Group commit for token records. A minted token is returned only after its record is durable, but concurrent
//! mints share one transaction: while a batch commits, the next one gathers, so throughput does not pay one
//! fsync per token.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use gatehouse_model::identity::IssuedToken;
use gatehouse_model::metrics::gatehouse::{GatehouseMetrics, outcome};
use gatehouse_store::{Store, StoreError};

/// Records per transaction at most.
const MAX_BATCH: usize = 1024;
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<(), Arc<StoreError>>>;

#[derive(Debug, Clone)]
pub struct TokenRecorder {
    queue: mpsc::Sender<(IssuedToken, Reply)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the token record could not be stored: {0}")]
    Store(Arc<StoreError>),
    #[error("the token recorder has stopped")]
    Stopped,
}

impl TokenRecorder {
    /// Starts `writers` tasks; more than one lets PostgreSQL commit batches in parallel (SQLite has one writer).
    pub fn start(store: Arc<dyn Store>, writers: usize, metrics: Arc<GatehouseMetrics>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(store.clone(), rx.clone(), metrics.clone()));
        }
        Self { queue }
    }

    /// Returns once the record is committed.
    pub async fn record(&self, token: IssuedToken) -> Result<(), RecordError> {
        let (reply, done) = oneshot::channel();
        self.queue.send((token, reply)).await.map_err(|_| RecordError::Stopped)?;
        done.await.map_err(|_| RecordError::Stopped)?.map_err(RecordError::Store)
    }
}

async fn write_batches(
    store: Arc<dyn Store>,
    rx: Arc<Mutex<mpsc::Receiver<(IssuedToken, Reply)>>>,
    metrics: Arc<GatehouseMetrics>,
) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            batch
        };
        let (tokens, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let started = tokio::time::Instant::now();
        let result = store.record_tokens(&tokens).await.map_err(Arc::new);
        metrics.token_record_commit.observe(&[outcome(&result)], started.elapsed().as_secs_f64());
        metrics.token_record_batch.observe(&[], tokens.len() as f64);
        if let Err(e) = &result {
            tracing::error!(error = %e, tokens = tokens.len(), "could not store token records; the tokens were not issued");
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
}
