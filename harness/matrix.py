"""What a run runs: cases x workloads x sweep levels x repetitions, as an ordered list of jobs.

A job is one server start and one measurement: a case (`harness.plan`), the `Settings` it runs
with (the workload's load fields and server options put in), and the labels its record carries
(`workload`, `level`, `repetition`). Everything here is decided before any server starts, and a
bad combination is a `UsageError` (one sentence, exit 2):

- `--workload NAME[,NAME...]|all` and `--workload-file F` pick named workloads
  (`harness.workloads`); flags given explicitly on the command line (`-c 8`, `--cpu-us 0`,
  `--rate 500`) override each workload's own values, even when they equal the defaults.
- `--repeat N` runs every job N times, each with a fresh server, interleaved (A B C A B C,
  `results.repeat.interleave`): drift on a shared machine hits every case alike.
- `--suite` is every sound strategy (unless `--strategy` is given) on every workload (unless
  `--workload` is given), with the repetitions, warm-up and measurement of
  `results.repeat.suite_settings` (10 minutes on 2 cores; `--quick`: under 3, on the workloads
  that separate the models most, `results.repeat.QUICK_WORKLOADS`), unless given.
- `--rate R` / `--arrival` make the run open loop; `--sweep` (`harness.sweep`) adds levels,
  each with a fresh server (the sweep module says why).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import plan as planning
from .errors import UsageError
from .load import workload as limits
from .load.errors import UnsupportedLoadModel
from .load.errors import WorkloadError as LoadWorkloadError
from .results import repeat as repetitions
from .settings import Settings
from .sweep import DEFAULT_DURATION_S, DEFAULT_WARMUP_S, Sweep, parse
from .workloads import DEFAULT, OVERRIDABLE, WorkloadSpec, apply_overrides, resolve

# Options whose explicit use matters here besides the workloads' own (OVERRIDABLE).
TIMING = ("duration", "warmup", "repeat", "strategy", "workload")


@dataclass(frozen=True)
class Job:
    case: planning.Case
    settings: Settings
    workload: str
    level: Dict[str, Any]
    repetition: int


@dataclass(frozen=True)
class Matrix:
    jobs: List[Job]
    workloads: List[WorkloadSpec]
    repeat: int
    sweep: Optional[Sweep]
    slo_p99_ms: float
    suite: Optional[repetitions.SuiteSettings]

    def describe(self) -> Dict[str, Any]:
        """For the results file's config: what each workload was, as run."""
        return {
            "workloads": {spec.name: spec.parameters() for spec in self.workloads},
            "repeat": self.repeat,
            "sweep": self.sweep.describe() if self.sweep else None,
            "slo_p99_ms": self.slo_p99_ms,
            "warmup_s": self.jobs[0].settings.workload.warmup_s if self.jobs else None,
        }


def given(args: argparse.Namespace, keys: Sequence[str]) -> Dict[str, Any]:
    """The options among `keys` that the command line gives explicitly, with their values.

    From `args.argv` (set by the command line) when there is one, by the marker trick of
    `workloads.explicit_overrides` extended to the run's timing options (-d, -w, --repeat...);
    a caller that built `args` itself gets every value that differs from the option's default."""
    argv = getattr(args, "argv", None)
    parser = _run_parser()
    if argv is None:
        defaults = vars(parser.parse_args([]))
        return {k: getattr(args, k) for k in keys if k in defaults and getattr(args, k, None) != defaults[k]}
    argv = list(argv)
    if argv[:1] == ["run"]:
        argv = argv[1:]
    marker = object()
    namespace = argparse.Namespace(**{key: marker for key in keys})
    parsed, _rest = parser.parse_known_args(argv, namespace=namespace)
    return {key: getattr(parsed, key) for key in keys if getattr(parsed, key, marker) is not marker}


def _run_parser() -> argparse.ArgumentParser:
    from .run_options import Parser, add_run_options

    return add_run_options(Parser(add_help=False))


def build(args: argparse.Namespace, settings: Settings, cases: Sequence[planning.Case]) -> Matrix:
    explicit = given(args, [*OVERRIDABLE, *TIMING])
    if args.quick and not args.suite:
        raise UsageError("--quick goes with --suite (the short suite)")
    if args.slo_p99 is not None and not 0 < args.slo_p99 <= 1000 * limits.MAX_DEADLINE_S:
        raise UsageError(
            "--slo-p99 must be more than 0 and at most %g ms (got %g)" % (1000 * limits.MAX_DEADLINE_S, args.slo_p99)
        )
    sweep = parse(args.sweep) if args.sweep else None
    if sweep and sweep.kind == "rate" and args.rate is not None:
        raise UsageError("give --rate or --sweep rate=..., not both")
    if sweep and sweep.kind == "concurrency" and "concurrency" in explicit:
        raise UsageError("give --concurrency or --sweep concurrency=..., not both (the sweep sets it per level)")
    rate_sweep = bool(sweep and sweep.kind == "rate")
    if args.arrival != "uniform" and ((args.rate is None and not rate_sweep) or args.load_model == "closed"):
        raise UsageError("--arrival applies to an open-loop run: give --rate R or --sweep rate=...")
    suite_names = ",".join(repetitions.QUICK_WORKLOADS) if args.quick else "all"
    names = args.workload if args.workload is not None else (suite_names if args.suite else DEFAULT)
    specs = resolve(names, args.workload_file)
    if args.load_model == "open" and not rate_sweep and args.rate is None and any(s.rate is None for s in specs):
        raise UsageError("--load-model open needs a rate: give --rate R or --sweep rate=...")
    if args.suite and "strategy" not in explicit:
        cases = [case for case in cases if not case.broken and not case.load_error]
        if not cases:
            raise UsageError("--suite found no sound strategy to run")
    suite = repetitions.suite_settings(len(cases), len(specs), args.quick) if args.suite else None
    repeat = args.repeat if args.repeat is not None else (suite.repeat if suite else 1)
    if not 1 <= repeat <= repetitions.MAX_REPEAT:
        raise UsageError("--repeat must be between 1 and %d (got %d)" % (repetitions.MAX_REPEAT, repeat))
    timing = _timing(settings, explicit, suite, sweep)
    overrides = {key: value for key, value in explicit.items() if key in OVERRIDABLE}
    units: List[Tuple[planning.Case, Settings, str, Dict[str, Any]]] = []
    specs = [apply_overrides(spec, overrides) for spec in specs]  # as run: what config.workloads records
    for spec in specs:
        base = _settings_for(args, replace(settings, **timing), spec, rate_sweep)
        for case in cases:
            if sweep is None:
                units.append((case, base, spec.name, {}))
                continue
            for level in sweep.levels:
                units.append((case, _at_level(base, sweep, level), spec.name, sweep.level(level)))
    jobs = [Job(c, s, w, lv, rep) for (c, s, w, lv), rep in repetitions.interleave(units, repeat)]
    return Matrix(jobs, specs, repeat, sweep, float(args.slo_p99), suite)


def _timing(
    settings: Settings, explicit: Dict[str, Any], suite: Optional[repetitions.SuiteSettings], sweep: Optional[Sweep]
) -> Dict[str, Any]:
    """Warm-up and measurement of the suite or a sweep, where -w / -d / -n are not given."""
    workload = settings.workload
    warmup, duration = workload.warmup_s, workload.duration_s
    if suite:
        warmup, duration = suite.warmup_s, suite.duration_s
    elif sweep:
        warmup, duration = DEFAULT_WARMUP_S, DEFAULT_DURATION_S
    if "warmup" in explicit:
        warmup = workload.warmup_s
    if "duration" in explicit or workload.requests is not None:
        duration = workload.duration_s
    if (warmup, duration) == (workload.warmup_s, workload.duration_s):
        return {}
    bound = duration if duration is not None else settings.measure_bound_s
    return {"workload": replace(workload, warmup_s=warmup, duration_s=duration), "measure_bound_s": bound}


def _settings_for(args: argparse.Namespace, settings: Settings, spec: WorkloadSpec, rate_sweep: bool) -> Settings:
    """The run's settings with the workload's load fields and its server options put in (a
    closed loop is paced where it has a rate: its own, or each level of a rate sweep)."""
    fields = spec.load_fields()
    paced = args.load_model == "closed" and (spec.rate is not None or rate_sweep)
    workload = replace(settings.workload, arrival=args.arrival, paced=paced, **fields)
    if spec.rate is None:
        workload = replace(workload, rate=None)
    server = argparse.Namespace(**{**vars(args), "cpu_us": spec.cpu_us, "sleep_ms": spec.sleep_ms, "bytes": spec.bytes})
    _check(workload, spec.name)
    return replace(settings, workload=workload, server_args=planning.server_args(server))


def _at_level(settings: Settings, sweep: Sweep, level: float) -> Settings:
    if sweep.kind == "rate":
        workload = replace(settings.workload, rate=float(level))  # paced already set for a closed sweep
    else:
        workload = replace(settings.workload, concurrency=int(level))
    _check(workload, "at %s=%g" % (sweep.kind, level), rate_option="--sweep rate=...")
    return replace(settings, workload=workload)


def _check(workload: Any, where: str, rate_option: str = "--rate") -> None:
    try:
        workload.check()
    except UnsupportedLoadModel as error:  # the engine's own sentence: why it cannot send at a rate
        raise UsageError("%s: %s" % (rate_option, error)) from None
    except LoadWorkloadError as error:
        raise UsageError("workload %s cannot run: %s" % (where, error)) from None


def job_names(jobs: Sequence[Job]) -> List[str]:
    """Each job as the progress lines name it: the case, then the workload, level and
    repetition where the run has more than one of them."""
    from .results.stats import level_label
    from .results.table import case_name, varying

    vary = varying([(job.case.start_method, job.case.python_version) for job in jobs])
    workloads = {job.workload for job in jobs}
    repeat = max((job.repetition for job in jobs), default=0) + 1
    names = []
    for job in jobs:
        parts = [case_name(job.case.strategy, job.case.start_method, job.case.python_version, vary)]
        if len(workloads) > 1:
            parts.append("[%s]" % job.workload)
        if job.level:
            parts.append(level_label(job.level))
        if repeat > 1:
            parts.append("#%d/%d" % (job.repetition + 1, repeat))
        names.append(" ".join(parts))
    return names


def labelled(record: Any, job: Job) -> Any:
    """The record of a job, with which workload, level and repetition it measured."""
    return replace(record, workload=job.workload, level=dict(job.level), repetition=job.repetition)


def saturated_below(job: Job, done: Sequence[Any]) -> Optional[Any]:
    """For a rate sweep: the record of a lower rate of the same case, workload and repetition at
    which the server already fell behind (a hang, a failure, or under 99 % of the rate sent), or
    None. The run skips `job` then: a higher open-loop rate can only overload it more, the knee
    is below it already, and each such level would cost a full deadline of queued requests and a
    forensics capture (10-15 s on 2 cores instead of 3)."""
    rate = job.level.get("rate")
    if rate is None:
        return None
    for record in done:
        lower = record.level.get("rate")
        same = (record.strategy, record.start_method, record.workload, record.repetition) == (
            job.case.strategy,
            job.case.start_method,
            job.workload,
            job.repetition,
        )
        if same and lower is not None and lower < rate and _fell_behind(record):
            return record
    return None


def _fell_behind(record: Any) -> bool:
    from .errors import COMPLETED
    from .results.knee import RATE_ACHIEVED

    intended = record.intended_rate_rps or 0.0
    return (
        record.status != COMPLETED
        or bool(record.requests.get("hang"))
        or (record.achieved_rate_rps or 0.0) < RATE_ACHIEVED * intended
    )
