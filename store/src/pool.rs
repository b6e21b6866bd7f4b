//! A small scoped worker pool over a list of jobs.
//!
//! Workers take the next job with one atomic add on a shared cursor, so no
//! worker ever sleeps on a lock or a channel. A channel fed one job at a
//! time, which this replaced, spent 13% of verification's CPU in context
//! switches on 40,000 small files (docs/performance.md). The caller
//! orders the list (largest first for hashing), and each worker keeps one
//! read buffer for its whole life.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;

use crate::hash::BUF_SIZE;

/// Runs `work` on every job with `jobs` threads (at least one, at most one
/// per job). Stops handing out jobs after the first error, which it
/// returns.
pub(crate) fn run<T, E, F>(jobs: usize, items: &[T], work: F) -> Result<(), E>
where
    T: Sync,
    E: Send,
    F: Fn(&T, &mut [u8]) -> Result<(), E> + Sync,
{
    let threads = jobs.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_err: Mutex<Option<E>> = Mutex::new(None);
    let worker = || {
        let mut buf = vec![0u8; BUF_SIZE];
        while !stop.load(Ordering::Relaxed) {
            let Some(job) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            if let Err(e) = work(job, &mut buf) {
                stop.store(true, Ordering::Relaxed);
                first_err
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(e);
            }
        }
    };
    thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(worker);
        }
        // The calling thread is one of the workers.
        worker();
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
    use super::*;

    #[test]
    fn runs_every_job_once() {
        let sum = AtomicUsize::new(0);
        let items: Vec<usize> = (1..=1000).collect();
        let r: Result<(), ()> = run(3, &items, |i, _| {
            sum.fetch_add(*i, Ordering::Relaxed);
            Ok(())
        });
        assert!(r.is_ok());
        assert_eq!(sum.into_inner(), 500_500);
    }

    #[test]
    fn returns_an_error_and_stops() {
        let done = AtomicUsize::new(0);
        let items: Vec<usize> = (0..100_000).collect();
        let r = run(2, &items, |i, _| {
            done.fetch_add(1, Ordering::Relaxed);
            if *i == 10 { Err(*i) } else { Ok(()) }
        });
        assert_eq!(r, Err(10));
        assert!(done.into_inner() < 100_000);
    }

    #[test]
    fn no_jobs_is_fine() {
        let r: Result<(), ()> = run(4, &Vec::<u8>::new(), |_, _| Ok(()));
        assert!(r.is_ok());
    }
}
