"""`import yadtq` stays light: kafka-python and redis load at the first use of a name that needs
them (each process `make run` starts imports the package; most never use them)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_the_package_imports_without_kafka_or_redis_and_every_public_name_resolves() -> None:
    code = ("import sys, yadtq; light = not {'kafka', 'redis'} & set(sys.modules); "
            "missing = [n for n in yadtq.__all__ if getattr(yadtq, n, None) is None]; "
            "print(light, missing, 'redis' in sys.modules, yadtq.YADTQ.__module__, 'add' in yadtq.registry)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.split() == ["True", "[]", "True", "yadtq.client.client", "True"], out.stderr
