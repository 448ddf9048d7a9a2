//! The lock a run holds on its work directory, kept out of forked children.
//!
//! `flock` locks belong to the open file, which `fork` shares with the child: a process forked
//! while a run holds its lock (a DataLoader worker or a `multiprocessing` pool started from a
//! notebook while a tokenize call runs in another thread, a progress callback that forks) would
//! keep the output locked after the run ends, for as long as it lives, and the next run in the
//! parent would be refused as if another run were writing. On Linux, a fork handler points the
//! child's copies of the lock descriptors at `/dev/null`, which lets go of the lock there only.

use std::fs::File;

/// An open, `flock`ed work directory; dropping it unlocks (closes) it.
pub(crate) struct DirLock {
    #[cfg(target_os = "linux")]
    slot: Option<usize>,
    _file: File,
}

impl DirLock {
    /// Take the lock on `file` (an open directory) without waiting.
    pub(crate) fn try_lock(file: File) -> Result<Self, std::fs::TryLockError> {
        // Registered before locking: a fork in between leaves the child nothing to hold.
        #[cfg(target_os = "linux")]
        let slot = fork_guard::register(&file);
        let lock = DirLock {
            #[cfg(target_os = "linux")]
            slot,
            _file: file,
        };
        lock._file.try_lock()?;
        Ok(lock)
    }
}

#[cfg(target_os = "linux")]
impl Drop for DirLock {
    fn drop(&mut self) {
        // Unregistered before the descriptor closes, so that a fork handler never touches a
        // descriptor number reused for another file.
        if let Some(slot) = self.slot {
            fork_guard::unregister(slot);
        }
    }
}

#[cfg(target_os = "linux")]
mod fork_guard {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Once;

    /// Descriptors of the locks held now (-1: free). Lock-free, as the fork handler must be:
    /// it runs in a child whose other threads are gone, perhaps holding any mutex.
    static LOCKS: [AtomicI32; 64] = [const { AtomicI32::new(-1) }; 64];

    /// The slot taken for `file`, or None when all are taken (that lock then stays shared with
    /// children, as without this guard).
    pub(super) fn register(file: &File) -> Option<usize> {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            // SAFETY: `in_child` only calls async-signal-safe functions.
            unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        });
        let fd = file.as_raw_fd();
        LOCKS.iter().position(|slot| {
            slot.compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })
    }

    pub(super) fn unregister(slot: usize) {
        LOCKS[slot].store(-1, Ordering::SeqCst);
    }

    /// In a forked child: replace each lock descriptor with one on `/dev/null`. The number stays
    /// open, so that whatever owns it in the child's copy of memory can still close it.
    extern "C" fn in_child() {
        for slot in &LOCKS {
            let fd = slot.load(Ordering::SeqCst);
            if fd < 0 {
                continue;
            }
            // SAFETY: open, dup3 and close are async-signal-safe; `fd` is open (registered).
            unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if null >= 0 {
                    libc::dup3(null, fd, libc::O_CLOEXEC);
                    libc::close(null);
                }
            }
        }
    }
}
