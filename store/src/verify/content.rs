//! The content phase: hashes the files whose metadata matched, largest
//! first, through the bounded queue of `crate::pool`.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::findings::{FindingKind, Tagged, finding};
use crate::digest::{Digest, hex};
use crate::hash::hash_file;
use crate::pool;

/// A file to hash and what its manifest says it holds.
pub(super) struct HashJob {
    /// The target the file belongs to.
    pub(super) target: usize,
    /// The file.
    pub(super) path: PathBuf,
    /// Its size in the manifest (and on disk, when the job was queued).
    pub(super) size: u64,
    /// Its digest in the manifest.
    pub(super) sha256: Digest,
}

/// Hashes every job on `jobs` workers, adds a finding to `found` for each
/// file that differs or cannot be read, and returns the bytes hashed.
pub(super) fn hash_all(mut hash_jobs: Vec<HashJob>, jobs: usize, found: &mut Vec<Tagged>) -> u64 {
    // Largest first, so that the big files do not end up last on one core.
    hash_jobs.sort_by_key(|j| std::cmp::Reverse(j.size));
    let hashed = AtomicU64::new(0);
    let out: Mutex<Vec<Tagged>> = Mutex::new(Vec::new());
    let _ = pool::run(jobs, &hash_jobs, |job: &HashJob, buf| {
        let result = File::open(&job.path).and_then(|mut f| hash_file(&mut f, job.size, buf));
        let f = match result {
            Ok((d, n)) => {
                hashed.fetch_add(n, Ordering::Relaxed);
                if n != job.size {
                    // Changed while we read it.
                    Some(finding(
                        FindingKind::SizeChanged,
                        &job.path,
                        Some(job.size.to_string()),
                        Some(n.to_string()),
                    ))
                } else if d != job.sha256 {
                    Some(finding(
                        FindingKind::ContentChanged,
                        &job.path,
                        Some(format!("sha256={}", hex(&job.sha256.0))),
                        Some(format!("sha256={}", hex(&d.0))),
                    ))
                } else {
                    None
                }
            }
            Err(e) => Some(finding(
                FindingKind::IoError,
                &job.path,
                None,
                Some(e.to_string()),
            )),
        };
        if let Some(f) = f {
            out.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((job.target, f));
        }
        Ok::<(), ()>(())
    });
    found.extend(out.into_inner().unwrap_or_else(PoisonError::into_inner));
    hashed.into_inner()
}
