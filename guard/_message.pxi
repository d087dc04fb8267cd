# Batch message indexing for the decision pipeline (guard/decide.py, guard/recheck.py).
#
# One nogil pass over a batch of messages (bytes objects, read in place) finds the
# messages that have the common, simple shape of a plain-text report: a banner line, lines that each start with a portion mark "(...)" at
# column 0, optional tearline sections (a tearline, the section's banner, its portion
# lines, optionally the section banner again), then the first banner again as the last
# line; only UTF-8 text (ASCII or well formed, without the characters parse_message
# refuses), no control byte, no carriage return outside a CRLF line end. For those it
# records the banner spans and one row per line (byte offsets). A few other shapes whose
# parse stops at findings the index can state exactly (invalid or unclosed marks, a last
# line that is not the banner, no banner, too few lines: statuses 2 to 5, see
# msgidx_index) are marked as such; everything else (blank or unmarked lines, JSON, bad
# bytes, invalid banners...) is marked SLOW: the Python parsers then decide it and
# explain every problem. The rules are the
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
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport PyObject, Py_INCREF
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memchr, memcmp, memcpy
from libc.stdint cimport int16_t, int64_t, uint64_t

cnp.import_array()

DEF MSGIDX_MAX_MARK = 512      # as guard/messages.py _MAX_MARK
MSGIDX_FAST = 0
MSGIDX_SLOW = 1
MSGIDX_BAD_MARKS = 2   # the simple shape, some marks not valid, each section keeps one
MSGIDX_BANNER_MISMATCH = 3  # parse_text's "banner-mismatch" (the last line differs)
MSGIDX_NO_BANNER = 4        # parse_text's "banner-missing": the first line is a portion
MSGIDX_FEW_LINES = 5        # parse_text's "banner-missing": fewer than three lines of text
DEF MSGIDX_BAD = 2
DEF MSGIDX_MISMATCH = 3
DEF MSGIDX_NOBANNER = 4
DEF MSGIDX_FEWLINES = 5
DEF MSGIDX_UNCLOSED = 4     # row kind: a portion line whose mark is not closed
# parse_text refuses a message of more lines than max_portions + this (message-limit)
DEF MSGIDX_LINE_SLACK = 4 * 64 + 2  # as guard/messages.py _LINE_SLACK


cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* Length of the UTF-8 sequence at b[k] (lead byte >= 0x80) when it is well formed
       as Python's strict decoder reads it (no overlong form, no surrogate, at most
       U+10FFFF) and is not a character parse_message refuses or a C1 control; else 0.
       Refused (guard/messages.py _DECEPTIVE): U+0085 and every C1 control (C2 80..9F),
       U+2028..U+202E (E2 80 A8..AE), U+2066..U+2069 (E2 81 A6..A9), U+FEFF (EF BB BF). */
    static Py_ssize_t msgidx_c_utf8(const unsigned char *b, Py_ssize_t k, Py_ssize_t n) {
        unsigned char c = b[k], c1, lo = 0x80, hi = 0xBF;
        if (c < 0xC2 || c > 0xF4) return 0;          /* continuation, overlong, > U+10FFFF */
        if (k + 1 >= n) return 0;
        c1 = b[k + 1];
        if (c < 0xE0) {
            /* C2 80..9F: C1 controls (NEL among them) */
            return (c1 >= (c == 0xC2 ? 0xA0 : 0x80) && c1 <= 0xBF) ? 2 : 0;
        }
        if (c == 0xE0) lo = 0xA0;                     /* overlong */
        else if (c == 0xED) hi = 0x9F;                /* surrogates */
        else if (c == 0xF0) lo = 0x90;                /* overlong */
        else if (c == 0xF4) hi = 0x8F;                /* > U+10FFFF */
        if (c1 < lo || c1 > hi) return 0;
        if (c < 0xF0) {
            unsigned char c2;
            if (k + 2 >= n) return 0;
            c2 = b[k + 2];
            if (c2 < 0x80 || c2 > 0xBF) return 0;
            if (c == 0xE2 && ((c1 == 0x80 && c2 >= 0xA8 && c2 <= 0xAE)
                              || (c1 == 0x81 && c2 >= 0xA6 && c2 <= 0xA9))) return 0;
            if (c == 0xEF && c1 == 0xBB && c2 == 0xBF) return 0;
            return 3;
        }
        if (k + 3 >= n) return 0;
        if (b[k + 2] < 0x80 || b[k + 2] > 0xBF || b[k + 3] < 0x80 || b[k + 3] > 0xBF) return 0;
        return 4;
    }

    /* 1 when b[:n] holds a byte no simple report carries: < 0x20 other than tab, LF
       and a CR right before LF; 0x7f; bytes >= 0x80 that are not part of a well-formed
       UTF-8 sequence msgidx_c_utf8 accepts. Sixteen bytes per step with SSE2 (signed
       compare: bytes >= 0x80 are negative, so "< 0x20" flags them too; each flagged
       byte is then looked at alone, "done" skipping a sequence's continuation bytes). */
    static int msgidx_c_bad(const unsigned char *b, Py_ssize_t n) {
        Py_ssize_t i = 0, done = 0, L;
    #if defined(__SSE2__)
        const __m128i c20 = _mm_set1_epi8(0x20), c7f = _mm_set1_epi8(0x7f);
        const __m128i nl = _mm_set1_epi8(10), tab = _mm_set1_epi8(9);
        for (; i + 16 <= n; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(b + i));
            __m128i ok = _mm_or_si128(_mm_cmpeq_epi8(v, nl), _mm_cmpeq_epi8(v, tab));
            __m128i bad = _mm_or_si128(_mm_andnot_si128(ok, _mm_cmplt_epi8(v, c20)),
                                       _mm_cmpeq_epi8(v, c7f));
            unsigned int m = (unsigned int)_mm_movemask_epi8(bad);
            while (m) {
                Py_ssize_t k = i + __builtin_ctz(m);
                m &= m - 1;
                if (k < done) continue;               /* inside an accepted sequence */
                if (b[k] == 13 && k + 1 < n && b[k + 1] == 10) continue;
                if (b[k] < 0x80) return 1;
                L = msgidx_c_utf8(b, k, n);
                if (!L) return 1;
                done = k + L;
            }
        }
    #endif
        if (i < done) i = done;
        for (; i < n; i++) {
            unsigned char c = b[i];
            if (c < 0x20) {
                if (c == 10 || c == 9) continue;
                if (c == 13 && i + 1 < n && b[i + 1] == 10) continue;
                return 1;
            }
            if (c == 0x7f) return 1;
            if (c > 0x7f) {
                L = msgidx_c_utf8(b, i, n);
                if (!L) return 1;
                i += L - 1;
            }
        }
        return 0;
    }

    /* Number of '\n' bytes in b[:n]: sixteen bytes per step with SSE2, the compare
       results summed per byte lane for up to 255 steps, then per half (psadbw). One
       memchr call per line cost more than the whole pass (~25 lines per 4 KB). */
    static Py_ssize_t msgidx_c_count_nl(const unsigned char *b, Py_ssize_t n) {
        Py_ssize_t i = 0, k = 0;
    #if defined(__SSE2__)
        const __m128i nl = _mm_set1_epi8(10), zero = _mm_setzero_si128();
        while (i + 16 <= n) {
            __m128i acc = zero, s;
            int steps = 0;
            for (; steps < 255 && i + 16 <= n; steps++, i += 16)
                acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(
                    _mm_loadu_si128((const __m128i *)(b + i)), nl));
            s = _mm_sad_epu8(acc, zero);
            k += _mm_cvtsi128_si32(s) + _mm_cvtsi128_si32(_mm_srli_si128(s, 8));
        }
    #endif
        for (; i < n; i++)
            k += b[i] == 10;
        return k;
    }

    /* Offsets of newline bytes, appended message after message (a growable array). */
    typedef struct { Py_ssize_t *a; Py_ssize_t n, cap; } msgidx_nls;

    static int msgidx_nls_reserve(msgidx_nls *v, Py_ssize_t extra) {
        Py_ssize_t nc;
        Py_ssize_t *na;
        if (v->n + extra <= v->cap) return 1;
        nc = 2 * v->cap + extra + 1024;
        na = (Py_ssize_t *)realloc(v->a, (size_t)nc * sizeof(Py_ssize_t));
        if (na == NULL) return 0;
        v->a = na;
        v->cap = nc;
        return 1;
    }

    /* The index's first look at a message: 1 when msgidx_c_bad refuses its bytes (or
       memory ran out: the parser then decides), else 0 with the offsets of its newline
       bytes appended to *v (for the row table's size and the line walk; a refused
       message appends none). Portable: the byte pass, then one memchr per line. */
    static int msgidx_c_pre(const unsigned char *b, Py_ssize_t n, msgidx_nls *v) {
        const unsigned char *p = b, *e = b + n, *hit;
        if (msgidx_c_bad(b, n)) return 1;
        if (!msgidx_nls_reserve(v, msgidx_c_count_nl(b, n))) return 1;
        while (p < e && (hit = (const unsigned char *)memchr(p, 10, (size_t)(e - p)))) {
            v->a[v->n++] = hit - b;
            p = hit + 1;
        }
        return 0;
    }

    #if defined(__x86_64__) && defined(__GNUC__)
    #include <immintrin.h>
    /* One 64-byte block of msgidx_c_pre512 (x: the bytes, valid: which are in the
       message). Flagged: the bytes msgidx_c_bad looks at (below 0x20 but tab and LF,
       0x7f, 0x80 and above), found with one compare as x + 1 <= 0x20 signed (the add
       wraps 0x7f to -128 and 0xff to 0); rare, each is then looked at alone. The
       newlines' offsets are appended without a branch per newline (two are written
       whatever the count, the rest in a loop only for a block holding more): a branch
       per newline and per block mispredicted, and cost more than the whole test. */
    #define MSGIDX_PRE_BLOCK(x, valid)                                                 \
        do {                                                                           \
            __mmask64 mlf = _mm512_mask_cmpeq_epi8_mask(valid, x, lf);                 \
            __mmask64 m = _mm512_mask_cmple_epi8_mask(valid, _mm512_add_epi8(x, one),  \
                                                      c20)                             \
                          & ~(mlf | _mm512_cmpeq_epi8_mask(x, tab));                   \
            Py_ssize_t *out, c, q;                                                     \
            while (m) {                                                                \
                j = i + __builtin_ctzll(m);                                            \
                m &= m - 1;                                                            \
                if (j < done) continue;           /* inside an accepted sequence */    \
                if (b[j] == 13 && j + 1 < n && b[j + 1] == 10) continue;               \
                if (b[j] < 0x80) goto refused;                                         \
                L = msgidx_c_utf8(b, j, n);                                            \
                if (!L) goto refused;                                                  \
                done = j + L;                                                          \
            }                                                                          \
            if (vn + 64 > cap) {                                                       \
                v->n = vn;                                                             \
                if (!msgidx_nls_reserve(v, 64)) goto refused;                          \
                cap = v->cap;                                                          \
            }                                                                          \
            out = v->a + vn;                                                           \
            c = (Py_ssize_t)_mm_popcnt_u64(mlf);                                       \
            out[0] = i + (Py_ssize_t)_tzcnt_u64(mlf);   /* i + 64 when none */         \
            mlf = _blsr_u64(mlf);                                                      \
            out[1] = i + (Py_ssize_t)_tzcnt_u64(mlf);                                  \
            if (c > 2) {                                                               \
                q = 2;                                                                 \
                mlf = _blsr_u64(mlf);                                                  \
                do {                                                                   \
                    out[q++] = i + (Py_ssize_t)_tzcnt_u64(mlf);                        \
                    mlf = _blsr_u64(mlf);                                              \
                } while (mlf);                                                         \
            }                                                                          \
            vn += c;                                                                   \
        } while (0)

    /* msgidx_c_pre in one AVX-512BW pass, 64 bytes per step (the tail by a masked load,
       which never touches the bytes past n): the byte test of msgidx_c_bad on mask
       registers, each flagged byte then looked at alone as there, and the newlines'
       offsets taken from the same compare's mask (the count kept in a register: the
       array has room for 64 more before each block). Only called when the scanner's
       AVX-512 path is on (scan_simd(): the CPU has it and it is not forced off); tests
       compare both. */
    __attribute__((target("avx512f,avx512bw,popcnt,bmi")))
    static int msgidx_c_pre512(const unsigned char *b, Py_ssize_t n, msgidx_nls *v) {
        Py_ssize_t i, j, done = 0, L, n0 = v->n, vn = v->n, cap = v->cap;
        const __m512i c20 = _mm512_set1_epi8(0x20), one = _mm512_set1_epi8(1);
        const __m512i lf = _mm512_set1_epi8(10), tab = _mm512_set1_epi8(9);
        const __mmask64 all = ~(__mmask64)0;
        for (i = 0; i + 64 <= n; i += 64) {
            __m512i x = _mm512_loadu_si512((const void *)(b + i));
            MSGIDX_PRE_BLOCK(x, all);
        }
        if (i < n) {
            __mmask64 valid = ((__mmask64)1 << (n - i)) - 1;
            __m512i x = _mm512_maskz_loadu_epi8(valid, (const void *)(b + i));
            MSGIDX_PRE_BLOCK(x, valid);
        }
        v->n = vn;
        return 0;
    refused:
        v->n = n0;
        return 1;
    }
    #else
    static int msgidx_c_pre512(const unsigned char *b, Py_ssize_t n, msgidx_nls *v) {
        return msgidx_c_pre(b, n, v);
    }
    #endif
    """
    ctypedef struct msgidx_nls:
        Py_ssize_t *a
        Py_ssize_t n
        Py_ssize_t cap
    int msgidx_c_bad(const unsigned char *b, Py_ssize_t n) noexcept nogil
    Py_ssize_t msgidx_c_count_nl(const unsigned char *b, Py_ssize_t n) noexcept nogil
    int msgidx_c_pre(const unsigned char *b, Py_ssize_t n, msgidx_nls *v) noexcept nogil
    int msgidx_c_pre512(const unsigned char *b, Py_ssize_t n, msgidx_nls *v) noexcept nogil


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


cdef bint _msgidx_some_text(const unsigned char *buf, Py_ssize_t a, Py_ssize_t b) nogil:
    """buf[a:b] holds a byte that is not blank (``bytes.strip`` leaves something)."""
    while a < b:
        if not _msgidx_space(buf[a]):
            return True
        a += 1
    return False


cdef Py_ssize_t _msgidx_text_lines(const unsigned char *buf, Py_ssize_t n, Py_ssize_t ls,
                                   Py_ssize_t upto) noexcept nogil:
    """How many of the lines from offset ls hold text (are not blank), counted up to
    ``upto`` (rare paths only: one memchr per line)."""
    cdef Py_ssize_t le, count = 0
    cdef const void *hit
    while ls < n and count < upto:
        hit = memchr(buf + ls, b'\n', n - ls)
        le = n if hit == NULL else <const unsigned char *>hit - buf
        count += _msgidx_some_text(buf, ls, le)
        ls = le + 1
    return count


cdef int _msgidx_few_lines(const unsigned char *buf, Py_ssize_t n, Py_ssize_t nl,
                           Py_ssize_t max_portions) nogil:
    """MSGIDX_FEWLINES when parse_message's first finding on these (accepted) bytes is
    parse_text's that a report needs a banner, a portion and the banner again: some text
    not led by '{', '<' or '[' (JSON, XML, an array), not too many lines, fewer than three
    lines that are not blank; else 1."""
    cdef Py_ssize_t a = 0
    while a < n and _msgidx_space(buf[a]):
        a += 1
    if a == n or buf[a] == b'{' or buf[a] == b'<' or buf[a] == b'[':
        return 1
    if nl + 1 > max_portions + MSGIDX_LINE_SLACK:
        return 1
    return MSGIDX_FEWLINES if _msgidx_text_lines(buf, n, 0, 3) < 3 else 1


cdef int _msgidx_no_banner(const unsigned char *buf, Py_ssize_t n, Py_ssize_t nl,
                           Py_ssize_t first_nl, Py_ssize_t max_portions, int64_t *info) nogil:
    """buf starts with '(' (its first line a portion mark): MSGIDX_NOBANNER when
    parse_text's first finding is that its first line is not a banner (not too many lines
    and at least three that are not blank: the first, one between, the last), info[0] =
    end of the first line (before '\r\n'); else 1."""
    if nl + 1 > max_portions + MSGIDX_LINE_SLACK:
        return 1
    if 1 + _msgidx_text_lines(buf, n, first_nl + 1, 2) < 3:
        return 1
    info[0] = first_nl - (buf[first_nl - 1] == b'\r')
    info[3] = 0
    info[4] = 0
    return MSGIDX_NOBANNER


# boundscheck off: every index is inside [p, e) with p <= e <= len(buf), checked by the
# loop conditions; rows are written only while r < cap (cap = rows.shape[0]).
@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _msgidx_one(const unsigned char *buf, Py_ssize_t n, const Py_ssize_t *nlp,
                     Py_ssize_t nl, Py_ssize_t max_portions, bint closing,
                     int64_t[:, ::1] rows, Py_ssize_t r0, Py_ssize_t cap,
                     int64_t *info) nogil:
    """Index one message of length n at buf (nl newlines, at the offsets nlp: the lines
    are walked on them); rows from r0. info = [top_end,
    bot_start, bot_end, nrows, nsections, stripped top start, stripped top end]. Return 0
    (fast), 1 (slow), or for a message parse_text refuses at its banners, MSGIDX_MISMATCH
    (the last line is not the first again; info[1:3] its span, info[5:7] the stripped
    first line's, whose validity the caller checks) or MSGIDX_NOBANNER
    (``_msgidx_no_banner``)."""
    cdef Py_ssize_t i, first_nl, last_nl, body_end, ls, le, lend, lim, close, r = r0
    cdef Py_ssize_t nsec, nport, sec_portions, sb0 = 0, sb1 = 0, k, t
    cdef bint expect_banner
    cdef Py_ssize_t a0, a1, b0, b1, bot_start, bot_end, top_end
    cdef const void *hit
    if n < 5:
        return 1
    # bytes (checked by the caller, msgidx_c_pre): well-formed UTF-8 without refused
    # characters, no control byte but \t \n, \r only before \n. The shape's bytes ('(',
    # ')', '-', blanks, line ends) are ASCII, never part of a multi-byte character:
    # offsets stay byte offsets
    if nl == 0:
        return 1
    first_nl = nlp[0]
    if first_nl <= 0:
        return 1
    if buf[0] == b'(':
        return _msgidx_no_banner(buf, n, nl, first_nl, max_portions, info)
    # the last '\n' before the body's end (a final '\n' ends the last line)
    if buf[n - 1] == b'\n':
        body_end = n - 1
        last_nl = nlp[nl - 2] if nl >= 2 else -1
    else:
        body_end = n
        last_nl = nlp[nl - 1]
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
        # parse_text's "banner-mismatch" when the first and last lines are its banners
        # (neither blank; the first not blank-led, nor the start of JSON, XML or an
        # array), some line between is not blank and the message has not too many lines
        if (a1 > a0 and b1 > b0 and a0 == 0 and buf[0] != b'{' and buf[0] != b'<'
                and buf[0] != b'[' and nl + 1 <= max_portions + MSGIDX_LINE_SLACK
                and _msgidx_some_text(buf, first_nl + 1, last_nl)):
            info[0] = top_end
            info[1] = bot_start
            info[2] = bot_end
            info[3] = 0
            info[4] = 0
            info[5] = a0
            info[6] = a1
            return MSGIDX_MISMATCH
        return 1
    # the lines between the banners: portion lines, and tearline sections (a tearline,
    # the section's banner, its portion lines, optionally the section banner again)
    ls = first_nl + 1
    nsec = 0
    nport = 0
    sec_portions = 0
    expect_banner = False
    t = 1   # nlp[t]: the '\n' ending the line at ls (last_nl is one of them)
    while ls <= last_nl:
        le = nlp[t]
        t += 1
        lend = le - (le > ls and buf[le - 1] == b'\r')
        if r >= cap:
            return 1
        if buf[ls] == b'(' and not expect_banner:
            if nport >= max_portions:
                return 1
            lim = ls + 1 + MSGIDX_MAX_MARK + 1
            if lim > le:
                lim = le
            # the first ')' (glibc's vectorised memchr: most marks are ~20 bytes long)
            hit = memchr(buf + ls + 1, b')', lim - ls - 1) if lim > ls + 1 else NULL
            rows[r, 0] = ls
            rows[r, 2] = lend
            if hit == NULL:   # not closed: the parser's "portion-invalid" for the line
                rows[r, 1] = lend
                rows[r, 3] = MSGIDX_UNCLOSED
            else:
                close = <const unsigned char *>hit - buf
                rows[r, 1] = close + 1
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
    # eight bytes per multiply (FNV-1a took one per byte, the index's main cost after
    # the byte pass): keys are short marking strings chosen by senders; a collision
    # only costs a longer probe (keys are compared byte for byte)
    cdef uint64_t h = 0xcbf29ce484222325ULL ^ (<uint64_t>n * 0x9E3779B97F4A7C15ULL)
    cdef uint64_t w
    while n >= 8:
        memcpy(&w, p, 8)
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL
        h ^= h >> 32
        p += 8
        n -= 8
    if n:
        w = 0
        memcpy(&w, p, n)
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL
        h ^= h >> 29
    h = (h ^ (h >> 31)) * 0xBF58476D1CE4E5B9ULL
    return (h ^ (h >> 30)) | 1   # 0 marks an empty slot


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
def msgidx_index(list datas, Py_ssize_t max_portions, bint closing, MsgIdxTable marks,
                 object on_mark, MsgIdxTable banners, object on_banner):
    """Index a batch of messages (see the comment at the top of _message.pxi).

    ``datas``: the messages, each a ``bytes`` object, read in place (no joined copy of
    the batch: the scan joins only the messages it scans). ``closing``: a tearline
    section may end with its banner repeated (the first pass
    accepts it; the re-check, which never writes one, does not). Portion marks (the
    bytes inside the parentheses) are looked up in ``marks``, banners (stripped) in
    ``banners``; a key not there is passed to ``on_mark(raw)`` / ``on_banner(raw)``,
    which return its id (negative: not valid), and is added. Returns ``(status, info,
    rowstart, rows, ids, bids, masks)``: per message ``status`` (int8, 0 fast: simple
    shape, every mark and banner valid / 1 slow / 2 the simple shape, banners valid,
    some portion marks not valid but each section keeping a valid one; its rows are
    filled, the invalid marks' ids are -1 / 3 parse_text's banner-mismatch: valid first
    banner, a last line that differs (info[1:3] its span) / 4 parse_text's first finding
    is that the first line, a portion mark, is no banner (info[0] its end) / 5 it is
    that the message has fewer than three lines of text; 3, 4 and 5 have no rows and are
    judged only when max_portions is the parser's) and ``info`` (int64
    [n, 7]: top banner end, bottom banner start and end, number of rows, number of
    tearline sections, stripped top banner start and end); ``rowstart`` (int64 [n+1])
    indexes ``rows`` (int64 [k, 4]: line start, mark end, line end (offsets within the
    message), kind: 0 portion, 1 tearline, 2 section banner, 3 closing banner, 4 (status
    2 only) a portion line whose mark is not closed, its mark end the line end) and ``ids``
    (int32 [k]: the mark id of a portion, the banner id of a section banner, -2
    otherwise); ``bids`` (int32 [n]) the top banner's id (status 0, 2 and 3); ``masks`` a
    list with, per fast message, the bit set ``OR(1 << id)`` of its mark ids (a Python
    int, any size), else 0. The byte pass and
    the lookups of known keys run without the GIL."""
    cdef Py_ssize_t nmsg = len(datas)
    cdef Py_ssize_t i, j, r, cap, a, b, nmiss = 0, nbad, ngood
    cdef bint kept
    cdef int v, pv
    cdef uint64_t small
    cdef const unsigned char *key
    cdef const unsigned char *pk
    cdef Py_ssize_t pn
    cdef const unsigned char *base
    # per message its bytes (kept alive by ``datas``, which the caller holds) and length
    ptrs_a = np.empty(nmsg, dtype=np.uintp)
    lens_a = np.empty(nmsg, dtype=np.intp)
    cdef size_t[::1] ptrs = ptrs_a
    cdef Py_ssize_t[::1] lens = lens_a
    for i in range(nmsg):
        d = datas[i]
        if type(d) is not bytes:
            raise TypeError("msgidx_index: every message must be bytes")
        ptrs[i] = <size_t>PyBytes_AS_STRING(d)
        lens[i] = PyBytes_GET_SIZE(d)
    # per message, whether its bytes pass (msgidx_c_pre), in one pass that also finds
    # its newlines: they size the row table (at most one row per line of a passing
    # message) and the lines are walked on them
    okb_a = np.zeros(nmsg, dtype=np.int8)
    nl0_a = np.zeros(nmsg + 1, dtype=np.intp)
    cdef signed char[::1] okb = okb_a
    cdef Py_ssize_t[::1] nl0 = nl0_a
    cdef msgidx_nls nlv
    cdef bint simd = _sc_use_simd > 0
    cdef int rc
    status_a = np.ones(nmsg, dtype=np.int8)
    info_a = np.zeros((nmsg, 7), dtype=np.int64)
    rowstart_a = np.zeros(nmsg + 1, dtype=np.int64)
    bids_a = np.full(nmsg, -2, dtype=np.int32)
    small_a = np.zeros(nmsg, dtype=np.uint64)
    wide_a = np.zeros(nmsg, dtype=np.int8)
    cdef signed char[::1] status = status_a
    cdef int64_t[:, ::1] info = info_a
    cdef int64_t[::1] rowstart = rowstart_a
    cdef int64_t[:, ::1] rows
    cdef int[::1] bids = bids_a
    cdef uint64_t[::1] smalls = small_a
    cdef signed char[::1] wide = wide_a
    nlv.a = NULL
    nlv.n = 0
    nlv.cap = 0
    try:
        with nogil:
            for i in range(nmsg):
                nl0[i] = nlv.n
                if lens[i]:
                    if simd:
                        okb[i] = not msgidx_c_pre512(<const unsigned char *>ptrs[i],
                                                     lens[i], &nlv)
                    else:
                        okb[i] = not msgidx_c_pre(<const unsigned char *>ptrs[i], lens[i],
                                                  &nlv)
            nl0[nmsg] = nlv.n
        cap = nlv.n + 1
        rows_a = np.empty((cap, 4), dtype=np.int64)
        rows = rows_a
        r = 0
        with nogil:
            for i in range(nmsg):
                rowstart[i] = r
                if okb[i]:
                    rc = _msgidx_one(<const unsigned char *>ptrs[i], lens[i],
                                     nlv.a + nl0[i], nl0[i + 1] - nl0[i], max_portions,
                                     closing, rows, r, cap, &info[i, 0])
                    if rc == 1:
                        rc = _msgidx_few_lines(<const unsigned char *>ptrs[i], lens[i],
                                               nl0[i + 1] - nl0[i], max_portions)
                    status[i] = rc
                    if rc == 0:
                        r += info[i, 3]
            rowstart[nmsg] = r
    finally:
        free(nlv.a)
    ids_a = np.full(r, -2, dtype=np.int32)
    cdef int[::1] ids = ids_a
    # known keys without the GIL; misses are counted and resolved below
    with nogil:
        for i in range(nmsg):
            if status[i] and status[i] != MSGIDX_MISMATCH:
                continue
            base = <const unsigned char *>ptrs[i]
            v = banners.lookup(base + info[i, 5], info[i, 6] - info[i, 5])
            bids[i] = v
            nmiss += v == MSGIDX_MISSING
            if status[i]:
                continue   # MSGIDX_MISMATCH: only its first line, valid or not, matters
            pk = NULL      # the previous portion's mark: most portions repeat it, and
            pn = -1        # comparing a few bytes is cheaper than hashing and probing
            pv = MSGIDX_MISSING
            for j in range(rowstart[i], rowstart[i + 1]):
                if rows[j, 3] == 0:
                    a = rows[j, 1] - rows[j, 0] - 2
                    key = base + rows[j, 0] + 1
                    if a == pn and memcmp(key, pk, a) == 0:
                        v = pv     # the same key: the same id (or the same miss)
                    else:
                        v = marks.lookup(key, a)
                        pk = key
                        pn = a
                        pv = v
                elif rows[j, 3] == 2:
                    a = rows[j, 0]
                    b = rows[j, 2]
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
            if status[i] and status[i] != MSGIDX_MISMATCH:
                continue
            base = <const unsigned char *>ptrs[i]
            if bids[i] == MSGIDX_MISSING:
                raw = <bytes>base[info[i, 5]:info[i, 6]]
                v = on_banner(raw)
                banners.insert(raw, v)
                bids[i] = v
            if status[i]:
                continue
            for j in range(rowstart[i], rowstart[i + 1]):
                if ids[j] != MSGIDX_MISSING:
                    continue
                if rows[j, 3] == 0:
                    raw = <bytes>base[rows[j, 0] + 1:rows[j, 1] - 1]
                    v = marks.lookup(<const unsigned char *>PyBytes_AS_STRING(raw), len(raw))
                    if v == MSGIDX_MISSING:
                        v = on_mark(raw)
                        marks.insert(raw, v)
                else:
                    raw = <bytes>base[rows[j, 0]:rows[j, 2]].strip()
                    v = banners.lookup(<const unsigned char *>PyBytes_AS_STRING(raw), len(raw))
                    if v == MSGIDX_MISSING:
                        v = on_banner(raw)
                        banners.insert(raw, v)
                ids[j] = v
    # validity and bit sets
    with nogil:
        for i in range(nmsg):
            if status[i] == MSGIDX_MISMATCH:
                if bids[i] < 0:
                    status[i] = 1   # an invalid first banner: parse_text says so first
                continue
            if status[i]:
                continue
            if bids[i] < 0:
                status[i] = 1
                continue
            small = 0
            nbad = 0
            ngood = 0     # valid portions in the current section
            kept = True   # every section so far keeps a valid portion
            for j in range(rowstart[i], rowstart[i + 1]):
                v = ids[j]
                if rows[j, 3] == 2 and v < 0:
                    status[i] = 1
                    break
                if rows[j, 3] == 1:
                    kept = kept and ngood > 0
                    ngood = 0
                elif rows[j, 3] == MSGIDX_UNCLOSED:
                    nbad += 1
                elif rows[j, 3] == 0:
                    if v < 0:
                        nbad += 1
                        continue
                    ngood += 1
                    if v < 64:
                        small |= (<uint64_t>1) << v
                    else:
                        wide[i] = 1
            smalls[i] = small
            if nbad and not status[i]:
                # invalid marks only, every section keeping a valid portion (before its
                # tearline or closing banner, as the parser counts them): the parser's
                # findings are exactly one per invalid mark (MSGIDX_BAD_MARKS)
                status[i] = MSGIDX_BAD if kept and ngood else 1
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
def msgidx_offsets(datas):
    """int64 [n + 1]: 0, then the running total of the lengths of the n byte strings
    ``datas`` (a sequence): string i of their concatenation is ``[offsets[i],
    offsets[i+1])``. (``np.cumsum`` of a list of lengths cost ~10 times more per batch.)"""
    cdef Py_ssize_t n = len(datas), i
    cdef int64_t t = 0
    out_a = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] out = out_a
    out[0] = 0
    for i in range(n):
        t += len(datas[i])
        out[i + 1] = t
    return out_a


@cython.boundscheck(False)
@cython.wraparound(False)
def msgidx_pick(list src, const int[::1] ids):
    """``[src[i] if i >= 0 else None for i in ids]`` (per message its banner text or
    marking by banner id); IndexError for an id past the end of ``src``."""
    cdef Py_ssize_t k, n = ids.shape[0], m = len(src)
    cdef int i
    out = [None] * n
    for k in range(n):
        i = ids[k]
        if i >= 0:
            if i >= m:
                raise IndexError("msgidx_pick: id out of range")
            out[k] = src[i]
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def msgidx_join_lines(bytes text, list lines, bytes head):
    """``head + b"\\n" + b"\\n".join(text[s:e] for s, e in lines) + b"\\n" + head +
    b"\\n"`` in one allocation and one copy of each line (``build_lines``: a report of
    the kept lines under its banner). ValueError for a span not inside ``text`` or a line
    that is not an (s, e) pair."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(text), nh = PyBytes_GET_SIZE(head)
    cdef Py_ssize_t total, s, e, k, nl = len(lines)
    cdef char *o
    cdef const char *src = PyBytes_AS_STRING(text)
    cdef tuple sp
    # the spans are checked once and kept: the copy below reads only what was checked
    cdef Py_ssize_t *span = <Py_ssize_t *>malloc((2 * nl + 1) * sizeof(Py_ssize_t))
    if span == NULL:
        raise MemoryError()
    try:
        total = 2 * nh + nl + 2
        for k in range(nl):
            sp = <tuple?>lines[k]
            if PyTuple_GET_SIZE(sp) != 2:
                raise ValueError("msgidx_join_lines: a line is not an (s, e) pair")
            s = sp[0]
            e = sp[1]
            if s < 0 or e < s or e > n:
                raise ValueError("msgidx_join_lines: a line span outside the text")
            span[2 * k] = s
            span[2 * k + 1] = e
            total += e - s
        out = PyBytes_FromStringAndSize(NULL, total)
        o = PyBytes_AS_STRING(out)
        memcpy(o, PyBytes_AS_STRING(head), nh)
        o += nh
        o[0] = b'\n'
        o += 1
        for k in range(nl):
            s = span[2 * k]
            e = span[2 * k + 1]
            memcpy(o, src + s, e - s)
            o += e - s
            o[0] = b'\n'
            o += 1
        memcpy(o, PyBytes_AS_STRING(head), nh)
        o += nh
        o[0] = b'\n'
        return out
    finally:
        free(span)


@cython.boundscheck(False)
@cython.wraparound(False)
def msgidx_join_parts(bytes text, list parts):
    """``b"\\n".join(parts) + b"\\n"`` where a part is bytes, or a span ``(s, e)`` standing
    for ``text[s:e]`` (``build_text``: uncut lines are never sliced out of the text on
    their own). ValueError for a span not inside ``text``, TypeError for another part."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(text), total, s, e, k, np_ = len(parts)
    cdef char *o
    cdef const char *src = PyBytes_AS_STRING(text)
    cdef tuple sp
    total = np_
    for k in range(np_):
        p = parts[k]
        if type(p) is bytes:
            total += PyBytes_GET_SIZE(p)
        elif type(p) is tuple and len(<tuple>p) == 2:
            sp = <tuple>p
            s = sp[0]
            e = sp[1]
            if s < 0 or e < s or e > n:
                raise ValueError("msgidx_join_parts: a span outside the text")
            total += e - s
        else:
            raise TypeError("msgidx_join_parts: a part is bytes or a (start, end) span")
    out = PyBytes_FromStringAndSize(NULL, total)
    o = PyBytes_AS_STRING(out)
    cdef char *end = o + total
    for k in range(np_):
        # parts are read again: each copy is checked against the allocation (a list
        # changed under the join, by an __index__ say, is an error, never an overflow)
        p = parts[k]
        if type(p) is bytes:
            s = 0
            e = PyBytes_GET_SIZE(p)
            if e + 1 > end - o:
                raise ValueError("msgidx_join_parts: the parts changed while joined")
            memcpy(o, PyBytes_AS_STRING(p), e)
        elif type(p) is tuple and len(<tuple>p) == 2:
            sp = <tuple>p
            s = sp[0]
            e = sp[1]
            if s < 0 or e < s or e > n or e - s + 1 > end - o:
                raise ValueError("msgidx_join_parts: the parts changed while joined")
            memcpy(o, src + s, e - s)
        else:
            raise TypeError("msgidx_join_parts: a part is bytes or a (start, end) span")
        o += e - s
        o[0] = b'\n'
        o += 1
    return out


def msgidx_all_bytes(list datas):
    """Every item of ``datas`` is exactly ``bytes`` (what the index reads in place)."""
    cdef Py_ssize_t k
    for k in range(len(datas)):
        if type(datas[k]) is not bytes:
            return False
    return True


def msgidx_precheck(const unsigned char[::1] buf):
    """``(refused, offsets)`` of the index's first look at ``buf`` on the path
    ``scan_simd()`` selects (refused: a byte no simple report carries; offsets: of its
    newlines, none then)."""
    cdef msgidx_nls nlv
    cdef int bad = 0
    nlv.a = NULL
    nlv.n = 0
    nlv.cap = 0
    try:
        if buf.shape[0]:
            if _sc_use_simd > 0:
                bad = msgidx_c_pre512(&buf[0], buf.shape[0], &nlv)
            else:
                bad = msgidx_c_pre(&buf[0], buf.shape[0], &nlv)
        return bool(bad), [nlv.a[i] for i in range(nlv.n)]
    finally:
        free(nlv.a)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _msgidx_count_nl(const unsigned char[::1] buf) nogil:
    return msgidx_c_count_nl(&buf[0], buf.shape[0])


def msgidx_count_newlines(const unsigned char[::1] buf):
    """The number of '\n' bytes in ``buf`` as the index counts them (for tests)."""
    return _msgidx_count_nl(buf) if buf.shape[0] else 0


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


@cython.boundscheck(False)
@cython.wraparound(False)
def msgidx_acting_matches(const int64_t[::1] sel, const signed char[::1] status,
                          const int64_t[:, ::1] info, const int64_t[::1] rowstart,
                          const int64_t[:, ::1] rows, const int[::1] mmsg,
                          const int16_t[::1] mlist, const int64_t[::1] mstart,
                          const int64_t[::1] mend, const unsigned char[::1] codes,
                          const unsigned char[::1] allow):
    """``msgidx_real_matches`` counting only the matches that act: ``codes[list id]``
    0 never (a list with no action), 1 unless ``allow[k]`` (scan message k), 2 always;
    an encoded run (negative list id) or a list id without a code always acts."""
    cdef Py_ssize_t nmsg = status.shape[0], nsel = sel.shape[0], nm = mmsg.shape[0]
    cdef Py_ssize_t nc = codes.shape[0]
    cdef Py_ssize_t k, m, i, lo, hi, mid
    cdef int64_t s, e
    cdef int li, code
    out_a = np.full(nmsg, -1, dtype=np.int64)
    cdef int64_t[::1] out = out_a
    if (info.shape[0] != nmsg or info.shape[1] < 3 or rowstart.shape[0] != nmsg + 1
            or rows.shape[1] < 4 or mlist.shape[0] != nm or mstart.shape[0] != nm
            or mend.shape[0] != nm or allow.shape[0] != nsel):
        raise ValueError("msgidx_acting_matches: arrays of inconsistent shapes")
    for i in range(nmsg):
        if rowstart[i] < 0 or rowstart[i] > rowstart[i + 1] or rowstart[i + 1] > rows.shape[0]:
            raise ValueError("msgidx_acting_matches: rowstart does not index rows")
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
            li = mlist[m]
            code = codes[li] if 0 <= li < nc else 2
            if li < 0:
                code = 2
            if code == 0 or (code == 1 and allow[k]):
                continue
            s = mstart[m]
            e = mend[m]
            if (s >= 0 and e <= info[i, 0]) or (s >= info[i, 1] and e <= info[i, 2]):
                continue  # inside a banner line
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


@cython.boundscheck(False)
@cython.wraparound(False)
def msgidx_ignorable(const int64_t[::1] sel, const signed char[::1] status,
                     const int64_t[:, ::1] info, const int64_t[::1] rowstart,
                     const int64_t[:, ::1] rows, const int[::1] ids, const int[::1] mmsg,
                     const int16_t[::1] mlist, const int64_t[::1] mstart,
                     const int64_t[::1] mend, const unsigned char[::1] codes,
                     bytes withheld):
    """Per indexed message, 1 when no outcome of the decision acts on any of its scan
    matches, else 0 (-1: not selected or not indexed); guard/decide.py explains it.

    The match rows (``mmsg`` sorted, as ``msgidx_real_matches``; ``mlist`` the list id,
    negative for an encoded run) are judged by ``codes[list id]``: 0 ignored (no such
    term list, or a clean list), 1 acts only on released text (scope ``released``), 2
    acts, 3 a lane indicator (acts). ``withheld[mark id]`` is nonzero for the marks
    whose portions never leave. A match acts when it is an encoded run or a lane
    indicator; when it lies in a portion (not in its mark) that may leave; or, outside
    every banner line and portion mark, when its list's code is 2."""
    cdef Py_ssize_t nmsg = status.shape[0], nsel = sel.shape[0], nm = mmsg.shape[0]
    cdef Py_ssize_t nc = codes.shape[0], nw = len(withheld)
    cdef const unsigned char *w = <const unsigned char *>PyBytes_AS_STRING(withheld)
    cdef Py_ssize_t k, m, i, lo, hi, mid, base
    cdef int64_t s, e
    cdef int li, code, v
    out_a = np.full(nmsg, -1, dtype=np.int8)
    cdef signed char[::1] out = out_a
    if (info.shape[0] != nmsg or info.shape[1] < 3 or rowstart.shape[0] != nmsg + 1
            or rows.shape[1] < 4 or ids.shape[0] < rowstart[nmsg] or mlist.shape[0] != nm
            or mstart.shape[0] != nm or mend.shape[0] != nm):
        raise ValueError("msgidx_ignorable: arrays of inconsistent shapes")
    for i in range(nmsg):
        if rowstart[i] < 0 or rowstart[i] > rowstart[i + 1] or rowstart[i + 1] > rows.shape[0]:
            raise ValueError("msgidx_ignorable: rowstart does not index rows")
    for k in range(nsel):
        if sel[k] >= nmsg:
            raise IndexError("sel holds a message index out of range")
    with nogil:
        for k in range(nsel):
            i = sel[k]
            if i >= 0 and status[i] == 0:
                out[i] = 1
        for m in range(nm):
            k = mmsg[m]
            if k < 0 or k >= nsel:
                continue
            i = sel[k]
            if i < 0 or status[i] != 0 or out[i] != 1:
                continue
            li = mlist[m]
            code = codes[li] if 0 <= li < nc else 2
            if li < 0 or code == 3:
                out[i] = 0   # an encoded run or a lane indicator: the decision looks
                continue
            s = mstart[m]
            e = mend[m]
            base = rowstart[i]
            lo = base
            hi = rowstart[i + 1]
            while lo < hi:   # the last row (any kind) starting at or before s
                mid = (lo + hi) // 2
                if rows[mid, 0] <= s:
                    lo = mid + 1
                else:
                    hi = mid
            lo -= 1
            if lo >= base and rows[lo, 3] == 0 and s < rows[lo, 2]:
                if e <= rows[lo, 1]:
                    continue  # inside the portion mark
                v = ids[lo]
                if v < 0 or v >= nw or not w[v]:
                    out[i] = 0  # in a portion that may be released
                    continue
            elif (e <= info[i, 0] or (info[i, 1] <= s and e <= info[i, 2])
                  or (lo >= base and rows[lo, 3] >= 2 and e <= rows[lo, 2])):
                continue  # inside a banner line
            if code == 2:
                out[i] = 0
    return out_a


# Capture blocks (guard/capture.py): the records of one decoded block, located in one
# pass so that a replay hands the payloads to the pipeline without building a Python
# object per record. Only locating: any record this pass does not fully understand
# (a length that does not fit, a string that is not plain ASCII) makes it answer
# "fall back", and the Python decoder then decides and explains (same validation).

cdef inline unsigned int _cap_u16(const unsigned char *b) noexcept nogil:
    return <unsigned int>b[0] | (<unsigned int>b[1] << 8)


cdef inline unsigned int _cap_u32(const unsigned char *b) noexcept nogil:
    return (<unsigned int>b[0] | (<unsigned int>b[1] << 8) | (<unsigned int>b[2] << 16)
            | (<unsigned int>b[3] << 24))


cdef inline bint _cap_ascii(const unsigned char *b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t q
    for q in range(n):
        if b[q] >= 0x80:
            return False
    return True


# boundscheck off: every read is preceded by a check that it ends at or before ``end``
# (<= n, the buffer's length); spans/times are written for k < count (their shape).
@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _capture_record(const unsigned char *b, Py_ssize_t n, Py_ssize_t pos,
                                double *t, Py_ssize_t *sp) noexcept nogil:
    """Check the record at ``pos`` of the n bytes at b: its end (the next record's
    position), its time in t and its spans in sp[0:6] (message id start/end, flow
    start/end, payload start/end); -1 when the Python decoder must decide (damage,
    non-ASCII strings). Every read is checked to end at or before the record's end,
    itself at or before n."""
    cdef Py_ssize_t p, end, j, m, slen, nprops = 0
    if pos + 12 > n:
        return -1
    end = pos + 4 + <Py_ssize_t>_cap_u32(b + pos)
    if end > n:
        return -1
    memcpy(t, b + pos + 4, 8)   # little-endian f64 (x86-64 and aarch64 are LE)
    p = pos + 12
    for j in range(4):           # id, flow, topic; then the property count
        if p + 2 > end:
            return -1
        slen = _cap_u16(b + p)
        p += 2
        if j == 3:
            nprops = slen
            break
        if p + slen > end or not _cap_ascii(b + p, slen):
            return -1
        if j < 2:
            sp[2 * j] = p
            sp[2 * j + 1] = p + slen
        p += slen
    for m in range(2 * nprops):
        if p + 2 > end:
            return -1
        slen = _cap_u16(b + p)
        p += 2
        if p + slen > end or not _cap_ascii(b + p, slen):
            return -1
        p += slen
    if p + 4 > end:
        return -1
    if p + 4 + <Py_ssize_t>_cap_u32(b + p) != end:
        return -1
    sp[4] = p + 4
    sp[5] = end
    return end


cdef int _capture_locate(const unsigned char *b, Py_ssize_t n, Py_ssize_t count,
                         double[::1] times, int64_t[:, ::1] spans) noexcept nogil:
    """0: every record located; 1: the Python decoder must decide."""
    cdef Py_ssize_t pos = 0, k, j
    cdef Py_ssize_t sp[6]
    for k in range(count):
        pos = _capture_record(b, n, pos, &times[k], sp)
        if pos < 0:
            return 1
        for j in range(6):
            spans[k, j] = sp[j]
    return 0 if pos == n else 1


def capture_locate(const unsigned char[::1] raw, Py_ssize_t count):
    """Locate ``count`` records in a decoded capture block (format in guard/capture.py).

    Returns ``None`` when the Python decoder must decide (anything unusual: damage,
    non-ASCII strings, bytes after the last record), else ``(times, spans)``: float64
    [count] record times and int64 [count, 6] spans in ``raw``: message id start/end,
    flow start/end, payload start/end."""
    cdef int status
    if count < 0:
        return None
    times_a = np.empty(count, dtype=np.float64)
    spans_a = np.empty((count, 6), dtype=np.int64)
    cdef double[::1] times = times_a
    cdef int64_t[:, ::1] spans = spans_a
    cdef Py_ssize_t n = raw.shape[0]
    if n == 0:
        return None if count else (times_a, spans_a)
    with nogil:
        status = _capture_locate(&raw[0], n, count, times, spans)
    return None if status else (times_a, spans_a)


@cython.boundscheck(False)
@cython.wraparound(False)
def capture_slices(const unsigned char[::1] raw, const int64_t[:, ::1] spans):
    """The records ``capture_locate`` located in ``raw`` as three lists: message ids
    (str), flows (str, one object per distinct flow) and payloads (bytes, copies: ``raw``
    may be a buffer the caller reuses). ``ValueError`` when a span is not inside ``raw``
    or ids and flows are not ASCII (``capture_locate`` checked that they are)."""
    cdef Py_ssize_t k, n = spans.shape[0], size = raw.shape[0]
    cdef int64_t i0, i1, f0, f1, p0, p1
    cdef const char *b
    if spans.shape[1] < 6:
        raise ValueError("capture_slices: spans need 6 columns")
    # every span is checked before any read (the reads below run unchecked)
    for k in range(n):
        for i0 in range(0, 6, 2):
            if not 0 <= spans[k, i0] <= spans[k, i0 + 1] <= size:
                raise ValueError("capture_slices: a span is outside the block")
    ids = [None] * n
    flows = [None] * n
    payloads = [None] * n
    if n == 0:
        return ids, flows, payloads
    b = <const char *>&raw[0] if size else <const char *>NULL
    interned = {}
    for k in range(n):
        i0, i1, f0, f1, p0, p1 = (spans[k, 0], spans[k, 1], spans[k, 2], spans[k, 3],
                                  spans[k, 4], spans[k, 5])
        ids[k] = PyUnicode_DecodeASCII(b + i0, i1 - i0, NULL)
        fb = PyBytes_FromStringAndSize(b + f0, f1 - f0)
        flow = interned.get(fb)
        if flow is None:
            flow = interned[fb] = PyUnicode_DecodeASCII(b + f0, f1 - f0, NULL)
        flows[k] = flow
        payloads[k] = PyBytes_FromStringAndSize(b + p0, p1 - p0)
    return ids, flows, payloads


cdef extern from *:
    """
    #include <structmember.h>
    /* The byte offset of a writable object slot (a ``__slots__`` member descriptor) in
       instances of a type of ``basicsize`` bytes; -1 when descr is anything else. */
    static Py_ssize_t msgidx_slot_offset(PyObject *descr, Py_ssize_t basicsize) {
        PyMemberDef *m;
        if (Py_TYPE(descr) != &PyMemberDescr_Type) return -1;
        m = ((PyMemberDescrObject *)descr)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) return -1;
        if (m->offset < (Py_ssize_t)sizeof(PyObject)
                || m->offset + (Py_ssize_t)sizeof(PyObject *) > basicsize) return -1;
        return m->offset;
    }
    /* A new, zeroed instance of a heap type (what object.__new__(cls) does). */
    static PyObject *msgidx_alloc(PyObject *cls) {
        PyTypeObject *t = (PyTypeObject *)cls;
        return t->tp_alloc(t, 0);
    }
    /* Fill an empty slot of a new instance (a new reference to v is stored). */
    static inline void msgidx_slot_put(PyObject *o, Py_ssize_t off, PyObject *v) {
        Py_INCREF(v);
        *(PyObject **)((char *)o + off) = v;
    }
    """
    Py_ssize_t msgidx_slot_offset(object descr, Py_ssize_t basicsize)
    object msgidx_alloc(object cls)
    void msgidx_slot_put(object o, Py_ssize_t off, object v)


DEF SLOTMAKER_MAX = 32


cdef class SlotMaker:
    """Builds instances of a class with ``__slots__`` (a ``@dataclass(slots=True)``,
    frozen or not, or a plain slotted class such as the pipeline's ``_Ctx``) by storing
    every field straight into its slot: the same object as ``cls(*values)`` when its
    ``__init__`` only assigns the fields (through ``object.__setattr__`` when frozen), at
    a fraction of the cost, for the many findings, portions, decisions and contexts of a
    batch.

    ``names`` is the order of the values given to ``make``; it must name every slot of
    ``cls`` once. Refused (TypeError) for a class this cannot build faithfully: one with
    a base class other than object, its own ``__new__`` or a ``__post_init__``."""

    cdef readonly object cls
    cdef Py_ssize_t n
    cdef Py_ssize_t off[SLOTMAKER_MAX]

    def __cinit__(self, type cls, tuple names):
        cdef Py_ssize_t i, o
        slots = cls.__dict__.get("__slots__")
        if (cls.__base__ is not object or cls.__new__ is not object.__new__
                or hasattr(cls, "__post_init__") or not isinstance(slots, tuple)
                or len(names) > SLOTMAKER_MAX or len(set(names)) != len(names)
                or sorted(slots) != sorted(names)):
            raise TypeError(f"SlotMaker cannot build {cls!r} from {names!r}")
        for i, name in enumerate(names):
            o = msgidx_slot_offset(cls.__dict__[name], cls.__basicsize__)
            if o < 0:
                raise TypeError(f"SlotMaker: {cls.__name__}.{name} is not an object slot")
            self.off[i] = o
        self.n = len(names)
        self.cls = cls

    cdef inline object new4(self, object a, object b, object c, object d):
        # four-field types (Finding): no argument tuple
        o = msgidx_alloc(self.cls)
        msgidx_slot_put(o, self.off[0], a)
        msgidx_slot_put(o, self.off[1], b)
        msgidx_slot_put(o, self.off[2], c)
        msgidx_slot_put(o, self.off[3], d)
        return o

    def make(self, *values):
        """A new instance with its slots set to ``values`` (in the order of ``names``)."""
        cdef Py_ssize_t i
        if len(values) != self.n:
            raise TypeError(f"SlotMaker.make takes {self.n} values, got {len(values)}")
        o = msgidx_alloc(self.cls)
        for i in range(self.n):
            msgidx_slot_put(o, self.off[i], values[i])
        return o

    def make4(self, a, b, c, d):
        """``make`` for a four-field type, without the argument tuple."""
        if self.n != 4:
            raise TypeError("SlotMaker.make4 needs a four-field type")
        return self.new4(a, b, c, d)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def many(self, tuple values, tuple columns, tuple fresh):
        """One instance per row: slot i (in the order of ``names``) set to ``values[i]``,
        or, when ``values[i]`` is None and ``columns`` holds ``(i, column)``, to
        ``column[row]``, or, when ``fresh`` holds i, to a new empty list each. The rows
        are those of the columns (at least one, all of the same length): the per-message
        contexts of a batch, made without a Python ``__init__`` each."""
        cdef Py_ssize_t i, r, nrow, c
        cdef int kind[SLOTMAKER_MAX]
        cdef list cols = [None] * self.n
        cdef list col
        if len(values) != self.n or not columns:
            raise TypeError(f"SlotMaker.many takes {self.n} values and a column")
        for i in range(self.n):
            kind[i] = 0
        nrow = -1
        for spec in columns:
            i, col = spec
            if i < 0 or i >= self.n or kind[i] or values[i] is not None:
                raise ValueError("SlotMaker.many: a column for no free slot")
            if nrow >= 0 and len(col) != nrow:
                raise ValueError("SlotMaker.many: columns of different lengths")
            nrow = len(col)
            kind[i] = 1
            cols[i] = col
        for i in fresh:
            if i < 0 or i >= self.n or kind[i] or values[i] is not None:
                raise ValueError("SlotMaker.many: a fresh list for no free slot")
            kind[i] = 2
        out = []
        for r in range(nrow):
            o = msgidx_alloc(self.cls)
            for i in range(self.n):
                c = kind[i]
                if c == 0:
                    msgidx_slot_put(o, self.off[i], values[i])
                elif c == 1:
                    msgidx_slot_put(o, self.off[i], (<list>cols[i])[r])
                else:
                    msgidx_slot_put(o, self.off[i], [])
            out.append(o)
        return out


_msgidx_makers = {}

# the field orders the builders below fill (guard.messages.Portion, guard.findings.Finding)
_PORTION_FIELDS = ("start", "end", "mark_end", "mark", "section", "marking")
_FINDING_FIELDS = ("rule", "message", "start", "end")


cdef SlotMaker _msgidx_maker(object cls, tuple names):
    """The SlotMaker of ``cls`` for ``names`` (one per class and order, kept)."""
    key = (cls, names)
    got = _msgidx_makers.get(key)
    if got is None:
        got = _msgidx_makers[key] = SlotMaker(cls, names)
    return <SlotMaker>got


cdef class MsgIdxRows:
    """The rows of one ``msgidx_index`` result, held for per-message questions (the
    arrays are taken once per batch, not on every call)."""

    cdef const int64_t[::1] rowstart
    cdef const int64_t[:, ::1] rows
    cdef const int[::1] ids

    def __cinit__(self, const int64_t[::1] rowstart, const int64_t[:, ::1] rows,
                  const int[::1] ids):
        cdef Py_ssize_t i
        if rows.shape[1] < 4 or ids.shape[0] < rowstart[rowstart.shape[0] - 1]:
            raise ValueError("MsgIdxRows: arrays of inconsistent shapes")
        for i in range(rowstart.shape[0] - 1):
            if (rowstart[i] < 0 or rowstart[i] > rowstart[i + 1]
                    or rowstart[i + 1] > rows.shape[0]):
                raise ValueError("MsgIdxRows: rowstart does not index rows")
        self.rowstart = rowstart
        self.rows = rows
        self.ids = ids

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def sections(self, Py_ssize_t k, list btexts, list bmarks):
        """The tearline sections of message k: ``[(banner text, banner marking, (start,
        end), mask, [portion index])]`` with ``btexts[id]`` / ``bmarks[id]`` for the
        section banner's id and ``mask`` the bit set of the section's mark ids."""
        cdef Py_ssize_t lo, hi, j, port = 0
        cdef int i
        cdef list cur = None
        cdef Py_ssize_t last
        if k < 0 or k + 1 >= self.rowstart.shape[0]:
            raise IndexError("message index out of range")
        lo = self.rowstart[k]
        hi = self.rowstart[k + 1]
        out = []
        mask = 0
        for j in range(lo, hi):
            i = self.ids[j]
            if (self.rows[j, 3] == 0 and i < 0) or (self.rows[j, 3] == 2 and (
                    i < 0 or i >= len(btexts) or i >= len(bmarks))):
                raise ValueError("MsgIdxRows.sections: message k is not indexed")
            if self.rows[j, 3] == 0:
                if cur is not None:
                    cur.append(port)
                    mask |= (<object>1) << i
                port += 1
            elif self.rows[j, 3] == 2:
                if cur is not None:
                    last = len(out) - 1
                    out[last] = (*out[last][:3], mask, cur)
                cur = []
                mask = 0
                out.append((btexts[i], bmarks[i], (self.rows[j, 0], self.rows[j, 2]), 0, cur))
        if cur is not None:
            last = len(out) - 1
            out[last] = (*out[last][:3], mask, cur)
        return out

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def portions(self, Py_ssize_t k, list texts, list markings, object cls):
        """The portions of message k as ``cls(start, end, mark_end, texts[id], section,
        markings[id])`` (guard.messages.Portion, fields set as its ``__init__`` does),
        and the other rows as ``(kind, start, end)`` in order (1 tearline, 2 section
        banner, 3 closing banner); ``section`` counts the tearlines before a portion."""
        cdef Py_ssize_t lo, hi, j, sec = 0
        cdef int i
        cdef SlotMaker mk = _msgidx_maker(cls, _PORTION_FIELDS)
        if k < 0 or k + 1 >= self.rowstart.shape[0]:
            raise IndexError("message index out of range")
        lo = self.rowstart[k]
        hi = self.rowstart[k + 1]
        out = []
        other = []
        for j in range(lo, hi):
            if self.rows[j, 3] != 0:
                if self.rows[j, 3] == 1:
                    sec += 1
                other.append((self.rows[j, 3], self.rows[j, 0], self.rows[j, 2]))
                continue
            i = self.ids[j]
            if i < 0 or i >= len(texts) or i >= len(markings):
                raise ValueError("MsgIdxRows.portions: message k is not indexed")
            f = msgidx_alloc(mk.cls)
            msgidx_slot_put(f, mk.off[0], self.rows[j, 0])
            msgidx_slot_put(f, mk.off[1], self.rows[j, 2])
            msgidx_slot_put(f, mk.off[2], self.rows[j, 1])
            msgidx_slot_put(f, mk.off[3], texts[i])
            msgidx_slot_put(f, mk.off[4], sec)
            msgidx_slot_put(f, mk.off[5], markings[i])
            out.append(f)
        return out, other

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def layout(self, Py_ssize_t k, bytes withheld):
        """Message k's portions as parallel lists ``starts, mark_ends, ends, ids`` (what
        ``portions`` builds objects for); ``by_section``: the portion indices of each
        section (main body first, then each tearline section); ``held``: the indices of
        the portions whose mark id has a nonzero byte in ``withheld``; and the spans
        ``(start, end)`` of the closing section banners (kind 3) and of the section
        banners (kind 2). Returns these seven lists in that order."""
        cdef Py_ssize_t lo, hi, j, p = 0, nw = len(withheld)
        cdef const unsigned char *w = <const unsigned char *>PyBytes_AS_STRING(withheld)
        cdef int i
        if k < 0 or k + 1 >= self.rowstart.shape[0]:
            raise IndexError("message index out of range")
        lo = self.rowstart[k]
        hi = self.rowstart[k + 1]
        starts = []
        mark_ends = []
        ends = []
        ids = []
        cur = []
        by_section = [cur]
        held = []
        closing = []
        banners = []
        for j in range(lo, hi):
            if self.rows[j, 3] == 0:
                i = self.ids[j]
                if i < 0 or i >= nw:
                    raise ValueError("MsgIdxRows.layout: a portion's mark id is not judged")
                starts.append(shared_int(self.rows[j, 0]))
                mark_ends.append(shared_int(self.rows[j, 1]))
                ends.append(shared_int(self.rows[j, 2]))
                ids.append(i)
                cur.append(p)
                if w[i]:
                    held.append(p)
                p += 1
            elif self.rows[j, 3] == 1:
                cur = []
                by_section.append(cur)
            elif self.rows[j, 3] == 2:
                banners.append((self.rows[j, 0], self.rows[j, 2]))
            else:
                closing.append((self.rows[j, 0], self.rows[j, 2]))
        return starts, mark_ends, ends, ids, by_section, held, closing, banners

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def split(self, Py_ssize_t k, bytes withheld, list why, object cls):
        """The portions of message k split by mark id: ``withheld[id]`` (a byte) is
        nonzero for the mark ids whose portions may not go, and ``why[id]`` then holds
        their ``(rule, message)`` pairs. Returns ``(findings, kept)``: ``cls(rule,
        message, line start, line end)`` for each pair of each withheld portion, in
        order; the indices of the portions not withheld (``spans`` gives the lines of
        those a decision keeps: a blocked message needs none)."""
        cdef Py_ssize_t lo, hi, j, p = 0, nw = len(withheld), nwhy = len(why)
        cdef const unsigned char *w = <const unsigned char *>PyBytes_AS_STRING(withheld)
        cdef int i
        cdef tuple pairs, pair
        cdef object so, eo
        cdef SlotMaker mk = _msgidx_maker(cls, _FINDING_FIELDS)
        if k < 0 or k + 1 >= self.rowstart.shape[0]:
            raise IndexError("message index out of range")
        lo = self.rowstart[k]
        hi = self.rowstart[k + 1]
        findings = []
        kept = []
        for j in range(lo, hi):
            if self.rows[j, 3] != 0:
                continue
            i = self.ids[j]
            if i < 0 or i >= nw or i >= nwhy:
                raise ValueError("MsgIdxRows.split: a portion's mark id is not judged")
            if w[i]:
                pairs = <tuple?>why[i]
                if pairs:
                    so = shared_int(self.rows[j, 0])  # shared by its findings
                    eo = shared_int(self.rows[j, 2])
                    for pair in pairs:
                        findings.append(mk.new4(pair[0], pair[1], so, eo))
            else:
                kept.append(p)
            p += 1
        return findings, kept

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def spans(self, Py_ssize_t k, list keep):
        """For the portions of message k at the indices ``keep`` (in that order): their
        line spans ``(start, end)`` and the bit set ``OR(1 << mark id)``."""
        cdef Py_ssize_t lo, hi, j, p, n = 0, q
        cdef Py_ssize_t *at
        cdef uint64_t small = 0
        cdef bint wide = False
        cdef int i
        if k < 0 or k + 1 >= self.rowstart.shape[0]:
            raise IndexError("message index out of range")
        lo = self.rowstart[k]
        hi = self.rowstart[k + 1]
        at = <Py_ssize_t *>calloc(hi - lo + 1, sizeof(Py_ssize_t))
        if at == NULL:
            raise MemoryError()
        try:
            for j in range(lo, hi):       # portion index -> row
                if self.rows[j, 3] == 0:
                    at[n] = j
                    n += 1
            lines = []
            big = 0
            for q in keep:
                p = q
                if p < 0 or p >= n:
                    raise IndexError("MsgIdxRows.spans: no such portion")
                j = at[p]
                lines.append((shared_int(self.rows[j, 0]), shared_int(self.rows[j, 2])))
                i = self.ids[j]
                if i < 0:
                    raise ValueError("MsgIdxRows.spans: a kept portion has no valid mark")
                if i < 64:
                    small |= (<uint64_t>1) << i
                else:
                    wide = True
                    big |= 1 << i
        finally:
            free(at)
        return lines, (big | small) if wide else small
