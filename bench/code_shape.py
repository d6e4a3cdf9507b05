#!/usr/bin/env python3
"""The shape of the C tree: lines per file and per function, per folder.

Usage: python3 bench/code_shape.py [--max-function N] [--max-file N]
Prints one line per folder (files, lines, longest file, longest function), then every file
over --max-file lines and every function over --max-function lines; exits 1 if there is any.
A function is measured as clang-format lays it out (`make format`): from the line holding its
name to the `}` in column 0 that closes it, both included.
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRS = ["common", "sandbox", "wire", "agent", "agent/tools", "llm", "egress", "supervisor", "batch",
        "daemon", "cli"]
OPEN = re.compile(r"^[A-Za-z_].*\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def functions(lines):
    """(name, first line, length) of each function definition in a formatted C file."""
    out, start, name = [], None, None
    for i, line in enumerate(lines):
        if start is None:
            m = OPEN.match(line)
            if m and not line.rstrip().endswith(";") and not line.startswith(("typedef", "struct", "enum", "union")) \
                    or (m and line.startswith(("struct", "enum", "union")) and "(" in line and not line.rstrip().endswith(";")):
                name, start = m.group(1), i
            continue
        if line.startswith("}"):
            # a definition has its `{` in column 0 between its name and its end
            if any(l.startswith("{") for l in lines[start:i]):
                out.append((name, start + 1, i - start + 1))
            start = None
        elif line.rstrip().endswith(";") and not any(l.startswith("{") for l in lines[start:i + 1]):
            start = None  # a prototype spread over lines
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-function", type=int, default=120)
    ap.add_argument("--max-file", type=int, default=900)
    args = ap.parse_args()
    over_files, over_funcs = [], []
    print("%-12s %5s %6s  %-28s %s" % ("folder", "files", "lines", "longest file", "longest function"))
    for d in DIRS:
        path = os.path.join(ROOT, d)
        names = sorted(f for f in os.listdir(path) if f.endswith((".c", ".h")))
        total, longest, longest_fn = 0, ("", 0), ("", 0)
        for f in names:
            with open(os.path.join(path, f), encoding="utf-8") as fh:
                lines = fh.read().split("\n")
            n = len(lines) - (1 if lines and lines[-1] == "" else 0)
            total += n
            if n > longest[1]:
                longest = (f, n)
            if n > args.max_file:
                over_files.append("%s/%s: %d lines" % (d, f, n))
            for name, first, length in functions(lines):
                if length > longest_fn[1]:
                    longest_fn = ("%s %s()" % (f, name), length)
                if length > args.max_function:
                    over_funcs.append("%s/%s:%d %s(): %d lines" % (d, f, first, name, length))
        print("%-12s %5d %6d  %-28s %s" % (d, len(names), total, "%s %d" % longest,
                                            "%s %d" % longest_fn))
    for line in over_files:
        print("file over %d lines: %s" % (args.max_file, line))
    for line in over_funcs:
        print("function over %d lines: %s" % (args.max_function, line))
    return 1 if over_files or over_funcs else 0


if __name__ == "__main__":
    sys.exit(main())
