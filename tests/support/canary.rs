//! Looking for a canary in stored bytes: the forms a value can take in a file or a Redis key
//! (its text, hex in either case, base64 at each of the three alignments, standard and
//! URL-safe), and every file of a directory tree that holds one of them; and a user's
//! sessions holding a canary, for the erasure's tests. Also a directory tree copied whole
//! (`copy_tree`: what a `kill -9` leaves, or a copy for a second engine).
#![allow(dead_code, reason = "three test binaries (engine, persistence, process) each use their own part")]

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// The byte strings that would give `canary` away: itself, its hex, and the base64 of it.
/// Base64 of a value embedded in longer data depends on where the value starts: for each of
/// the three offsets modulo 3, the characters that encode only the canary's own bytes.
pub fn forms(canary: &[u8]) -> Vec<Vec<u8>> {
    let hex: String = canary.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![canary.to_vec(), hex.clone().into_bytes(), hex.to_uppercase().into_bytes()];
    for engine in [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD]
    {
        for skip in 0..3 {
            // Drop the first `skip` bytes so the rest starts at a 3-byte boundary, then drop
            // the last characters, which also depend on what follows the canary.
            let text = engine.encode(&canary[skip..]);
            let whole = (canary.len() - skip) / 3 * 4;
            out.push(text.as_bytes()[..whole].to_vec());
        }
    }
    out
}

/// Every file under `dir` (recursively) that holds one of `needles`, with the needle.
pub fn files_holding(dir: &Path, needles: &[Vec<u8>]) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            for needle in needles {
                if bytes.windows(needle.len()).any(|w| w == &needle[..]) {
                    found.push((path.clone(), String::from_utf8_lossy(needle).into_owned()));
                }
            }
        }
    }
    found
}

/// How many files there are under `dir`, recursively (to show a scan looked at something).
pub fn file_count(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { stack.push(path) } else { n += 1 }
        }
    }
    n
}

/// `n` sessions of `user`, each holding `canary` in two scopes (one written before the login,
/// carried across it), every other one remembered.
pub async fn canary_sessions(
    e: &draco_session::SessionEngine,
    user: u64,
    n: usize,
    canary: &str,
) -> Vec<draco_session::SessionId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = e.create().await.unwrap().id;
        e.insert(&id, "profile", "note", &format!("{canary} before login {i}")).await.unwrap();
        let id = e.login(&id, user).await.unwrap().id;
        e.insert(&id, "cart", "items", &[canary]).await.unwrap();
        if i % 2 == 0 {
            e.set_persistent(&id, true).await.unwrap();
        }
        ids.push(id);
    }
    ids
}

/// Copies the files of `from` and its subdirectories into `to` (created).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
