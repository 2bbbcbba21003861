"""What a report says about where it ran: the CPU model and the commit (`make bench`, `make soak`)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from redflag_local.standin.template import ROOT


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git(*args: str) -> str:
    """A git command's output in the checkout, or "" when git or the checkout is not there."""
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def commit(dirty_note: str = " (with uncommitted changes)") -> str:
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (dirty_note if git("status", "--porcelain", "--untracked-files=no") else "")
