"""The image pool sizes itself by the CPUs the process may use (a container's CPU limit),
not the machine's."""

from __future__ import annotations

from pathlib import Path

from edge.imaging import available_cpus


def test_a_cgroup_quota_caps_the_workers(tmp_path: Path) -> None:
    machine = available_cpus(str(tmp_path / "absent"))
    assert machine >= 1
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")  # 1.5 CPUs: two workers
    assert available_cpus(str(limit)) == min(machine, 2)
    limit.write_text("max 100000\n")
    assert available_cpus(str(limit)) == machine
    limit.write_text("garbage\n")
    assert available_cpus(str(limit)) == machine
