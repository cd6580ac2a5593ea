"""ctypes declarations of libkeeldriver (driver/include/keel/driver.h).

Only what the Python layer uses is declared. The library is found, in
order, at $KEEL_DRIVER_LIB, next to this package, in the build tree of the
source checkout this package sits in (<repo>/build/lib), and through the
system loader (an installed libkeeldriver.so.0).
"""

import ctypes
import ctypes.util
import os

ENV_VAR = "KEEL_DRIVER_LIB"

# keel_task_status_t
TASK_OK, TASK_FAILED, TASK_CANCELLED = 1, 2, 3
# keel_err
ERR_TIMEOUT = 6


class Error(ctypes.Structure):
    _fields_ = [("text", ctypes.c_char * 256)]


class Result(ctypes.Structure):
    _fields_ = [
        ("service", ctypes.c_void_p),
        ("service_id", ctypes.c_char_p),
        ("task_id", ctypes.c_uint64),
        ("status", ctypes.c_int),
        ("output", ctypes.POINTER(ctypes.c_uint8)),
        ("output_size", ctypes.c_size_t),
        ("error", ctypes.c_char_p),
        ("engine_id", ctypes.c_char_p),
        ("execution_id", ctypes.c_uint64),
        ("attempts", ctypes.c_uint32),
        ("queued_ms", ctypes.c_uint64),
        ("run_ms", ctypes.c_uint64),
    ]


class ServiceOptions(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_char_p),
        ("priority", ctypes.c_int32),
        ("max_attempts", ctypes.c_uint32),
        ("reschedule_delay_ms", ctypes.c_int64),
        ("init_data", ctypes.c_void_p),
        ("init_data_size", ctypes.c_size_t),
        ("condition", ctypes.c_char_p),  # keel_service_options_init writes the whole struct
    ]


class Status(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("level", ctypes.c_int),
        ("text", ctypes.c_char_p),
        ("broker", ctypes.c_char_p),
        ("service_id", ctypes.c_char_p),
    ]


STATUS_FN = ctypes.CFUNCTYPE(None, ctypes.POINTER(Status), ctypes.c_void_p)


def _candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ.get(ENV_VAR)
    if env:
        return [env]
    return [os.path.join(here, "libkeeldriver.so"),
            os.path.join(here, "..", "..", "build", "lib", "libkeeldriver.so")]


def _declare(lib):
    p, err_p = ctypes.c_void_p, ctypes.POINTER(Error)
    sigs = {
        "keel_driver_new": (p, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p),
                                ctypes.c_int, err_p]),
        "keel_driver_destroy": (None, [ctypes.POINTER(p)]),
        "keel_driver_id": (ctypes.c_char_p, [p]),
        "keel_driver_set_status_handler": (None, [p, STATUS_FN, p]),
        "keel_driver_next_result": (ctypes.c_int, [p, ctypes.c_int,
                                                   ctypes.POINTER(ctypes.POINTER(Result)),
                                                   err_p]),
        "keel_driver_outstanding": (ctypes.c_uint64, [p]),
        "keel_result_destroy": (None, [ctypes.POINTER(ctypes.POINTER(Result))]),
        "keel_status_kind_name": (ctypes.c_char_p, [ctypes.c_int]),
        "keel_service_options_init": (None, [ctypes.POINTER(ServiceOptions), ctypes.c_char_p]),
        "keel_driver_open_service": (p, [p, ctypes.POINTER(ServiceOptions), err_p]),
        "keel_service_id": (ctypes.c_char_p, [p]),
        "keel_service_submit": (ctypes.c_int, [p, ctypes.c_char_p, ctypes.c_size_t,
                                               ctypes.POINTER(ctypes.c_uint64), err_p]),
        "keel_service_submitted": (ctypes.c_uint64, [p]),
        "keel_service_close": (ctypes.c_int, [p, err_p]),
        "keel_service_cancel": (ctypes.c_int, [p, err_p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


_lib = None


def load():
    """Returns the loaded library (once per process); raises OSError naming
    every place it looked when it cannot be found."""
    global _lib
    if _lib is not None:
        return _lib
    tried = []
    for path in _candidates():
        path = os.path.normpath(path)
        if os.path.exists(path):
            _lib = _declare(ctypes.CDLL(path))
            return _lib
        tried.append(path)
    if not os.environ.get(ENV_VAR):
        name = ctypes.util.find_library("keeldriver") or "libkeeldriver.so.0"
        try:
            _lib = _declare(ctypes.CDLL(name))
            return _lib
        except OSError:
            tried.append(name + " (system loader)")
    raise OSError("libkeeldriver not found; tried " + ", ".join(tried)
                  + "; set %s to the path of libkeeldriver.so" % ENV_VAR)
