"""What every benchmark shares: repeated samples summarised as median (min-max), and the result rows."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import httpx


@dataclass(frozen=True)
class Figure:
    """Repeated measurements of one quantity: reported as the median with the min-max range."""

    median: float
    low: float
    high: float
    samples: int

    @classmethod
    def of(cls, values: Iterable[float]) -> "Figure":
        data = [float(v) for v in values]
        if not data:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(data), min(data), max(data), len(data))

    def show(self, digits: int = 2) -> str:
        if self.samples == 0:
            return "n/a"
        if self.samples == 1 or self.low == self.high:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"


@dataclass
class Row:
    """One line of the table: what was measured, the figure, its reference and the target it is held to."""

    benchmark: str
    what: str
    value: str
    reference: str = ""
    target: str = ""
    met: bool | None = None  # None: reported only
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["data"] = {k: asdict(v) if isinstance(v, Figure) else v for k, v in self.data.items()}
        return out


def machine() -> dict[str, Any]:
    """The machine the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = 0.0
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_1min_at_start": round(load, 2),
        "prefect": _version("prefect"),
        "uvicorn": _version("uvicorn"),
        "wrk": _wrk_version(),
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5)
        return (out.stdout or out.stderr).split("\n")[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block (for the processes it starts), then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def server_process(command: list[str], env: dict[str, str], log: Path, ready: Callable[[subprocess.Popen[bytes]], None]) -> Iterator[int]:
    """Run a server we start (output to ``log``) until ``ready`` returns; yields its pid; stops it after."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready(proc)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(url: str, timeout: float = 60.0) -> None:
    """Block until ``url`` answers 200 (a server we started is up)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")
