#!/usr/bin/env python3
"""The `crate::` edges between top-level modules of src/, and what breaks the layer rule.

Usage: scripts/module_edges.py [--check] [SRC_DIR]

Prints one line per edge, `from -> to  (files)`, then the edges that point upwards in the
layer table below (ARCHITECTURE.md's, lowest row first) and the cycles between modules. With
`--check`, exits 1 when there is any besides the known ones listed in KNOWN. A file's module
is its first path component under src/ (`src/wal/io.rs` is `wal`); `lib.rs` (the re-exports)
and `fuzzing.rs` (outside the layers) are not counted. Comments are skipped; code under
`#[cfg(test)]` is counted. SRC_DIR (default: this repository's src/) lets an older tree be
read, e.g. `git archive HEAD~1 src | tar -x -C /tmp/old && scripts/module_edges.py /tmp/old/src`.
"""

import pathlib
import re
import sys

# Lowest first; a module may use modules of its own row (no cycle) or below.
LAYERS = [
    # foundations
    ["clock", "error", "names", "id", "seal", "secret", "robot", "config", "redis_url", "telemetry", "fsutil", "rate", "outage"],
    # session data, and what the engine answers
    ["state", "message", "events"],
    # a session's bytes in persistence
    ["wire"],
    # persistence: the log, and the snapshots (whose loader replays the log)
    ["wal"],
    ["snapshot"],
    # backends: neither sees the other
    ["memory"],
    ["redis"],
    # the engine, whose store.rs is the seam the backends are called through
    ["engine"],
    ["web"],
]
# Same-row or lower pairs that still may not meet.
APART = {("memory", "redis"), ("redis", "memory")}
# Upward edges known and left to another change, with the reason.
KNOWN: dict = {}
SKIP = {"lib", "fuzzing"}

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
ROOT = pathlib.Path(ARGS[0]).resolve() if ARGS else pathlib.Path(__file__).resolve().parent.parent / "src"


def module_of(path):
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".rs")


def strip_comments(text):
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def targets(text):
    """Top-level modules named after each `crate::` in `text`."""
    found = set()
    for m in re.finditer(r"\bcrate::", text):
        rest = text[m.end():]
        if rest.startswith("{"):
            # `crate::{a::X, b::{c::Y, Z}}`: the first name of each depth-1 item, when a
            # path follows it (a bare item is a lib.rs re-export: its module is not named).
            depth, names, word, done = 0, [], "", False
            for i, ch in enumerate(rest):
                if ch in "{}":
                    depth += 1 if ch == "{" else -1
                    if depth == 0:
                        break
                    word = ""
                elif depth == 1 and ch == ",":
                    word, done = "", False
                elif depth == 1 and not done:
                    if ch == ":" and word:
                        names.append(word)
                        done = True
                    elif not ch.isspace():
                        word += ch
            found.update(names)
        else:
            w = re.match(r"([a-z_][a-z0-9_]*)::", rest)
            if w:
                found.add(w.group(1))
    return found


def rank(module):
    for i, row in enumerate(LAYERS):
        if module in row:
            return i
    return None


def main():
    edges = {}
    for path in sorted(ROOT.rglob("*.rs")):
        src = module_of(path)
        if src in SKIP:
            continue
        for dst in targets(strip_comments(path.read_text())):
            if dst == src or dst in {"self", "super"}:
                continue
            edges.setdefault((src, dst), set()).add(str(path.relative_to(ROOT)))
    bad, known = [], []
    for (src, dst), files in sorted(edges.items()):
        print(f"{src} -> {dst}  ({', '.join(sorted(files))})")
        rs, rd = rank(src), rank(dst)
        if rs is None or rd is None:
            bad.append(f"unknown module in {src} -> {dst}")
        elif (src, dst) in KNOWN:
            known.append(f"known upward: {src} -> {dst}: {KNOWN[(src, dst)]}")
        elif rd > rs or (src, dst) in APART:
            bad.append(f"upward or sideways: {src} -> {dst}  ({', '.join(sorted(files))})")
    # Cycles: any pair reaching each other.
    graph = {}
    for src, dst in edges:
        graph.setdefault(src, set()).add(dst)

    def reach(a):
        seen, todo = set(), [a]
        while todo:
            for b in graph.get(todo.pop(), ()):
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    for a in sorted(graph):
        for b in sorted(reach(a)):
            if a < b and a in reach(b):
                bad.append(f"cycle: {a} <-> {b}")
    print()
    print("\n".join(known + bad) if known or bad else "no upward edge, no cycle")
    if not bad:
        print("nothing else: no other upward edge, no cycle")
    if "--check" in sys.argv and bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
