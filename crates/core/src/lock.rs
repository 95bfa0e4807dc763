//! Advisory file locks (flock) with a bounded wait. The kernel drops a lock when its
//! holder dies, so a crash never leaves anything locked.

use crate::error::{Error, Result};
use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

/// Open (creating) `path` and take an exclusive lock on it, waiting at most `limit`.
pub fn lock_file(path: &Path, limit: Duration) -> Result<File> {
    let file = open(path)?;
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::new(format!(
                    "{} is still locked after {}s: another process holds it",
                    path.display(),
                    limit.as_secs()
                )))
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
    }
}

/// Take the lock on `path` now, or return `None` if another process holds it.
pub fn try_lock_file(path: &Path) -> Result<Option<File>> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(Error::io("lock", path, e)),
    }
}

/// Lock files are 0600 and this user's own ([`crate::safefs::open_lock`]): no other user
/// can open one to take the lock.
fn open(path: &Path) -> Result<File> {
    crate::safefs::open_lock(path)
}
