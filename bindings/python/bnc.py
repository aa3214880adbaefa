"""bnc from Python: a thin ctypes layer over libbnc.so (include/bnc.h), nothing compiled.

    import bnc
    with bnc.Plan("model.bnplan") as plan, bnc.Session(plan, temperature=0) as s:
        ids = s.generate("Once upon a time", 32, lambda tok, text: print(text.decode(), end=""))
        print(s.timings())

The library is found through BNC_LIBRARY (a path), then the system's search
(ctypes.util.find_library), then libbnc.so.0. Every failure raises bnc.Error
with the library's message (bnc_last_error()).
"""
import ctypes
import ctypes.util
import os
from array import array

__all__ = ["Error", "Plan", "Session", "version"]


class Error(Exception):
    """A bnc failure: status (the bnc_status code) and the library's message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _load():
    path = os.environ.get("BNC_LIBRARY") or ctypes.util.find_library("bnc") or "libbnc.so.0"
    lib = ctypes.CDLL(path)
    P, I, F, C, VP = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_char_p, ctypes.c_void_p
    sigs = {
        "bnc_version": (C, []),
        "bnc_last_error": (C, []),
        "bnc_plan_open": (I, [C, ctypes.POINTER(P)]),
        "bnc_plan_open_trusted": (I, [C, C, ctypes.POINTER(P)]),
        "bnc_plan_free": (None, [P]),
        "bnc_plan_vocab_size": (I, [P]),
        "bnc_plan_context_length": (I, [P]),
        "bnc_plan_arch": (C, [P]),
        "bnc_session_default_params": (_Params, []),
        "bnc_session_create": (I, [P, ctypes.POINTER(_Params), ctypes.POINTER(P)]),
        "bnc_session_free": (None, [P]),
        "bnc_tokenize": (I, [P, C, ctypes.POINTER(ctypes.c_int32), I, ctypes.POINTER(I)]),
        "bnc_token_text": (ctypes.POINTER(ctypes.c_char), [P, ctypes.c_int32, ctypes.POINTER(ctypes.c_size_t)]),
        "bnc_eval": (I, [P, ctypes.POINTER(ctypes.c_int32), I]),
        "bnc_logits": (ctypes.POINTER(F), [P]),
        "bnc_reset": (None, [P]),
        "bnc_generate": (I, [P, C, I, _TokenCb, VP]),
        "bnc_session_timings": (None, [P, ctypes.POINTER(_Timings)]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class _Params(ctypes.Structure):
    _fields_ = [("threads", ctypes.c_int), ("n_ctx", ctypes.c_int), ("n_batch", ctypes.c_int),
                ("temperature", ctypes.c_float), ("top_k", ctypes.c_int), ("top_p", ctypes.c_float),
                ("repeat_penalty", ctypes.c_float), ("seed", ctypes.c_uint64), ("ignore_eos", ctypes.c_int),
                ("kv", ctypes.c_int), ("cache_dir", ctypes.c_char_p)]
_KV_TYPES = {"f32": 0, "f16": 1}  # bnc_kv_type


class _Timings(ctypes.Structure):
    _fields_ = [(n, ctypes.c_double) for n in ("load_s", "prepare_s", "tokenize_s", "prompt_s", "generate_s",
                                                "sample_s")] + \
               [("prompt_tokens", ctypes.c_int), ("generated_tokens", ctypes.c_int), ("context_full", ctypes.c_int)]


_TokenCb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int32, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t,
                            ctypes.c_void_p)
_lib = None


def _L():
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


def _check(status):
    if status != 0:
        raise Error(status, _L().bnc_last_error().decode("utf-8", "replace"))


def version():
    """The library's version and commit: "0.1.0 (3f2a9c1b0d4e)"."""
    return _L().bnc_version().decode()


class _Handle:
    """A library handle freed by close(), at the end of a with block, or when collected."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit the module may be gone first
            pass


class Plan(_Handle):
    """A compiled plan (bnc compile). trusted_keys: a trusted-keys file whose signers' object code may run."""

    def __init__(self, path, trusted_keys=None):
        self._h = ctypes.c_void_p()
        if trusted_keys is None:
            _check(_L().bnc_plan_open(os.fsencode(path), ctypes.byref(self._h)))
        else:
            _check(_L().bnc_plan_open_trusted(os.fsencode(path), os.fsencode(trusted_keys), ctypes.byref(self._h)))

    @property
    def vocab_size(self):
        return _L().bnc_plan_vocab_size(self._h)

    @property
    def context_length(self):
        return _L().bnc_plan_context_length(self._h)

    @property
    def arch(self):
        return _L().bnc_plan_arch(self._h).decode()

    def close(self):
        if self._h:
            _L().bnc_plan_free(self._h)
            self._h = ctypes.c_void_p()


class Session(_Handle):
    """A session over a plan (it keeps the plan alive). Keyword arguments are bnc_session_params' fields:
    threads, n_ctx, n_batch, temperature, top_k, top_p, repeat_penalty, seed, ignore_eos, kv ("f32" or "f16":
    the K/V cache's element type), cache_dir."""

    def __init__(self, plan, **params):
        p = _L().bnc_session_default_params()
        for k, v in params.items():
            if k not in dict(_Params._fields_):
                raise TypeError("Session: unknown parameter %r" % k)
            if k == "kv" and v not in _KV_TYPES:
                raise ValueError("Session: kv must be 'f32' or 'f16', got %r" % (v,))
            setattr(p, k, os.fsencode(v) if k == "cache_dir" and v is not None else _KV_TYPES[v] if k == "kv" else v)
        self._plan = plan
        self._h = ctypes.c_void_p()
        _check(_L().bnc_session_create(plan._h, ctypes.byref(p), ctypes.byref(self._h)))

    def tokenize(self, text):
        """UTF-8 text (str or bytes) -> a list of token ids."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        cap = len(data) + 8
        ids, n = (ctypes.c_int32 * cap)(), ctypes.c_int()
        _check(_L().bnc_tokenize(self._h, data, ids, cap, ctypes.byref(n)))
        return list(ids[:n.value])

    def token_text(self, token):
        """The bytes of one token (control tokens: b"")."""
        n = ctypes.c_size_t()
        p = _L().bnc_token_text(self._h, token, ctypes.byref(n))
        if not p:
            raise Error(4, _L().bnc_last_error().decode("utf-8", "replace"))
        return ctypes.string_at(p, n.value)

    def eval(self, tokens):
        """Evaluates tokens after those already in the KV cache; returns the last one's logits."""
        arr = (ctypes.c_int32 * len(tokens))(*tokens)
        _check(_L().bnc_eval(self._h, arr, len(tokens)))
        return self.logits()

    def logits(self):
        """The last evaluated token's logits, as array('f') (a copy)."""
        p = _L().bnc_logits(self._h)
        if not p:
            raise Error(4, _L().bnc_last_error().decode("utf-8", "replace"))
        out = array("f", bytes(self._plan.vocab_size * 4))
        ctypes.memmove(out.buffer_info()[0], p, self._plan.vocab_size * 4)
        return out

    def reset(self):
        _L().bnc_reset(self._h)

    def generate(self, prompt, n_predict, callback=None):
        """Resets, processes the prompt, samples up to n_predict tokens; callback(token, text_bytes) is called
        with each and may return True to stop. Returns the generated token ids."""
        got, failure = [], []

        def on_token(token, text, length, user):
            got.append(token)
            try:
                return 1 if callback and callback(token, ctypes.string_at(text, length)) else 0
            except BaseException as e:  # raised again below, once the library has returned
                failure.append(e)
                return 1

        cb = _TokenCb(on_token)
        _check(_L().bnc_generate(self._h, prompt.encode() if isinstance(prompt, str) else prompt, n_predict, cb, None))
        if failure:
            raise failure[0]
        return got

    def timings(self):
        """Seconds per stage and token counts so far, as a dict."""
        t = _Timings()
        _L().bnc_session_timings(self._h, ctypes.byref(t))
        return {name: getattr(t, name) for name, _ in _Timings._fields_}

    def close(self):
        if self._h:
            _L().bnc_session_free(self._h)
            self._h = ctypes.c_void_p()
