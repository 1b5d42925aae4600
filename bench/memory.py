"""The memory of a process tree, for the benchmarks that compare one against another.

RSS counts a page shared by several processes (libpython, Ray's core library, torch) once in each of them,
so its sum overstates a tree of many processes; PSS shares each such page out among the processes that map
it, and its sum is what the host holds for the tree. Both are given: RSS per process says who is big, the
PSS total says what a machine must have.
"""

from __future__ import annotations

import psutil

GIB, MIB = 1 << 30, 1 << 20


def tree_memory(root: psutil.Process, include_root: bool = True, leave_out: str | None = None) -> dict:
    """Each process's RSS and PSS and the totals; ``leave_out``: processes whose command line has it."""
    procs = ([root] if include_root else []) + root.children(recursive=True)
    rows = []
    for p in procs:
        try:
            command = " ".join(p.cmdline())
            if leave_out and leave_out in command:
                continue
            memory = p.memory_full_info()  # PSS comes from /proc/PID/smaps_rollup
            rows.append((p.pid, command[:70] or p.name(), memory.rss, memory.pss))
        except psutil.Error:
            continue  # it ended while being read
    rows.sort(key=lambda r: -r[2])
    return {"processes": len(rows), "total_gib": sum(r[2] for r in rows) / GIB,
            "total_pss_gib": sum(r[3] for r in rows) / GIB,
            "each": [{"pid": pid, "cmd": cmd, "rss_mib": round(rss / MIB), "pss_mib": round(pss / MIB)}
                     for pid, cmd, rss, pss in rows]}
