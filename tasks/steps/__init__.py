"""The steps: one module per thing a step manages, each declaring its Step once (see model.py).

PIPELINE is the registry: the order `deploy` runs the steps in. The step tasks of `fab --list`, the
namespace and the tests' list of steps all derive from it, so a new step is one module, one line here,
and its tests. Rollback and restart plan with the same model but are actions, not steps of the pipeline.

PROBES are what the probe asks besides the shared facts: PIPELINE's steps' and the guards'. Every probe
asks all of them, whatever steps its run plans: status, the guards, rollback and the steps' requirements
read the facts of steps that do not run (push's releases, provision's packages, supervisor's program).
"""

from __future__ import annotations

from tasks import runtime
from tasks.layout import Layout
from tasks.platform import Platform
from tasks.settings import Settings
from tasks.shell import Value
from tasks.steps import (
    boot,
    certificate,
    guards,
    nginx,
    postgresql,
    processes,
    provision,
    push,
    redis,
    schedule,
    supervisor,
)
from tasks.steps.model import Probe, Step

PIPELINE: tuple[Step, ...] = (
    provision.STEP,
    postgresql.STEP,
    redis.STEP,
    push.STEP,
    nginx.BACKUP_DEFAULT,
    nginx.ENABLE_SITE,
    nginx.RELOAD_NGINX,
    supervisor.STEP,
    schedule.STEP,
    boot.STEP,
    certificate.STEP,
    processes.STEP,
)
NAMES = tuple(step.name for step in PIPELINE)
PROBES: tuple[Probe, ...] = (*(step.probe for step in PIPELINE), guards.PROBE)
# The steps' facts, as Facts holds them (Facts.of), and their parts of the probe (runtime/probe_*.py).
KINDS: tuple[type, ...] = tuple(dict.fromkeys(probe.facts for probe in PROBES if probe.facts))
PARTS: tuple[str, ...] = tuple(dict.fromkeys(probe.part for probe in PROBES if probe.part))
# What an apply script includes: the runtime files every run shares, then the steps'.
APPLY = tuple(dict.fromkeys((*runtime.SHARED, *(name for step in PIPELINE for name in step.runtime))))


def runtime_values(s: Settings, paths: Layout, platform: Platform) -> dict[str, Value]:
    """The values the steps' runtime files read, besides the ones every apply script gets."""
    return {
        key: value
        for step in PIPELINE
        if step.values
        for key, value in step.values(s, paths, platform).items()
    }
