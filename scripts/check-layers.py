#!/usr/bin/env python3
"""Herald's layers point one way (docs/architecture.md, "Module map").

Every file under src/<module>/ and include/herald/<module>/ may include headers of its own module
and of modules below it, never of a module above it:

    common < wire < config < metrics < auth < hub < broker < net < app

src/main.cpp belongs to app. Tests, fuzzers and benchmarks may include anything. Prints one line
per violation, `path:line: <rule>`, and exits 1 when there is any.
"""
import argparse
import pathlib
import re
import sys

LAYERS = ["common", "wire", "config", "metrics", "auth", "hub", "broker", "net", "app"]
RANK = {m: i for i, m in enumerate(LAYERS)}
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def module_of(rel):
    """The module a file belongs to (rel: a path relative to the root), or None."""
    parts = rel.parts
    if parts[:1] == ("src",):
        if len(parts) == 2:
            return "app"  # src/main.cpp: flags and wiring
        return parts[1]
    if parts[:2] == ("include", "herald") and len(parts) > 3:
        return parts[2]
    return None


def included_module(root, rel, target):
    """The module of the header `target` included from `rel`."""
    m = re.match(r"herald/([^/]+)/", target)
    if m:
        return m.group(1)
    # A private header, relative to the including file (src/<module>/x.hpp) or to src/.
    for base in (root / rel.parent, root / "src"):
        p = (base / target).resolve()
        if p.is_file():
            try:
                return module_of(p.relative_to(root.resolve()))
            except ValueError:
                return None
    return None


def check(root):
    problems = []
    files = sorted(list((root / "src").rglob("*.[ch]pp")) +
                   list((root / "include" / "herald").rglob("*.hpp")))
    for path in files:
        rel = path.relative_to(root)
        mod = module_of(rel)
        if mod is None:
            continue
        if mod not in RANK:
            problems.append(f"{rel}:1: module '{mod}' is not a layer; add it to LAYERS in "
                            f"scripts/check-layers.py and to docs/architecture.md")
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            dep = included_module(root, rel, m.group(1))
            if dep is None or dep == mod:
                continue
            if dep not in RANK:
                problems.append(f"{rel}:{n}: includes '{m.group(1)}' of module '{dep}', "
                                f"which is not a layer")
            elif RANK[dep] > RANK[mod]:
                problems.append(
                    f"{rel}:{n}: {mod} includes {m.group(1)} of {dep}, a layer above it "
                    f"(a module includes only modules below it: {' < '.join(LAYERS)})")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=pathlib.Path(__file__).resolve().parent.parent,
                    type=pathlib.Path, help="the source tree (default: this checkout)")
    args = ap.parse_args()
    problems = check(args.root)
    for p in problems:
        print(p)
    if problems:
        print(f"check-layers: {len(problems)} include(s) against the layers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
