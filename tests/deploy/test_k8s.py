"""deploy/k8s checked against the Kubernetes API schema of the objects it uses (no cluster can
run here): every key of the ConfigMap and the Indexed Job must be a field of its object in
the API (batch/v1 Job, core/v1 PodSpec, Container, SecurityContext...), with the right type
and, for enumerations, an allowed value; volume mounts name declared volumes; the shard count
matches completions. The schema below is the subset of the API reference those objects use,
written out by hand. Needs PyYAML (Debian's python3-yaml, installed by make deps)."""
import os
import re
import unittest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MANIFEST = os.path.join(ROOT, "deploy", "k8s", "agentbox-batch-job.yaml")

QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
STR, INT, BOOL = str, int, bool


def enum(*values):
    return ("enum", values)


def listof(t):
    return ("list", t)


def mapof(t):
    return ("map", t)


def quantity():
    return ("quantity",)


META = {"name": STR, "namespace": STR, "labels": mapof(STR), "annotations": mapof(STR)}
KEY_SEL = {"name": STR, "key": STR, "optional": BOOL}
ENV = {"name": STR, "value": STR,
       "valueFrom": {"secretKeyRef": KEY_SEL, "configMapKeyRef": KEY_SEL,
                     "fieldRef": {"fieldPath": STR, "apiVersion": STR}}}
PROFILE = {"type": enum("Unconfined", "RuntimeDefault", "Localhost"), "localhostProfile": STR}
SECURITY = {"runAsUser": INT, "runAsGroup": INT, "runAsNonRoot": BOOL, "privileged": BOOL,
            "allowPrivilegeEscalation": BOOL, "readOnlyRootFilesystem": BOOL,
            "capabilities": {"add": listof(STR), "drop": listof(STR)},
            "seccompProfile": PROFILE, "appArmorProfile": PROFILE,
            "procMount": enum("Default", "Unmasked")}
RESOURCES = {"requests": mapof(quantity()), "limits": mapof(quantity())}
CONTAINER = {"name": STR, "image": STR, "command": listof(STR), "args": listof(STR),
             "workingDir": STR, "env": listof(ENV), "resources": RESOURCES,
             "securityContext": SECURITY,
             "imagePullPolicy": enum("Always", "IfNotPresent", "Never"),
             "volumeMounts": listof({"name": STR, "mountPath": STR, "readOnly": BOOL,
                                     "subPath": STR})}
VOLUME = {"name": STR, "configMap": {"name": STR, "defaultMode": INT},
          "secret": {"secretName": STR, "defaultMode": INT},
          "persistentVolumeClaim": {"claimName": STR, "readOnly": BOOL},
          "emptyDir": {"medium": enum("", "Memory"), "sizeLimit": quantity()}}
POD = {"restartPolicy": enum("Never", "OnFailure"), "hostUsers": BOOL,
       "containers": listof(CONTAINER), "volumes": listof(VOLUME),
       "serviceAccountName": STR, "nodeSelector": mapof(STR),
       "securityContext": {"runAsUser": INT, "fsGroup": INT, "seccompProfile": PROFILE}}
JOB = {"apiVersion": enum("batch/v1"), "kind": enum("Job"), "metadata": META,
       "spec": {"completionMode": enum("Indexed", "NonIndexed"), "completions": INT,
                "parallelism": INT, "backoffLimit": INT, "backoffLimitPerIndex": INT,
                "activeDeadlineSeconds": INT, "ttlSecondsAfterFinished": INT,
                "template": {"metadata": META, "spec": POD}}}
CONFIGMAP = {"apiVersion": enum("v1"), "kind": enum("ConfigMap"), "metadata": META,
             "data": mapof(STR)}
REQUIRED = {"Job": [("spec", "template", "spec", "containers")], "ConfigMap": [("data",)]}


def check(value, schema, path, problems):
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object")
            return
        for k, v in value.items():
            if k not in schema:
                problems.append(f"{path}.{k}: not a field of this object in the API")
            else:
                check(v, schema[k], f"{path}.{k}", problems)
    elif isinstance(schema, tuple) and schema[0] == "enum":
        if value not in schema[1]:
            problems.append(f"{path}: {value!r} is not one of {schema[1]}")
    elif isinstance(schema, tuple) and schema[0] == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        for i, v in enumerate(value):
            check(v, schema[1], f"{path}[{i}]", problems)
    elif isinstance(schema, tuple) and schema[0] == "map":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map")
            return
        for k, v in value.items():
            check(v, schema[1], f"{path}.{k}", problems)
    elif isinstance(schema, tuple) and schema[0] == "quantity":
        if not QUANTITY.match(str(value)):
            problems.append(f"{path}: {value!r} is not a quantity")
    elif schema is INT:
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {value!r}")
    elif not isinstance(value, schema):
        problems.append(f"{path}: expected {schema.__name__}, got {value!r}")


def problems_of(docs):
    problems = []
    for i, d in enumerate(docs):
        kind = d.get("kind") if isinstance(d, dict) else None
        schema = {"Job": JOB, "ConfigMap": CONFIGMAP}.get(kind)
        if not schema:
            problems.append(f"document {i}: kind {kind!r} is not checked here")
            continue
        check(d, schema, kind, problems)
        for req in REQUIRED[kind]:
            v = d
            for k in req:
                v = v.get(k) if isinstance(v, dict) else None
            if not v:
                problems.append(f"{kind}: {'.'.join(req)} is required")
    return problems


class K8sManifest(unittest.TestCase):
    def setUp(self):
        try:
            import yaml
        except ImportError:
            self.skipTest("PyYAML not installed (python3-yaml; make deps installs it)")
        with open(MANIFEST) as f:
            self.docs = list(yaml.safe_load_all(f))

    def test_every_field_is_in_the_api_schema(self):
        self.assertEqual(problems_of(self.docs), [])

    def test_the_schema_check_catches_mistakes(self):
        import copy
        job = copy.deepcopy([d for d in self.docs if d["kind"] == "Job"][0])
        job["spec"]["completionMode"] = "indexed"
        job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["procmount"] = "Unmasked"
        job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "8GB"
        job["spec"]["parallelism"] = "4"
        got = problems_of([job])
        self.assertEqual(len(got), 4, got)

    def test_indexed_job_shards_and_mounts_agree(self):
        job = [d for d in self.docs if d["kind"] == "Job"][0]
        cm = [d for d in self.docs if d["kind"] == "ConfigMap"][0]
        spec, pod = job["spec"], job["spec"]["template"]["spec"]
        self.assertEqual(spec["completionMode"], "Indexed")
        self.assertEqual(spec["completions"], spec["parallelism"])
        c = pod["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        self.assertEqual(int(env["SHARDS"]["value"]), spec["completions"])
        self.assertNotIn("value", env["OPENROUTER_API_KEY"])  # from a Secret, never inline
        self.assertIn("secretKeyRef", env["OPENROUTER_API_KEY"]["valueFrom"])
        volumes = {v["name"]: v for v in pod["volumes"]}
        for m in c["volumeMounts"]:
            self.assertIn(m["name"], volumes)
        for v in pod["volumes"]:  # exactly one source each
            self.assertEqual(len(set(v) - {"name"}), 1, v)
        self.assertEqual(volumes["tasks"]["configMap"]["name"], cm["metadata"]["name"])
        self.assertIn("tasks.jsonl", cm["data"])
        self.assertIn('--shard "${JOB_COMPLETION_INDEX}/${SHARDS}"', " ".join(c["args"]))
        sec = c["securityContext"]
        self.assertEqual(sec["capabilities"]["drop"], ["ALL"])
        self.assertEqual(sorted(sec["capabilities"]["add"]), ["DAC_OVERRIDE", "KILL", "SETGID", "SETUID"])
        # procMount Unmasked is only allowed in a pod with its own user namespace
        self.assertIs(pod["hostUsers"], False)
