"""ks-stress-ng (workloads/lib/ks_stress_ng.py), what the guest runs for a
workload of kind stress-ng: the stress-ng command it builds, the summary from
stress-ng's YAML metrics, stress-ng's exit statuses mapped to ours, SIGTERM
passed on. A fake stress-ng stands in (--stress-ng); one short run of the
real one when the host has it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workload_host import assert_usage_error, counts

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "workloads" / "lib" / "ks_stress_ng.py"
FAKE = f"""#!{sys.executable}
import json, os, signal, sys, time
argv = sys.argv[1:]
spec = json.loads(os.environ["FAKE_SNG"])
with open(spec["record"], "w") as f:
    json.dump(argv, f)
def term(signum, frame):
    print("stress-ng: info:  [1] got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("stress-ng: info:  [1] dispatching hogs", flush=True)
for line in spec.get("lines", []):
    print(line, flush=True)
with open(argv[argv.index("--yaml") + 1], "w") as f:
    f.write("---\\nsystem-info:\\n      stress-ng-version: 0.15.06\\n\\nmetrics:\\n")
    for name, ops in spec.get("metrics", []):
        f.write(f"    - stressor: {{name}}\\n      bogo-ops: {{ops}}\\n      wall-clock-time: 2.5\\n"
                f"      max-rss: 2048\\n      nanosecs-per-call: 12.5\\n\\n")
    f.write("...\\n")
if spec.get("sleep"):
    time.sleep(spec["sleep"])
sys.exit(spec.get("status", 0))
"""


@pytest.fixture
def fake(tmp_path) -> Path:
    path = tmp_path / "stress-ng"
    path.write_text(FAKE)
    path.chmod(0o755)
    return path


def run(fake: Path, tmp_path: Path, spec: dict, *args: str, **kw) -> subprocess.CompletedProcess:
    spec = {"record": str(tmp_path / "argv.json"), **spec}
    return subprocess.run([sys.executable, str(SCRIPT), "--name", "demo", "--duration", "7", "--seed", "42",
                           "--stress-ng", str(fake), "--", *(args or ("--mremap", "1"))],
                          capture_output=True, text=True, timeout=60, env={"FAKE_SNG": json.dumps(spec)}, **kw)


def test_command_metrics_and_summary(fake, tmp_path):
    res = run(fake, tmp_path, {"metrics": [["mremap", 12], ["vm-rw", 30]]}, "--mremap", "1", "--vm-rw", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    argv = json.loads((tmp_path / "argv.json").read_text())
    yaml_at, temp = argv[argv.index("--yaml") + 1], argv[argv.index("--temp-path") + 1]
    assert argv == ["--mremap", "1", "--vm-rw", "1", "--timeout", "7s", "--seed", "42", "--verify",
                    "--metrics-brief", "--yaml", yaml_at, "--temp-path", temp]
    assert Path(yaml_at).parent == Path(temp) and not Path(temp).exists()  # removed afterwards
    assert f"demo note: running {fake} --mremap 1" in res.stdout
    assert "stress-ng: info:  [1] dispatching hogs\n" in res.stdout  # its output passes through
    assert "demo metrics: mremap_bogo_ops=12 mremap_seconds=2.5 mremap_max_rss_kb=2048 vm_rw_bogo_ops=30" \
        in res.stdout
    c = counts(res.stdout, "demo")
    assert c["bogo_ops"] == 42 and c["stress_ng_status"] == 0 and c["failures"] == 0 and c["status"] == 0
    assert "stressors=mremap,vm-rw " in res.stdout


# stress-ng's exit status (man stress-ng, EXIT STATUS) -> ours, and the words of the error.
STATUSES = {0: (0, None), 1: (125, "bad options"), 2: (1, "stressors failed"), 3: (125, "no resources"),
            4: (125, "not implemented"), 5: (1, "unexpected signal"), 6: (125, "exited unexpectedly"),
            7: (125, "untrustworthy"), 9: (125, "unknown stress-ng exit status 9")}


@pytest.mark.parametrize("status", STATUSES)
def test_exit_status_mapping(fake, tmp_path, status):
    ours, words = STATUSES[status]
    res = run(fake, tmp_path, {"status": status, "metrics": [["mremap", 1]]})
    assert res.returncode == ours, res.stdout
    assert counts(res.stdout, "demo")["stress_ng_status"] == status
    if words:
        assert f"demo error: stress-ng exit {status}: " in res.stdout and words in res.stdout, res.stdout


def test_a_failed_verification_is_named(fake, tmp_path):
    line = "stress-ng: fail:  [9] mremap: verify failed at offset 0x1000: got 0x00, expected 0x5a"
    res = run(fake, tmp_path, {"status": 2, "lines": [line]})
    assert res.returncode == 1
    assert counts(res.stdout, "demo")["failures"] == 1
    assert f"stressors failed (with --verify: data came back wrong); first: {line}" in res.stdout


def test_sigterm_is_passed_on(fake, tmp_path):
    spec = {"record": str(tmp_path / "argv.json"), "sleep": 60, "metrics": [["mremap", 3]]}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--name", "demo", "--duration", "60", "--seed", "1",
                             "--stress-ng", str(fake), "--", "--mremap", "1"], stdout=subprocess.PIPE,
                            text=True, env={"FAKE_SNG": json.dumps(spec)})
    deadline = time.monotonic() + 30
    while not (tmp_path / "argv.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert "got SIGTERM" in out and proc.returncode == 0, out


def test_no_stress_ng_is_our_own_trouble(tmp_path):
    res = run(tmp_path / "absent", tmp_path, {})
    assert res.returncode == 125 and "no " in res.stdout and "Debian package stress-ng" in res.stdout


@pytest.mark.parametrize("args", [["--name", "x", "--duration", "5", "--seed", "1"],
                                  ["--name", "x", "--duration", "5", "--seed", "1", "--"],
                                  ["--name", "x", "--duration", "0", "--seed", "1", "--", "--mremap", "1"]])
def test_usage_errors(args):
    assert_usage_error(subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                                      timeout=30))


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="needs stress-ng (Debian package stress-ng)")
def test_real_stress_ng_on_the_host():
    # Stressors that touch only their own memory: nothing of the host is changed.
    res = subprocess.run([sys.executable, str(SCRIPT), "--name", "demo", "--duration", "2", "--seed", "3", "--",
                          "--mremap", "1", "--mremap-bytes", "4m", "--pagemove", "1"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    c = counts(res.stdout, "demo")
    assert c["mremap_bogo_ops"] > 0 and c["pagemove_bogo_ops"] > 0 and c["stress_ng_status"] == 0, res.stdout
