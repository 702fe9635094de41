"""The steps: one module per thing a step manages, each declaring its Step once (see model.py).

PIPELINE is the registry: the order `deploy` runs the steps in. The step tasks of `fab --list`, the
namespace and the tests' list of steps all derive from it, so a new step is one module, one line here,
and its tests. Rollback and restart plan with the same model but are actions, not steps of the pipeline.
"""

from __future__ import annotations

from tasks.steps import boot, certificate, nginx, provision, push, supervisor
from tasks.steps.model import Step

PIPELINE: tuple[Step, ...] = (
    provision.STEP,
    push.STEP,
    nginx.BACKUP_DEFAULT,
    nginx.ENABLE_SITE,
    nginx.RELOAD_NGINX,
    supervisor.STEP,
    boot.STEP,
    certificate.STEP,
)
NAMES = tuple(step.name for step in PIPELINE)
