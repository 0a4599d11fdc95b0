//! Timers on the request path, reused rather than registered anew for every request.
//!
//! A new tokio timer takes the runtime's timer lock to enter the wheel and again to leave it, and when its
//! deadline is earlier than the one the driver last slept towards, it wakes the runtime's own I/O driver through
//! its eventfd, a `write` system call (measured: 0.22 per proxied request with hyper's header timer and the
//! upstream head timeout, none with reused timers). A registered timer whose deadline moves later costs one atomic
//! update: the wheel keeps its old slot and re-files it when that slot comes due. So each worker keeps the timers
//! its requests are done with, still registered, and the next wait moves one forward.
//!
//! [`Sleeps`] is also the proxy's hyper [`Timer`](hyper::rt::Timer) (hyper's header read timeout asks for a new
//! sleep for every request on a keep-alive connection).

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Spare timers kept per worker; a timer finished when the spares are full is dropped (deregistered) as usual.
const MAX_SPARE: usize = 256;

/// The timers one proxy worker is done with. Only its own thread uses them (a timer belongs to the runtime that
/// made it), so the lock is never contended.
#[derive(Debug, Default, Clone)]
pub struct Sleeps(Arc<Mutex<Vec<Pin<Box<tokio::time::Sleep>>>>>);

/// The deadline of [`Sleeps::timeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Sleeps {
    /// A sleep until `deadline`, a spare one moved there when there is one.
    pub fn until(&self, deadline: Instant) -> PooledSleep {
        let spare = self.0.lock().ok().and_then(|mut spare| spare.pop());
        let sleep = match spare {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline.into());
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline.into())),
        };
        PooledSleep { sleep: Some(sleep), pool: self.clone() }
    }

    /// `future`'s output, or [`Elapsed`] if `duration` passes first (then `future` is dropped unfinished).
    pub async fn timeout<F: Future>(&self, duration: Duration, future: F) -> Result<F::Output, Elapsed> {
        let mut sleep = self.until((tokio::time::Instant::now() + duration).into_std());
        let mut future = pin!(future);
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            Pin::new(&mut sleep).poll(cx).map(|()| Err(Elapsed))
        })
        .await
    }

    fn put_back(&self, sleep: Pin<Box<tokio::time::Sleep>>) {
        if let Ok(mut spare) = self.0.lock()
            && spare.len() < MAX_SPARE
        {
            spare.push(sleep);
        }
    }
}

/// A sleep that goes back to its worker's spares when dropped.
#[derive(Debug)]
pub struct PooledSleep {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    pool: Sleeps,
}

impl PooledSleep {
    pub fn reset(&mut self, deadline: Instant) {
        if let Some(sleep) = self.sleep.as_mut() {
            sleep.as_mut().reset(deadline.into());
        }
    }
}

impl Future for PooledSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Drop for PooledSleep {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            self.pool.put_back(sleep);
        }
    }
}

impl hyper::rt::Sleep for PooledSleep {}

impl hyper::rt::Timer for Sleeps {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.until((tokio::time::Instant::now() + duration).into_std()))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.until(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<PooledSleep>() {
            Some(pooled) => pooled.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    fn now(&self) -> Instant {
        // tokio's clock, as hyper-util's TokioTimer uses: tests that pause time see the same now.
        tokio::time::Instant::now().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare(sleeps: &Sleeps) -> usize {
        sleeps.0.lock().unwrap().len()
    }

    /// `secs` from `started` on tokio's paused clock, to the millisecond the timer wheel rounds to.
    fn assert_after(started: tokio::time::Instant, secs: u64) {
        let elapsed = started.elapsed();
        let expected = Duration::from_secs(secs);
        assert!(elapsed >= expected && elapsed <= expected + Duration::from_millis(2), "{elapsed:?}, not {expected:?}");
    }

    fn in_secs(secs: u64) -> Instant {
        (tokio::time::Instant::now() + Duration::from_secs(secs)).into_std()
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_fires_at_its_deadline_and_its_timer_is_kept() {
        let sleeps = Sleeps::default();
        let started = tokio::time::Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(sleeps.timeout(Duration::from_secs(5), never).await, Err(Elapsed));
        assert_after(started, 5);
        assert_eq!(spare(&sleeps), 1, "the timer went back to the spares");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_keeps_the_new_deadline_not_the_old_one() {
        let sleeps = Sleeps::default();
        assert_eq!(sleeps.timeout(Duration::from_secs(60), async { 7 }).await, Ok(7));
        assert_eq!(spare(&sleeps), 1);
        // Earlier than the spare's old deadline (60 s): the spare must still fire at 1 s.
        let started = tokio::time::Instant::now();
        assert_eq!(sleeps.timeout(Duration::from_secs(1), std::future::pending::<()>()).await, Err(Elapsed));
        assert_after(started, 1);
        // Later than the spare's (fired) deadline: it fires at the new one, not at once.
        let started = tokio::time::Instant::now();
        let slow = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "done"
        };
        assert_eq!(sleeps.timeout(Duration::from_secs(10), slow).await, Ok("done"));
        assert_after(started, 3);
        assert_eq!(spare(&sleeps), 1, "one timer served all three");
    }

    #[tokio::test(start_paused = true)]
    async fn moved_later_a_spare_does_not_fire_at_its_old_deadline() {
        let sleeps = Sleeps::default();
        // Registered for 2 s, then put back before it fires.
        drop(sleeps.until(in_secs(2)));
        let started = tokio::time::Instant::now();
        let mut sleep = sleeps.until(in_secs(30));
        assert!(tokio::time::timeout(Duration::from_secs(29), &mut sleep).await.is_err(), "not at 2 s");
        (&mut sleep).await;
        assert_after(started, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn spares_are_bounded() {
        let sleeps = Sleeps::default();
        let many: Vec<_> = (0..MAX_SPARE + 10).map(|_| sleeps.until(in_secs(1))).collect();
        drop(many);
        assert_eq!(spare(&sleeps), MAX_SPARE);
    }

    #[tokio::test(start_paused = true)]
    async fn as_hypers_timer_it_resets_its_own_sleeps() {
        use hyper::rt::Timer;
        let sleeps = Sleeps::default();
        let started = tokio::time::Instant::now();
        let mut sleep = Timer::sleep(&sleeps, Duration::from_secs(1));
        sleeps.reset(&mut sleep, in_secs(4));
        sleep.await;
        assert_after(started, 4);
        assert_eq!(spare(&sleeps), 1);
    }
}
