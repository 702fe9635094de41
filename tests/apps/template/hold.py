"""Release command for the lock test (`python3 hold.py`): holds a deploy, and so its lock, until released.

Writes instance/hold.started when it begins, then waits until the test creates instance/hold.go.
"""

import sys
import time
from pathlib import Path

started, go = Path("instance/hold.started"), Path("instance/hold.go")
started.write_text("holding\n")
deadline = time.monotonic() + 120
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("hold.py: nobody created instance/hold.go within 120 s")
    time.sleep(0.05)
