//! The state dir is not trusted blindly: the one place that opens, creates and checks what
//! lives in it, so that another local user can neither redirect Baton's writes (symlinks),
//! hang it (FIFOs), read its secrets (modes), nor block it (locks).
//!
//! The rules, as ssh's `StrictModes`:
//! - the state dir, and every directory above it, is owned by the running user or root;
//!   the state dir is writable by no one else; an ancestor writable by others must be
//!   sticky (`/tmp`), so no one else can rename or replace what is ours in it;
//! - everything in it is owned by the running user or root and writable by no one else;
//!   it is opened without following symbolic links (`O_NOFOLLOW`) and without blocking
//!   (`O_NONBLOCK`), then checked to be a regular file (or a directory) before use;
//! - Baton creates directories 0700 and files 0600, and tightens a file of its own that
//!   is looser when it next writes it;
//! - only the owner of a state dir writes in it: lock files are opened only by it, are
//!   0600, and must be its own, so no other user can take one.
//!
//! A user who may only read a state dir (`baton-serve` or `baton-signal list` as another
//! user, where the owner has made it readable) reads it and leaves the clean-up to its owner.

use crate::error::{Error, Result};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the directories Baton creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files Baton creates.
pub const FILE_MODE: u32 = 0o600;

/// Open flags of every open in a state dir: never follow a symbolic link, never block
/// (a FIFO opens at once and is then refused), never leak into a job.
fn safe_flags() -> i32 {
    use rustix::fs::OFlags;
    (OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32
}

/// The effective user this process acts as.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// What this process may do with a trusted state dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trust {
    /// The state dir is this user's own: it may write there, lock, and clean up. A user
    /// reading root's state dir may only read.
    pub writer: bool,
}

/// Check that `dir` (a state dir) may be trusted: it, and the directories above it, are
/// controlled by no user but this one and root. A missing state dir is checked through
/// its nearest existing ancestor (`Ok(None)`), so that creating it is safe.
pub fn check_state_dir(dir: &Path) -> Result<Option<Trust>> {
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("resolve", dir, e))?
            .join(dir)
    };
    // The real path: a symbolic link along the way is as trusted as the directory it sits
    // in, which the check of the real path's ancestors covers.
    let (existing, exists) = match fs::canonicalize(&absolute) {
        Ok(real) => (real, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut up = absolute.as_path();
            loop {
                match up.parent() {
                    Some(p) => up = p,
                    None => break (PathBuf::from("/"), false),
                }
                if let Ok(real) = fs::canonicalize(up) {
                    break (real, false);
                }
            }
        }
        Err(e) => return Err(Error::io("resolve", dir, e)),
    };
    let me = euid();
    let mut trust = None;
    for (i, path) in existing.ancestors().enumerate() {
        let meta = fs::metadata(path).map_err(|e| Error::io("check", path, e))?;
        let state_dir = i == 0 && exists;
        if !meta.is_dir() {
            return Err(Error::new(format!(
                "state dir {}: {} is not a directory",
                dir.display(),
                path.display()
            )));
        }
        check_owner(path, &meta, me, "directory")?;
        let mode = meta.mode();
        if state_dir {
            if mode & 0o022 != 0 {
                return Err(untrusted(path, &meta, "is writable by its group or others"));
            }
            trust = Some(Trust {
                writer: meta.uid() == me,
            });
        } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(Error::new(format!(
                "state dir {} is not safe: {} above it is writable by its group or others and not sticky, so another user could replace it: give a state dir under a directory only root or {} can write (--state-dir, BATON_STATE_DIR), or chmod go-w {}",
                dir.display(),
                path.display(),
                user_name(me),
                path.display()
            )));
        }
    }
    Ok(trust)
}

/// Create the state dir (0700) if missing, and check it: for binaries that write there.
pub fn ensure_state_dir(dir: &Path) -> Result<Trust> {
    let trust = match check_state_dir(dir)? {
        Some(t) => t,
        None => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| Error::io("create directory", dir, e))?;
            check_state_dir(dir)?.ok_or_else(|| {
                Error::new(format!(
                    "state dir {} vanished as it was made",
                    dir.display()
                ))
            })?
        }
    };
    if !trust.writer {
        return Err(Error::new(format!(
            "state dir {} belongs to {}, and only its owner writes there: run as {} or give your own --state-dir",
            dir.display(),
            owner_of(dir),
            owner_of(dir)
        )));
    }
    Ok(trust)
}

fn owner_of(dir: &Path) -> String {
    fs::metadata(dir)
        .map(|m| user_name(m.uid()))
        .unwrap_or_else(|_| "another user".into())
}

/// A directory inside a trusted state dir, created 0700 if missing: it must be a real
/// directory (not a symbolic link), this user's or root's, and writable by no one else.
pub fn private_dir(path: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create directory", path, e)),
    }
    match check_dir(path)? {
        true => Ok(()),
        false => Err(Error::new(format!(
            "{} vanished as it was made",
            path.display()
        ))),
    }
}

/// Check a directory inside a trusted state dir without creating it: `Ok(false)` if it is
/// missing.
pub fn check_dir(path: &Path) -> Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("check", path, e)),
    };
    if meta.file_type().is_symlink() {
        return Err(Error::new(format!(
            "{} is a symbolic link, which Baton does not follow in its state dir: remove it (rm {}) and check who made it",
            path.display(),
            path.display()
        )));
    }
    if !meta.is_dir() {
        return Err(Error::new(format!(
            "{} is not a directory: remove it (rm {})",
            path.display(),
            path.display()
        )));
    }
    check_owner(path, &meta, euid(), "directory")?;
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(path, &meta, "is writable by its group or others"));
    }
    Ok(true)
}

/// Open a file in the state dir for reading: `Ok(None)` if absent. Refused: a symbolic
/// link, anything but a regular file (a FIFO never blocks the open), a file owned by
/// another user, or writable by its group or others.
pub fn open_read(path: &Path) -> Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(safe_flags())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(path, e)),
    };
    let meta = file.metadata().map_err(|e| Error::io("check", path, e))?;
    check_file(path, &meta)?;
    Ok(Some(file))
}

/// Read a whole file of the state dir, at most `limit` bytes: `Ok(None)` if absent.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let Some(file) = open_read(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::new(format!(
            "{} is larger than {limit} bytes: not a file Baton wrote",
            path.display()
        )));
    }
    Ok(Some(bytes))
}

/// Open (creating, 0600) a file of the state dir to append to: a log, a history. It must
/// be a regular file of this user's; a looser mode is tightened to 0600.
pub fn open_append(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(safe_flags())
        .open(path)
        .map_err(|e| open_error(path, e))?;
    own_file(path, file)
}

/// Create a new file (0600) that must not exist yet: the temporary file of an atomic write.
pub fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(safe_flags())
        .open(path)
        .map_err(|e| open_error(path, e))
}

/// Open (creating, 0600) a lock file. Only the owner of a state dir opens its locks, and
/// a lock file must be its own and 0600, so no other user can open it to take the lock.
pub fn open_lock(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .custom_flags(safe_flags())
        .open(path)
        .map_err(|e| open_error(path, e))?;
    own_file(path, file)
}

/// A file this user writes: a regular file of its own, tightened to 0600.
fn own_file(path: &Path, file: File) -> Result<File> {
    let meta = file.metadata().map_err(|e| Error::io("check", path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    let me = euid();
    if meta.uid() != me {
        return Err(Error::new(format!(
            "file {} is owned by {}, not by {}: another user could hold it or change it; remove it (rm {}) and check who made it",
            path.display(),
            user_name(meta.uid()),
            user_name(me),
            path.display()
        )));
    }
    if meta.mode() & 0o7077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| Error::io("chmod", path, e))?;
    }
    Ok(file)
}

fn check_file(path: &Path, meta: &Metadata) -> Result<()> {
    if !meta.is_file() {
        return Err(not_regular(path, meta));
    }
    check_owner(path, meta, euid(), "file")?;
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(path, meta, "is writable by its group or others"));
    }
    Ok(())
}

fn check_owner(path: &Path, meta: &Metadata, me: u32, what: &str) -> Result<()> {
    if meta.uid() == me || meta.uid() == 0 {
        return Ok(());
    }
    let trusted = match me {
        0 => "root".to_string(),
        _ => format!("{} or root", user_name(me)),
    };
    Err(Error::new(format!(
        "{what} {} is owned by {}, not by {trusted}: another user could make Baton write, read or kill what it chooses; remove it, or if it is Baton's: chown {} {}",
        path.display(),
        user_name(meta.uid()),
        user_name(me),
        path.display()
    )))
}

fn untrusted(path: &Path, meta: &Metadata, why: &str) -> Error {
    let fix = if meta.is_dir() {
        format!("chmod 0700 {}", path.display())
    } else {
        format!("chmod 0600 {}", path.display())
    };
    Error::new(format!(
        "{} {why}, so another user could change what Baton reads or writes: {fix} (and check who changed it)",
        path.display()
    ))
}

fn not_regular(path: &Path, meta: &Metadata) -> Error {
    let kind = if meta.is_dir() {
        "a directory"
    } else if meta.file_type().is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file (a FIFO, device or socket)"
    };
    Error::new(format!(
        "{} is {kind}, which Baton does not open in its state dir: remove it (rm {}) and check who made it",
        path.display(),
        path.display()
    ))
}

fn open_error(path: &Path, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        // O_NOFOLLOW on a symbolic link.
        Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => Error::new(format!(
            "{} is a symbolic link, which Baton does not follow in its state dir: remove it (rm {}) and check who made it",
            path.display(),
            path.display()
        )),
        // O_NONBLOCK|O_WRONLY on a FIFO no one reads.
        Some(code) if code == rustix::io::Errno::NXIO.raw_os_error() => Error::new(format!(
            "{} is not a regular file (a FIFO, device or socket), which Baton does not open in its state dir: remove it (rm {}) and check who made it",
            path.display(),
            path.display()
        )),
        _ => Error::io("open", path, e),
    }
}

/// The name of user `uid` for messages (`uid N` if it has none).
pub fn user_name(uid: u32) -> String {
    let name = fs::read_to_string("/etc/passwd").ok().and_then(|text| {
        text.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?;
            (id.parse() == Ok(uid)).then(|| name.to_string())
        })
    });
    name.unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn dir(label: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("baton-safefs-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        Dir(p)
    }

    #[test]
    fn creates_private_dirs_and_files() {
        let d = dir("modes");
        let state = d.0.join("state");
        assert!(ensure_state_dir(&state).unwrap().writer);
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&state), 0o700);
        private_dir(&state.join("jobs")).unwrap();
        assert_eq!(mode(&state.join("jobs")), 0o700);
        let f = state.join("jobs/x.log");
        open_append(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        open_lock(&state.join("jobs/x.lock")).unwrap();
        assert_eq!(mode(&state.join("jobs/x.lock")), 0o600);
        // A looser file of ours is tightened when next written.
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        open_append(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
    }

    #[test]
    fn refuses_loose_modes_symlinks_and_fifos() {
        let d = dir("refuse");
        let state = d.0.join("state");
        ensure_state_dir(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o770)).unwrap();
        let e = check_state_dir(&state).unwrap_err().message;
        assert!(e.contains("chmod 0700"), "{e}");
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();

        let target = d.0.join("outside");
        fs::write(&target, b"secret").unwrap();
        let link = state.join("h.jsonl");
        symlink(&target, &link).unwrap();
        assert!(open_append(&link)
            .unwrap_err()
            .message
            .contains("symbolic link"));
        assert!(open_read(&link)
            .unwrap_err()
            .message
            .contains("symbolic link"));
        assert!(open_lock(&link).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"secret");

        symlink(&d.0, state.join("logs")).unwrap();
        assert!(private_dir(&state.join("logs"))
            .unwrap_err()
            .message
            .contains("symbolic link"));

        let fifo = state.join("x.json");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(open_read(&fifo).unwrap_err().message.contains("FIFO"));
        assert!(open_append(&fifo).unwrap_err().message.contains("FIFO"));
        assert!(open_lock(&fifo).unwrap_err().message.contains("FIFO"));

        let wide = state.join("w.json");
        fs::write(&wide, b"{}").unwrap();
        fs::set_permissions(&wide, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(open_read(&wide).unwrap_err().message.contains("chmod 0600"));
    }

    #[test]
    fn ancestors_must_be_safe() {
        let d = dir("ancestors");
        let open = d.0.join("open");
        fs::create_dir_all(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_state_dir(&open.join("state")).unwrap_err().message;
        assert!(e.contains("not sticky"), "{e}");
        // Sticky, as /tmp: what is ours in it stays ours.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        ensure_state_dir(&open.join("state")).unwrap();
    }
}
