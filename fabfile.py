"""Entry point for `fab`: the tasks from tasks/, with invoke.yaml's settings as the lowest config layer.

Fabric reads only fabric.yaml; invoke.yaml is loaded here as the collection's config, so a runtime file
(`fab -f other.yaml`), env vars and fabric.yaml all override it, as Fabric documents.
"""

from pathlib import Path

import yaml

from tasks import namespace

ns = namespace()
ns.configure(yaml.safe_load((Path(__file__).resolve().parent / "invoke.yaml").read_text()) or {})
