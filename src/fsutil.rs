//! What the files of persistence (snapshots, log segments) and the key file share on disk:
//! files and directories only their owner can read, the directory fsync that makes a rename
//! durable, and the numbers in file names.

use std::fs::File;
use std::io;
use std::path::Path;

/// A number in a file name: digits only (`parse` alone would accept a leading `+`).
pub(crate) fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A shard number or count as stored in file names and headers.
#[allow(clippy::cast_possible_truncation, reason = "session.shards is at most 1024 (config validation)")]
pub(crate) fn as_u32(n: usize) -> u32 {
    n as u32
}

/// Options that create (or truncate) a file only its owner can read and write (mode 0600 on
/// Unix): snapshots and log segments hold usable session ids.
pub(crate) fn private_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Creates `dir` (and its parents) for the engine's files, mode 0700 on Unix; a directory that
/// already exists and others may enter is a warning (its files stay 0600 either way).
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        let existed = dir.is_dir();
        builder.create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if existed && mode & 0o077 != 0 {
            log::warn!(
                "{} is mode {mode:o}: other users may list it; the session files in it are 0600, but \
                 `chmod 700` it to keep their names private too",
                dir.display()
            );
        }
        Ok(())
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// fsync of a directory, so a rename or removal in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Other platforms cannot open a directory for syncing; renames there are
        // as durable as the platform makes them.
        let _ = dir;
        Ok(())
    }
}

/// Whether `e` says the file system is out of room: no space left (`ENOSPC`) or the user's
/// quota is used up (`EDQUOT`). Unlike a permission error, this passes once space returns.
pub(crate) fn out_of_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Bytes an unprivileged writer may still use on the file system holding `file` (`fstatvfs`:
/// available blocks times their size); `None` where it cannot be told.
pub(crate) fn free_space(file: &File) -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::fs::fstatvfs(file).ok().map(|s| s.f_bavail.saturating_mul(s.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_space_is_told_from_permissions() {
        assert!(out_of_space(&io::Error::from_raw_os_error(28)));
        assert!(out_of_space(&io::Error::from(io::ErrorKind::StorageFull)));
        assert!(out_of_space(&io::Error::from(io::ErrorKind::QuotaExceeded)));
        assert!(!out_of_space(&io::Error::from(io::ErrorKind::PermissionDenied)));
        assert!(!out_of_space(&io::Error::from_raw_os_error(13)));
    }

    #[cfg(unix)]
    #[test]
    fn free_space_is_known_for_a_temporary_file() {
        let file = tempfile::tempfile().unwrap();
        assert!(free_space(&file).is_some());
    }
}
