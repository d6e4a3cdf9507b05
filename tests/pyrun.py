#!/usr/bin/env python3
"""Runs the unittest files of one suite directory and prints a closing tally line
("N passed, N failed, N skipped") that tests/run-all.sh adds up. Stdlib only.

usage: pyrun.py SUITE_DIR [LABEL]    (env AGENTBOX: the binary under test)
"""
import os
import sys
import unittest


def main():
    suite_dir = sys.argv[1]
    label = sys.argv[2] if len(sys.argv) > 2 else os.path.basename(suite_dir.rstrip("/"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    loader = unittest.TestLoader()
    suite = loader.discover(suite_dir, pattern="test_*.py", top_level_dir=suite_dir)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"{label}: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
