"""`python -m bench`: the kit against Ansible and pyinfra (bench/compare.py)."""

import sys

from bench.compare import main

sys.exit(main())
