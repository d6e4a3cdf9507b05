"""Harness of the workflows suite: git repositories made for a test, and the run suite's
driver (the real `agentbox run` against the fake OpenRouter) reused as is."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "run"))
from runtest_util import AGENTBOX, UNPRIVILEGED, RunTestCase, bash, call, finish  # noqa: E402,F401

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
           "PATH": "/usr/bin:/bin", "LC_ALL": "C"}

CALC_BROKEN = "def add(a, b):\n    return a - b\n"
CALC_FIXED = "def add(a, b):\n    return a + b\n"
TEST_CALC = "import sys\nsys.path.insert(0, '.')\nfrom calc import add\nassert add(2, 3) == 5, 'add is broken'\nprint('tests ok')\n"


def git(cwd, *args, check=True):
    p = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"git {args}: {p.stderr}")
    return p


def make_repo(path, files, message="initial"):
    """A repository with one commit of files (and a second commit if asked); returns HEAD."""
    os.makedirs(path, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for rel, text in files.items():
        full = os.path.join(path, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return git(path, "rev-parse", "HEAD").stdout.strip()


def calc_repo(path):
    head = make_repo(path, {"calc.py": CALC_BROKEN, "tests/test_calc.py": TEST_CALC})
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)
    os.chmod(path, 0o755)
    return head


def tree_state(path):
    """Every file below path (.git included) with its bytes: the host repo must not change."""
    out = {}
    for root, dirs, files in os.walk(path):
        for n in files:
            full = os.path.join(root, n)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out
