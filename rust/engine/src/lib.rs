//! pythia-engine: everything in pythia-suite that must be fast or exact, in plain Rust.
//!
//! Data flows one way: raw text → [`tokenizer`] → [`indexed`] `.bin/.idx` → [`index`]
//! (doc/sample/shuffle) → [`loader`] rows and batches. No module here knows about Python;
//! the `pythia-python` crate converts types and releases the GIL.

pub mod atomic;
pub mod corpus;
pub mod error;
mod files;
pub mod index;
pub mod indexed;
pub mod loader;
pub mod tokenize;
pub mod tokenizer;

pub use error::{Error, Result};

/// rayon's worker threads do not survive `fork` (PyTorch DataLoader workers are forked): a
/// child that used the parent's global pool would wait forever. The process that first asks
/// here owns the global pool; every use of rayon must ask first (or go through [`in_pool`]).
pub fn may_use_rayon() -> bool {
    static POOL_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = std::process::id();
    *POOL_PID.get_or_init(|| pid) == pid
}

/// Run `f`, which may use rayon's parallel iterators, on the global pool in the process that
/// owns it, and in a forked child on a one-thread pool of the child's own (created once per
/// process), so that it never waits on the parent's threads, which the child does not have.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R> {
    use std::sync::{Arc, Mutex};
    if may_use_rayon() {
        return Ok(f());
    }
    type ChildPool = Option<(u32, Arc<rayon::ThreadPool>)>;
    static CHILD: Mutex<ChildPool> = Mutex::new(None);
    let pid = std::process::id();
    let pool = {
        let mut child = CHILD.lock().unwrap_or_else(|e| e.into_inner());
        match &*child {
            Some((owner, pool)) if *owner == pid => pool.clone(),
            _ => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .map_err(|e| Error::invalid(format!("cannot start a worker thread: {e}")))?;
                let pool = Arc::new(pool);
                *child = Some((pid, pool.clone()));
                pool
            }
        }
    };
    Ok(pool.install(f))
}
