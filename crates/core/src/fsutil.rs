//! Durable file writes: a reader sees the old file or the new one, never a torn one, even
//! after `kill -9` or a power cut.

use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Write `bytes` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, crate::safefs::FILE_MODE)
}

/// [`write_atomic`], the file's mode set to `mode` whatever the umask: 0644 for a file
/// another user's daemon reads (the metrics textfile node_exporter collects).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    // A bare file name (`baton.prom`) lives in the working directory, whose name is "".
    let dir = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => {
            return Err(Error::new(format!(
                "{} has no parent directory",
                path.display()
            )))
        }
    };
    let tmp = dir.join(temp_name(path));
    let result = (|| {
        // 0600, never through a symbolic link: the replacement is private whatever the
        // umask, until it is given `mode` (through its descriptor, never its name).
        let mut file = crate::safefs::create_new(&tmp)?;
        if mode != crate::safefs::FILE_MODE {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("chmod", &tmp, e))?;
        }
        file.write_all(bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io("replace", path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Make a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Create `dir` and its parents if missing.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
}

/// Temporary files start with `.tmp.` so that listings can skip them, and carry the pid
/// and a counter so that concurrent writers never share one.
pub const TEMP_PREFIX: &str = ".tmp.";

fn temp_name(path: &Path) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "{TEMP_PREFIX}{base}.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("baton-fsutil-{}", std::process::id()));
        ensure_dir(&dir).unwrap();
        let path = dir.join("record.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("record.json")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn modes_are_set_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("baton-fsmode-{}", std::process::id()));
        ensure_dir(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let private = dir.join("private");
        write_atomic(&private, b"x").unwrap();
        assert_eq!(mode(&private), 0o600);
        let public = dir.join("public.prom");
        write_atomic_mode(&public, b"x", 0o644).unwrap();
        assert_eq!(mode(&public), 0o644);
        fs::set_permissions(&public, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic_mode(&public, b"y", 0o644).unwrap();
        assert_eq!(mode(&public), 0o644);
        fs::remove_dir_all(&dir).unwrap();
    }
}
