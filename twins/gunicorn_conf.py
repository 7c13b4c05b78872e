"""gunicorn's configuration file for the twins: deliberately empty.

Every setting is on the command line (see `twins.servers`); naming this file with `--config`
stops gunicorn from reading a `gunicorn.conf.py` that happens to be in the working directory.
"""
