# Batch message indexing for the decision pipeline (guard/decide.py, guard/recheck.py).
#
# One nogil pass over a batch of messages held in one contiguous buffer (message i is
# buf[offsets[i]:offsets[i+1]]) finds the messages that have the common, simple shape of a
# plain-text report: a banner line, lines that each start with a portion mark "(...)" at
# column 0, optional tearline sections (a tearline, the section's banner, its portion
# lines, optionally the section banner again), then the first banner again as the last
# line; only ASCII text, no control byte, no carriage return outside a CRLF line end. For
# those it records the banner spans and one row per line. Everything else (blank or
# unmarked lines, JSON, non-ASCII, bad bytes, invalid marks or banners...) is marked
# SLOW: the Python parsers then decide it and explain every problem. The rules are the
# ones of guard/messages.py parse_text on this shape (mark = the bytes between the '(' and
# the first ')' in the next 513 bytes of the line; line ends exclude a '\r' before '\n').
#
# The functions only index: they never judge a marking. Distinct marks and banners are
# interned in caller-owned tables (``MsgIdxTable``: bytes -> id, looked up without the
# GIL), parsed by the caller's own parser on first sight, so that every decision about a
# distinct marking string is made (and cached) once, by the caller, per policy.

cimport cython
import numpy as np
cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdlib cimport calloc, free
from libc.string cimport memchr, memcmp, memcpy
from libc.stdint cimport int64_t, uint64_t

cnp.import_array()

DEF MSGIDX_MAX_MARK = 512      # as guard/messages.py _MAX_MARK
MSGIDX_FAST = 0
MSGIDX_SLOW = 1


cdef uint64_t _MSGIDX_ONES = 0x0101010101010101ULL
cdef uint64_t _MSGIDX_HIGH = 0x8080808080808080ULL


cdef inline uint64_t _msgidx_flag(const unsigned char *p) nogil:
    """Nonzero when a byte of p[:8] may be < 0x20, 0x7f or >= 0x80 (never zero if one is)."""
    cdef uint64_t w, x
    memcpy(&w, p, 8)
    x = w ^ (_MSGIDX_ONES * 0x7f)
    return (((w - _MSGIDX_ONES * 0x20) & ~w) | w | ((x - _MSGIDX_ONES) & ~x)) & _MSGIDX_HIGH


cdef inline bint _msgidx_bad_bytes(const unsigned char *buf, Py_ssize_t a, Py_ssize_t b,
                                   Py_ssize_t n) nogil:
    """A byte in [a, b) that no simple report carries (b <= n; \r looks at the next)."""
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(a, b):
        c = buf[i]
        if c < 0x20:
            if c == b'\n' or c == b'\t':
                continue
            if c == b'\r' and i + 1 < n and buf[i + 1] == b'\n':
                continue
            return True
        if c >= 0x7f:
            return True
    return False


cdef inline Py_ssize_t _msgidx_line_end(const unsigned char *buf, Py_ssize_t ls,
                                        Py_ssize_t last_nl) nogil:
    """End of the line starting at ls (before '\r\n' / '\n'); buf[last_nl] is '\n'."""
    cdef const void *hit = memchr(buf + ls, b'\n', last_nl + 1 - ls)
    cdef Py_ssize_t le = <const unsigned char *>hit - buf
    if le > ls and buf[le - 1] == b'\r':
        le -= 1
    return le


cdef inline bint _msgidx_blank(const unsigned char *buf, Py_ssize_t a, Py_ssize_t b) nogil:
    while a < b:
        if not _msgidx_space(buf[a]):
            return False
        a += 1
    return True


cdef bint _msgidx_tearline(const unsigned char *buf, Py_ssize_t a, Py_ssize_t b) nogil:
    """[a, b) matches ^[ \t]*-{3,}[ \t]*TEARLINE[ \t]*-{3,}[ \t]*$ (any case)."""
    cdef Py_ssize_t k, d
    cdef const char *word = b"TEARLINE"
    while a < b and (buf[a] == b' ' or buf[a] == b'\t'):
        a += 1
    while b > a and (buf[b - 1] == b' ' or buf[b - 1] == b'\t'):
        b -= 1
    d = 0
    while a < b and buf[a] == b'-':
        a += 1
        d += 1
    if d < 3:
        return False
    d = 0
    while b > a and buf[b - 1] == b'-':
        b -= 1
        d += 1
    if d < 3:
        return False
    while a < b and (buf[a] == b' ' or buf[a] == b'\t'):
        a += 1
    while b > a and (buf[b - 1] == b' ' or buf[b - 1] == b'\t'):
        b -= 1
    if b - a != 8:
        return False
    for k in range(8):
        if (buf[a + k] & 0xDF) != <unsigned char>word[k]:
            return False
    return True


cdef bint _msgidx_same_stripped(const unsigned char *buf, Py_ssize_t a0, Py_ssize_t a1,
                                Py_ssize_t b0, Py_ssize_t b1) nogil:
    while a0 < a1 and _msgidx_space(buf[a0]):
        a0 += 1
    while a1 > a0 and _msgidx_space(buf[a1 - 1]):
        a1 -= 1
    while b0 < b1 and _msgidx_space(buf[b0]):
        b0 += 1
    while b1 > b0 and _msgidx_space(buf[b1 - 1]):
        b1 -= 1
    return a1 - a0 == b1 - b0 and memcmp(buf + a0, buf + b0, a1 - a0) == 0


cdef inline bint _msgidx_space(unsigned char c) nogil:
    # bytes.strip() whitespace that can occur here (other controls are refused earlier)
    return c == b' ' or c == b'\t' or c == b'\r' or c == b'\n'


# boundscheck off: every index is inside [p, e) with p <= e <= len(buf), checked by the
# loop conditions; rows are written only while r < cap (cap = rows.shape[0]).
@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _msgidx_one(const unsigned char *buf, Py_ssize_t n, Py_ssize_t max_portions,
                     bint closing, int64_t[:, ::1] rows, Py_ssize_t r0, Py_ssize_t cap,
                     int64_t *info) nogil:
    """Index one message of length n at buf; rows from r0. info = [top_end, bot_start,
    bot_end, nrows, nsections, stripped top start, stripped top end]. Return 0 (fast) or
    1 (slow)."""
    cdef Py_ssize_t i, first_nl, last_nl, body_end, ls, le, lend, lim, close, r = r0
    cdef Py_ssize_t nsec, nport, sec_portions, sb0 = 0, sb1 = 0, k
    cdef bint expect_banner
    cdef Py_ssize_t a0, a1, b0, b1, bot_start, bot_end, top_end
    cdef const void *hit
    if n < 5:
        return 1
    # bytes: ASCII, no control byte but \t \n, \r only before \n. Eight bytes at a
    # time: a word with no byte < 0x20, = 0x7f or >= 0x80 needs no look (the test can
    # flag a word wrongly, never miss one); flagged words are checked byte by byte.
    i = 0
    while i + 32 <= n:   # four words per test: line ends are rare enough
        if (_msgidx_flag(buf + i) | _msgidx_flag(buf + i + 8) | _msgidx_flag(buf + i + 16)
                | _msgidx_flag(buf + i + 24)):
            for k in range(i, i + 32, 8):
                if _msgidx_flag(buf + k) and _msgidx_bad_bytes(buf, k, k + 8, n):
                    return 1
        i += 32
    if _msgidx_bad_bytes(buf, i, n, n):
        return 1
    hit = memchr(buf, b'\n', n)
    if hit == NULL:
        return 1
    first_nl = <const unsigned char *>hit - buf
    if first_nl <= 0 or buf[0] == b'(':
        return 1
    body_end = n - 1 if buf[n - 1] == b'\n' else n
    last_nl = body_end - 1
    while last_nl >= 0 and buf[last_nl] != b'\n':
        last_nl -= 1
    if last_nl <= first_nl:
        return 1
    # banners: top [0, top_end), bottom [last_nl+1, bot_end); stripped texts must be equal
    top_end = first_nl - (buf[first_nl - 1] == b'\r')
    bot_start = last_nl + 1
    bot_end = body_end
    if bot_end > bot_start and buf[bot_end - 1] == b'\r':
        bot_end -= 1
    a0 = 0
    a1 = top_end
    while a0 < a1 and _msgidx_space(buf[a0]):
        a0 += 1
    while a1 > a0 and _msgidx_space(buf[a1 - 1]):
        a1 -= 1
    b0 = bot_start
    b1 = bot_end
    while b0 < b1 and _msgidx_space(buf[b0]):
        b0 += 1
    while b1 > b0 and _msgidx_space(buf[b1 - 1]):
        b1 -= 1
    if a1 == a0 or a1 - a0 != b1 - b0 or memcmp(buf + a0, buf + b0, a1 - a0) != 0:
        return 1
    # the lines between the banners: portion lines, and tearline sections (a tearline,
    # the section's banner, its portion lines, optionally the section banner again)
    ls = first_nl + 1
    nsec = 0
    nport = 0
    sec_portions = 0
    expect_banner = False
    while ls <= last_nl:
        hit = memchr(buf + ls, b'\n', last_nl + 1 - ls)
        le = <const unsigned char *>hit - buf     # never NULL: buf[last_nl] is '\n'
        lend = le - (le > ls and buf[le - 1] == b'\r')
        if r >= cap:
            return 1
        if buf[ls] == b'(' and not expect_banner:
            if nport >= max_portions:
                return 1
            lim = ls + 1 + MSGIDX_MAX_MARK + 1
            if lim > le:
                lim = le
            close = ls + 1
            while close < lim and buf[close] != b')':
                close += 1
            if close >= lim:
                return 1
            rows[r, 0] = ls
            rows[r, 1] = close + 1
            rows[r, 2] = lend
            rows[r, 3] = 0
            r += 1
            nport += 1
            sec_portions += 1
        elif _msgidx_tearline(buf, ls, lend):
            if expect_banner or sec_portions == 0 or nsec >= 64:
                return 1
            rows[r, 0] = ls
            rows[r, 1] = lend
            rows[r, 2] = lend
            rows[r, 3] = 1
            r += 1
            nsec += 1
            sec_portions = 0
            expect_banner = True
        elif expect_banner:
            if buf[ls] == b'(' or _msgidx_blank(buf, ls, lend):
                return 1
            rows[r, 0] = ls
            rows[r, 1] = lend
            rows[r, 2] = lend
            rows[r, 3] = 2
            r += 1
            sb0 = ls
            sb1 = lend
            expect_banner = False
        elif (closing and nsec > 0 and sec_portions > 0
              and _msgidx_same_stripped(buf, ls, lend, sb0, sb1)
              and (le + 1 > last_nl or _msgidx_tearline(buf, le + 1, _msgidx_line_end(buf, le + 1, last_nl)))):
            rows[r, 0] = ls
            rows[r, 1] = lend
            rows[r, 2] = lend
            rows[r, 3] = 3
            r += 1
        else:
            return 1  # blank, unmarked or anything else: the Python parser explains
        ls = le + 1
    if expect_banner or sec_portions == 0:
        return 1
    info[0] = top_end
    info[1] = bot_start
    info[2] = bot_end
    info[3] = r - r0
    info[4] = nsec
    info[5] = a0
    info[6] = a1
    return 0


DEF MSGIDX_MISSING = -3


cdef inline uint64_t _msgidx_hash(const unsigned char *p, Py_ssize_t n) nogil:
    # FNV-1a, 64 bit: keys are short marking strings chosen by senders; a collision only
    # costs a longer probe (keys are compared byte for byte)
    cdef uint64_t h = 0xcbf29ce484222325ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ p[i]) * 0x100000001b3ULL
    return h | 1   # 0 marks an empty slot


cdef class MsgIdxTable:
    """Byte strings -> int, an open-addressing hash table usable without the GIL.

    Holds the distinct portion marks (or banners) seen by one owner, so that indexing a
    batch allocates nothing for the marks it already knows. Keys are kept alive here."""

    cdef Py_ssize_t cap, count
    cdef uint64_t *hv
    cdef int *val
    cdef const unsigned char **kp
    cdef Py_ssize_t *kl
    cdef list keep

    def __cinit__(self):
        self.cap = 0
        self.count = 0
        self.keep = []
        self._alloc(1024)

    def __dealloc__(self):
        free(self.hv)
        free(self.val)
        free(self.kp)
        free(self.kl)

    cdef int _alloc(self, Py_ssize_t cap) except -1:
        self.hv = <uint64_t *>calloc(cap, sizeof(uint64_t))
        self.val = <int *>calloc(cap, sizeof(int))
        self.kp = <const unsigned char **>calloc(cap, sizeof(void *))
        self.kl = <Py_ssize_t *>calloc(cap, sizeof(Py_ssize_t))
        if not (self.hv and self.val and self.kp and self.kl):
            raise MemoryError()
        self.cap = cap
        return 0

    def __len__(self):
        return self.count

    def clear(self):
        """Forget every key."""
        free(self.hv)
        free(self.val)
        free(self.kp)
        free(self.kl)
        self.hv = NULL
        self.count = 0
        self.keep = []
        self._alloc(1024)

    @cython.boundscheck(False)
    cdef int lookup(self, const unsigned char *p, Py_ssize_t n) noexcept nogil:
        """The value of key p[:n], or MSGIDX_MISSING."""
        cdef uint64_t h = _msgidx_hash(p, n)
        cdef Py_ssize_t mask = self.cap - 1
        cdef Py_ssize_t j = <Py_ssize_t>(h & <uint64_t>mask)
        while self.hv[j]:
            if self.hv[j] == h and self.kl[j] == n and memcmp(self.kp[j], p, n) == 0:
                return self.val[j]
            j = (j + 1) & mask
        return MSGIDX_MISSING

    cdef int insert(self, bytes key, int value) except -1:
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(key)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(key), j, mask, oldcap, k
        cdef uint64_t h
        cdef uint64_t *ohv
        cdef int *oval
        cdef const unsigned char **okp
        cdef Py_ssize_t *okl
        if self.lookup(p, n) != MSGIDX_MISSING:
            return 0
        if 2 * (self.count + 1) > self.cap:  # grow: re-insert every key
            ohv, oval, okp, okl, oldcap = self.hv, self.val, self.kp, self.kl, self.cap
            try:
                self._alloc(2 * oldcap)
            except MemoryError:
                self.hv, self.val, self.kp, self.kl, self.cap = ohv, oval, okp, okl, oldcap
                raise
            mask = self.cap - 1
            for k in range(oldcap):
                if ohv[k]:
                    j = <Py_ssize_t>(ohv[k] & <uint64_t>mask)
                    while self.hv[j]:
                        j = (j + 1) & mask
                    self.hv[j], self.val[j], self.kp[j], self.kl[j] = ohv[k], oval[k], okp[k], okl[k]
            free(ohv)
            free(oval)
            free(okp)
            free(okl)
        h = _msgidx_hash(p, n)
        mask = self.cap - 1
        j = <Py_ssize_t>(h & <uint64_t>mask)
        while self.hv[j]:
            j = (j + 1) & mask
        self.keep.append(key)
        self.hv[j], self.val[j], self.kp[j], self.kl[j] = h, value, p, n
        self.count += 1
        return 0

    def get(self, bytes key):
        """The value of ``key``, or None."""
        cdef int v = self.lookup(<const unsigned char *>PyBytes_AS_STRING(key),
                                 PyBytes_GET_SIZE(key))
        return None if v == MSGIDX_MISSING else v

    def set(self, bytes key, int value):
        """Add ``key`` (a key is set once: later values are ignored)."""
        self.insert(key, value)


@cython.boundscheck(False)
@cython.wraparound(False)
def msgidx_index(const unsigned char[::1] buf, const int64_t[::1] offsets,
                 Py_ssize_t max_portions, bint closing, MsgIdxTable marks, object on_mark,
                 MsgIdxTable banners, object on_banner):
    """Index a batch of messages (see the comment at the top of _message.pxi).

    ``closing``: a tearline section may end with its banner repeated (the first pass
    accepts it; the re-check, which never writes one, does not). Portion marks (the
    bytes inside the parentheses) are looked up in ``marks``, banners (stripped) in
    ``banners``; a key not there is passed to ``on_mark(raw)`` / ``on_banner(raw)``,
    which return its id (negative: not valid), and is added. Returns ``(status, info,
    rowstart, rows, ids, bids, masks)``: per message ``status`` (int8, 0 fast: simple
    shape, every mark and banner valid / 1 slow) and ``info`` (int64 [n, 7]: top banner
    end, bottom banner start and end, number of rows, number of tearline sections,
    stripped top banner start and end); ``rowstart`` (int64 [n+1]) indexes ``rows``
    (int64 [k, 4]: line start, mark end, line end (offsets within the message), kind: 0
    portion, 1 tearline, 2 section banner, 3 closing banner) and ``ids`` (int32 [k]: the
    mark id of a portion, the banner id of a section banner, -2 otherwise); ``bids``
    (int32 [n]) the top banner's id; ``masks`` a list with, per fast message, the bit set
    ``OR(1 << id)`` of its mark ids (a Python int, any size), else 0. The byte pass and
    the lookups of known keys run without the GIL."""
    cdef Py_ssize_t nmsg = offsets.shape[0] - 1
    cdef Py_ssize_t total = buf.shape[0]
    cdef Py_ssize_t i, j, r, cap, p, a, b, nmiss = 0
    cdef int v
    cdef uint64_t small
    if nmsg < 0:
        raise ValueError("offsets needs at least one entry")
    for i in range(nmsg):
        if offsets[i] < 0 or offsets[i] > offsets[i + 1] or offsets[i + 1] > total:
            raise ValueError("offsets must be increasing and inside the buffer")
    cap = 1 + (_msgidx_count_nl(buf) if total else 0)   # at most one row per line
    status_a = np.ones(nmsg, dtype=np.int8)
    info_a = np.zeros((nmsg, 7), dtype=np.int64)
    rowstart_a = np.zeros(nmsg + 1, dtype=np.int64)
    rows_a = np.empty((cap, 4), dtype=np.int64)
    bids_a = np.full(nmsg, -2, dtype=np.int32)
    small_a = np.zeros(nmsg, dtype=np.uint64)
    wide_a = np.zeros(nmsg, dtype=np.int8)
    cdef signed char[::1] status = status_a
    cdef int64_t[:, ::1] info = info_a
    cdef int64_t[::1] rowstart = rowstart_a
    cdef int64_t[:, ::1] rows = rows_a
    cdef int[::1] bids = bids_a
    cdef uint64_t[::1] smalls = small_a
    cdef signed char[::1] wide = wide_a
    cdef const unsigned char *base = &buf[0] if total else NULL
    r = 0
    with nogil:
        for i in range(nmsg):
            rowstart[i] = r
            if total and _msgidx_one(base + offsets[i], offsets[i + 1] - offsets[i],
                                     max_portions, closing, rows, r, cap,
                                     &info[i, 0]) == 0:
                status[i] = 0
                r += info[i, 3]
        rowstart[nmsg] = r
    ids_a = np.full(r, -2, dtype=np.int32)
    cdef int[::1] ids = ids_a
    # known keys without the GIL; misses are counted and resolved below
    with nogil:
        for i in range(nmsg):
            if status[i]:
                continue
            p = offsets[i]
            v = banners.lookup(base + p + info[i, 5], info[i, 6] - info[i, 5])
            bids[i] = v
            nmiss += v == MSGIDX_MISSING
            for j in range(rowstart[i], rowstart[i + 1]):
                if rows[j, 3] == 0:
                    v = marks.lookup(base + p + rows[j, 0] + 1, rows[j, 1] - rows[j, 0] - 2)
                elif rows[j, 3] == 2:
                    a = p + rows[j, 0]
                    b = p + rows[j, 2]
                    while a < b and _msgidx_space(base[a]):
                        a += 1
                    while b > a and _msgidx_space(base[b - 1]):
                        b -= 1
                    v = banners.lookup(base + a, b - a)
                else:
                    continue
                ids[j] = v
                nmiss += v == MSGIDX_MISSING
    if nmiss:
        for i in range(nmsg):
            if status[i]:
                continue
            p = offsets[i]
            if bids[i] == MSGIDX_MISSING:
                raw = <bytes>base[p + info[i, 5]:p + info[i, 6]]
                v = on_banner(raw)
                banners.insert(raw, v)
                bids[i] = v
            for j in range(rowstart[i], rowstart[i + 1]):
                if ids[j] != MSGIDX_MISSING:
                    continue
                if rows[j, 3] == 0:
                    raw = <bytes>base[p + rows[j, 0] + 1:p + rows[j, 1] - 1]
                    v = marks.lookup(<const unsigned char *>PyBytes_AS_STRING(raw), len(raw))
                    if v == MSGIDX_MISSING:
                        v = on_mark(raw)
                        marks.insert(raw, v)
                else:
                    raw = <bytes>base[p + rows[j, 0]:p + rows[j, 2]].strip()
                    v = banners.lookup(<const unsigned char *>PyBytes_AS_STRING(raw), len(raw))
                    if v == MSGIDX_MISSING:
                        v = on_banner(raw)
                        banners.insert(raw, v)
                ids[j] = v
    # validity and bit sets
    with nogil:
        for i in range(nmsg):
            if status[i]:
                continue
            if bids[i] < 0:
                status[i] = 1
                continue
            small = 0
            for j in range(rowstart[i], rowstart[i + 1]):
                v = ids[j]
                if rows[j, 3] == 0 or rows[j, 3] == 2:
                    if v < 0:
                        status[i] = 1
                        break
                    if rows[j, 3] == 0:
                        if v < 64:
                            small |= (<uint64_t>1) << v
                        else:
                            wide[i] = 1
            smalls[i] = small
    masks = [0] * nmsg
    for i in range(nmsg):
        if status[i]:
            continue
        if wide[i]:
            big = 0
            for j in range(rowstart[i], rowstart[i + 1]):
                if rows[j, 3] == 0:
                    big |= 1 << ids[j]
            masks[i] = big
        else:
            masks[i] = smalls[i]
    return status_a, info_a, rowstart_a, rows_a, ids_a, bids_a, masks


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _msgidx_count_nl(const unsigned char[::1] buf) nogil:
    cdef Py_ssize_t n = buf.shape[0], k = 0, i = 0
    cdef const unsigned char *base = &buf[0]
    cdef const void *hit
    while i < n:
        hit = memchr(base + i, b'\n', n - i)
        if hit == NULL:
            break
        i = (<const unsigned char *>hit - base) + 1
        k += 1
    return k


@cython.boundscheck(False)
@cython.wraparound(False)
def msgidx_real_matches(const int64_t[::1] sel, const signed char[::1] status,
                        const int64_t[:, ::1] info, const int64_t[::1] rowstart,
                        const int64_t[:, ::1] rows, const int[::1] mmsg,
                        const int64_t[::1] mstart, const int64_t[::1] mend):
    """Per indexed message, how many scan matches lie outside its banner lines and
    outside its portion marks (the matches a decision has to look at).

    ``mmsg`` (sorted), ``mstart``, ``mend`` are a batch scan's match rows, where message
    k of the scan is indexed message ``sel[k]`` (-1: not indexed, skipped). Returns one
    count per indexed message; slow or unselected messages get -1."""
    cdef Py_ssize_t nmsg = status.shape[0], nsel = sel.shape[0], nm = mmsg.shape[0]
    cdef Py_ssize_t k, m, i, lo, hi, mid
    cdef int64_t s, e
    out_a = np.full(nmsg, -1, dtype=np.int64)
    cdef int64_t[::1] out = out_a
    # the arrays must be one msgidx_index result: checked, as the loops below trust them
    if (info.shape[0] != nmsg or info.shape[1] < 3 or rowstart.shape[0] != nmsg + 1
            or rows.shape[1] < 3 or mstart.shape[0] != nm or mend.shape[0] != nm):
        raise ValueError("msgidx_real_matches: arrays of inconsistent shapes")
    for i in range(nmsg):
        if rowstart[i] < 0 or rowstart[i] > rowstart[i + 1] or rowstart[i + 1] > rows.shape[0]:
            raise ValueError("msgidx_real_matches: rowstart does not index rows")
    for k in range(nsel):
        if sel[k] >= nmsg:
            raise IndexError("sel holds a message index out of range")
    with nogil:
        for k in range(nsel):
            i = sel[k]
            if i >= 0 and status[i] == 0:
                out[i] = 0
        for m in range(nm):
            k = mmsg[m]
            if k < 0 or k >= nsel:
                continue
            i = sel[k]
            if i < 0 or status[i] != 0:
                continue
            s = mstart[m]
            e = mend[m]
            if (s >= 0 and e <= info[i, 0]) or (s >= info[i, 1] and e <= info[i, 2]):
                continue  # inside a banner line
            # the last portion row starting at or before s
            lo = rowstart[i]
            hi = rowstart[i + 1]
            while lo < hi:
                mid = (lo + hi) // 2
                if rows[mid, 0] <= s:
                    lo = mid + 1
                else:
                    hi = mid
            lo -= 1
            if lo >= rowstart[i] and s < rows[lo, 2] and e <= rows[lo, 1]:
                if rows[lo, 3] == 0 or rows[lo, 3] >= 2:
                    continue  # inside a portion mark, or a section banner line
            out[i] += 1
    return out_a
