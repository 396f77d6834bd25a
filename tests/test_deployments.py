"""deployments/ checked with Prefect's and the workers' own code: no server, Docker or cluster.

prefect.yaml is read by the loader `prefect deploy` uses; parameters are validated the way
the server validates them; job variables are rendered into the job a process, docker or
kubernetes worker would start, by that worker's own configuration class.
"""

from __future__ import annotations

import re
import ast
import asyncio
import io
import json
from pathlib import Path
from uuid import uuid4

import pytest
import yaml

from synthwave.settings import IngestSettings, TrainSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = ROOT / "deployments"
PREFECT_YAML = DEPLOYMENTS / "prefect.yaml"
K8S_TEMPLATE = DEPLOYMENTS / "k8s-gpu-job-template.json"
NAMES = ("ingest", "train", "pipeline")
# The settings model behind each flow parameter (flows/*.py signatures).
SETTINGS = {
    "ingest": {"settings": IngestSettings},
    "train": {"settings": TrainSettings},
    "pipeline": {"ingest_settings": IngestSettings, "train_settings": TrainSettings},
}
POOLS = {"ingest": "cpu-pool", "train": "gpu-pool", "pipeline": "gpu-pool"}
# A Prefect client that is never contacted: rendering templates only needs one when a
# template references blocks or variables, and these don't (never start an ephemeral API).
UNUSED_API = "http://127.0.0.1:9/api"


def _raw() -> dict:
    return yaml.safe_load(PREFECT_YAML.read_text())


def _loaded() -> tuple[dict[str, dict], dict]:
    """Deployments and actions exactly as `prefect deploy --prefect-file` reads them."""
    from rich.console import Console

    from prefect.cli.deploy._config import _load_deploy_configs_and_actions

    console = Console(file=io.StringIO())
    configs, actions = _load_deploy_configs_and_actions(PREFECT_YAML, console=console)
    return {c["name"]: c for c in configs}, actions


def _run_on() -> dict[str, dict]:
    return _raw()["definitions"]["run_on"]


def _render(config_class, template: dict, values: dict):
    """The worker's configuration for one flow run, as the worker builds it."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

    async def build():
        return await config_class.from_template_and_values(
            template, values, client=PrefectClient(api=UNUSED_API)
        )

    config = asyncio.run(build())
    config.prepare_for_flow_run(FlowRun(flow_id=uuid4(), name="test-run"))
    return config


def _validate_job_variables(job_variables: dict, template: dict) -> None:
    """The server's check of deployment job variables against a pool's schema."""
    from prefect.utilities.schema_tools import validate

    validate(
        job_variables,
        template["variables"],
        raise_on_error=True,
        preprocess=True,
        ignore_required=True,
        allow_none_with_default=True,
    )


# --- prefect.yaml -------------------------------------------------------------------------


def test_prefect_yaml_is_read_by_prefect_deploy():
    from prefect.cli.deploy._models import PrefectYamlModel

    PrefectYamlModel.model_validate(_raw())  # the loader only prints validation errors
    deployments, actions = _loaded()
    assert set(deployments) == set(NAMES)
    assert {name: d["work_pool"]["name"] for name, d in deployments.items()} == POOLS
    assert actions["build"], "the build step records the repo root for the pull step"


@pytest.mark.parametrize("name", NAMES)
def test_entrypoint_names_a_flow_function_in_the_repo(name):
    entrypoint = _loaded()[0][name]["entrypoint"]
    path, function = entrypoint.split(":")
    assert not Path(path).is_absolute(), "entrypoints are relative to the repo root"
    source = ROOT / path
    assert source.is_file(), f"{entrypoint}: no {source}"
    functions = {
        node.name: node
        for node in ast.parse(source.read_text()).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    assert function in functions, f"{entrypoint}: no top-level def {function}"
    decorators = [ast.unparse(d) for d in functions[function].decorator_list]
    assert any(d == "flow" or d.startswith("flow(") for d in decorators), decorators


@pytest.mark.parametrize("name", NAMES)
def test_parameters_are_valid_settings(name):
    deployment = _loaded()[0][name]
    runs = [deployment["parameters"]]
    runs += [{**deployment["parameters"], **s.get("parameters", {})} for s in deployment.get("schedules", [])]
    for parameters in runs:
        for key, model in SETTINGS[name].items():
            model.model_validate(parameters.get(key, {}))  # extra="forbid": typos fail here
        assert set(parameters) <= set(SETTINGS[name]) | {"sources"}


@pytest.mark.parametrize("name", NAMES)
def test_parameters_match_the_flow_signature(name, monkeypatch):
    """What the server checks on `prefect deploy` and on each scheduled run."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import validate

    deployment = _loaded()[0][name]
    path, function = deployment["entrypoint"].split(":")
    if not (ROOT / path).is_file():
        pytest.skip(f"{path} not written yet: entrypoint checked as a path only")
    monkeypatch.chdir(ROOT)  # what `prefect deploy` and the pull step both do
    monkeypatch.syspath_prepend(str(ROOT))
    flow = load_flow_from_entrypoint(f"{path}:{function}")
    assert flow.name == name  # deployment references in the README are "<flow>/<deployment>"
    schema = parameter_schema(flow).model_dump_for_openapi()
    validate(deployment["parameters"], schema, raise_on_error=True, ignore_required=True)
    for schedule in deployment.get("schedules", []):
        validate({**deployment["parameters"], **schedule.get("parameters", {})}, schema, raise_on_error=True)


def test_schedules_parse_and_start_inactive():
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule

    deployments = _loaded()[0]
    assert deployments["ingest"]["schedules"], "ingest ships an example schedule"
    for name, deployment in deployments.items():
        for config in deployment.get("schedules", []):
            schedule = DeploymentScheduleCreate(**_schedule_config_to_deployment_schedule(config))
            assert schedule.active is False, f"{name}: example schedules are created paused"
            if isinstance(schedule.schedule, CronSchedule):
                assert len(schedule.schedule.cron.split()) == 5


def test_build_step_sends_process_runs_to_the_repo_root(monkeypatch):
    """Run the build steps as `prefect deploy` does from the root, template the pull steps."""
    from prefect.deployments.steps.core import run_steps
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.utilities.templating import apply_values

    deployments, actions = _loaded()
    monkeypatch.chdir(ROOT)
    # Steps resolve block/variable placeholders with a client; there are none, so an API
    # that is never contacted keeps Prefect from starting an ephemeral server for nothing.
    with temporary_settings({PREFECT_API_URL: UNUSED_API}):
        outputs = asyncio.run(run_steps(actions["build"], print_function=lambda *a, **k: None))
    checkout = _raw()["definitions"]["pull"]["checkout"]
    assert actions["pull"] == checkout, "the default pull step is the checkout one"
    (step,) = apply_values(checkout, outputs)
    directory = Path(step["prefect.deployments.steps.set_working_directory"]["directory"])
    assert directory == ROOT
    for deployment in deployments.values():
        if deployment.get("pull", checkout) == checkout:  # image pulls: tests/test_docker.py
            assert (directory / deployment["entrypoint"].split(":")[0]).is_file()


# --- job variables of each pool type --------------------------------------------------------


def _pool_type(block: str) -> str:
    return block.rsplit("_", 1)[1]


def _template(pool_type: str) -> dict:
    if pool_type == "process":
        from prefect.workers.process import ProcessWorker

        return ProcessWorker.get_default_base_job_template()
    if pool_type == "docker":
        docker_worker = pytest.importorskip("prefect_docker.worker", reason="pip install prefect-docker")
        return docker_worker.DockerWorker.get_default_base_job_template()
    pytest.importorskip("prefect_kubernetes", reason="pip install prefect-kubernetes")
    return json.loads(K8S_TEMPLATE.read_text())


def test_run_on_blocks_cover_every_pool_type():
    assert {_pool_type(block) for block in _run_on()} == {"process", "docker", "kubernetes"}
    for block in _run_on().values():
        assert block["work_pool"]["name"] in set(POOLS.values())
        assert block["pull"], "each block brings the pull step that matches its pool type"


@pytest.mark.parametrize("block", sorted(yaml.safe_load(PREFECT_YAML.read_text())["definitions"]["run_on"]))
def test_job_variables_fit_the_pool_schema(block):
    job_variables = _run_on()[block]["work_pool"].get("job_variables", {})
    _validate_job_variables(job_variables, _template(_pool_type(block)))


def test_process_gpu_run_sees_one_device():
    from prefect.workers.process import ProcessJobConfiguration

    job_variables = _run_on()["gpu_process"]["work_pool"]["job_variables"]
    config = _render(ProcessJobConfiguration, _template("process"), job_variables)
    assert config.env["CUDA_VISIBLE_DEVICES"] == "0"


def test_docker_gpu_job_variables_become_a_device_request(monkeypatch):
    docker = pytest.importorskip("docker", reason="pip install prefect-docker")
    worker_module = pytest.importorskip("prefect_docker.worker", reason="pip install prefect-docker")
    from docker.models.containers import _create_container_args
    from docker.types import DeviceRequest

    job_variables = dict(_run_on()["gpu_docker"]["work_pool"]["job_variables"])
    # A server on another host (e.g. a `prefect-server` container on the same network):
    # with a local API URL the worker first asks the Docker daemon for its version.
    job_variables["env"] = {"PREFECT_API_URL": "http://prefect-server:4200/api"}
    config = _render(worker_module.DockerWorkerJobConfiguration, _template("docker"), job_variables)

    monkeypatch.chdir(ROOT)  # where the README starts the worker: ./data resolves here
    # A pinned API version means docker-py connects on first request only, never here.
    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.44")
    worker = worker_module.DockerWorker(work_pool_name="gpu-pool")
    settings = worker._build_container_settings(client, config)
    settings.pop("name")  # DockerWorker._create_container passes it separately
    # What `client.containers.create(**settings)` turns into the API's create arguments.
    create_args = _create_container_args({**settings, "version": client.api._version})

    (request,) = create_args["host_config"]["DeviceRequests"]
    assert isinstance(request, DeviceRequest)
    assert (request.driver, request.count, request.capabilities) == ("nvidia", -1, [["gpu"]])
    assert create_args["image"] == job_variables["image"]
    assert f"{ROOT / 'data'}:/opt/ai-synthwave/data" in create_args["host_config"]["Binds"]


# --- Kubernetes GPU job template -----------------------------------------------------------


@pytest.fixture
def k8s_template() -> dict:
    pytest.importorskip("prefect_kubernetes", reason="pip install prefect-kubernetes")
    return json.loads(K8S_TEMPLATE.read_text())


def test_k8s_template_is_accepted_as_a_work_pool(k8s_template):
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect.utilities.schema_tools import is_valid_schema
    from prefect_kubernetes.worker import KubernetesWorker

    WorkPoolCreate(name="gpu-pool", type="kubernetes", base_job_template=k8s_template)
    is_valid_schema(k8s_template["variables"], preprocess=False)
    # Built on the installed default: nothing of it lost (diff after upgrading the package).
    default = KubernetesWorker.get_default_base_job_template()
    assert set(default["variables"]["properties"]) <= set(k8s_template["variables"]["properties"])
    assert set(default["job_configuration"]) <= set(k8s_template["job_configuration"])


def _pod_spec(k8s_template: dict, job_variables: dict) -> dict:
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    config = _render(KubernetesWorkerJobConfiguration, k8s_template, job_variables)
    return config.job_manifest["spec"]["template"]["spec"]


def test_k8s_gpu_job_gets_the_limit_and_node_selector(k8s_template):
    job_variables = _run_on()["gpu_kubernetes"]["work_pool"]["job_variables"]
    assert job_variables["gpu_count"] >= 1 and job_variables["node_selector"]
    pod = _pod_spec(k8s_template, job_variables)
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == job_variables["gpu_count"]
    assert pod["nodeSelector"] == job_variables["node_selector"]
    assert container["image"] == job_variables["image"]
    assert container["args"] == ["prefect", "flow-run", "execute"]


def test_k8s_job_without_gpu_has_neither(k8s_template):
    job_variables = {"image": "registry.example.com/ai-synthwave-ingest:0.1.0"}
    pod = _pod_spec(k8s_template, job_variables)
    (container,) = pod["containers"]
    assert "nvidia.com/gpu" not in container.get("resources", {}).get("limits", {})
    assert "nodeSelector" not in pod


def test_k8s_gpu_count_zero_is_refused_not_rendered(k8s_template):
    """0 would render a literal `nvidia.com/gpu: 0`; the schema makes the server refuse it."""
    from prefect.utilities.schema_tools.validation import ValidationError

    with pytest.raises(ValidationError, match="minimum"):
        _validate_job_variables({"gpu_count": 0}, k8s_template)
    _validate_job_variables({"gpu_count": 2, "node_selector": {"pool": "gpu"}}, k8s_template)


def test_every_field_of_the_run_forms_is_described_and_titled_for_a_person():
    """The Custom run form is built from these schemas: each field says what it is, in words."""
    from prefect.utilities.callables import parameter_schema

    from flows.ingest import ingest
    from flows.pipeline import pipeline
    from flows.train import train

    for flow in (ingest, train, pipeline):
        schema = parameter_schema(flow).model_dump_for_openapi()
        models = [schema, *schema.get("definitions", {}).values()]
        fields = [(model.get("title", flow.name), name, field) for model in models
                  for name, field in model.get("properties", {}).items()]  # fmt: skip
        assert len(fields) > 10, flow.name
        for model, name, field in fields:
            assert field.get("description"), f"{flow.name}: {model}.{name} has no description"
            title = field.get("title", "")
            assert not re.search(r"\b(S|Mb|Lr|Dim)\b", title), f"{model}.{name}: {title!r}"
    definitions = parameter_schema(train).model_dump_for_openapi()["definitions"]
    groups = {name: field["title"] for name, field in definitions["TrainSettings"]["properties"].items()}
    assert {"Run directory", "Model", "Optimisation", "Runtime"} <= set(groups.values())
    titles = {f["title"] for model in definitions.values() for f in model.get("properties", {}).values()}
    assert {"Generator learning rate", "Walk seconds"} <= titles


def test_flat_train_keys_of_earlier_prefect_yaml_files_still_validate():
    """Before the groups, every TrainSettings key sat directly under `settings:`; such a file still
    passes the server's check of the flow's schema and builds the same settings. A typo fails both."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import validate
    from prefect.utilities.schema_tools.validation import ValidationError

    from flows.train import train

    schema = parameter_schema(train).model_dump_for_openapi()
    flat = {"data_dir": "data", "run_dir": "runs/a", "steps": 5000, "g_lr": 2e-4, "eval_every": 0, "devices": "one"}
    validate({"settings": flat}, schema, raise_on_error=True, ignore_required=True)
    settings = TrainSettings.model_validate(flat)
    grouped = {"data_dir": "data", "run_dir": "runs/a", "schedule": {"steps": 5000}, "optimisation": {"g_lr": 2e-4},
               "evaluation": {"eval_every": 0}, "runtime": {"devices": "one"}}  # fmt: skip
    validate({"settings": grouped}, schema, raise_on_error=True, ignore_required=True)
    assert settings == TrainSettings.model_validate(grouped) and settings.schedule.steps == 5000
    with pytest.raises(ValidationError):
        validate({"settings": {**flat, "stepz": 1}}, schema, raise_on_error=True, ignore_required=True)
