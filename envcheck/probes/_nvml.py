"""The one NVML choke point: the only module that imports ``pynvml`` (package nvidia-ml-py).

Every NVML call goes through :meth:`Session.call` / :meth:`Session.query`, which return the
value or a classified :class:`Failure` (never an exception), so one unsupported metric, one
old driver or one lost GPU becomes an explicit ``na("<why>: NVML_ERROR_...")`` value.

The backend is injectable: :func:`open_session` takes any module-like object that looks like
``pynvml`` (tests pass a fake built from a named scenario that raises the real
``pynvml.NVMLError`` subclasses, so classification is tested against the real codes).
pynvml is imported lazily, inside :func:`load_backend`, to keep ``import envcheck`` lean.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from envcheck.snapshot import na

# Error classes (``nvidia.nvml.status`` and ``gpus[].error.class`` use these names).
LIBRARY_NOT_FOUND = "library_not_found"
DRIVER_NOT_LOADED = "driver_not_loaded"
DRIVER_LIBRARY_MISMATCH = "driver_library_mismatch"
GPU_LOST = "gpu_lost"
NOT_SUPPORTED = "not_supported"
NO_PERMISSION = "no_permission"
UNKNOWN_ERROR = "unknown_error"
# A metric call answered with an error that means the GPU itself is unusable until reset,
# repaired or re-powered (gcm treats these as critical). Never a silent "unavailable".
GPU_FATAL = "gpu_fatal"
# Per-GPU classes set by the nvidia probe (not by classify): a handle refused with
# NO_PERMISSION inside a job that was given other GPUs (Slurm/cgroup device constraint), a call
# that did not answer within its deadline, a GPU whose calls used up its time budget.
NOT_ALLOCATED = "not_allocated"
GPU_HUNG = "gpu_hung"
GPU_SLOW = "gpu_slow"

# NVML error code name -> (class, why). The names are pynvml's NVML_ERROR_* constants; their
# values are read from the backend, so a fake and the real bindings classify identically.
_CLASSIFY: dict[str, tuple[str, str]] = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": (
        LIBRARY_NOT_FOUND,
        "libnvidia-ml.so.1 not found: no NVIDIA driver installed, or not visible in this container",
    ),
    "NVML_ERROR_DRIVER_NOT_LOADED": (
        DRIVER_NOT_LOADED,
        "the NVIDIA kernel driver is not loaded (libnvidia-ml is installed, the nvidia module is "
        "not running; see `lsmod | grep nvidia` and dmesg)",
    ),
    # nvidia-smi prints "Failed to initialize NVML: Driver/library version mismatch" here: the
    # user-space libraries were upgraded but the old kernel module is still loaded
    # (pytorch/pytorch#45109).
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": (
        DRIVER_LIBRARY_MISMATCH,
        "Driver/library version mismatch: libnvidia-ml does not match the loaded nvidia kernel "
        "module (driver upgraded without a reboot)",
    ),
    "NVML_ERROR_GPU_IS_LOST": (
        GPU_LOST,
        "GPU is lost: it stopped responding or fell off the bus (dmesg usually shows Xid 79); "
        "reset the GPU or reboot",
    ),
    "NVML_ERROR_NOT_SUPPORTED": (NOT_SUPPORTED, "not supported on this GPU or driver"),
    # pynvml raises FUNCTION_NOT_FOUND when the installed libnvidia-ml lacks the symbol.
    "NVML_ERROR_FUNCTION_NOT_FOUND": (
        NOT_SUPPORTED,
        "not supported by this driver (its libnvidia-ml lacks the call; the driver is older)",
    ),
    "NVML_ERROR_NO_PERMISSION": (
        NO_PERMISSION,
        "not permitted for this user (needs root or access to /dev/nvidia*)",
    ),
    # The GPU-fatal class. Meanings from nvmlReturn_t (NVML API reference, "Error reporting";
    # the same text in cuda.bindings.nvml.Return): each needs a person, not a retry.
    "NVML_ERROR_RESET_REQUIRED": (
        GPU_FATAL, "the GPU requires a reset before it can be used again",
    ),
    "NVML_ERROR_CORRUPTED_INFOROM": (
        GPU_FATAL, "the GPU's infoROM is corrupted (nvidia-smi exits 14): ECC and other "
        "health records cannot be trusted; contact the vendor",
    ),
    "NVML_ERROR_INSUFFICIENT_POWER": (
        GPU_FATAL, "the GPU's external power cables are not properly attached (nvidia-smi exits 8)",
    ),
    "NVML_ERROR_IRQ_ISSUE": (
        GPU_FATAL, "the NVIDIA kernel driver detected an interrupt issue with this GPU "
        "(nvidia-smi exits 10)",
    ),
}

# Error names that mean "this variant of the call does not exist here, try an older one".
# ARGUMENT_VERSION_MISMATCH: the library does not know the versioned struct (e.g. the
# nvmlTemperature_v1 of nvmlDeviceGetTemperatureV on an older driver).
_FUNCTION_MISSING = ("NVML_ERROR_FUNCTION_NOT_FOUND", "NVMLLibraryMismatchError", "AttributeError",
                     "NVML_ERROR_ARGUMENT_VERSION_MISMATCH")


@dataclass(frozen=True)
class Failure:
    """A classified NVML failure. ``code_name`` is e.g. ``NVML_ERROR_NOT_SUPPORTED``."""

    cls: str
    code_name: str
    why: str
    code: int | None = None

    @property
    def message(self) -> str:
        return f"{self.why}: {self.code_name}"

    def na(self, why: str | None = None) -> dict[str, str]:
        """The na() marker; ``why`` replaces the generic explanation (e.g. with the GPU's era)."""
        return na(f"{why or self.why}: {self.code_name}")

    def to_error(self) -> dict[str, str]:
        return {"class": self.cls, "message": self.message}

    @property
    def function_missing(self) -> bool:
        """The driver or bindings lack this call (try an older variant)."""
        return self.code_name in _FUNCTION_MISSING


def load_backend() -> tuple[Any, Failure | None]:
    """Import the real pynvml. A broken or missing install is a Failure, not an ImportError."""
    try:
        with warnings.catch_warnings():
            # the deprecated `pynvml` PyPI package wraps nvidia-ml-py and warns on import
            warnings.simplefilter("ignore")
            import pynvml  # noqa: PLC0415 - lazy on purpose (doctor start-up and memory)
    except Exception as exc:  # noqa: BLE001 - any import failure is a finding, not a crash
        return None, Failure(
            UNKNOWN_ERROR,
            type(exc).__name__,
            "the NVML Python bindings cannot be imported (module pynvml from package "
            f"nvidia-ml-py: {exc}); reinstall them: python -m pip install -U nvidia-ml-py",
        )
    return pynvml, None


class Session:
    """Calls into one backend; knows its error codes and constants."""

    def __init__(self, backend: Any):
        self.backend = backend
        self._names: dict[int, str] = {}
        for attr in dir(backend):
            if attr.startswith("NVML_ERROR_"):
                value = getattr(backend, attr, None)
                if isinstance(value, int):
                    self._names.setdefault(value, attr)
        self._nvml_error = getattr(backend, "NVMLError", None)
        self.abandoned = False  # a call was left running in another thread
        self._mismatch_error = getattr(backend, "NVMLLibraryMismatchError", None)

    def error_name(self, code: int) -> str:
        return self._names.get(code, f"NVML error code {code}")

    def const(self, name: str, default: Any = None) -> Any:
        return getattr(self.backend, name, default)

    def classify(self, exc: BaseException) -> Failure:
        """Turn anything a pynvml call raised into a Failure."""
        if self._nvml_error is not None and isinstance(exc, self._nvml_error):
            code = getattr(exc, "value", None)
            code_name = self._names.get(code, f"NVML error code {code}")
            if code_name in _CLASSIFY:
                cls, why = _CLASSIFY[code_name]
                return Failure(cls, code_name, why, code)
            try:
                text = str(exc)
            except Exception:  # noqa: BLE001 - pynvml's __str__ itself calls into the library
                text = "no description"
            return Failure(UNKNOWN_ERROR, code_name, f"NVML error ({text})", code)
        if self._mismatch_error is not None and isinstance(exc, self._mismatch_error):
            # pynvml's unversioned wrappers (e.g. nvmlDeviceGetComputeRunningProcesses -> _v3)
            # raise this when the driver's libnvidia-ml predates the versioned symbol.
            return Failure(
                NOT_SUPPORTED,
                "NVMLLibraryMismatchError",
                "not supported by this driver (nvidia-ml-py is newer than its libnvidia-ml)",
            )
        return Failure(UNKNOWN_ERROR, type(exc).__name__, f"pynvml raised {type(exc).__name__}: {exc}")

    def call(self, fn_name: str, *args: Any, **kwargs: Any) -> tuple[Any, Failure | None]:
        """Call ``pynvml.<fn_name>``: ``(value, None)`` or ``(None, Failure)``; never raises."""
        fn = getattr(self.backend, fn_name, None)
        if not callable(fn):
            return None, Failure(
                NOT_SUPPORTED,
                "AttributeError",
                f"not supported by the installed nvidia-ml-py (it has no {fn_name}; upgrade it)",
            )
        try:
            return fn(*args, **kwargs), None
        except Exception as exc:  # noqa: BLE001 - the choke point: every failure is classified
            return None, self.classify(exc)

    def call_first(self, fn_names: Sequence[str], *args: Any) -> tuple[Any, Failure | None]:
        """Try newer-to-older variants of a call while the driver/bindings lack them."""
        failure: Failure | None = None
        for name in fn_names:
            value, failure = self.call(name, *args)
            if failure is None or not failure.function_missing:
                return value, failure
        return None, failure

    def query(self, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        """The value, or an ``na("<why>: NVML_ERROR_...")`` marker."""
        value, failure = self.call(fn_name, *args, **kwargs)
        return failure.na() if failure else value


def init_failure(failure: Failure) -> Failure:
    """Errors at nvmlInit that are not one of ``nvml.status``'s names become unknown_error."""
    if failure.cls in (LIBRARY_NOT_FOUND, DRIVER_NOT_LOADED, DRIVER_LIBRARY_MISMATCH, NO_PERMISSION):
        return failure
    return Failure(UNKNOWN_ERROR, failure.code_name, f"NVML could not start: {failure.why}", failure.code)


@contextmanager
def open_session(backend: Any = None) -> Iterator[tuple[Session | None, Failure | None]]:
    """nvmlInit once, yield ``(session, None)`` or ``(None, failure)``, nvmlShutdown once."""
    if backend is None:
        backend, failure = load_backend()
        if failure is not None:
            yield None, failure
            return
    session = Session(backend)
    _, failure = session.call("nvmlInit")
    if failure is not None:
        yield None, init_failure(failure)
        return
    try:
        yield session, None
    finally:
        # A call left hanging in another thread (a wedged GPU) may hold the library: shutting
        # down under it could block too, so the process exit cleans up instead.
        if not session.abandoned:
            session.call("nvmlShutdown")  # a failing shutdown is of no consequence
