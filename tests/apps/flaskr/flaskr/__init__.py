"""flaskr: entries kept in SQLite under the app's instance folder."""

import os

from flask import Flask

VERSION = "v1"  # the tests change it to make a new release


def create_app() -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(DATABASE=os.path.join(app.instance_path, "flaskr.sqlite"))
    os.makedirs(app.instance_path, exist_ok=True)

    from flaskr import db, views

    db.init_app(app)
    app.register_blueprint(views.bp)
    return app
