"""Reading config files, for both dialects ace fit reads (ace's config, :mod:`ace.fitting.config`,
and pacemaker's input.yaml, :mod:`ace.fitting.pacemaker`): YAML with every float spelling users
write, the error that names the key, "did you mean" for a misspelt key, and the embedding of a
linear fit, which both check a basis against.
"""
from __future__ import annotations

import difflib
import os
import re

import yaml

from ace.limits import read_text_file, yaml_load_bounded

# the embedding of a linear fit: one density, E_i = rho_i (the fit is linear in the coefficients)
LINEAR_EMBEDDING = {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1, "fs_parameters": [1, 1]}


class ConfigError(ValueError):
    """An invalid fit configuration; the message names the key."""


# YAML 1.1 (PyYAML) reads 1e-6 as the string '1e-6': a float needs a dot there. Users write
# floats as in Python or YAML 1.2, so a number is any spelling Python's float() takes.
_FLOAT = re.compile(r"^[-+]?(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?$"
                    r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$")


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``1e-6`` and ``1E+3`` as floats."""


ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT,
                                   list("-+0123456789."))


def load_yaml(path):
    """The YAML file ``path`` read with :class:`ConfigLoader`; ConfigError naming the file."""
    path = os.fspath(path)
    # bounded like a potential file: a regular UTF-8 file, no alias bombs
    text = read_text_file(path, ConfigError, what="fit configuration")
    return yaml_load_bounded(text, ConfigLoader, path, ConfigError)


def did_you_mean(key, allowed):
    """' (did you mean 'x'?)' for the allowed key closest to a misspelt ``key``, else ''."""
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def float_or_same(value):
    """``value`` as a float when it is a string spelling a number ('1e-6'), else unchanged."""
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value.replace("_", ""))
    return value
