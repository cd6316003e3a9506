"""Names the CPU that printed a number, precisely enough to tell hosts apart.

Hosts of one machine kind can differ by a CPU generation while ``/proc/cpuinfo``'s model name says only
"AMD EPYC" on each (measured here: a 2-core MCO-E Net train step of 93 ms on family 26, 192-290 ms on the
earlier hosts), so reports and benchmark tables add the family / model numbers and the widest vector
extension: ``AMD EPYC (family 26 model 2, AVX-512)``.
"""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_description(cpuinfo: str | None = None) -> str:
    """``"<model name> (family F model M, <AVX-512 | AVX2 | no AVX2>)"`` from ``/proc/cpuinfo`` (or the
    text given); the platform's processor name where there is no cpuinfo (macOS, Windows)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:  # the first processor's block is enough: every core of a VM is the same part
                break
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" not in fields:
        return name
    flags = set(fields.get("flags", "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name} (family {fields['cpu family']} model {fields.get('model', '?')}, {vector})"
