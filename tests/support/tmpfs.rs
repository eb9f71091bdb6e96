//! A real full disk for tests (issue 27): a small tmpfs the test mounts (`mount -t tmpfs`,
//! which needs root, as CI runs), unmounted when dropped, and a filler file that takes every
//! byte left on it.
//!
//! Not root: the test FAILS with a message saying so, unless `DRACO_TEST_NO_ROOT=1` is set, when
//! it says it is skipped (stderr) and passes without checking anything: a test that cannot run
//! never passes silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted (lazily, if busy) when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount`'s syntax: "24m") on a fresh temporary directory.
    /// `None` only when not root and `DRACO_TEST_NO_ROOT=1` says so.
    pub fn mount(size: &str) -> Option<Self> {
        let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        if uid.as_deref().ok() != Some("0") {
            if std::env::var("DRACO_TEST_NO_ROOT").is_ok_and(|v| v == "1") {
                eprintln!("SKIPPED (DRACO_TEST_NO_ROOT=1): a full-disk test needs root to mount a tmpfs");
                return None;
            }
            panic!(
                "this test mounts a small tmpfs to fill it and needs root (CI runs as root; uid here: {uid:?}); \
                 run it as root, or set DRACO_TEST_NO_ROOT=1 to skip it knowingly"
            );
        }
        let dir = tempfile::tempdir().expect("a mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs -o size={size} tmpfs {} failed: {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system: a file `filler` written until no byte is left (`ENOSPC`).
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("create the filler");
        let block = vec![0xa5u8; 64 << 10];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        // Whatever is smaller than a block.
        let mut byte = [0u8; 1];
        while file.write_all(&byte).is_ok() {
            byte[0] = byte[0].wrapping_add(1);
        }
        assert!(self.free() < 64 << 10, "the file system is full: {} bytes free", self.free());
        path
    }

    /// Deletes the filler: space returns.
    pub fn unfill(&self) {
        std::fs::remove_file(self.path().join("filler")).expect("remove the filler");
    }

    /// Bytes free on the file system.
    pub fn free(&self) -> u64 {
        let s = rustix::fs::statvfs(self.path()).expect("statvfs");
        s.f_bavail * s.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.dir.path().to_owned();
        let done = Command::new("umount").arg(&path).status().is_ok_and(|s| s.success());
        if !done {
            // Something (a process being killed) still holds a file: detach it now.
            let _ = Command::new("umount").arg("-l").arg(&path).status();
        }
    }
}
