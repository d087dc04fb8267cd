# Capture blocks (format in guard/capture.py) decoded in one pass: each record is
# checked by ``_capture_record`` (in _message.pxi, as ``capture_locate`` checks it) and its
# id, flow and payload copied out at once, with no span table (no numpy arrays, no
# second walk over the records, no list of times built through numpy).

from cpython.float cimport PyFloat_FromDouble


# boundscheck off: every read (in _capture_record) is checked to end at or before ``end``
# (<= n, the buffer's length); the lists are indexed below ``count`` (their length).
@cython.boundscheck(False)
@cython.wraparound(False)
def capture_records(const unsigned char[::1] raw, Py_ssize_t count):
    """The ``count`` records of a decoded capture block as four lists: message ids
    (str), flows (str, one object per distinct flow), payloads (bytes, copies: ``raw``
    may be a buffer the caller reuses) and times (float).

    ``None`` when the Python decoder must decide (anything unusual: damage, non-ASCII
    strings, bytes after the last record), exactly when ``capture_locate`` says so."""
    cdef Py_ssize_t n = raw.shape[0], pos = 0, k
    cdef Py_ssize_t last0 = 0, last1 = 0      # span of the last distinct flow seen
    cdef Py_ssize_t sp[6]                     # id, flow, payload: start and end each
    cdef double t
    cdef const unsigned char *b
    # a record takes at least 24 bytes (length, time, three string lengths, property
    # count, payload length): a count the block cannot hold is damage, found before a
    # damaged header makes four lists of its size
    if count < 0 or count > n // 24:
        return None
    ids = [None] * count
    flows = [None] * count
    payloads = [None] * count
    times = [None] * count
    if n == 0:
        return None if count else (ids, flows, payloads, times)
    b = &raw[0]
    flow = None
    interned = {}
    for k in range(count):
        pos = _capture_record(b, n, pos, &t, sp)
        if pos < 0:
            return None
        ids[k] = PyUnicode_DecodeASCII(<const char *>b + sp[0], sp[1] - sp[0], NULL)
        # one object per distinct flow: most blocks hold one, compared with the last seen
        if flow is None or not (sp[3] - sp[2] == last1 - last0
                                and memcmp(b + sp[2], b + last0, sp[3] - sp[2]) == 0):
            fb = PyBytes_FromStringAndSize(<const char *>b + sp[2], sp[3] - sp[2])
            flow = interned.get(fb)
            if flow is None:
                flow = interned[fb] = PyUnicode_DecodeASCII(<const char *>b + sp[2],
                                                            sp[3] - sp[2], NULL)
            last0, last1 = sp[2], sp[3]
        flows[k] = flow
        payloads[k] = PyBytes_FromStringAndSize(<const char *>b + sp[4], sp[5] - sp[4])
        times[k] = PyFloat_FromDouble(t)
    if pos != n:
        return None
    return ids, flows, payloads, times


# A task counter shared by a replay's forked workers: an 8-byte integer in memory they all
# map (an anonymous shared mmap made before forking), taken with one atomic add. A
# multiprocessing.Value (a semaphore and a shared arena) took ~1.4 ms to make in a
# fresh process, with the other cores idle.
cdef extern from *:
    """
    static long long guard_fetch_add(long long *p, long long n) {
        return __atomic_fetch_add(p, n, __ATOMIC_SEQ_CST);
    }
    """
    long long guard_fetch_add(long long *p, long long n) nogil


def shared_fetch_add(unsigned char[::1] counter, long long n=1):
    """Add ``n`` atomically to the 8-byte native integer at the start of ``counter`` (a
    writable buffer, 8-byte aligned, e.g. ``mmap.mmap(-1, 8)``, shared with forked
    processes); returns the value before the addition."""
    if counter.shape[0] < 8:
        raise ValueError("shared_fetch_add: the counter needs 8 bytes")
    if (<size_t>&counter[0]) % 8:
        raise ValueError("shared_fetch_add: the counter is not 8-byte aligned")
    return guard_fetch_add(<long long *>&counter[0], n)
