"""Run a command with the app's environment added: app.env from a JSON file, never on a command line
(where `ps` would show it).

    with_env.py ENV_JSON COMMAND [ARG...]
"""

import json
import os
import sys

if __name__ == "__main__":
    with open(sys.argv[1]) as env_file:
        os.environ.update(json.load(env_file))
    os.execvp(sys.argv[2], sys.argv[2:])
