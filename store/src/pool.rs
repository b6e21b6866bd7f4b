//! A small scoped worker pool fed through a bounded queue.
//!
//! Copying and hashing are spread over the cores this way: the producer
//! blocks when the queue is full, so memory stays bounded however many jobs
//! there are, and each worker keeps one read buffer for its whole life.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Mutex, PoisonError};
use std::thread;

use crate::hash::BUF_SIZE;

/// Runs `work` on every job with `jobs` threads (at least one). Stops
/// handing out jobs after the first error, which it returns.
pub(crate) fn run<T, E, F>(
    jobs: usize,
    items: impl IntoIterator<Item = T>,
    work: F,
) -> Result<(), E>
where
    T: Send,
    E: Send,
    F: Fn(T, &mut [u8]) -> Result<(), E> + Sync,
{
    let jobs = jobs.max(1);
    let (tx, rx) = sync_channel::<T>(jobs * 4);
    let rx = Mutex::new(rx);
    let stop = AtomicBool::new(false);
    let first_err: Mutex<Option<E>> = Mutex::new(None);
    thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                let mut buf = vec![0u8; BUF_SIZE];
                loop {
                    // The lock is held only while taking one job off the queue.
                    let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = next else { break };
                    if stop.load(Ordering::Relaxed) {
                        continue; // drain without working
                    }
                    if let Err(e) = work(job, &mut buf) {
                        stop.store(true, Ordering::Relaxed);
                        first_err
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(e);
                    }
                }
            });
        }
        for item in items {
            if stop.load(Ordering::Relaxed) || tx.send(item).is_err() {
                break;
            }
        }
        drop(tx);
    });
    match first_err
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn runs_every_job_once() {
        let sum = AtomicUsize::new(0);
        let r: Result<(), ()> = run(3, 1..=1000usize, |i, _| {
            sum.fetch_add(i, Ordering::Relaxed);
            Ok(())
        });
        assert!(r.is_ok());
        assert_eq!(sum.into_inner(), 500_500);
    }

    #[test]
    fn returns_an_error_and_stops() {
        let done = AtomicUsize::new(0);
        let r = run(2, 0..100_000usize, |i, _| {
            done.fetch_add(1, Ordering::Relaxed);
            if i == 10 { Err(i) } else { Ok(()) }
        });
        assert_eq!(r, Err(10));
        assert!(done.into_inner() < 100_000);
    }
}
