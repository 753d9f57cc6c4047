"""The config layer, at the bottom of ``search/``: a YAML experiment becomes frozen, validated dataclasses once,
at the edge; errors name the field path (``generation.top_p``) and what is allowed. Every feature imports its
spec from here (``space``, ``features``); this package imports no feature, no analysis, report or CLI.

- ``typed``: data to dataclasses, field by field (also reads the run folder's typed results);
- ``experiment``: ``ExperimentConfig`` and its sections; ``space`` and ``features``: the search's specs;
- ``loading``: ``load_config``/``find_config`` (paths relative to the config file); ``shipped``: shipped files.
"""

from search.config.experiment import (
    BaselineSpec,
    CompareSpec,
    DataSpec,
    ExperimentConfig,
    ModelSpec,
    SelectSpec,
    StudySpec,
    TuneSpec,
)
from search.config.loading import (
    FILE_FIELDS,
    NAME_OR_PATH_FIELDS,
    check_files,
    find_config,
    load_config,
    resolve_paths,
)
from search.config.shipped import SHIPPED_PACKAGE, shipped_configs, shipped_file
from search.config.typed import ConfigError, from_dict

__all__ = [
    "FILE_FIELDS",
    "NAME_OR_PATH_FIELDS",
    "SHIPPED_PACKAGE",
    "BaselineSpec",
    "CompareSpec",
    "ConfigError",
    "DataSpec",
    "ExperimentConfig",
    "ModelSpec",
    "SelectSpec",
    "StudySpec",
    "TuneSpec",
    "check_files",
    "find_config",
    "from_dict",
    "load_config",
    "resolve_paths",
    "shipped_configs",
    "shipped_file",
]
