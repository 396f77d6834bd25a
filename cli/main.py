"""`synthwave`: a thin command line over the flows and the run directory.

Flags are generated from the settings models, so the CLI, the flows and prefect.yaml
accept exactly the same keys and validate them the same way. Bad input exits with
status 2 and one line naming it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

from pydantic import BaseModel, ValidationError

from cli.ephemeral import tie_temporary_server
from synthwave.errors import UserError
from cli.quiet import quiet_native_logs
from synthwave.settings import TRAIN_GROUPS, DownloadSettings, FrameSettings, IngestSettings, TrainSettings, WalkSettings

# IngestSettings' nested models are flattened: --every, --downloader, ...
INGEST_GROUPS: dict[str, type[BaseModel]] = {"download": DownloadSettings, "frames": FrameSettings}

Settings = TypeVar("Settings", bound=BaseModel)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_model_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, model: type[BaseModel], skip: Sequence[str] = ()) -> None:
    """One optional flag per field; values stay strings until pydantic validates them."""
    for name, field in model.model_fields.items():
        if name in skip or name in INGEST_GROUPS or (model is TrainSettings and name in TRAIN_GROUPS):
            continue
        default = field.get_default(call_default_factory=True)
        default = default.model_dump() if isinstance(default, BaseModel) else default
        if isinstance(default, tuple):  # a size, shown as typed: 360x640
            default = "x".join(map(str, default))
        shown = "required" if field.is_required() else f"default: {default}"
        parser.add_argument(
            _flag(name), dest=name, default=argparse.SUPPRESS, metavar=name.split("_")[0].upper(),
            help=f"{field.description or ''} ({shown})".strip(),
        )


def ingest_settings(args: argparse.Namespace) -> IngestSettings:
    values = vars(args)
    data: dict[str, Any] = {k: values[k] for k in IngestSettings.model_fields if k in values}
    for group, model in INGEST_GROUPS.items():
        data[group] = {k: values[k] for k in model.model_fields if k in values}
    return IngestSettings.model_validate(data)


def _settings(model: type[Settings], args: argparse.Namespace) -> Settings:
    values = vars(args)
    return model.model_validate({k: values[k] for k in model.model_fields if k in values})


def train_settings(args: argparse.Namespace) -> TrainSettings:
    """TrainSettings from the flags, each group's given flat (--steps): the model puts them in their group."""
    values = vars(args)
    names = [*TrainSettings.model_fields, *(name for model in TRAIN_GROUPS.values() for name in model.model_fields)]
    return TrainSettings.model_validate({k: values[k] for k in names if k in values and k not in TRAIN_GROUPS})


def walk_settings(args: argparse.Namespace) -> WalkSettings:
    return _settings(WalkSettings, args)


def _refuse(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def _read_sources(args: argparse.Namespace) -> list[str]:
    sources = list(args.sources)
    if args.sources_file:
        path = Path(args.sources_file)
        if not path.is_file():
            raise SystemExit(f"error: sources file {path} not found: give a text file with one source per line")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            where = f"{exc.reason} at byte {exc.start}"
            raise SystemExit(f"error: sources file {path} is not UTF-8 text ({where}): save it as UTF-8") from None
        lines = (line.strip() for line in text.splitlines())
        sources += [line for line in lines if line and not line.startswith("#")]
    if not sources:
        raise SystemExit("error: no sources: give SOURCE arguments or --sources-file")
    return sources


def _left(seconds: float | None) -> str:
    return "? left" if seconds is None else f"{int(seconds) // 60}:{int(seconds) % 60:02d} left"


@contextmanager
def ingest_progress(stream: TextIO, min_seconds: float = 3.0, every_s: float = 0.5) -> Iterator[None]:
    """Per-video bars (frames decoded of the expected count, time left) on `stream` while the
    block runs, for videos taking over `min_seconds`; nothing unless `stream` is a terminal, so
    logs stay one line per event. Prefect's log handlers are left as they are."""
    if not stream.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tasks.progress import states

    stop, shown = threading.Event(), {}  # shown: video key -> its bar
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames, {task.fields[left]}")
    )

    def refresh(bars: Progress) -> None:
        while not stop.wait(every_s):
            current = {state.key: state for state in states(min_seconds)}
            for key in shown.keys() - current.keys():
                bars.remove_task(shown.pop(key))
            for key, state in current.items():
                if key not in shown:
                    shown[key] = bars.add_task(key, total=state.expected, left=_left(None))
                bars.update(shown[key], completed=state.decoded, left=_left(state.seconds_left))

    with Progress(*columns, console=Console(file=stream), transient=True) as bars:
        thread = threading.Thread(target=refresh, args=(bars,), name="ingest-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def cmd_ingest(args: argparse.Namespace) -> int:
    from flows.ingest import IngestFailed, ingest, summary

    settings, sources = ingest_settings(args), _read_sources(args)
    tie_temporary_server()
    try:
        with ingest_progress(sys.stdout):
            dataset = ingest(sources, settings)
    except IngestFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    line, mixed = summary(Path(dataset))
    print(f"{'warning: dataset' if mixed else 'dataset'}: {line}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from flows.train import train

    settings = train_settings(args)
    tie_temporary_server()
    print(f"run directory: {train(settings)}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from gan.images import save_grid
    from gan.loop import generate

    out = save_grid(generate(Path(args.run_dir), count=args.n, seed=args.seed), Path(args.out))
    print(f"wrote {out}")
    return 0


def cmd_walk(args: argparse.Namespace) -> int:
    from gan.walk import write_walk

    settings = walk_settings(args)
    out = write_walk(settings)
    height, width = settings.size
    print(f"wrote {out}: {settings.frames} frames, {width}x{height}, {settings.fps} fps")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cli.report import write_report

    out = write_report(Path(args.run_dir), Path(args.out) if args.out else None)
    print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import demo

    tie_temporary_server()
    demo(Path(args.dir), steps=args.steps)
    return 0


def cmd_stack_up(args: argparse.Namespace) -> int:
    from cli.stack import StackError, next_steps, start

    try:
        stack = start(Path(args.home), port=args.port, database_url=args.database_url)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(next_steps(stack))
    return 0


def cmd_stack_down(args: argparse.Namespace) -> int:
    from cli.stack import stop

    stopped = stop(Path(args.home))
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running from {args.home}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthwave", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--verbose", action="store_true",
        help="show TensorFlow's native start-up and optimiser lines (hidden by default, as is "
             "whatever TF_CPP_MIN_LOG_LEVEL, when you set it, would hide)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="videos -> sharded TFRecords (cached per video)")
    ingest.add_argument("sources", nargs="*", metavar="SOURCE", help="YouTube URL, http(s) URL or local file")
    ingest.add_argument("--sources-file", help="text file with one source per line (# comments)")
    add_model_flags(ingest, IngestSettings)
    for model in INGEST_GROUPS.values():
        add_model_flags(ingest, model)
    # Curation off in one word each (the generated --dedupe/--drop-blank take a value too).
    ingest.add_argument("--no-dedupe", dest="dedupe", action="store_const", const=False, default=argparse.SUPPRESS,
                        help="keep near-duplicate frames (same as --dedupe false)")  # fmt: skip
    ingest.add_argument("--keep-blank", dest="drop_blank", action="store_const", const=False,
                        default=argparse.SUPPRESS, help="keep blank frames (same as --drop-blank false)")  # fmt: skip
    ingest.set_defaults(run=cmd_ingest)

    train = commands.add_parser("train", help="train the DCGAN on an ingested dataset (resumes)")
    add_model_flags(train, TrainSettings)
    for group, model in TRAIN_GROUPS.items():  # flat flags (--steps, --g-lr), listed by group
        add_model_flags(train.add_argument_group(group, TrainSettings.model_fields[group].description), model)
    train.set_defaults(run=cmd_train)

    generate = commands.add_parser("generate", help="an image grid from a run's latest checkpoint")
    generate.add_argument("--run-dir", required=True, help="a training run directory")
    generate.add_argument("--out", required=True, help="PNG file to write")
    generate.add_argument("--n", type=int, default=16, help="number of images (default: 16)")
    generate.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    generate.set_defaults(run=cmd_generate)

    walk = commands.add_parser(
        "walk", help="an MP4 of a smooth walk through a run's latent space",
        description="Render a walk through the latent space of a run's latest checkpoint (the EMA "
                    "generator if it has one) as MP4 (codec mp4v: OpenCV's wheels have no H.264; "
                    "VLC, mpv and QuickTime play it).",
    )  # fmt: skip
    add_model_flags(walk, WalkSettings)
    walk.set_defaults(run=cmd_walk)

    report = commands.add_parser(
        "report", help="one self-contained HTML page about a run",
        description="Write one HTML file, images inlined, with a run's settings, loss and quality "
                    "curves, sample grids over time and frames of its walk.",
    )  # fmt: skip
    report.add_argument("--run-dir", required=True, metavar="RUN", help="a training run directory")
    report.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    report.set_defaults(run=cmd_report)

    demo = commands.add_parser("demo", help="make synthwave clips, ingest them and train, offline")
    demo.add_argument("--dir", default=".synthwave/demo", help="where the demo writes (default: .synthwave/demo)")
    demo.add_argument("--steps", type=int, default=2000, help="training steps (default: 2000)")
    demo.set_defaults(run=cmd_demo)

    stack = commands.add_parser("stack", help="local Prefect server, UI, deployments and workers")
    stack_commands = stack.add_subparsers(dest="stack_command", required=True)
    up = stack_commands.add_parser("up", help="start them in the background and deploy prefect.yaml")
    down = stack_commands.add_parser("down", help="stop what `stack up` started")
    for sub in (up, down):
        sub.add_argument(
            "--home", default=".synthwave/stack", help="database, logs and pids (default: .synthwave/stack)"
        )
    up.add_argument("--port", type=int, default=4200, help="port on 127.0.0.1 (default: 4200)")
    up.add_argument(
        "--database-url", help="postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB for the server (default: SQLite in --home)"
    )
    up.set_defaults(run=cmd_stack_up)
    down.set_defaults(run=cmd_stack_down)
    return parser


class _UserErrorsWithoutTraceback(logging.Filter):
    """Prefect logs a failed run's exception with its traceback; a UserError's one line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            record.exc_info = record.exc_text = None
        return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    elif "TF_CPP_MIN_LOG_LEVEL" not in os.environ:  # the user's own level wins
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
        quiet_native_logs()
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_UserErrorsWithoutTraceback())
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            print(f"error: setting {where}: {error['msg']}", file=sys.stderr)
        return 2
    except UserError as exc:
        return _refuse(exc)


if __name__ == "__main__":
    sys.exit(main())
