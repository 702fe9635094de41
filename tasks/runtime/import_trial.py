"""Import the app the way gunicorn's workers will (gunicorn's own import_app), in a release before it
goes live; on failure, the last line of output names what failed.

    python -c "$PY_IMPORT_TRIAL" APP_MODULE

Run by the release's venv python, as the app user, in the release directory (sys.path starts there,
as gunicorn's chdir makes it), in a unit of its own (runtime/units.sh in_release_unit), which adds
app.env to the environment as the master applies it (raw_env: into os.environ, once Python runs).
Neither gunicorn's arbiter nor a config is loaded: `gunicorn --check-config` loaded those too, and an
app's own ./gunicorn.conf.py, which the kit's master never reads. This is release.sh's import trial
(try_import) when the live master cannot try the release itself (forked_trial).
"""

import sys

if __name__ == "__main__":
    from gunicorn.errors import AppImportError
    from gunicorn.util import import_app

    try:
        import_app(sys.argv[1])
    except AppImportError as error:  # no such attribute, not a callable: gunicorn's message says which
        sys.exit(f"Error: {error}")
