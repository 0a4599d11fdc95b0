//! Kong's plugin queue (`kong/tools/queue.lua`) for the logging plugins: serialized entries wait in a bounded
//! queue and one sender task per distinct destination delivers them, so a log server that is down, slow or
//! refusing never makes a request wait and never grows the process.
//!
//! The proxy's side is [`Queue::enqueue`]: a short lock and a wake-up. Past `max_entries` entries, or
//! `max_bytes` bytes, the oldest are dropped to make room, as Kong's queue does (an entry larger than
//! `max_bytes` by itself is dropped instead); every drop is counted (`gatehouse_log_entries_total`). The sender
//! batches (`max_batch_size` entries, or whatever came within `max_coalescing_delay`), hands the batch to the
//! plugin's [`Deliver`], and retries a failed delivery with Kong's delays (from `initial_retry_delay`, doubling up
//! to `max_retry_delay`) until `max_retry_time`, then drops it. Memory is bounded by the queue's bounds plus the
//! one batch being delivered. Instances (and workers' copies) with the same destination share one queue, as
//! Kong's queues are shared by name; it ends when the last of them is gone, after sending what it holds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use gatehouse_model::gateway::plugins::logging;

use crate::metrics::CounterVec;

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

/// The longest answer of a log or telemetry server that is read (only its status matters).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Sends `request` with `client` and reads (a bounded amount of) the answer, so the connection can be kept: the
/// answer's status, or the failure with its cause. Shared by `http-log` and `opentelemetry`'s exporter.
pub(crate) async fn exchange(
    client: &HttpClient,
    request: http::Request<http_body_util::Full<Bytes>>,
) -> Result<http::StatusCode, String> {
    use http_body_util::BodyExt as _;
    let response = client.request(request).await.map_err(|e| match std::error::Error::source(&e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    })?;
    let status = response.status();
    let _ = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await;
    Ok(status)
}

/// How a plugin sends a batch of serialized entries (one JSON object each, without a newline).
#[async_trait]
pub trait Deliver: Send + 'static {
    async fn deliver(&mut self, batch: &[Bytes]) -> Result<(), String>;
}

/// How entries are batched, bounded and retried (Kong's `queue` record, read by the plugin).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub batch_size: usize,
    pub flush_delay: Duration,
    pub max_entries: usize,
    pub max_bytes: Option<usize>,
    pub max_retry_time: Duration,
    pub initial_retry_delay: Duration,
    pub max_retry_delay: Duration,
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::MAX)
}

impl Settings {
    pub fn from_queue(queue: &logging::Queue, batch_size: u64, flush_delay: Duration) -> Self {
        Self {
            batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX).max(1),
            flush_delay,
            max_entries: usize::try_from(queue.max_entries).unwrap_or(usize::MAX).max(1),
            max_bytes: queue.max_bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            max_retry_time: seconds(queue.max_retry_time),
            initial_retry_delay: seconds(queue.initial_retry_delay),
            max_retry_delay: seconds(queue.max_retry_delay),
        }
    }

    /// Kong's queue for plugins that send each entry once, without retrying (`tcp-log`, `udp-log`, `syslog`):
    /// one entry at a time, at most 10,000 waiting.
    pub fn one_at_a_time() -> Self {
        Self {
            batch_size: 1,
            flush_delay: Duration::ZERO,
            max_entries: 10_000,
            max_bytes: None,
            max_retry_time: Duration::ZERO,
            initial_retry_delay: Duration::ZERO,
            max_retry_delay: Duration::ZERO,
        }
    }
}

/// The node's logging queues, by destination, and their entry counts.
#[derive(Debug)]
pub struct Queues {
    live: Mutex<Vec<(String, Weak<Queue>)>>,
    pub entries: Arc<CounterVec>,
}

impl Default for Queues {
    fn default() -> Self {
        Self {
            live: Mutex::default(),
            entries: Arc::new(CounterVec::new(
                "gatehouse_log_entries_total",
                "Entries of the logging plugins by plugin and outcome: sent, dropped (queue full) or failed \
                 (delivery failed after retries)",
                &["plugin", "outcome"],
            )),
        }
    }
}

impl Queues {
    /// The live queue for `key` (the plugin's name and everything that decides where and how entries go), or a
    /// new one whose sender task, made by `deliver`, is spawned on the current runtime.
    pub fn get<D: Deliver>(
        &self,
        plugin: &'static str,
        key: String,
        settings: Settings,
        deliver: impl FnOnce() -> Result<D, String>,
    ) -> Result<Arc<Queue>, String> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|(_, queue)| queue.strong_count() > 0);
        // The key may hold secrets (a log server's API key): only its digest is kept.
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{plugin}\n{key}\n{settings:?}").as_bytes());
        let key: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if let Some(queue) = live.iter().find(|(k, _)| *k == key).and_then(|(_, q)| q.upgrade()) {
            return Ok(queue);
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| format!("the {plugin} queue needs a Tokio runtime"))?;
        let shared = Arc::new(Shared {
            entries: Mutex::default(),
            settings,
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            dropping: AtomicBool::new(false),
        });
        let queue = Arc::new(Queue { shared: shared.clone(), plugin, counts: self.entries.clone() });
        let sender = Sender { shared, plugin, counts: self.entries.clone(), deliver: deliver()? };
        runtime.spawn(sender.run());
        live.push((key, Arc::downgrade(&queue)));
        Ok(queue)
    }
}

#[derive(Debug, Default)]
struct Entries {
    queued: VecDeque<Bytes>,
    bytes: usize,
    /// Entries of the batch being delivered (no longer in `queued`).
    in_flight: usize,
}

#[derive(Debug)]
struct Shared {
    entries: Mutex<Entries>,
    settings: Settings,
    /// Wakes the sender: entries were queued, or the queue handle is gone.
    ready: Notify,
    /// Every handle is gone: the sender delivers what is queued, then ends.
    closed: AtomicBool,
    /// Entries were dropped since the last delivery that worked: reported once, as Kong's queue does.
    dropping: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What plugin instances hand entries to.
#[derive(Debug)]
pub struct Queue {
    shared: Arc<Shared>,
    plugin: &'static str,
    counts: Arc<CounterVec>,
}

impl Queue {
    /// Queues one entry, dropping (and counting) the oldest when the queue is full.
    pub fn enqueue(&self, entry: Vec<u8>) {
        let entry = Bytes::from(entry);
        let settings = &self.shared.settings;
        let dropped = {
            let mut entries = self.shared.lock();
            if settings.max_bytes.is_some_and(|max| entry.len() > max) {
                1
            } else {
                entries.bytes += entry.len();
                entries.queued.push_back(entry);
                let mut dropped = 0;
                while entries.queued.len() > settings.max_entries
                    || settings.max_bytes.is_some_and(|max| entries.bytes > max)
                {
                    let Some(oldest) = entries.queued.pop_front() else { break };
                    entries.bytes -= oldest.len();
                    dropped += 1;
                }
                dropped
            }
        };
        if dropped > 0 {
            self.counts.add(&[self.plugin, "dropped"], dropped);
            if !self.shared.dropping.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    plugin = self.plugin,
                    "log queue full: dropping the oldest entries until delivery works again"
                );
            }
        }
        self.shared.ready.notify_one();
    }

    /// The `log` phase of the plugins that queue Kong's serializer entry as it is: serialize, then queue.
    pub fn log(&self, ctx: &super::LogContext<'_>, clock: &gatehouse_model::SharedClock) {
        let now = gatehouse_model::Clock::now(clock).micros();
        if let Some(entry) = super::serializer::serialize(ctx, now) {
            self.enqueue(entry);
        }
    }

    /// Entries queued or being delivered.
    pub fn pending(&self) -> usize {
        let entries = self.shared.lock();
        entries.queued.len() + entries.in_flight
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.ready.notify_one();
    }
}

struct Sender<D> {
    shared: Arc<Shared>,
    plugin: &'static str,
    counts: Arc<CounterVec>,
    deliver: D,
}

impl<D: Deliver> Sender<D> {
    fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    async fn run(mut self) {
        let settings = self.shared.settings.clone();
        loop {
            loop {
                if !self.shared.lock().queued.is_empty() {
                    break;
                }
                if self.closed() {
                    return;
                }
                self.shared.ready.notified().await;
            }
            let deadline = Instant::now() + settings.flush_delay;
            while self.shared.lock().queued.len() < settings.batch_size && !self.closed() {
                tokio::select! {
                    () = self.shared.ready.notified() => {}
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            let batch: Vec<Bytes> = {
                let mut entries = self.shared.lock();
                let take = entries.queued.len().min(settings.batch_size);
                let batch: Vec<Bytes> = entries.queued.drain(..take).collect();
                entries.bytes -= batch.iter().map(Bytes::len).sum::<usize>();
                entries.in_flight = take;
                batch
            };
            let sent = self.deliver_with_retries(&batch, &settings).await;
            self.shared.lock().in_flight = 0;
            if sent {
                self.shared.dropping.store(false, Ordering::Relaxed);
            }
            self.counts.add(&[self.plugin, if sent { "sent" } else { "failed" }], batch.len() as u64);
        }
    }

    /// Kong's retries: the first after `initial_retry_delay`, each next one twice as late (at most
    /// `max_retry_delay`), none once `max_retry_time` has passed since the first attempt.
    async fn deliver_with_retries(&mut self, batch: &[Bytes], settings: &Settings) -> bool {
        let started = Instant::now();
        let mut delay = settings.initial_retry_delay;
        loop {
            match self.deliver.deliver(batch).await {
                Ok(()) => return true,
                Err(error) => {
                    let retry_at = Instant::now() + delay;
                    if retry_at.duration_since(started) > settings.max_retry_time {
                        tracing::warn!(plugin = self.plugin, %error, entries = batch.len(), "log entries dropped: delivery failed");
                        return false;
                    }
                    tracing::debug!(plugin = self.plugin, %error, "log delivery failed; retrying");
                    tokio::time::sleep_until(retry_at).await;
                    delay = (delay * 2).min(settings.max_retry_delay);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Holds every batch until released, and records what it was given.
    struct Held {
        seen: Arc<Mutex<Vec<Vec<Bytes>>>>,
        gate: Arc<tokio::sync::Semaphore>,
    }

    #[async_trait]
    impl Deliver for Held {
        async fn deliver(&mut self, batch: &[Bytes]) -> Result<(), String> {
            let _permit = self.gate.acquire().await.map_err(|e| e.to_string())?;
            self.seen.lock().unwrap().push(batch.to_vec());
            Ok(())
        }
    }

    fn settings(max_entries: usize, max_bytes: Option<usize>) -> Settings {
        Settings { batch_size: 2, max_entries, max_bytes, ..Settings::one_at_a_time() }
    }

    #[tokio::test]
    async fn a_full_queue_drops_its_oldest_entries_and_counts_them() {
        let queues = Queues::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let deliver = Held { seen: seen.clone(), gate: gate.clone() };
        let queue = queues.get("http-log", "a".into(), settings(3, None), || Ok(deliver)).unwrap();
        queue.enqueue(b"0".to_vec());
        // The sender takes the first batch and waits at the gate.
        let started = Instant::now();
        while queue.shared.lock().in_flight == 0 {
            assert!(started.elapsed() < Duration::from_secs(10));
            tokio::task::yield_now().await;
        }
        for i in 1..=5 {
            queue.enqueue(i.to_string().into_bytes());
        }
        assert_eq!(queue.pending(), 4, "three queued and one being sent");
        assert_eq!(queues.entries.get(&["http-log", "dropped"]), Some(2));
        gate.add_permits(10);
        while queues.entries.get(&["http-log", "sent"]).unwrap_or(0) < 4 {
            assert!(started.elapsed() < Duration::from_secs(10));
            tokio::task::yield_now().await;
        }
        let batches: Vec<Vec<Bytes>> = seen.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![vec![Bytes::from("0")], vec![Bytes::from("3"), Bytes::from("4")], vec![Bytes::from("5")]]
        );
        let again = queues.get("http-log", "a".into(), settings(3, None), || Err::<Held, _>("not called".into()));
        assert!(Arc::ptr_eq(&again.unwrap(), &queue), "the same destination shares the queue");
    }

    #[tokio::test]
    async fn max_bytes_bounds_the_queue_and_refuses_an_entry_larger_than_it() {
        let queues = Queues::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let deliver = Held { seen: Arc::default(), gate: gate.clone() };
        let queue = queues.get("http-log", "b".into(), settings(100, Some(10)), || Ok(deliver)).unwrap();
        queue.enqueue(vec![b'x'; 11]);
        assert_eq!(queues.entries.get(&["http-log", "dropped"]), Some(1), "larger than max_bytes");
        // The sender has not run yet (nothing yielded): the third and fourth entries each push the oldest out.
        for _ in 0..4 {
            queue.enqueue(vec![b'y'; 4]);
        }
        let entries = queue.shared.lock();
        assert_eq!((entries.queued.len(), entries.bytes, entries.in_flight), (2, 8, 0));
        assert_eq!(queues.entries.get(&["http-log", "dropped"]), Some(3));
    }
}
