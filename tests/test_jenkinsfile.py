"""The Jenkinsfile: its structure read as text (the nightly cron, the
parameters, the `kstress` label, one stage per shard, the junit and
archiveArtifacts steps, every kstress exit code mapped to a build result);
its shell scripts run by bash with a stand-in kstress (parameters pass as
arguments, never as shell); and, with Groovy installed, the whole file run
outside Jenkins with its steps stubbed (tests/jenkins_stub.groovy) for each
exit-code scenario."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import EXIT_CLEAN, EXIT_COULD_NOT_TEST, EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_USAGE

REPO = Path(__file__).resolve().parents[1]
JENKINSFILE = REPO / "Jenkinsfile"
STUB = Path(__file__).with_name("jenkins_stub.groovy")
EXPECTED_RESULT = {EXIT_CLEAN: "SUCCESS", EXIT_FINDINGS: "UNSTABLE", EXIT_USAGE: "FAILURE",
                   EXIT_COULD_NOT_TEST: "FAILURE", EXIT_INTERRUPTED: "ABORTED"}
PARAMETERS = {"CONFIG", "KERNEL_SOURCE", "KERNEL_REF", "PATCHES", "DURATION", "SEED", "SHARDS"}
GROOVY = shutil.which("groovy")


@pytest.fixture(scope="module")
def text() -> str:
    return JENKINSFILE.read_text()


def script(text: str, name: str) -> str:
    match = re.search(rf"^def {name} = '''(.*?)'''", text, re.S | re.M)
    assert match, f"no shell script {name} in the Jenkinsfile"
    return match.group(1)


def test_nightly_cron_and_parameters(text):
    cron = re.search(r"triggers\s*\{\s*cron\('([^']+)'\)", text)
    assert cron, "no cron trigger"
    minute, hour, day, month, weekday = cron.group(1).split()
    assert (day, month, weekday) == ("*", "*", "*") and hour.isdigit(), "not once a night"
    assert set(re.findall(r"string\(name: '(\w+)'", text)) == PARAMETERS


def test_shards_run_on_kstress_agents_and_merge_on_one(text):
    assert "node('kstress')" in text and "agent { label 'kstress' }" in text
    assert "parallel branches" in text and 'stage("shard ${shard}/${shards}")' in text
    soak = script(text, "SOAK")
    assert 'kstress soak "$CONFIG" --duration "$DURATION" --shard "$SHARD" --results "$SHARD_DIR"' in soak
    assert '"SHARD_DIR=results/shard-${shard}"' in text
    assert "kstress merge results/shard-*" in script(text, "MERGE")
    assert 'stash(name: "shard-${shard}"' in text and 'unstash "shard-${i}"' in text


def test_junit_and_archive_steps(text):
    assert re.search(r"junit\(testResults: 'results/merged/junit\.xml'", text)
    archive = re.search(r"archiveArtifacts\(artifacts: '([^']+)'", text)
    assert archive and "results/**" in archive.group(1) and "results/merged/report.html" in archive.group(1)
    assert "--output results/merged" in script(text, "MERGE")  # kstress merge writes report.html there


def test_every_kstress_exit_code_is_mapped(text):
    body = re.search(r"String resultFor\(int code\) \{(.*?)\n    \}\n\}", text, re.S)
    assert body, "no resultFor(code)"
    cases = {int(code): result for code, result in re.findall(r"case (\d+): return '(\w+)'", body.group(1))}
    assert cases == EXPECTED_RESULT
    assert re.search(r"default: return 'FAILURE'", body.group(1))


def test_kstress_steps_return_their_status_and_the_policy_is_explicit(text):
    for call in re.findall(r"\bsh\(([^)]*)\)", text):
        assert "returnStatus: true" in call, call
    assert not re.search(r"sh '[^']*kstress", text), "a kstress step without returnStatus"
    assert "unstable(" in text and "error(" in text and "currentBuild.result = 'ABORTED'" in text


@pytest.fixture()
def fake_workspace(tmp_path):
    """A workspace whose ./quickstart and .venv/bin/kstress record what they were given."""
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    kstress = tmp_path / ".venv" / "bin" / "kstress"
    kstress.write_text('#!/usr/bin/python3\nimport json, sys\njson.dump(sys.argv[1:], open("argv.json", "w"))\n'
                       'sys.exit(int(open("code").read()))\n')
    (tmp_path / "quickstart").write_text("#!/bin/sh\n[ \"$1\" = setup ] && exit \"$(cat setup-code)\"\nexit 2\n")
    for f in (kstress, tmp_path / "quickstart"):
        f.chmod(0o755)
    return tmp_path


def run_script(workspace: Path, body: str, env: dict, code: int = 0, setup_code: int = 0):
    (workspace / "code").write_text(str(code))
    (workspace / "setup-code").write_text(str(setup_code))
    (workspace / "step.sh").write_text(body)
    res = subprocess.run(["bash", "step.sh"], cwd=workspace, env={"PATH": os.environ["PATH"], **env},
                         capture_output=True, text=True)
    argv = json.loads((workspace / "argv.json").read_text()) if (workspace / "argv.json").exists() else None
    return res.returncode, argv


def test_the_soak_script_passes_parameters_as_arguments(text, fake_workspace):
    env = {"CONFIG": "nightly", "DURATION": "6h", "SHARD": "2/3", "SHARD_DIR": "results/shard-2",
           "KERNEL_SOURCE": "/srv/linux; touch pwned", "KERNEL_REF": "", "PATCHES": "series dir/$(id)",
           "SEED": "", "BUILD_NUMBER": "41"}
    code, argv = run_script(fake_workspace, script(text, "SOAK"), env, code=1)
    assert code == 1
    assert argv == ["soak", "nightly", "--duration", "6h", "--shard", "2/3", "--results", "results/shard-2",
                    "--seed", "41", "--source", "/srv/linux; touch pwned", "--patches", "series dir/$(id)"]
    assert not (fake_workspace / "pwned").exists()
    env["SEED"] = "7"
    assert run_script(fake_workspace, script(text, "SOAK"), env)[1][9] == "7"  # a given seed wins


def test_a_failed_setup_is_could_not_test(text, fake_workspace):
    env = {"CONFIG": "nightly", "DURATION": "6h", "SHARD": "1/1", "SHARD_DIR": "results/shard-1",
           "KERNEL_SOURCE": "", "KERNEL_REF": "", "PATCHES": "", "SEED": "", "BUILD_NUMBER": "1"}
    code, argv = run_script(fake_workspace, script(text, "SOAK"), env, setup_code=1)
    assert (code, argv) == (125, None)


SCENARIOS = [  # (shards, soak codes, merge, failed testcases in junit.xml) -> build result
    ((2, [0, 0], 0, 0), "SUCCESS"),
    ((3, [1, 0, 0], 1, 2), "UNSTABLE"),
    ((2, [0, 0], 1, 1), "UNSTABLE"),
    ((2, [0, 125], 125, 0), "FAILURE"),
    ((2, [1, 125], 1, 1), "FAILURE"),
    ((1, [2], 0, 0), "FAILURE"),
    ((2, [0, 0], 125, 0), "FAILURE"),
    ((2, [130, 0], 0, 0), "ABORTED"),
    ((2, [130, 1], 1, 1), "ABORTED"),
]


needs_groovy = pytest.mark.skipif(GROOVY is None, reason="needs groovy (Debian package groovy) to run the Jenkinsfile")


def run_stub(jenkinsfile: Path, scenarios: list, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "scenarios.json").write_text(json.dumps(scenarios))
    env = dict(os.environ)
    if not Path("/usr/lib/jvm/default-java").exists() and "JAVA_HOME" not in env and shutil.which("java"):
        env["JAVA_HOME"] = str(Path(shutil.which("java")).resolve().parents[1])  # no default-jre-headless
    return subprocess.run([GROOVY, str(STUB), str(jenkinsfile), str(tmp_path / "scenarios.json")],
                          capture_output=True, text=True, env=env, timeout=300)


@needs_groovy
def test_the_jenkinsfile_runs_and_sets_the_build_result(tmp_path):
    scenarios = [{"params": {"SHARDS": str(n), "CONFIG": "nightly", "DURATION": "600", "KERNEL_SOURCE": "",
                             "KERNEL_REF": "", "PATCHES": ""},
                  "soak": soak, "merge": merge, "junit_failures": failures}
                 for (n, soak, merge, failures), _ in SCENARIOS]
    res = run_stub(JENKINSFILE, scenarios, tmp_path)
    assert res.returncode == 0, res.stderr
    runs = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(runs) == len(SCENARIOS)
    for ((n, soak, *_), expected), run in zip(SCENARIOS, runs):
        assert run["result"] == expected, (soak, run["error"])
        steps = [c["step"] for c in run["calls"]]
        shards = [c for c in run["calls"] if c["step"] == "sh" and "kstress soak" in c["args"][-1]]
        assert [c["env"]["SHARD"] for c in shards] == [f"{i}/{n}" for i in range(1, n + 1)]
        assert [c["args"][0] for c in run["calls"] if c["step"] == "node"] == ["kstress"] * n
        # the results are published whatever the verdict, before the verdict
        assert steps.index("junit") < steps.index("archiveArtifacts")
        verdict = {"UNSTABLE": "unstable", "FAILURE": "error"}.get(expected)
        if verdict:
            assert steps.index("archiveArtifacts") < steps.index(verdict)
        assert ("error" in steps) == (expected == "FAILURE")


@needs_groovy
@pytest.mark.parametrize("broken,needle", [
    (lambda t: t.replace("stage('Merge') {\n            agent { label 'kstress' }\n            steps {",
                         "stage('Merge') {\n            agent { label 'kstress' }\n            script {"),
     "script may not stand in stage"),
    (lambda t: t.replace("case 130: return 'ABORTED'", "case 130: return 'ABORTED"),
     "MultipleCompilationErrorsException"),
    (lambda t: t.replace("    stages {\n        stage('Soak')", "    steps {\n        stage('Soak')"),
     "steps may not stand in pipeline"),
], ids=["script-outside-steps", "syntax-error", "steps-in-pipeline"])
def test_the_stub_rejects_a_broken_jenkinsfile(tmp_path, broken, needle):
    text = JENKINSFILE.read_text()
    bad = broken(text)
    assert bad != text
    (tmp_path / "Jenkinsfile").write_text(bad)
    res = run_stub(tmp_path / "Jenkinsfile", [{"params": {"SHARDS": "1"}, "soak": [0], "merge": 0,
                                               "junit_failures": 0}], tmp_path)
    assert res.returncode != 0 and needle in res.stderr, res.stdout + res.stderr
