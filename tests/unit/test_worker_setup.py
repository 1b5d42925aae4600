"""The serving job's worker hook keeps pandas out of Serve processes without breaking Ray Serve's import."""

import subprocess
import sys

from serve_app.worker_setup import HOOK, keep_data_libraries_out, serving_runtime_env


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_hook_names_a_function_ray_can_load():
    from ray._common.utils import load_class  # what the worker uses to load the hook

    assert serving_runtime_env() == {"worker_process_setup_hook": HOOK}
    assert load_class(HOOK) is keep_data_libraries_out


def test_serve_imports_without_pandas_after_the_hook():
    out = run_python(
        "from serve_app.worker_setup import keep_data_libraries_out\n"
        "keep_data_libraries_out()\n"
        "from ray.serve._private import utils\n"
        "try:\n"
        "    import pandas\n"
        "except ImportError:\n"
        "    print('refused', utils.pd)\n")
    assert out == "refused None"


def test_without_the_hook_serve_loads_pandas():
    # The saving is real only where pandas is installed (the dev set-up installs it for Ray Data).
    out = run_python("import sys\nfrom ray.serve._private import utils\nprint('pandas' in sys.modules)")
    assert out == "True"


def test_rays_serialization_registers_without_pyarrow_after_the_hook():
    out = run_python(
        "import sys\n"
        "from serve_app.worker_setup import keep_data_libraries_out\n"
        "keep_data_libraries_out()\n"
        "from ray._private.arrow_serialization import _register_custom_datasets_serializers\n"
        "_register_custom_datasets_serializers(None)  # returns before it touches the context\n"
        "print(sys.modules['pyarrow'])\n")
    assert out == "None"
