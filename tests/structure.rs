//! The code base's shape, checked: every file under `src/` is in ARCHITECTURE.md's file table,
//! no file passes 600 lines before its tests, and each operation (a typed message of
//! `src/message.rs`) is spelled in at most six files — its definition, the two backends that
//! implement it, and the engine and web methods that offer it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, as paths relative to `base` with `/` separators.
fn files(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, base, out);
        } else {
            out.push(path.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/"));
        }
    }
}

fn sources() -> Vec<String> {
    let src = root().join("src");
    let mut out = Vec::new();
    files(&src, &src, &mut out);
    out.sort();
    assert!(out.len() > 40, "src/ read: {out:?}");
    out
}

/// The paths named in ARCHITECTURE.md's "Files" table (first column, in backticks).
fn architecture_table() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let table = text.split("### Files").nth(1).expect("ARCHITECTURE.md has a '### Files' section");
    let cell = Regex::new(r"`([^`]+)`").unwrap();
    let mut named = Vec::new();
    for line in table.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')) {
        let first = line.split('|').nth(1).unwrap_or_default();
        named.extend(cell.captures_iter(first).map(|c| c[1].to_owned()));
    }
    assert!(named.len() > 40, "the file table names files: {named:?}");
    named
}

fn listed(file: &str, table: &[String]) -> bool {
    table.iter().any(|entry| match entry.split_once('*') {
        Some((prefix, suffix)) => file.starts_with(prefix) && file.ends_with(suffix),
        None => entry == file,
    })
}

#[test]
fn every_file_under_src_is_in_the_architecture_file_table() {
    let table = architecture_table();
    let missing: Vec<String> = sources().into_iter().filter(|f| !listed(f, &table)).collect();
    assert!(missing.is_empty(), "files under src/ missing from ARCHITECTURE.md's file table: {missing:?}");
    let sources = sources();
    let stale: Vec<&String> =
        table.iter().filter(|e| !sources.iter().any(|f| listed(f, std::slice::from_ref(e)))).collect();
    assert!(stale.is_empty(), "ARCHITECTURE.md's file table names files that do not exist: {stale:?}");
}

#[test]
fn the_file_table_check_sees_a_missing_file() {
    let table = vec!["lib.rs".to_owned(), "redis/lua/*.lua".to_owned()];
    assert!(listed("lib.rs", &table));
    assert!(listed("redis/lua/get.lua", &table));
    assert!(!listed("engine/door.rs", &table));
}

/// Lines before the file's tests: its first `#[cfg(test)]` at the start of a line that opens
/// a module (attributes between them allowed), so a test-only import does not count.
fn lines_before_tests(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let opens_module = |i: usize| {
        lines[i + 1..].iter().find(|l| !l.trim_start().starts_with("#[")).is_some_and(|l| l.starts_with("mod "))
    };
    (0..lines.len()).find(|&i| lines[i].starts_with("#[cfg(test)]") && opens_module(i)).unwrap_or(lines.len())
}

#[test]
fn a_test_only_import_is_not_where_the_tests_begin() {
    let text = "use a;\n#[cfg(test)]\nuse b;\nfn f() {}\n#[cfg(test)]\n#[path = \"t.rs\"]\nmod tests;\n";
    assert_eq!(lines_before_tests(text), 4);
    assert_eq!(lines_before_tests("fn f() {}\n"), 1);
}

#[test]
fn no_file_under_src_passes_600_lines_before_its_tests() {
    let src = root().join("src");
    let long: Vec<(String, usize)> = sources()
        .into_iter()
        .filter(|f| f.ends_with(".rs"))
        .map(|f| {
            let n = lines_before_tests(&std::fs::read_to_string(src.join(&f)).unwrap());
            (f, n)
        })
        .filter(|(_, n)| *n > 600)
        .collect();
    assert!(long.is_empty(), "files past 600 lines before their tests: {long:?}");
}

/// The public typed messages, read from `src/message.rs`.
fn messages(text: &str) -> Vec<String> {
    let decl = Regex::new(r"(?m)^pub struct ([A-Z][A-Za-z]*)").unwrap();
    let data = ["SessionInfo", "UserSession", "ShardStats", "EngineStats"];
    decl.captures_iter(text).map(|c| c[1].to_owned()).filter(|m| !data.contains(&m.as_str())).collect()
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Code of a Rust file: comments and enum variant declarations (of other concepts with the
/// same word, such as a log record's `Set` or a cookie's `Remove`) left out.
fn code(text: &str) -> String {
    let variant = Regex::new(r"^\s+[A-Z][A-Za-z]*\s*(\{.*\}|\(.*\))?\s*,?\s*$|^\s+[A-Z][A-Za-z]*\s*\{\s*$").unwrap();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .filter(|l| !variant.is_match(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// For each message, the files that name it: its type (alone or by module path, not as a
/// variant of another type: `Change::Set` is a log record's) or a method named after it
/// (`fn set_persistent`) where that name is the operation's alone.
fn spread(sources: &BTreeMap<String, String>, messages: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for m in messages {
        let ty = Regex::new(&format!(r"(?m)(?:^|[^:A-Za-z0-9_])(?:[a-z][a-z0-9_]*::)*{m}\b")).unwrap();
        // A method named after it, where that name means nothing else (`fn clear` is also a
        // data structure's, `fn create` a file's).
        let name = snake(m);
        let distinct = name.contains('_') || ["login", "logout", "revoke", "increment"].contains(&name.as_str());
        let method = Regex::new(&format!(r"\bfn {name}\b")).unwrap();
        let files = sources
            .iter()
            .filter(|(_, c)| ty.is_match(c) || (distinct && method.is_match(c)))
            .map(|(f, _)| f.clone())
            .collect();
        out.insert(m.clone(), files);
    }
    out
}

#[test]
fn no_operation_is_spelled_in_more_than_six_files() {
    let src = root().join("src");
    let sources: BTreeMap<String, String> = sources()
        .into_iter()
        .filter(|f| f.ends_with(".rs"))
        .map(|f| {
            let text = code(&std::fs::read_to_string(src.join(&f)).unwrap());
            (f, text)
        })
        .collect();
    let messages = messages(&std::fs::read_to_string(src.join("message.rs")).unwrap());
    assert!(messages.len() >= 19 && messages.iter().any(|m| m == "SetPersistent"), "{messages:?}");
    let spread = spread(&sources, &messages);
    let wide: Vec<_> = spread.iter().filter(|(_, files)| files.len() > 6).collect();
    assert!(wide.is_empty(), "operations spelled in more than six files under src/: {wide:#?}");
    // Each is implemented once per backend.
    for (m, files) in &spread {
        if m != "LogoutOthers" {
            assert!(files.contains(&"memory/ops.rs".to_owned()), "{m}: {files:?}");
        }
    }
}

#[test]
fn the_spread_check_counts_a_forwarding_layer() {
    let mut sources = BTreeMap::new();
    sources.insert("a.rs".to_owned(), code("pub struct SetPersistent;\n    Set { id: u8 },"));
    sources.insert("b.rs".to_owned(), code("fn set_persistent(&self) {}"));
    sources.insert("c.rs".to_owned(), code("// SetPersistent in a comment\nlet k = OpKind::SetPersistent;"));
    sources.insert("d.rs".to_owned(), code("match c { Change::Set { .. } => {} }"));
    sources.insert("e.rs".to_owned(), code("run(crate::message::SetPersistent { id })"));
    let spread = spread(&sources, &["SetPersistent".to_owned(), "Set".to_owned()]);
    assert_eq!(spread["SetPersistent"], ["a.rs", "b.rs", "e.rs"]);
    assert!(spread["Set"].is_empty(), "{:?}", spread["Set"]);
}
