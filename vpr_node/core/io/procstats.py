"""Process memory readings (Linux /proc), for benchmarks and the soak run."""
from __future__ import annotations

import pathlib


def rss_mib(pid: int, field: str = "VmRSS") -> float | None:
    """Resident set size of a process in MiB (`VmHWM` = its peak); None when the process is gone."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None
