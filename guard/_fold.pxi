# Folding non-ASCII bodies to their Latin skeleton (owned by the normalisation helper).
#
# The C twin of guard.normalize.fold_slow, which stays the executable reference (the
# property tests compare both on arbitrary bytes). What a character folds to is defined
# only by the Python function fold_char (NFKD, casefolding, look-alike tables ...); this
# file never re-implements it. It keeps a per-code-point cache of fold_char's UTF-8
# output instead, filled lazily: a body is decoded in C, and the few code points never
# seen before are listed and handed to fold_char with the GIL held; everything else runs
# without the GIL. After warm-up a body costs two linear passes in C (measure, emit)
# instead of Python work per character.
#
# Decoding follows CPython's strict UTF-8 decoder (no overlong forms, no encoded
# surrogates, nothing above U+10FFFF); where it fails, fold_slow decodes with
# surrogateescape, which turns every byte of an invalid sequence into U+DC80..U+DCFF.
# The bytes after the first of an invalid sequence are continuation bytes, which cannot
# start a valid character, so "escape the byte at i, go on at i + 1" is the same thing
# byte for byte; the escapes go through fold_char like any other code point.
#
# Cache layout: one page of 256 entries per 256 code points, allocated on first use
# (4,352 pages at most, ~9 MB if a body touched them all). An entry is 0 while unknown,
# else (length + 1) in its low byte and, for skeletons of at most 7 bytes (nearly all),
# the bytes themselves above it; longer ones (at most 33 bytes: U+FDFA) live in a
# per-page array of malloc'd strings. Nothing is freed before the Folder itself, and an
# entry is published (release store) only after its bytes, so threads folding without
# the GIL read a complete skeleton or a 0, never a torn one.

from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
cimport numpy as _fo_cnp

_fo_cnp.import_array()

cdef extern from *:
    """
    static inline uint64_t fo_load64(const uint64_t* p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void fo_store64(uint64_t* p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline void* fo_loadp(void* const* p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void fo_storep(void** p, void* v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    /* Length of the run of ASCII bytes at the start of d[0:n], 8 bytes at a time. */
    static inline Py_ssize_t fo_ascii_run(const uint8_t* d, Py_ssize_t n) {
        Py_ssize_t i = 0;
        uint64_t w;
        while (i + 8 <= n) {
            memcpy(&w, d + i, 8);
            w &= 0x8080808080808080ULL;
            if (w)
                return i + (__builtin_ctzll(w) >> 3);
            i += 8;
        }
        while (i < n && d[i] < 0x80)
            i++;
        return i;
    }
    /* Identity offsets of an ASCII run (restrict: lets the compiler vectorise). */
    static inline void fo_iota(int32_t* restrict st, int32_t* restrict en, int32_t base,
                               Py_ssize_t n) {
        for (Py_ssize_t j = 0; j < n; j++) {
            st[j] = base + (int32_t)j;
            en[j] = base + (int32_t)j + 1;
        }
    }
    """
    uint64_t fo_load64(const uint64_t* p) noexcept nogil
    void fo_store64(uint64_t* p, uint64_t v) noexcept nogil
    void* fo_loadp(void* const* p) noexcept nogil
    void fo_storep(void** p, void* v) noexcept nogil
    Py_ssize_t fo_ascii_run(const uint8_t* d, Py_ssize_t n) noexcept nogil
    void fo_iota(int32_t* st, int32_t* en, int32_t base, Py_ssize_t n) noexcept nogil

cdef enum:
    FO_PAGES = 0x1100          # 0x110000 code points, 256 per page
    FO_INLINE = 7              # skeleton bytes stored in the entry itself
    FO_MAX_LEN = 254           # (length + 1) must fit the entry's low byte
    FO_BATCH = 256             # distinct unknown code points listed per measuring pass
    FO_SET = 512               # open-addressing set that keeps that list distinct

ctypedef struct _FoPage:
    uint64_t e[256]
    uint8_t** longp            # FO_INLINE < length: 256 pointers, allocated on first use


cdef inline Py_ssize_t _fo_decode(const uint8_t* d, Py_ssize_t i, Py_ssize_t n,
                                  uint32_t* cp) noexcept nogil:
    """Decode the character at d[i] (d[i] >= 0x80): its length in bytes; an undecodable
    byte gives its surrogateescape code point 0xDC00 + byte and length 1."""
    cdef uint32_t b0 = d[i], b1, b2, b3, lo = 0x80, hi = 0xBF
    if 0xC2 <= b0 <= 0xDF:
        if i + 1 < n:
            b1 = d[i + 1]
            if (b1 & 0xC0) == 0x80:
                cp[0] = ((b0 & 0x1F) << 6) | (b1 & 0x3F)
                return 2
    elif 0xE0 <= b0 <= 0xEF:
        if i + 2 < n:
            if b0 == 0xE0:
                lo = 0xA0             # overlong below U+0800
            elif b0 == 0xED:
                hi = 0x9F             # UTF-16 surrogates
            b1 = d[i + 1]
            b2 = d[i + 2]
            if lo <= b1 <= hi and (b2 & 0xC0) == 0x80:
                cp[0] = ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F)
                return 3
    elif 0xF0 <= b0 <= 0xF4:
        if i + 3 < n:
            if b0 == 0xF0:
                lo = 0x90             # overlong below U+10000
            elif b0 == 0xF4:
                hi = 0x8F             # above U+10FFFF
            b1 = d[i + 1]
            b2 = d[i + 2]
            b3 = d[i + 3]
            if lo <= b1 <= hi and (b2 & 0xC0) == 0x80 and (b3 & 0xC0) == 0x80:
                cp[0] = (((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((b2 & 0x3F) << 6)
                         | (b3 & 0x3F))
                return 4
    cp[0] = 0xDC00 + b0
    return 1


cdef inline uint64_t _fo_entry(_FoPage** pages, uint32_t cp) noexcept nogil:
    cdef _FoPage* pg = <_FoPage*>fo_loadp(<void* const*>&pages[cp >> 8])
    if pg == NULL:
        return 0
    return fo_load64(&pg.e[cp & 255])


cdef Py_ssize_t _fo_measure(_FoPage** pages, const uint8_t* d, Py_ssize_t n,
                            Py_ssize_t* pos, Py_ssize_t* outlen, bint* invalid,
                            uint32_t* unknown) noexcept nogil:
    """Add the folded length of d[pos:] to outlen. Stops at the first code point whose
    skeleton is not cached, leaving pos there, after listing it and up to FO_BATCH - 1
    further distinct unknown code points; returns how many were listed (0: done)."""
    cdef Py_ssize_t i = pos[0], l, k = 0, out = outlen[0]
    cdef Py_ssize_t first = -1
    cdef uint32_t cp, h
    cdef uint64_t ent
    cdef uint32_t seen[FO_SET]
    cdef bint bad = invalid[0]
    while i < n:
        if d[i] < 0x80:
            l = fo_ascii_run(d + i, n - i)
            if first < 0:
                out += l
            i += l
            continue
        l = _fo_decode(d, i, n, &cp)
        if l == 1:
            bad = True
        ent = _fo_entry(pages, cp)
        if ent != 0:
            if first < 0:
                out += <Py_ssize_t>(ent & 0xFF) - 1
        else:
            if first < 0:
                first = i
                for h in range(FO_SET):
                    seen[h] = 0xFFFFFFFFu
            h = (cp * 2654435761u) >> 23          # 9 bits: FO_SET slots
            while seen[h] != 0xFFFFFFFFu and seen[h] != cp:
                h = (h + 1) & (FO_SET - 1)
            if seen[h] != cp:
                if k == FO_BATCH:
                    break                          # listed enough: resume at first
                seen[h] = cp
                unknown[k] = cp
                k += 1
        i += l
    invalid[0] = bad
    outlen[0] = out
    pos[0] = first if first >= 0 else n
    return k


cdef int _fo_emit(_FoPage** pages, const uint8_t* d, Py_ssize_t n, uint8_t* out,
                  Py_ssize_t cap, int32_t* st, int32_t* en) noexcept nogil:
    """Write the folded text and its offset maps (all skeletons are cached): 0, or -1
    when the cache or the measured length disagrees (never expected: fail loudly)."""
    cdef Py_ssize_t i = 0, o = 0, l, j, ln
    cdef uint32_t cp
    cdef uint64_t ent
    cdef _FoPage* pg
    cdef const uint8_t* src
    while i < n:
        if d[i] < 0x80:
            l = fo_ascii_run(d + i, n - i)
            if o + l > cap:
                return -1
            memcpy(out + o, d + i, l)
            fo_iota(st + o, en + o, <int32_t>i, l)
            o += l
            i += l
            continue
        l = _fo_decode(d, i, n, &cp)
        pg = <_FoPage*>fo_loadp(<void* const*>&pages[cp >> 8])
        if pg == NULL:
            return -1
        ent = fo_load64(&pg.e[cp & 255])
        if ent == 0:
            return -1
        ln = <Py_ssize_t>(ent & 0xFF) - 1
        if o + ln > cap:
            return -1
        if ln <= FO_INLINE:
            ent >>= 8
            for j in range(ln):
                out[o + j] = <uint8_t>(ent & 0xFF)
                ent >>= 8
        else:
            src = pg.longp[cp & 255]
            memcpy(out + o, src, ln)
        for j in range(ln):
            st[o + j] = <int32_t>i
            en[o + j] = <int32_t>(i + l)
        o += ln
        i += l
    return 0 if o == cap else -1


cdef class Folder:
    """Folds bodies with ``fold_char`` (one character -> its skeleton, a str), caching the
    skeleton of every code point it has seen; ``fold`` equals guard.normalize.fold_slow."""

    cdef _FoPage** pages
    cdef object fold_char

    def __cinit__(self, fold_char):
        self.pages = <_FoPage**>calloc(FO_PAGES, sizeof(_FoPage*))
        if self.pages == NULL:
            raise MemoryError("fold: cannot allocate the code point cache")
        self.fold_char = fold_char

    def __dealloc__(self):
        cdef Py_ssize_t p, j
        cdef _FoPage* pg
        if self.pages == NULL:
            return
        for p in range(FO_PAGES):
            pg = self.pages[p]
            if pg == NULL:
                continue
            if pg.longp != NULL:
                for j in range(256):
                    free(pg.longp[j])
                free(pg.longp)
            free(pg)
        free(self.pages)

    cdef int _learn(self, const uint32_t* cps, Py_ssize_t k) except -1:
        """Cache the skeletons of code points cps[:k] (GIL held: one writer at a time)."""
        cdef Py_ssize_t j, ln, b
        cdef uint32_t cp
        cdef uint64_t ent
        cdef _FoPage* pg
        cdef uint8_t** longp
        cdef uint8_t* mem
        cdef const uint8_t* sp
        for j in range(k):
            cp = cps[j]
            if _fo_entry(self.pages, cp) != 0:
                continue                   # learnt meanwhile (another thread)
            skel = self.fold_char(chr(cp))
            if not isinstance(skel, str):
                raise TypeError(f"fold_char returned {type(skel).__name__}, not str")
            raw = (<str>skel).encode("utf-8")
            if _fo_entry(self.pages, cp) != 0:
                continue                   # another thread learnt it while fold_char ran
            ln = len(raw)
            if ln > FO_MAX_LEN:
                raise ValueError(f"fold: skeleton of U+{cp:04X} longer than {FO_MAX_LEN} bytes")
            sp = <const uint8_t*><const char*>raw
            pg = self.pages[cp >> 8]
            if pg == NULL:
                pg = <_FoPage*>calloc(1, sizeof(_FoPage))
                if pg == NULL:
                    raise MemoryError("fold: cannot allocate a cache page")
                fo_storep(<void**>&self.pages[cp >> 8], pg)
            ent = <uint64_t>(ln + 1)
            if ln <= FO_INLINE:
                for b in range(ln):
                    ent |= (<uint64_t>sp[b]) << (8 * (b + 1))
            else:
                if pg.longp == NULL:
                    longp = <uint8_t**>calloc(256, sizeof(uint8_t*))
                    if longp == NULL:
                        raise MemoryError("fold: cannot allocate a cache page")
                    fo_storep(<void**>&pg.longp, longp)
                mem = <uint8_t*>malloc(ln)
                if mem == NULL:
                    raise MemoryError("fold: cannot allocate a skeleton")
                memcpy(mem, sp, ln)
                pg.longp[cp & 255] = mem
            fo_store64(&pg.e[cp & 255], ent)   # last: publishes the bytes above
        return 0

    def fold(self, const uint8_t[::1] data):
        """(text, start, end, invalid_utf8) of a body: the folded bytes, int32 numpy
        arrays of the original byte span of every folded byte, and whether the body was
        not valid UTF-8 (every undecodable byte then folds like U+DC80 + byte)."""
        cdef Py_ssize_t n = data.shape[0], pos = 0, outlen = 0, k
        cdef const uint8_t* d
        cdef uint8_t zero = 0
        cdef bint invalid = False
        cdef uint32_t unknown[FO_BATCH]
        cdef int rc
        cdef _fo_cnp.npy_intp dim[1]
        cdef uint8_t* op
        cdef int32_t* sp
        cdef int32_t* ep
        if n > 0x7FFFFFFF:
            raise OverflowError("fold: body too large for int32 offsets")
        d = &data[0] if n else &zero
        while True:
            with nogil:
                k = _fo_measure(self.pages, d, n, &pos, &outlen, &invalid, unknown)
            if k == 0:
                break
            self._learn(unknown, k)
        if outlen > 0x7FFFFFFF:
            raise OverflowError("fold: folded body too large for int32 offsets")
        dim[0] = outlen
        text = PyBytes_FromStringAndSize(NULL, outlen)
        start = _fo_cnp.PyArray_EMPTY(1, dim, _fo_cnp.NPY_INT32, 0)
        end = _fo_cnp.PyArray_EMPTY(1, dim, _fo_cnp.NPY_INT32, 0)
        op = <uint8_t*>PyBytes_AS_STRING(text)
        sp = <int32_t*>_fo_cnp.PyArray_DATA(start)
        ep = <int32_t*>_fo_cnp.PyArray_DATA(end)
        with nogil:
            rc = _fo_emit(self.pages, d, n, op, outlen, sp, ep)
        if rc < 0:
            raise RuntimeError("fold: the code point cache changed under the fold")
        return text, start, end, invalid

    def cached(self):
        """How many code points have a cached skeleton (for tests and diagnostics)."""
        cdef Py_ssize_t p, j, c = 0
        for p in range(FO_PAGES):
            if self.pages[p] != NULL:
                for j in range(256):
                    c += self.pages[p].e[j] != 0
        return c
