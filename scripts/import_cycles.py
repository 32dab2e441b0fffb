#!/usr/bin/env python3
"""Lists the `use crate::X` edges between modules of each crate and the
import cycles among them (strongly connected components of more than one
module), so "two modules that import each other" can be counted.

A module is a source file: `src/a.rs` or `src/a/mod.rs` is `a`,
`src/a/b.rs` is `a::b`. An edge A -> B is any path `crate::B...` or
`super::...` naming B in A's code outside its `#[cfg(test)]` module;
`mod b;` declarations are not edges (a parent owning a child is not an
import), and a module's own children do not count as importing it back
through `super::` unless they name it.

usage: scripts/import_cycles.py [--edges] [CRATE_DIR ...]
(default: every workspace member with a src/ directory, and the root crate)
exits 1 when any cycle is found.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def crate_dirs():
    dirs = [ROOT]
    for name in sorted(os.listdir(ROOT)):
        d = os.path.join(ROOT, name)
        if os.path.isfile(os.path.join(d, "Cargo.toml")) and os.path.isdir(os.path.join(d, "src")):
            dirs.append(d)
    return dirs


def modules(src):
    """module path (tuple) -> file"""
    out = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = []
            out[tuple(parts)] = os.path.join(dirpath, f)
    return out


def strip(code):
    code = re.split(r"#\[cfg\(test\)\]\s*(?:pub\s+)?mod\s+\w+\s*\{", code)[0]
    code = re.sub(r"//[^\n]*", "", code)
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    code = re.sub(r'"(?:\\.|[^"\\])*"', '""', code)
    return code


def group_items(s, i):
    """Items of a `{...}` group starting at s[i] == '{': (paths, end)."""
    depth, start, items = 0, i + 1, []
    j = i
    while j < len(s):
        c = s[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                items.append(s[start:j])
                return items, j
        elif c == "," and depth == 1:
            items.append(s[start:j])
            start = j + 1
        j += 1
    return items, j


def paths_after(s, i):
    """Paths (lists of segments) written after a `crate::`/`super::` at i."""
    m = re.match(r"\s*\{", s[i:])
    if m:
        items, _ = group_items(s, i + m.end() - 1)
        out = []
        for it in items:
            it = it.strip()
            if not it:
                continue
            sub = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)*", it)
            if sub:
                segs = [x.strip() for x in sub.group(0).split("::")]
                rest = it[sub.end():].lstrip()
                if rest.startswith("::") and "{" in rest:
                    k = it.index("{", sub.end())
                    for p in paths_after(it, k):
                        out.append(segs + p)
                else:
                    out.append(segs)
        return out
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*(::\{)?", s[i:])
    if not m:
        return []
    segs = m.group(0).rstrip("{").rstrip(":").split("::")
    if m.group(1):
        return [segs + p for p in paths_after(s, i + m.end() - 1)]
    return [segs]


def resolve(mods, base, segs):
    best = None
    for n in range(len(segs) + 1):
        key = tuple(base) + tuple(segs[:n])
        if key in mods:
            best = key
    return best


def edges_of(mods):
    edges = {m: set() for m in mods}
    for mod, path in mods.items():
        code = strip(open(path, encoding="utf-8").read())
        for m in re.finditer(r"\b(crate|super)\s*::\s*", code):
            base = [] if m.group(1) == "crate" else list(mod[:-1])
            # `super::super::x`
            rest_at = m.end()
            while m.group(1) == "super" and code.startswith("super::", rest_at):
                base = base[:-1]
                rest_at += len("super::")
            for segs in paths_after(code, rest_at):
                tgt = resolve(mods, base, segs)
                if tgt is None or tgt == mod:
                    continue
                # The crate root and a module's own ancestors re-export;
                # naming them is not a dependency on a sibling.
                if tgt == () or mod[: len(tgt)] == tgt:
                    continue
                edges[mod].add(tgt)
    return edges


def sccs(edges):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def name(m):
    return "::".join(m) or "(root)"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_edges = "--edges" in sys.argv
    dirs = [os.path.abspath(a) for a in args] or crate_dirs()
    total = 0
    for d in dirs:
        mods = modules(os.path.join(d, "src"))
        edges = edges_of(mods)
        crate = os.path.basename(d) if d != ROOT else "dfs-sim"
        if show_edges:
            for m in sorted(edges):
                for t in sorted(edges[m]):
                    print(f"{crate}: {name(m)} -> {name(t)}")
        for comp in sccs(edges):
            total += 1
            comp = sorted(comp)
            inner = [f"{name(a)} -> {name(b)}" for a in comp for b in sorted(edges[a]) if b in comp]
            print(f"{crate}: cycle among {', '.join(name(c) for c in comp)}  ({'; '.join(inner)})")
    print(f"import cycles: {total}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
