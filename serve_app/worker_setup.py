"""Run by Ray in every worker process of the serving job before it takes work (``worker_process_setup_hook``).

Another job on the same Ray (``copyserve batch run``, whose Ray Data needs pandas) is left alone: the hook belongs
to the job's runtime environment, not to the cluster."""

from __future__ import annotations

import sys

# Ray loads the hook by this dotted name in each worker.
HOOK = f"{__name__}.keep_data_libraries_out"


def keep_data_libraries_out() -> None:
    """Ray Serve imports pandas wherever it is installed (``ray/serve/_private/utils.py``, to encode DataFrame
    responses, which no route of ours returns), and Ray's serialization imports pyarrow for Ray Data's types
    (``ray/_private/arrow_serialization.py``), in each of the six Serve processes. A ``None`` entry makes the
    import raise ModuleNotFoundError, which both optional imports catch."""
    for name in ("pandas", "pyarrow"):
        sys.modules.setdefault(name, None)


def serving_runtime_env() -> dict:
    """The runtime environment of the job that starts Serve (``ray.init(runtime_env=...)``)."""
    return {"worker_process_setup_hook": HOOK}
