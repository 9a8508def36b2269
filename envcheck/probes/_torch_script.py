# ruff: noqa: UP032 - str.format, not f-strings: an interpreter older than 3.6 must still
# parse this file and report its version (the "Python outside torch's range" rule needs it).
#
# Runs inside the *target* interpreter, which may be any Python 3.6+ and may lack envcheck:
# standard library only, no f-strings, no annotations, no walrus. envcheck/probes/torch.py
# passes this file's text with ``python -c`` and reads one JSON object per line from stdout,
# each prefixed with MARK, flushed as soon as it is known:
#   {"stage": "python", ...}   facts about the interpreter
#   {"stage": "dists", ...}    installed distributions providing torch / triton, torch dirs
#   {"stage": "step", "step": "import torch"}  before each step that may hang or crash
#   {"stage": "torch_error", "kind": "not_installed" | "import_error", ...}
#   {"stage": "torch", ...}    facts torch reports about itself and the GPUs it sees
#   {"stage": "done"}
# Usage: python -c SCRIPT <timeout_s>
import json
import os
import sys
import time

MARK = "@@envcheck@@ "
_OUT = sys.stdout
TORCH_DISTS = ("torch", "torch_nightly", "pytorch", "torch_cpu", "torch_cuda")
TRITON_DISTS = ("triton", "pytorch_triton", "pytorch_triton_rocm", "pytorch_triton_xpu",
                "triton_windows", "triton_xpu")


def emit(obj):
    try:
        _OUT.write(MARK + json.dumps(obj, default=repr) + "\n")
        _OUT.flush()
    except Exception:
        pass


def describe(exc):
    return "{}: {}".format(type(exc).__name__, exc)


def guard(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:
        return {"unavailable": describe(exc)}


def _normalise(name):
    return name.lower().replace("-", "_").replace(".", "_")


def platform_tag():
    import sysconfig

    plat = sysconfig.get_platform()
    if plat.startswith("linux-"):
        osname, machine = "linux", plat.split("-", 1)[1]
    elif plat.startswith("macosx-"):
        osname, machine = "macos", plat.rsplit("-", 1)[1]
        if machine in ("universal2", "universal", "intel", "fat", "fat3", "fat64"):
            machine = os.uname()[4]
    elif plat.startswith("win"):
        osname = "windows"
        machine = {"win32": "x86", "win-amd64": "x86_64", "win-arm64": "aarch64"}.get(plat, plat)
    else:
        osname, machine = plat.split("-", 1)[0], plat.rsplit("-", 1)[-1]
    machine = {"amd64": "x86_64", "x64": "x86_64", "i686": "x86"}.get(machine.lower(), machine.lower())
    if osname == "macos" and machine == "aarch64":
        machine = "arm64"
    if osname != "macos" and machine == "arm64":
        machine = "aarch64"
    return osname + "-" + machine


def _conda_env():
    for prefix in (sys.prefix, getattr(sys, "base_prefix", sys.prefix)):
        if os.path.isdir(os.path.join(prefix, "conda-meta")):
            if os.path.isdir(os.path.join(prefix, "condabin")):
                return "base"
            return os.path.basename(prefix.rstrip("/\\"))
    return None


def _externally_managed(in_venv):
    import sysconfig

    return (not in_venv) and os.path.isfile(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))


def python_facts(pip_version):
    import sysconfig

    impl = getattr(sys, "implementation", None)
    name = impl.name if impl is not None else "cpython"
    base = getattr(sys, "base_prefix", sys.prefix)
    return {
        "stage": "python",
        "version": sys.version.split()[0],
        "implementation": {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalPy"}.get(name, name),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "venv": sys.prefix != base or hasattr(sys, "real_prefix"),
        # PEP 668: the OS package manager owns this Python; pip refuses to install into it
        # ("externally-managed-environment") unless in a venv. The marker file lives in the
        # stdlib directory (PEP 668, "Marking an interpreter as using an external package manager").
        "externally_managed": guard(_externally_managed, sys.prefix != base or hasattr(sys, "real_prefix")),
        "conda_env": guard(_conda_env),
        "pip_version": pip_version,
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "platform_tag": guard(platform_tag),
    }


def _metadata_version(path):
    for fname in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(path, fname), encoding="utf-8", errors="replace") as fh:
                for _ in range(50):
                    line = fh.readline()
                    if not line:
                        break
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            continue
    return None


def _provides_torch(path):
    # Distributions named otherwise (a fork, a vendor build) still count when they ship torch/.
    try:
        with open(os.path.join(path, "top_level.txt"), encoding="utf-8") as fh:
            return "torch" in fh.read().split()
    except OSError:
        pass
    try:
        with open(os.path.join(path, "RECORD"), encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("torch/__init__.py,"):
                    return True
    except OSError:
        pass
    return False


def _torch_dir_version(location):
    # A torch/ without metadata (a source checkout, a copied tree): read torch/version.py.
    try:
        with open(os.path.join(location, "torch", "version.py"), encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("__version__"):
                    return line.split("=", 1)[1].strip().strip("'\"")
    except OSError:
        pass
    return None


def scan_sys_path():
    """One pass over sys.path: torch/triton distributions, pip, and torch/ package dirs,
    in sys.path order (the first torch is the one ``import torch`` picks)."""
    seen = set()
    torch_dists, triton_dists, torch_dirs = [], [], []
    pip_version = None
    for entry in sys.path:
        try:  # a deleted working directory, an unreadable folder: skip that entry only
            location = os.path.abspath(entry or os.getcwd())
            real = os.path.realpath(location)
            if real in seen or not os.path.isdir(location):
                continue
            seen.add(real)
            names = os.listdir(location)
        except OSError:
            continue
        here = []
        for fname in names:
            if not (fname.endswith(".dist-info") or fname.endswith(".egg-info")):
                continue
            stem = fname.rsplit(".", 1)[0]
            dist = _normalise(stem.split("-", 1)[0])
            path = os.path.join(location, fname)
            if dist == "pip" and pip_version is None:
                pip_version = _metadata_version(path)
            elif dist in TORCH_DISTS or (
                (dist.startswith("torch") or dist.startswith("pytorch"))
                and not dist.startswith("pytorch_triton") and _provides_torch(path)
            ):
                here.append({"name": stem.split("-", 1)[0], "version": _metadata_version(path),
                             "location": location})
            elif dist in TRITON_DISTS:
                triton_dists.append({"name": stem.split("-", 1)[0],
                                     "version": _metadata_version(path), "location": location})
        here.sort(key=lambda d: d["name"])
        torch_dists.extend(here)
        if os.path.isfile(os.path.join(location, "torch", "__init__.py")):
            torch_dirs.append(location)
            if not here:
                torch_dists.append({"name": "torch", "version": _torch_dir_version(location),
                                    "location": location})
    return pip_version, torch_dists, triton_dists, torch_dirs


def _c_compiler():
    # The order triton uses to find the compiler it builds its launcher with
    # (triton-lang/triton python/triton/runtime/build.py get_cc: $CC, then gcc, then clang).
    import shutil

    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc.split()[0]) or cc
    names = ("cl", "gcc", "clang") if os.name == "nt" else ("gcc", "clang", "cc")
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def _python_headers():
    import sysconfig

    include = sysconfig.get_paths().get("include")
    if include and os.path.isfile(os.path.join(include, "Python.h")):
        return os.path.join(include, "Python.h")
    return None


def _triton(triton_dists):
    # find_spec, not import: importing triton costs seconds on some machines and doctor must
    # stay within 1.1x of a bare `import torch` (issue 2). find_spec locates without executing.
    import importlib.util

    try:
        spec = importlib.util.find_spec("triton")
    except Exception as exc:  # a broken triton/__init__ location, a bad .pth
        return {"available": False, "version": None, "error": describe(exc)}
    version = triton_dists[0]["version"] if triton_dists else None
    if spec is None:
        return {"available": False, "version": None,
                "error": "no module named 'triton' on this interpreter's sys.path"}
    return {"available": True, "version": version, "error": None}


def _nccl_version(torch):
    if not hasattr(torch._C, "_nccl_version"):
        return None
    import torch.cuda.nccl

    v = torch.cuda.nccl.version()
    if isinstance(v, tuple):
        return ".".join(str(x) for x in v[:3])
    v = int(v)  # torch < 1.13 returned an int: 2708 (2.7.8) or, from NCCL 2.9, 21803 (2.18.3)
    if v >= 10000:
        return "{}.{}.{}".format(v // 10000, (v % 10000) // 100, v % 100)
    return "{}.{}.{}".format(v // 1000, (v % 1000) // 100, v % 100)


def _arch_list(torch):
    # torch._C._cuda_getArchFlags directly: older torch.cuda.get_arch_list() returned [] whenever
    # is_available() was False, hiding the arch list exactly when a driver problem needs it.
    flags = getattr(torch._C, "_cuda_getArchFlags", None)
    if flags is None:
        return []
    value = flags()
    return value.split() if value else []


def _distributed(torch):
    import torch.distributed as dist

    available = bool(dist.is_available())

    def check(name):
        fn = getattr(dist, name, None)
        return bool(fn()) if (available and fn is not None) else False

    return {"available": available, "nccl": check("is_nccl_available"),
            "gloo": check("is_gloo_available"), "mpi": check("is_mpi_available")}


def _device(torch, index):
    try:
        props = torch.cuda.get_device_properties(index)
        return {"index": index, "name": props.name, "capability": [props.major, props.minor],
                "total_memory_bytes": int(props.total_memory)}
    except Exception as exc:
        reason = {"unavailable": describe(exc)}
        return {"index": index, "name": reason, "capability": reason, "total_memory_bytes": reason}


def _unavailable_reason(torch, caught):
    texts = []
    for w in caught:
        text = str(w.message)
        if ("CUDA" in text or "cuda" in text or "driver" in text) and text not in texts:
            texts.append(text)
    if texts:
        return " | ".join(texts)
    if getattr(torch.version, "cuda", None) is None and getattr(torch.version, "hip", None) is None:
        return "this torch is a CPU-only build (torch.version.cuda is None)"
    return "torch.cuda.is_available() returned False without a warning (no visible device)"


def torch_facts(torch, import_seconds, caught, triton_dists):
    out = {"stage": "torch", "version": str(torch.__version__), "import_seconds": round(import_seconds, 3)}
    out["cuda"] = getattr(torch.version, "cuda", None)
    out["hip"] = getattr(torch.version, "hip", None)
    emit({"stage": "step", "step": "torch.cuda.is_available()"})
    out["cuda_available"] = guard(lambda: bool(torch.cuda.is_available()))
    emit({"stage": "step", "step": "torch.cuda.device_count()"})
    out["device_count"] = guard(lambda: int(torch.cuda.device_count()))
    out["cuda_unavailable_reason"] = (
        None if out["cuda_available"] is True else guard(_unavailable_reason, torch, caught)
    )
    out["arch_list"] = guard(_arch_list, torch)
    emit({"stage": "step", "step": "torch.backends.cudnn.version()"})
    out["cudnn"] = guard(lambda: torch.backends.cudnn.version())
    emit({"stage": "step", "step": "torch.cuda.nccl.version()"})
    out["nccl"] = guard(_nccl_version, torch)
    devices = []
    if out["cuda_available"] is True and isinstance(out["device_count"], int):
        emit({"stage": "step", "step": "torch.cuda.get_device_properties()"})
        devices = [_device(torch, i) for i in range(out["device_count"])]
    out["devices"] = devices
    emit({"stage": "step", "step": "torch.distributed"})
    out["distributed"] = guard(_distributed, torch)
    # Intra-op threads torch will start per process: sized from the cores it sees, not from a
    # container's CPU quota (rules/host.py, host.cpu-quota-below-torch-threads).
    out["num_threads"] = guard(lambda: int(torch.get_num_threads()))
    out["compile"] = {"triton": guard(_triton, triton_dists), "cc": guard(_c_compiler),
                      "python_headers": guard(_python_headers)}
    return out


def main():
    try:
        import faulthandler

        # A crash (SIGSEGV in a native library) prints the Python stack to stderr, and a hang
        # dumps it just before the parent's deadline: the report can say *where*.
        faulthandler.enable(file=sys.__stderr__)
        timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
        if timeout > 0:
            faulthandler.dump_traceback_later(max(timeout - min(1.0, timeout * 0.2), 0.1),
                                              exit=False, file=sys.__stderr__)
    except Exception:
        pass

    pip_version, torch_dists, triton_dists, torch_dirs = None, [], [], []
    try:
        pip_version, torch_dists, triton_dists, torch_dirs = scan_sys_path()
        scan_error = None
    except Exception as exc:
        scan_error = describe(exc)
    facts = guard(python_facts, pip_version)
    emit(facts if "stage" in facts else {"stage": "python", "error": facts["unavailable"]})
    emit({"stage": "dists", "distributions": torch_dists, "torch_dirs": torch_dirs,
          "error": scan_error})

    if len(sys.argv) > 2 and sys.argv[2] == "no-import":
        # The caller needs only the interpreter and what is installed (envcheck install):
        # importing torch would cost a second and could crash or hang.
        emit({"stage": "done"})
        return

    # Whatever torch prints goes to stderr, so stdout carries only the protocol.
    sys.stdout = sys.stderr
    import traceback
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emit({"stage": "step", "step": "import torch"})
        start = time.time()
        try:
            import torch
        except BaseException as exc:  # SystemExit / KeyboardInterrupt raised by a broken torch too
            # Only torch itself missing; not "cannot import name 'x' from 'torch'" (also name
            # 'torch') nor a missing dependency of torch. Python 2 has no ModuleNotFoundError.
            missing = (type(exc).__name__ == "ModuleNotFoundError" and getattr(exc, "name", None) == "torch") \
                or str(exc) == "No module named torch"
            tb = traceback.format_exception(type(exc), exc, sys.exc_info()[2])
            emit({"stage": "torch_error", "kind": "not_installed" if missing else "import_error",
                  "message": describe(exc), "traceback": "".join(tb)[-4000:],
                  "import_seconds": round(time.time() - start, 3)})
            emit({"stage": "done"})
            return
        elapsed = time.time() - start
        emit({"stage": "step", "step": "torch facts"})
        try:
            facts = torch_facts(torch, elapsed, caught, triton_dists)
        except BaseException as exc:
            tb = traceback.format_exception(type(exc), exc, sys.exc_info()[2])
            emit({"stage": "torch_error", "kind": "import_error",
                  "message": "torch imported but failed while describing itself: " + describe(exc),
                  "traceback": "".join(tb)[-4000:], "import_seconds": round(elapsed, 3)})
            emit({"stage": "done"})
            return
    emit(facts)
    emit({"stage": "done"})


if __name__ == "__main__":
    try:
        main()
    finally:
        # Skip interpreter teardown (torch's atexit hooks, CUDA context destruction): everything
        # was flushed, and the parent is waiting.
        try:  # noqa: SIM105 - contextlib.suppress does not exist in every interpreter we run in
            _OUT.flush()
        except Exception:
            pass
        os._exit(0)
