"""The contract is documented: every task field, result field, event type and socket-protocol
op (with its fields) that the C sources accept or emit is named, in backticks, in
docs/reference.md.
The names are extracted from the sources with regular expressions over the tables and calls
that define them, so a field added to the code and not to the docs fails here."""
import os
import re
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def c_sources():
    for dp, dn, fn in os.walk(ROOT):
        dn[:] = [d for d in dn if d not in (".git", "build", "tests", "node_modules", "clients")]
        for f in fn:
            if f.endswith(".c"):
                yield os.path.relpath(os.path.join(dp, f), ROOT)


def strings(text):
    return re.findall(r'"([a-z_0-9]+)"', text)


def task_fields():
    """Every key list a task part is checked against (json_check_keys' tables)."""
    src = read("wire/task.c")
    names = set()
    for body in re.findall(r"keys\[\]\s*=\s*\{(.*?)\};", src, re.S):
        names.update(strings(body))
    return names


def protocol_ops():
    """{op: its fields} from the request table of the protocol parser."""
    src = read("wire/protocol.c")
    table = re.search(r"\} ops\[\] = \{(.*?)\n\};", src, re.S).group(1)
    ops = {}
    for name, keys in re.findall(r'\{"([a-z_]+)", OP_\w+, \(const char \*const\[\]\)\{(.*?)\}\}', table):
        ops[name] = set(strings(keys)) - {"op"}
    return ops


def runner_sources():
    """The runner's files (supervisor/runner*.c), as one text."""
    names = sorted(f for f in os.listdir(os.path.join(ROOT, "supervisor"))
                   if f.startswith("runner") and f.endswith(".c"))
    return "\n".join(read("supervisor/" + f) for f in names)


def result_fields():
    """The top-level fields of result.json and its usage object, as the runner builds them."""
    src = runner_sources()
    return set(re.findall(r'cJSON_Add\w*ToObject\((?:res|usage), "([a-z_]+)"', src))


def event_types():
    """Every type given to the event stream: literal types at the emit calls, the cell's
    allowed types and the terminal events the runner decides."""
    names = set()
    call = re.compile(r'\b(?:events_emit|emit|send_event|serve_emit_own_event)\([^;]*?,\s*"([a-z_]+)"', re.S)
    for rel in c_sources():
        src = read(rel)
        names.update(call.findall(src))
    runner = runner_sources()
    allowed = re.search(r"cell_event_types\[\]\s*=\s*\{(.*?)\};", runner, re.S).group(1)
    names.update(strings(allowed))
    names.update(re.findall(r'"(task_[a-z]+)"', runner))
    return names


class ReferenceIsComplete(unittest.TestCase):
    doc = "docs/reference.md"

    def documented(self):
        return set(re.findall(r"`([a-z_0-9]+)`", read(self.doc)))

    def missing(self, names):
        return sorted(set(names) - self.documented())

    def test_extraction_finds_the_tables(self):
        # Guards the regular expressions themselves: a refactor that hides a table must fail.
        self.assertGreaterEqual(len(task_fields()), 15)
        self.assertGreaterEqual(len(protocol_ops()), 8)
        self.assertGreaterEqual(len(result_fields()), 15)
        self.assertGreaterEqual(len(event_types()), 15)
        self.assertIn("task_completed", event_types())
        self.assertIn("tool_call", event_types())

    def test_every_task_field_is_documented(self):
        self.assertEqual(self.missing(task_fields()), [])

    def test_every_protocol_op_and_its_fields_are_documented(self):
        ops = protocol_ops()
        fields = set().union(*ops.values())
        self.assertEqual(self.missing(ops.keys()), [])
        self.assertEqual(self.missing(fields), [])

    def test_every_result_field_is_documented(self):
        self.assertEqual(self.missing(result_fields()), [])

    def test_every_event_type_is_documented(self):
        self.assertEqual(self.missing(event_types()), [])


if __name__ == "__main__":
    unittest.main()
