# The audit log's hot path: SHA-256 leaf/chain/node hashing and record-line encoding,
# one call per batch instead of several Python calls per record.
#
# - audit_encode_chain: records -> the exact bytes records.jsonl receives plus the
#   RFC 9162 leaf hashes; each line ends with the previous line's leaf hash (the chain),
#   so hashing is sequential; it runs without the GIL over a C buffer.
# - audit_frontier_extend / audit_frontier_root: the writer's running Merkle root
#   (node = SHA-256(0x01 || left || right)), a binary counter of perfect-subtree roots.
# - audit_sha256 / audit_leaf_hashes / audit_node_hash / audit_sha256_impl: building
#   blocks, exposed so tests can check them against hashlib on both implementations.
#
# The line format is guard.audit.records' (the Python encoder there is the
# reference); any record this code does not handle byte-for-byte the same way
# (non-float time, unusual strings, unknown flow, anything invalid) goes through the
# Python encoder through the ``slow`` callback, which also raises the precise error.

cimport cython
from libc.stdint cimport uint8_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memcmp, strlen
from libc.math cimport round as _au_round, fabs
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE


cdef extern from "sha256.h" nogil:
    ctypedef struct gsha_ctx:
        pass
    int gsha_select(int want_fast)
    int gsha_fast_available()
    void gsha_init(gsha_ctx *c)
    void gsha_update(gsha_ctx *c, const unsigned char *p, size_t n)
    void gsha_final(gsha_ctx *c, unsigned char *out)
    void gsha_digest(const unsigned char *p, size_t n, unsigned char *out)
    void gsha_node(const unsigned char *left, const unsigned char *right, unsigned char *out)


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    void *PyUnicode_DATA(object o)


cdef int _au_impl = gsha_select(1)  # SHA-NI when the CPU has it


def audit_sha256_impl(name=None):
    """The SHA-256 block code in use: ``"sha-ni"`` or ``"portable"``.

    With ``name``, switch first (tests force ``"portable"``); asking for
    ``"sha-ni"`` on a CPU without it raises ``ValueError``. Not for use while
    another thread hashes.
    """
    global _au_impl
    if name is not None:
        if name == "sha-ni":
            if not gsha_fast_available():
                raise ValueError("this CPU has no SHA extensions")
            _au_impl = gsha_select(1)
        elif name == "portable":
            _au_impl = gsha_select(0)
        else:
            raise ValueError(f"unknown SHA-256 implementation {name!r}")
    return "sha-ni" if _au_impl else "portable"


def audit_sha256_available():
    """Implementations this CPU can run, fastest first."""
    return ("sha-ni", "portable") if gsha_fast_available() else ("portable",)


def audit_sha256(data):
    """SHA-256 of a bytes-like object (32 bytes)."""
    cdef Py_buffer view
    cdef unsigned char out[32]
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        with nogil:
            gsha_digest(<const unsigned char *>view.buf, <size_t>view.len, out)
    finally:
        PyBuffer_Release(&view)
    return PyBytes_FromStringAndSize(<char *>out, 32)


cdef const char *_AU_HEX = b"0123456789abcdef"


def audit_sha256_hex_many(datas):
    """SHA-256 hex digests of a sequence of bytes-like objects, as ``str``.

    Holds the GIL throughout, on purpose: hashlib releases it for every input over
    2 KB, and in a threaded daemon each release hands the interpreter to the other
    thread and waits (up to the switch interval) to get it back: per message, that
    costs more than the hash (~2.3 us per 4 KB with SHA-NI).
    """
    cdef Py_ssize_t i, j, n = len(datas)
    cdef Py_buffer view
    cdef unsigned char out[32]
    cdef char hexout[64]
    result = [None] * n
    for i in range(n):
        PyObject_GetBuffer(datas[i], &view, PyBUF_SIMPLE)
        try:
            gsha_digest(<const unsigned char *>view.buf, <size_t>view.len, out)
        finally:
            PyBuffer_Release(&view)
        for j in range(32):
            hexout[2 * j] = _AU_HEX[out[j] >> 4]
            hexout[2 * j + 1] = _AU_HEX[out[j] & 15]
        result[i] = hexout[:64].decode("ascii")
    return result


def audit_node_hash(bytes left, bytes right):
    """RFC 9162 interior node hash SHA-256(0x01 || left || right) of two 32-byte hashes."""
    if len(left) != 32 or len(right) != 32:
        raise ValueError("node hashes take two 32-byte hashes")
    cdef unsigned char out[32]
    gsha_node(<const unsigned char *>PyBytes_AS_STRING(left),
              <const unsigned char *>PyBytes_AS_STRING(right), out)
    return PyBytes_FromStringAndSize(<char *>out, 32)


def audit_leaf_hashes(lines):
    """RFC 9162 leaf hashes SHA-256(0x00 || line) of a sequence of bytes, concatenated
    (``32 * len(lines)`` bytes)."""
    cdef list items = [bytes(x) if type(x) is not bytes else x for x in lines]
    cdef Py_ssize_t n = len(items), i
    cdef const unsigned char **ptrs = <const unsigned char **>malloc((n + 1) * sizeof(void *))
    cdef size_t *lens = <size_t *>malloc((n + 1) * sizeof(size_t))
    cdef unsigned char zero = 0
    cdef gsha_ctx c
    if ptrs == NULL or lens == NULL:
        free(ptrs)
        free(lens)
        raise MemoryError()
    out = PyBytes_FromStringAndSize(NULL, 32 * n)
    cdef unsigned char *o = <unsigned char *>PyBytes_AS_STRING(out)
    try:
        for i in range(n):
            ptrs[i] = <const unsigned char *>PyBytes_AS_STRING(items[i])
            lens[i] = <size_t>PyBytes_GET_SIZE(items[i])
        with nogil:  # the list keeps the bytes alive; out is not shared yet
            for i in range(n):
                gsha_init(&c)
                gsha_update(&c, &zero, 1)
                gsha_update(&c, ptrs[i], lens[i])
                gsha_final(&c, o + 32 * i)
    finally:
        free(ptrs)
        free(lens)
    return out


# -- the Merkle frontier ---------------------------------------------------------------------
# ``frontier`` is a bytearray of 64 slots of 32 bytes; slot k holds the root of a perfect
# subtree of 2**k leaves when bit k of ``size`` is set (guard.audit.merkle.Frontier's
# ``nodes``). Appending a leaf is a binary increment: carries are node hashes, so a
# batch of n leaves costs n node hashes at most (n - 1 amortised).

cdef enum:
    _AU_SLOTS = 64


def audit_frontier_extend(bytearray frontier, unsigned long long size, leaves):
    """Append packed 32-byte leaf hashes to the frontier in place; returns the new size."""
    if len(frontier) != 32 * _AU_SLOTS:
        raise ValueError("the frontier is 64 slots of 32 bytes")
    cdef Py_buffer view, fview
    # the export also stops anyone resizing the bytearray while the GIL is released
    PyObject_GetBuffer(frontier, &fview, PyBUF_WRITABLE)
    try:
        PyObject_GetBuffer(leaves, &view, PyBUF_SIMPLE)
    except BaseException:
        PyBuffer_Release(&fview)
        raise
    cdef size_t n = <size_t>view.len // 32, i
    cdef unsigned long long s
    cdef int k
    cdef unsigned char h[32]
    cdef unsigned char *f = <unsigned char *>fview.buf
    cdef const unsigned char *lv = <const unsigned char *>view.buf
    try:
        if view.len % 32:
            raise ValueError("leaves must be a whole number of 32-byte hashes")
        if size + n >= (1ULL << 63) or size + n < size:
            raise OverflowError("tree too large")
        with nogil:  # callers hold the log's lock, nobody else touches the bytearray
            for i in range(n):
                memcpy(h, lv + 32 * i, 32)
                s = size
                k = 0
                while s & 1:
                    gsha_node(f + 32 * k, h, h)
                    s >>= 1
                    k += 1
                memcpy(f + 32 * k, h, 32)
                size += 1
    finally:
        PyBuffer_Release(&view)
        PyBuffer_Release(&fview)
    return size


def audit_frontier_root(bytearray frontier, unsigned long long size):
    """Root (MTH) of the tree the frontier describes; SHA-256 of nothing when empty."""
    if len(frontier) != 32 * _AU_SLOTS:
        raise ValueError("the frontier is 64 slots of 32 bytes")
    cdef unsigned char r[32]
    cdef const unsigned char *f = <const unsigned char *>(<char *>frontier)
    cdef int k, have = 0
    if size == 0:
        gsha_digest(r, 0, r)
        return PyBytes_FromStringAndSize(<char *>r, 32)
    for k in range(_AU_SLOTS):
        if size >> k & 1:
            if have:
                gsha_node(f + 32 * k, r, r)
            else:
                memcpy(r, f + 32 * k, 32)
                have = 1
    return PyBytes_FromStringAndSize(<char *>r, 32)


# -- record lines --------------------------------------------------------------------------------

cdef struct _AuBuf:
    char *p
    size_t n
    size_t cap


cdef int _au_reserve(_AuBuf *b, size_t extra) except -1:
    cdef size_t cap
    cdef char *q
    if b.n + extra <= b.cap:
        return 0
    cap = b.cap * 2
    if cap < b.n + extra + 4096:
        cap = b.n + extra + 4096
    q = <char *>realloc(b.p, cap)
    if q == NULL:
        raise MemoryError()
    b.p = q
    b.cap = cap
    return 0


cdef inline void _au_put(_AuBuf *b, const char *s, size_t n) noexcept:
    memcpy(b.p + b.n, s, n)  # room reserved by the caller
    b.n += n


cdef extern from *:
    """
    /* Branch-free loops over whole strings, which the compiler vectorises. */
    static inline int guard_au_hex64(const unsigned char *d)
    {
        unsigned char bad = 0;
        int i;
        for (i = 0; i < 64; i++) /* 0-9 or a-f */
            bad |= (unsigned char)(((unsigned char)(d[i] - 48) > 9) &
                                   ((unsigned char)(d[i] - 97) > 5));
        return !bad;
    }
    static inline int guard_au_plain(const unsigned char *d, Py_ssize_t n)
    {
        unsigned char bad = 0;
        Py_ssize_t i;
        for (i = 0; i < n; i++) /* printable ASCII other than '"' and backslash */
            bad |= (unsigned char)((d[i] < 32) | (d[i] > 126) | (d[i] == 34) | (d[i] == 92));
        return !bad;
    }
    """
    bint guard_au_hex64(const uint8_t *d) noexcept nogil
    bint guard_au_plain(const uint8_t *d, Py_ssize_t n) noexcept nogil


cdef inline bint _au_hex64(object s) noexcept:
    """``s`` is an exact str of 64 lowercase hex digits."""
    if type(s) is not str or PyUnicode_GET_LENGTH(s) != 64 or not PyUnicode_IS_ASCII(s):
        return False
    return guard_au_hex64(<const uint8_t *>PyUnicode_DATA(s))


cdef inline bint _au_plain(object s) noexcept:
    """``s`` is an exact ASCII str that JSON-quotes as itself: no control, DEL, '"' or '\\'."""
    if type(s) is not str or not PyUnicode_IS_ASCII(s):
        return False
    return guard_au_plain(<const uint8_t *>PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s))


cdef int _au_put_ascii(_AuBuf *b, object s) except -1:
    """Append an ASCII str (checked by the caller)."""
    cdef size_t n = <size_t>PyUnicode_GET_LENGTH(s)
    _au_reserve(b, n)
    _au_put(b, <const char *>PyUnicode_DATA(s), n)
    return 0


cdef int _au_put_quoted(_AuBuf *b, object s, object quote) except -1:
    """Append ``s`` as a JSON string (``quote`` is json's ASCII escaper for the rare
    string that needs escaping)."""
    if _au_plain(s):
        _au_reserve(b, <size_t>PyUnicode_GET_LENGTH(s) + 2)
        _au_put(b, b'"', 1)
        _au_put(b, <const char *>PyUnicode_DATA(s), <size_t>PyUnicode_GET_LENGTH(s))
        _au_put(b, b'"', 1)
        return 0
    q = quote(s)
    if type(q) is not str or not PyUnicode_IS_ASCII(q):
        raise ValueError("the JSON escaper returned non-ASCII text")
    return _au_put_ascii(b, q)


cdef int _au_put_findings(_AuBuf *b, list fnd, object quote) except -1:
    """Append ``fnd`` exactly as ``json.dumps(fnd, ensure_ascii=True, separators=(",", ":"))``
    when every finding is a flat dict of str keys and str or int values (what the
    pipeline records); returns 0, leaving ``b`` as it was, for anything else."""
    cdef size_t n0 = b.n
    cdef Py_ssize_t i
    cdef bint first
    _au_reserve(b, 2)
    _au_put(b, b'[', 1)
    for i in range(len(fnd)):
        item = fnd[i]
        if type(item) is not dict:
            b.n = n0
            return 0
        _au_reserve(b, 2)
        if i:
            _au_put(b, b',', 1)
        _au_put(b, b'{', 1)
        first = True
        for k, v in (<dict>item).items():
            if type(k) is not str or not (type(v) is str or (type(v) is int and
                                                              -2**62 < v < 2**62)):
                b.n = n0
                return 0
            if not first:
                _au_reserve(b, 1)
                _au_put(b, b',', 1)
            first = False
            _au_put_quoted(b, k, quote)
            _au_reserve(b, 24)
            _au_put(b, b':', 1)
            if type(v) is str:
                _au_put_quoted(b, v, quote)
            else:
                _au_put_int(b, <int64_t>v)
        _au_reserve(b, 2)
        _au_put(b, b'}', 1)
    _au_reserve(b, 1)
    _au_put(b, b']', 1)
    return 1


cdef const char *_AU_PAIRS = (
    b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    b"8081828384858687888990919293949596979899")


@cython.cdivision(True)
cdef inline void _au_put_int(_AuBuf *b, int64_t v) noexcept:
    """Append ``v`` in decimal (the caller reserved 21 bytes); two digits per division."""
    cdef char tmp[24]
    cdef int k = 24
    cdef bint neg = v < 0
    cdef unsigned long long u = <unsigned long long>(-(v + 1)) + 1 if neg else <unsigned long long>v
    cdef unsigned int r
    while u >= 100:
        r = <unsigned int>(u % 100)
        u = u / 100
        k -= 2
        tmp[k] = _AU_PAIRS[2 * r]
        tmp[k + 1] = _AU_PAIRS[2 * r + 1]
    if u >= 10:
        k -= 2
        tmp[k] = _AU_PAIRS[2 * u]
        tmp[k + 1] = _AU_PAIRS[2 * u + 1]
    else:
        k -= 1
        tmp[k] = <char>(48 + u)
    if neg:
        k -= 1
        tmp[k] = 45
    _au_put(b, tmp + k, 24 - k)


cdef extern from *:
    """
    static const char *const guard_au_verdicts[5] = {
        "release", "redact", "quarantine", "block", "error"};
    """
    const char *const guard_au_verdicts[5]


# Records are usually DecisionRecord, a slots dataclass: its fields are object slots at
# fixed offsets, which are read directly (the generic attribute lookup costs about as
# much as the rest of a line's encoding). The offsets come from the class's own member
# descriptors and are used only for instances of exactly that class.

cdef extern from *:
    """
    typedef struct { const char *name; int type; Py_ssize_t offset; int flags; } guard_au_member;
    typedef struct { PyObject_HEAD PyTypeObject *d_type; PyObject *d_name;
                     PyObject *d_qualname; guard_au_member *d_member; } guard_au_memberdescr;
    """
    ctypedef struct guard_au_member:
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct guard_au_memberdescr:
        guard_au_member *d_member

from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF

_AU_FIELDS = ("decision_id", "time", "flow", "message_id", "input_sha256", "output_sha256",
              "policy_sha256", "verdict", "findings", "key_id")
cdef object _au_cls = None  # the class whose slot offsets are known
cdef object _au_not = None  # the last class found unsuitable
cdef Py_ssize_t _au_off[10]


cdef bint _au_learn(object cls):
    """Learn ``cls``'s slot offsets if every field is a plain writable object slot."""
    global _au_cls, _au_not
    import types
    cdef guard_au_member *m
    cdef Py_ssize_t offs[10]
    cdef int k
    if cls.__getattribute__ is not object.__getattribute__ or \
            cls.__setattr__ is not object.__setattr__:
        _au_not = cls
        return False
    for k in range(10):
        d = getattr(cls, _AU_FIELDS[k], None)  # a class attribute lookup: the descriptor
        if type(d) is not types.MemberDescriptorType:
            _au_not = cls
            return False
        m = (<guard_au_memberdescr *><void *>d).d_member
        if m.type != 16 or m.flags & 1:  # T_OBJECT_EX, not READONLY
            _au_not = cls
            return False
        offs[k] = m.offset
    for k in range(10):
        _au_off[k] = offs[k]
    _au_cls = cls
    return True


cdef inline PyObject *_au_slot(object r, int k) noexcept:
    return (<PyObject **>((<char *><void *>r) + _au_off[k]))[0]


cdef int _au_body(_AuBuf *b, object r, int64_t seq, bytes key, str key_id, dict flows,
                  object quote, object findings_json) except -1:
    """Append record ``r``'s line up to and including ``"prev":"``; returns 1 done, 0 when
    the record must go through the Python encoder (``b`` is then left as it was)."""
    cdef size_t n0 = b.n, m
    cdef double x, t, rx
    cdef int k
    cdef PyObject *p[10]
    cdef PyObject *old
    cdef bint direct = type(r) is _au_cls or (type(r) is not _au_not and _au_learn(type(r)))
    if direct:
        for k in range(10):
            p[k] = _au_slot(r, k)
            if p[k] == NULL and k < 9:
                return 0  # an unset field: the Python encoder reports it
        did, tm, flow, mid = <object>p[0], <object>p[1], <object>p[2], <object>p[3]
        inp, out, pol = <object>p[4], <object>p[5], <object>p[6]
        ver, fnd = <object>p[7], <object>p[8]
    else:
        did = r.decision_id
        tm = r.time
        flow = r.flow
        mid = r.message_id
        inp = r.input_sha256
        out = r.output_sha256
        pol = r.policy_sha256
        ver = r.verdict
        fnd = r.findings
    if type(tm) is not float or type(flow) is not str or type(ver) is not str or \
            type(did) is not str or type(mid) is not str:
        return 0
    if not _au_hex64(inp) or not _au_hex64(pol) or (out is not None and not _au_hex64(out)):
        return 0
    qflow = flows.get(flow)
    if qflow is None or type(qflow) is not str or not PyUnicode_IS_ASCII(qflow):
        return 0  # first sight of a flow: the Python encoder checks and caches it
    m = <size_t>PyUnicode_GET_LENGTH(ver)
    for k in range(5):
        if m == strlen(guard_au_verdicts[k]) and memcmp(PyUnicode_DATA(ver), guard_au_verdicts[k], m) == 0:
            break
    else:
        return 0
    # round(t * 1_000_000) exactly as CPython's float.__round__: half to even
    t = tm
    x = t * 1000000.0
    if not (fabs(x) < 9.0e18):  # also false for NaN; Python's path raises or goes big
        return 0
    rx = _au_round(x)
    if fabs(x - rx) == 0.5:
        rx = 2.0 * _au_round(x / 2.0)
    if type(fnd) is not list:
        return 0
    try:
        _au_reserve(b, 128)
        _au_put(b, b'{"seq":', 7)
        _au_put_int(b, seq)
        _au_put(b, b',"decision_id":', 15)
        _au_put_quoted(b, did, quote)
        _au_reserve(b, 64)
        _au_put(b, b',"time_us":', 11)
        _au_put_int(b, <int64_t>rx)
        _au_put(b, b',"flow":', 8)
        _au_put_ascii(b, qflow)
        _au_reserve(b, 16)
        _au_put(b, b',"message_id":', 14)
        _au_put_quoted(b, mid, quote)
        _au_reserve(b, 512)
        _au_put(b, b',"input_sha256":"', 17)
        _au_put(b, <const char *>PyUnicode_DATA(inp), 64)
        if out is None:
            _au_put(b, b'","output_sha256":null', 22)
        else:
            _au_put(b, b'","output_sha256":"', 19)
            _au_put(b, <const char *>PyUnicode_DATA(out), 64)
            _au_put(b, b'"', 1)
        _au_put(b, b',"policy_sha256":"', 18)
        _au_put(b, <const char *>PyUnicode_DATA(pol), 64)
        _au_put(b, b'","verdict":"', 13)
        _au_put(b, guard_au_verdicts[k], strlen(guard_au_verdicts[k]))
        _au_put(b, b'","findings":', 13)
        if not fnd:
            _au_put(b, b'[]', 2)
        elif not _au_put_findings(b, fnd, quote):
            try:
                js = findings_json(fnd)  # Finding objects, nested values, floats ...
            except Exception:
                b.n = n0
                return 0  # the Python encoder raises the same error, naming the record
            if type(js) is not str or not PyUnicode_IS_ASCII(js):
                b.n = n0
                return 0
            _au_put_ascii(b, js)
        _au_reserve(b, 64)
        _au_put(b, b',"key_id":"', 11)
        _au_put(b, PyBytes_AS_STRING(key), <size_t>PyBytes_GET_SIZE(key))
        _au_put(b, b'","prev":"', 10)
        if direct:  # the interface: the log fills in the key id
            old = _au_slot(r, 9)
            Py_INCREF(key_id)
            (<PyObject **>((<char *><void *>r) + _au_off[9]))[0] = <PyObject *>key_id
            Py_XDECREF(old)
        else:
            r.key_id = key_id
    except Exception:
        b.n = n0  # e.g. a record that refuses key_id: the Python encoder names it
        return 0
    except BaseException:
        b.n = n0
        raise
    return 1


def audit_encode_chain(records, object seq, str key_id, bytes prev, dict flows, quote,
                       findings_json, slow):
    """Encode and chain ``records`` numbered from ``seq``: ``(data, leaves)``.

    ``data`` is the lines exactly as records.jsonl receives them, each ending in a
    newline; ``leaves`` their packed 32-byte leaf hashes. ``prev`` is the raw leaf hash
    of the record before (32 zero bytes before the first record). ``flows`` maps flow names to
    their quoted JSON form (the Python encoder's cache); ``quote`` and
    ``findings_json`` are the Python encoder's escapers; ``slow(i)`` returns record
    ``i``'s framed body (``0x00`` + line up to ``"prev":"``) from the Python encoder,
    or raises the error that names it.
    """
    if len(prev) != 32:
        raise ValueError("prev must be a 32-byte hash")
    if type(key_id) is not str or not PyUnicode_IS_ASCII(key_id):
        raise ValueError("key_id must be ASCII")
    cdef list recs = records if type(records) is list else list(records)
    cdef Py_ssize_t n = len(recs), i
    cdef bytes key = key_id.encode()
    cdef bytes body
    cdef _AuBuf b
    cdef size_t *ends = NULL
    cdef unsigned char zero = 0
    cdef unsigned char h[32]
    cdef const char *hexd = b"0123456789abcdef"
    cdef size_t start, hole, j
    cdef unsigned char *lv
    cdef gsha_ctx c
    if n == 0:
        return b"", b""
    if seq < 0 or seq + n >= (1 << 62):
        raise OverflowError("sequence number out of range")
    cdef int64_t s0 = seq
    b.p = NULL
    b.n = 0
    b.cap = 0
    ends = <size_t *>malloc(n * sizeof(size_t))
    if ends == NULL:
        raise MemoryError()
    try:
        _au_reserve(&b, <size_t>n * 560 if n < 100000 else <size_t>56000000)  # grows as needed
        for i in range(n):
            if not _au_body(&b, recs[i], s0 + i, key, key_id, flows, quote, findings_json):
                body = slow(i)
                if type(body) is not bytes or PyBytes_GET_SIZE(body) < 1:
                    raise TypeError("the Python encoder must return a framed bytes line")
                _au_reserve(&b, <size_t>PyBytes_GET_SIZE(body))
                _au_put(&b, PyBytes_AS_STRING(body) + 1, <size_t>PyBytes_GET_SIZE(body) - 1)
            _au_reserve(&b, 67)
            b.n += 64  # the previous leaf hash, in hex, is filled in below
            _au_put(&b, b'"}\n', 3)
            ends[i] = b.n
        leaves = PyBytes_FromStringAndSize(NULL, 32 * n)
        lv = <unsigned char *>PyBytes_AS_STRING(leaves)
        memcpy(h, PyBytes_AS_STRING(prev), 32)
        with nogil:  # the chain: each line holds its predecessor's hash, so one by one
            start = 0
            for i in range(n):
                hole = ends[i] - 67
                for j in range(32):
                    b.p[hole + 2 * j] = hexd[h[j] >> 4]
                    b.p[hole + 2 * j + 1] = hexd[h[j] & 15]
                gsha_init(&c)
                gsha_update(&c, &zero, 1)
                gsha_update(&c, <const unsigned char *>b.p + start, ends[i] - 1 - start)
                gsha_final(&c, h)
                memcpy(lv + 32 * i, h, 32)
                start = ends[i]
        data = PyBytes_FromStringAndSize(b.p, <Py_ssize_t>b.n)
    finally:
        free(ends)
        free(b.p)
    return data, leaves
