"""The shipped experiment configs and gold sets, installed as the package ``steersearch_configs`` (see
pyproject.toml) so that ``search.config.shipped_file`` finds them with importlib.resources. No code."""
