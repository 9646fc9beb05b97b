"""Compiles the C++ kernels on first use and registers them with XLA through ``jax.ffi``.

The shared library is built with the machine's C++ compiler (``$CXX``, else ``c++``,
``g++`` or ``clang++``) against the FFI headers that jaxlib ships, for this CPU
(``-march=native``), and cached under ``$GRADXFORM_KERNEL_CACHE`` (default
``~/.cache/gradxform/kernels``), keyed by the source, the flags, the compiler, jaxlib's
version and the CPU. Two processes building at once each write their own file and rename it
into place, so neither reads a half-written library. Where no compiler works, the reason is
kept and every caller falls back to the plain XLA composition.

Each generated program's loop (see ``_program.py``) is built the same way, without jaxlib's
headers (about 0.4 s), and registered with the program kernel by the program's int32s. A
program without a registered loop (``$GRADXFORM_INTERPRET_PROGRAMS`` set, or a compile
error) is interpreted by the kernel instead, with the same arithmetic.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import jax

ADAM_STEP = "gradxform_adam_step"
SGD_STEP = "gradxform_sgd_step"
PROGRAM_STEP = "gradxform_program_step"
SM3_STEP = "gradxform_sm3_step"
ADD_NOISE = "gradxform_add_noise"
ADAM8_STEP = "gradxform_adam8_step"

_SOURCE = Path(__file__).with_name("steps.cc")
_OPS = Path(__file__).with_name("ops.h")  # included by steps.cc and by every compiled loop
_SYMBOLS = {ADAM_STEP: "GradxformAdamStep", SGD_STEP: "GradxformSgdStep", PROGRAM_STEP: "GradxformProgramStep", SM3_STEP: "GradxformSm3Step", ADD_NOISE: "GradxformAddNoise", ADAM8_STEP: "GradxformAdam8Step"}
_FLAGS = (
    "-O3",
    "-march=native",
    "-ffp-contract=off",  # fused multiply-adds only where written (std::fma in adam8.h)
    "-fno-math-errno",  # lets the compiler vectorize sqrt
    "-fno-trapping-math",  # lets it compute both sides of a select (noise.h), same rounding
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-w",  # jaxlib's headers warn under -Wall; steps.cc itself builds clean with -Wall -Wextra
)

_lock = threading.Lock()
_status: str | None = None  # "" once registered, else why not
_library: ctypes.CDLL | None = None  # steps.cc, once loaded
_loops: dict[tuple[int, ...], bool] = {}  # program -> whether its compiled loop is registered
_loaded: list[ctypes.CDLL] = []  # compiled loops' libraries stay loaded
_DISABLE = "GRADXFORM_DISABLE_KERNELS"
_INTERPRET = "GRADXFORM_INTERPRET_PROGRAMS"  # no compiled loops: the interpreter runs every program


def _cpu_id() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    models = [line for line in info.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(models)))


def _cache_dir() -> Path:
    root = os.environ.get("GRADXFORM_KERNEL_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gradxform" / "kernels"


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _build() -> str:
    if os.environ.get(_DISABLE):
        return f"disabled by ${_DISABLE}"
    if not hasattr(jax, "ffi"):
        return f"jax {jax.__version__} has no jax.ffi"
    cxx = _compiler()
    if cxx is None:
        return "no C++ compiler found (install g++ or clang++, or set $CXX)"
    import jaxlib

    library, error = _compile(cxx, "steps", _SOURCE.read_text(), [f"-I{jax.ffi.include_dir()}"], jaxlib.__version__)
    if library is None:
        return error
    global _library
    try:
        loaded = ctypes.cdll.LoadLibrary(str(library))
        for target, symbol in _SYMBOLS.items():
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(loaded, symbol)), platform="cpu")
        loaded.GradxformRegisterProgram.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        loaded.GradxformRegisterProgram.restype = None
    except (OSError, AttributeError, ValueError, RuntimeError) as e:
        return f"could not load {library}: {e}"
    _library = loaded
    return ""


def _compile(cxx: str, stem: str, source: str, flags: list[str], version: str) -> tuple[Path | None, str]:
    """Compiles ``source`` to a shared library in the cache, unless it is there already.

    Returns the library's path, or None and why not.
    """
    # The headers are part of every source: their text is part of the key, and their folder
    # is searched.
    key = hashlib.sha256(
        "\0".join([source, *(h.read_text() for h in sorted(_OPS.parent.glob("*.h"))), " ".join(_FLAGS + tuple(flags)), cxx, version, platform.machine(), _cpu_id()]).encode()
    ).hexdigest()[:20]
    flags = [*flags, f"-I{_OPS.parent}"]
    folder = _cache_dir()
    library = folder / f"{stem}-{key}.so"
    if library.exists():
        return library, ""
    partial = source_file = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
        fd, source_file = tempfile.mkstemp(suffix=".cc", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(source)
        command = [cxx, *_FLAGS, *flags, source_file, "-o", partial]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            return None, f"compiling {stem} failed: {done.stderr.strip()[-2000:]}"
        os.replace(partial, library)
        partial = None
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"could not build {stem} in {folder}: {e}"
    finally:
        for leftover in (partial, source_file):  # a failed or interrupted build leaves nothing
            if leftover is not None and os.path.exists(leftover):
                os.unlink(leftover)
    return library, ""


def register_loop(code: tuple[int, ...], source: str) -> bool:
    """Compiles one program's loop (C++ ``source`` defining ``gradxform_loop``) and registers
    it with the program kernel for ``code``, once per process.

    Returns:
      Whether the loop is registered. Where it is not (no compiler, a compile error), the
      program kernel interprets ``code`` instead, with the same numbers, more slowly.
    """
    with _lock:
        if code in _loops:
            return _loops[code]
        ok = False
        cxx = _compiler()
        if _library is not None and cxx is not None and not os.environ.get(_INTERPRET):
            library, _ = _compile(cxx, "loop", source, [], "")
            if library is not None:
                try:
                    loaded = ctypes.cdll.LoadLibrary(str(library))
                    words = (ctypes.c_int32 * len(code))(*code)
                    _library.GradxformRegisterProgram(words, len(code), ctypes.cast(loaded.gradxform_loop, ctypes.c_void_p))
                    _loaded.append(loaded)
                    ok = True
                except (OSError, AttributeError):
                    pass
        _loops[code] = ok
        return ok


def kernel_status() -> str:
    """Builds and registers the CPU kernels if that has not been tried yet.

    Returns:
      ``""`` when the kernels are registered with XLA, otherwise why they are not (no
      compiler, a compile error, ``$GRADXFORM_DISABLE_KERNELS`` set). Without them,
      `update_and_apply` runs the plain XLA composition, with the same numbers.

    Example:
      >>> import gradxform as gx
      >>> isinstance(gx.kernel_status(), str)
      True
    """
    global _status
    with _lock:
        if _status is None:
            _status = _build()
        return _status
