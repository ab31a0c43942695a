"""Run a module as ``python -m`` does, then write the process's peak RSS to a file.

``python -m benchmarks._jobs_peak OUT_FILE MODULE [ARGS...]`` runs ``MODULE`` as
``__main__`` with ``ARGS`` (``runpy``, as ``python -m MODULE ARGS`` does) and, however it
exits, writes its peak RSS in KiB to ``OUT_FILE``; the exit status is the module's.

Why not ``ru_maxrss`` from ``wait4``: a child started with vfork (as ``subprocess`` does)
inherits its parent's high-water mark through ``exec``, so a big parent hides the child's
own peak. ``VmHWM`` in ``/proc/self/status`` is the peak of the address space the process
got at ``exec``: the program's own.
"""

from __future__ import annotations

import resource
import runpy
import sys
from pathlib import Path


def peak_rss_kib() -> int:
    """This process's peak RSS since its ``exec``, in KiB (``ru_maxrss`` off Linux)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    """Run the module; record the peak even when it exits with an error."""
    out_file, module, *args = sys.argv[1:]
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        Path(out_file).write_text(f"{peak_rss_kib()}\n")


if __name__ == "__main__":
    main()
