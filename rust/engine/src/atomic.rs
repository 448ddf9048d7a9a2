//! Outputs appear atomically: written to a temporary file in the destination's directory (so
//! the final rename is atomic), synced, then renamed over the destination. An interrupted run
//! leaves at most a hidden `.NAME.tmp-PID` file (`.NAME.tmp-PID-HOST-TOKEN` for outputs that
//! several jobs may write at once, see [`shared_temp_path`]), never a half-written file under
//! the real name.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::Result;

/// A temporary name beside `dest`, unique per process.
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// A temporary name beside `dest` for outputs that separate jobs may write at once (the index
/// files): `.NAME.tmp-PID-HOST-TOKEN`. Jobs on different hosts sharing a folder can have the same
/// PID, and so can processes in containers of one host (often PID 1); the host name and a
/// random token drawn once per process tell them apart, and tell [`remove_stale_temps`] whose
/// temporary it is looking at. One name per process and `dest`: threads of one process that
/// write the same `dest` must take turns.
pub fn shared_temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(
        ".{name}.tmp-{}-{}-{:016x}",
        std::process::id(),
        host_name(),
        process_token()
    ))
}

/// A temporary of `dest` that is never put in place stays unreadable to [`remove_stale_temps`]
/// of other processes only while its writer holds this lock: take it on the file's descriptor
/// and keep the descriptor open until after the rename. Best effort: a file system without
/// locks (NFS mounted `nolock`) falls back on the host, PID and age rules.
pub fn hold_temp_lock(file: &File) {
    let _ = file.try_lock();
}

/// The host name as it may appear in a file name (letters, digits, `.`, `-`, `_`; at most 64).
fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let raw = read_host_name().unwrap_or_default();
        let clean: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        if clean.is_empty() {
            "unknown-host".into()
        } else {
            clean
        }
    })
}

#[cfg(target_os = "linux")]
fn read_host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and the last byte stays 0 either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(not(target_os = "linux"))]
fn read_host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
}

/// Drawn once per process: std's hasher keys are random per process, mixed with the time.
fn process_token() -> u64 {
    static TOKEN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TOKEN.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        h.finish()
    })
}

/// How old (by its last write) another host's temporary must be before it is taken for a dead
/// run's: no host's process can be asked whether it still runs, and a live build writes its
/// temporaries within seconds to minutes (an index of the whole Pile, in well under an hour).
pub const FOREIGN_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Write `bytes` to `dest` through a temporary file and a rename. Temporaries of `dest` left
/// by killed runs go first: the run that writes `dest` now is the one to clean up after them.
pub fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<()> {
    remove_stale_temps(dest);
    let tmp = temp_path(dest);
    // Errors name `dest`: the temporary is removed on the way out.
    let result = (|| {
        let mut f = File::create(&tmp).at(dest)?;
        f.write_all(bytes).at(dest)?;
        f.sync_all().at(dest)?;
        std::fs::rename(&tmp, dest).at(dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An exclusive lock on `dir`, for putting a set of files in place there: two processes
/// renaming the files of one output at once would leave one's `.bin` beside the other's `.idx`.
/// None where the folder cannot be opened to lock (write-only), rather than refusing it.
pub fn lock_folder(dir: &Path) -> Result<Option<File>> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let folder = match File::open(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(crate::Error::io(dir, e)),
    };
    folder.lock().at(dir)?;
    Ok(Some(folder))
}

/// Remove the temporaries of `dest` whose writer is gone: a run killed with SIGKILL or lost with
/// its node cannot clean up, and a merge's temporary is as large as its output. Returns the
/// files removed. Never another live writer's:
///
/// * `.NAME.tmp-PID` ([`temp_path`]): removed when no process of this PID namespace has that
///   PID (checked through `/proc`). Such outputs are written by one job at a time; a run on
///   another host sharing the directory looks dead.
/// * `.NAME.tmp-PID-HOST-TOKEN` ([`shared_temp_path`], outputs that separate jobs may build at
///   once): left alone while its writer holds its lock ([`hold_temp_lock`]) or is this process;
///   otherwise removed when HOST is this host and PID is gone, or, from another host (whose
///   processes cannot be seen) or on a file system without locks (where a writer in another
///   PID namespace of a host of this name would look gone), when it was last written more than
///   [`FOREIGN_TEMP_AGE`] ago.
pub fn remove_stale_temps(dest: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new(); // the caller's own create reports a missing or unreadable directory
    };
    let start = format!(".{}.tmp-", name.to_string_lossy());
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&start)) else {
            continue;
        };
        let path = entry.path();
        let stale = match rest.split_once('-') {
            None => rest.parse::<u32>().is_ok_and(process_is_gone),
            Some((pid, host_token)) => {
                let (Ok(pid), Some((host, token))) =
                    (pid.parse::<u32>(), host_token.rsplit_once('-'))
                else {
                    continue;
                };
                if token.len() != 16 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                let age = || {
                    entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                };
                shared_temp_is_stale(
                    lock_state(&path),
                    host == host_name(),
                    || process_is_gone(pid),
                    age,
                )
            }
        };
        // Best effort: a temporary that cannot be removed costs space, not correctness.
        if stale && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Whether a `.NAME.tmp-PID-HOST-TOKEN` temporary's writer is gone, from its lock, whether
/// HOST is this host, whether PID runs here, and the time since its last write.
fn shared_temp_is_stale(
    lock: TempLock,
    this_host: bool,
    pid_gone: impl FnOnce() -> bool,
    age: impl FnOnce() -> Option<std::time::Duration>,
) -> bool {
    match lock {
        TempLock::Held => false,
        TempLock::Free if this_host => pid_gone(),
        // Another host's processes cannot be seen; and without locks, a live writer in another
        // PID namespace of a host of this name (a container) looks gone.
        TempLock::Free | TempLock::Unknown => age().is_some_and(|a| a > FOREIGN_TEMP_AGE),
    }
}

/// What the lock of [`hold_temp_lock`] on a temporary says of its writer.
enum TempLock {
    /// A writer holds it (a shared lock is refused), or the file cannot be opened to ask: it is
    /// not this run's to judge.
    Held,
    Free,
    /// The file system takes no locks (NFS mounted `nolock`): the lock tells nothing.
    Unknown,
}

fn lock_state(path: &Path) -> TempLock {
    // Only regular files are opened: opening a FIFO would wait for a writer.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return TempLock::Free;
    }
    match File::open(path) {
        Ok(f) => match f.try_lock_shared() {
            Ok(()) => TempLock::Free,
            Err(std::fs::TryLockError::WouldBlock) => TempLock::Held,
            Err(std::fs::TryLockError::Error(_)) => TempLock::Unknown,
        },
        Err(_) => TempLock::Held,
    }
}

#[cfg(target_os = "linux")]
fn process_is_gone(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Without `/proc`, no temporary can be shown to be abandoned: keep them all.
#[cfg(not(target_os = "linux"))]
fn process_is_gone(_pid: u32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("pythia-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("out.bin");
        let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(4_194_304);
        let dead = dir.join(format!(".out.bin.tmp-{}", pid_max + 1));
        let alive = temp_path(&dest);
        let other = dir.join(format!(".out.idx.tmp-{}", pid_max + 1));
        let not_a_pid = dir.join(".out.bin.tmp-x1");
        for f in [&dead, &alive, &other, &not_a_pid] {
            std::fs::write(f, b"tokens").unwrap();
        }
        let removed = remove_stale_temps(&dest);
        if cfg!(target_os = "linux") {
            assert_eq!(removed, vec![dead.clone()]);
            assert!(!dead.exists());
        } else {
            assert!(removed.is_empty() && dead.exists());
        }
        assert!(alive.exists() && other.exists() && not_a_pid.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shared_temps_are_removed_only_when_their_writer_is_gone() {
        let dir = std::env::temp_dir().join(format!("pythia-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("x_doc_idx.npy");
        let dead_pid = u32::MAX;
        let at =
            |pid: u32, host: &str| dir.join(format!(".x_doc_idx.npy.tmp-{pid}-{host}-{:016x}", 7));
        let ours = shared_temp_path(&dest);
        let dead_here = at(dead_pid, host_name());
        let locked_here = at(dead_pid - 1, host_name()); // a live writer in another PID namespace
        let fresh_there = at(dead_pid, "some-other-host.example");
        let old_there = at(12, "some-other-host.example");
        let old_there_locked = at(13, "some-other-host.example");
        for f in [
            &ours,
            &dead_here,
            &locked_here,
            &fresh_there,
            &old_there,
            &old_there_locked,
        ] {
            std::fs::write(f, b"half an array").unwrap();
        }
        let long_ago = std::time::SystemTime::now() - FOREIGN_TEMP_AGE * 2;
        for f in [&old_there, &old_there_locked] {
            File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        let held: Vec<File> = [&locked_here, &old_there_locked]
            .iter()
            .map(|f| {
                let f = File::options().write(true).open(f).unwrap();
                hold_temp_lock(&f);
                f
            })
            .collect();
        let mut removed = remove_stale_temps(&dest);
        removed.sort();
        if cfg!(target_os = "linux") {
            let mut expected = vec![dead_here.clone(), old_there.clone()];
            expected.sort();
            assert_eq!(removed, expected);
        } else {
            assert_eq!(removed, vec![old_there.clone()]);
        }
        for f in [&ours, &locked_here, &fresh_there, &old_there_locked] {
            assert!(f.exists(), "{}", f.display());
        }
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_locks_a_shared_temp_of_this_host_is_judged_by_its_age() {
        let day = Some(FOREIGN_TEMP_AGE * 2);
        let fresh = Some(std::time::Duration::from_secs(60));
        // A file system without locks: a PID not seen here may run in a container of this
        // host's name, so only age tells.
        assert!(!shared_temp_is_stale(
            TempLock::Unknown,
            true,
            || true,
            || fresh
        ));
        assert!(shared_temp_is_stale(
            TempLock::Unknown,
            true,
            || true,
            || day
        ));
        // With locks, an unlocked one of this host whose PID is gone is a killed run's.
        assert!(shared_temp_is_stale(
            TempLock::Free,
            true,
            || true,
            || fresh
        ));
        assert!(!shared_temp_is_stale(
            TempLock::Free,
            true,
            || false,
            || day
        ));
        assert!(!shared_temp_is_stale(
            TempLock::Free,
            false,
            || true,
            || fresh
        ));
        assert!(shared_temp_is_stale(
            TempLock::Free,
            false,
            || false,
            || day
        ));
        assert!(!shared_temp_is_stale(TempLock::Held, true, || true, || day));
    }

    #[test]
    fn shared_temp_names_carry_pid_host_and_token() {
        let name = shared_temp_path(Path::new("/d/a.npy"));
        let name = name.file_name().unwrap().to_str().unwrap();
        let rest = name.strip_prefix(".a.npy.tmp-").unwrap();
        let (pid, rest) = rest.split_once('-').unwrap();
        let (host, token) = rest.rsplit_once('-').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        assert_eq!(host, host_name());
        assert_eq!(token, format!("{:016x}", process_token()));
    }
}
