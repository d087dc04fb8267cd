# Term scanning: the filtering core's hot path (owned by the filtering-core helper).
#
# Why this design (see /work/shared/domain/MEASUREMENTS.md): a table-driven Aho-Corasick DFA
# over 2,000+ terms does not fit in L1/L2 and is bound by one dependent load per byte
# (~130 MB/s). A scalar squeeze of every byte into char/offset/gap arrays is also too slow
# (~250 MB/s: 10 bytes of stores per input byte). So the full squeezed stream (with its
# gaps and offsets) is built only locally, for verification; the hot path works on:
#   1. WORD STARTS: whole-word terms can only start where a letter/digit follows a
#      separator (~1 byte in 4-6 of English). With AVX-512 (BW, VBMI, VBMI2, DQ, CD, IFMA) +
#      BMI2, detected at run time, 64 bytes are folded per instruction (two-register byte
#      permute of the fold table), their letters are packed by one vpcompressb into a
#      letters-only stream (not 10 bytes of stores per byte), and word starts come out of
#      a 64-bit mask, listed by their index in that stream (one more vpcompressb);
#      otherwise a branch-free scalar pass lists them. Pure-ASCII bodies are read in
#      place: no Python-level Unicode work; other bodies are first folded by
#      guard.normalize into a Latin skeleton with an offset map, then read the same way.
#   2. PREFILTER: at a word start the first 8 letters/digits, separators skipped, form the
#      key: SIMD gathers them from the letters-only stream for 8 word starts at once (the
#      portable path builds them with shifts). Terms are grouped in classes (length 1..4
#      exactly, 5..7 keyed on 5 characters, 8+ keyed on 5 then on 8 characters) and each
#      class key is tested in a blocked Bloom filter (SC_BLOOM_K = 4 bits in one 64-bit
#      word: one load) that stays in L1/L2, also by gathers. The hashes are products
#      modulo 2^52 (one IFMA instruction per 8 keys) and one vpmultishiftqb reads all the
#      bits of a key from its word; with two bits, words shared by many keys (phrases that
#      begin with "the": "the?" words) passed ~1% of word starts by chance, with four
#      ~0.15% (candidates per 4 KB of the bench corpus: 23 -> 16, ~13 of them real
#      5- or 8-character prefix collisions that verification rejects).
#      Skipping separators makes "N.O.F.O.R.N" and "NO-FORN" probe the same key as
#      "NOFORN"; a whole-word term shorter than the word it starts cannot match, which
#      removes most coincidences ("thei" in "their"). A key may run across a hard gap
#      (the portable key stops there): that only costs a probe that verification rejects.
#      Substring (~) terms: the first min(4, len) characters of every term are compared
#      at every letter of the squeezed stream (64 letters per step, exact: with the
#      shipped lists ~2 candidates per 4 KB report instead of ~250 for a test on the
#      first and next characters' flags, which stays for more than 16 prefixes and for
#      the portable path's bigram bitset). (Keying classes 5, 6
#      and 7 on all their characters was tried: ~20% fewer probes, but the extra gathers
#      cost more than they saved.) The group loop has no data-dependent branch: a
#      mispredicted "no lane passed" test cost more than the work it skipped (~20% of the
#      pass); the first fragment's length comes from the next word start in wj, not a
#      gather. A register-resident first-stage test on the first 2 (3) characters was
#      measured and not built: on the bench corpus 89% (55%) of word starts share their
#      first 2 (3) characters with some term (two-word terms begin with common words), so
#      it would not spare a group of 8 its gathers; the gathered Bloom word is the cost.
#   3. VERIFY (rare): an exact hash table (packed slots) gives the terms of a key (packed,
#      in table order; the slots of a window's candidates are prefetched together
#      first); one 64-bit compare on 8 characters rejects most. A term that is exactly
#      the first word is compared in place; one that runs past it is rejected at
#      once when the separator run after the first word is hard, or loose after 2+ letters
#      where the term has no word break ("thing steady" against "thingst"). Otherwise the
#      text is squeezed locally in a rolling buffer (letters/digits + the kind of separator
#      run before each: none / tight / loose / hard) and compared with memcmp; boundaries
#      and inner gaps are checked: a gap inside a word is accepted only when tight
#      ("NO-FORN", a line break) or when it joins single letters ("N O F O R N"). Matches
#      are then mapped to ORIGINAL byte offsets.
#   4. PATTERNS (PII): a pattern can only start at a byte that can begin it, after a
#      non-word byte, before a byte its NFA accepts next (flags derived from the NFAs
#      themselves): the fold pass reads all three flags off a second permute of the same
#      64 bytes (without term lists, a pass of its own does; the neighbours' flags are the
#      masks shifted), so the bit-parallel NFAs, all patterns side by side in one 64-bit
#      state when they fit, run from a handful of positions instead of every word start.
# Every step is linear: the rolling buffer squeezes each byte once per loop however many
# probes overlap ("a a a a ..." against "aaa...ab"), patterns run as a 64-bit bit-parallel
# NFA whose bounded repeats close in O(runs) per byte, encoded runs are found by skipping
# 64-byte blocks without 8 (16) alphabet bytes in a row, and windows of SC_WINDOW bytes
# bound the scratch memory for 100 MB bodies. guard.normalize.squeeze is the executable
# reference of the squeezed stream; tests compare both paths with pyahocorasick on it.

cimport cython
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int16_t, int32_t, int64_t
from libc.stdlib cimport malloc, realloc, free, qsort
from libc.string cimport memset, memchr, memcmp, memmove

import numpy as _np

cdef enum:
    SC_WINDOW = 65536          # folded bytes per squeeze window
    SC_OVERLAP = 4096          # look-ahead past a window (> longest possible match span:
                               # SC_MAX_TERM characters with gaps of at most SC_MAX_GAP)
    SC_BACK = 16               # look-behind so the first gap of a window is classified right
    SC_LOOKAHEAD = 64          # bytes folded/squeezed past a window's end (SIMD keys)
    SC_MAX_TERM = 255          # longest term, in squeezed characters
    SC_MAX_GAP = 8             # longer separator runs are hard gaps
    SC_ROLL = 1024             # rolling squeeze buffer (> 2 * SC_MAX_TERM)
    SC_MAX_BODY = 2147482624   # largest body scanned (int32 positions, minus slack)
    SC_GAP_NONE = 0
    SC_GAP_TIGHT = 1
    SC_GAP_LOOSE = 2
    SC_GAP_HARD = 3
    SC_F_INVALID_UTF8 = 1      # batch flags (nonzero = fail closed)
    SC_F_NUL = 2
    SC_F_OVERSIZE = 4
    SC_F_ERROR = 8

SCAN_FLAG_INVALID_UTF8 = SC_F_INVALID_UTF8
SCAN_FLAG_NUL = SC_F_NUL
SCAN_FLAG_OVERSIZE = SC_F_OVERSIZE
SCAN_FLAG_ERROR = SC_F_ERROR
SCAN_MAX_TERM = SC_MAX_TERM
SCAN_MAX_BODY = SC_MAX_BODY


ctypedef struct SCSlot:         # one entry of a table's exact hash (one load per probe)
    uint64_t key
    int32_t lo, hi              # the terms of the key: M.tq[lo:hi]
    int32_t max                 # longest of them
    int32_t pad

ctypedef struct SCTermQ:        # a term in table order: what a probe reads, in one line
    uint64_t key8               # first min(8, len) characters
    uint64_t mask8
    int32_t t                   # term index
    int32_t len
    int32_t off                 # into tchars / tgap
    int32_t pad

ctypedef struct SCTable:
    const uint64_t* bits
    const uint64_t* bitsl   # unused (the 8+ prefix keys now live in bits, tag 0x15)
    uint32_t shift          # bit index = hash >> (shift & 31); | SC_SHARED_WORDS (256): see
                            # sc_bloom_word
    const SCSlot* slots     # exact hash of the keys (open addressing)
    uint32_t hmask
    int classes             # bit m-1: some term is in prefix class m (1..4: that length,
                            # 5: five to seven characters); bit 5 (32): eight or more,
                            # keyed on their first 8 characters
    int nterms
    const uint64_t* big     # substring tables: bitset of first bigrams (65536 bits)
    const uint8_t* single   # substring tables: 256 flags of one-character terms

ctypedef struct SCHit:
    int32_t msg
    int32_t code            # term index, or nterms + pattern index
    int64_t start
    int64_t end

ctypedef struct SCVec:
    SCHit* a
    Py_ssize_t n
    Py_ssize_t cap
    int oom

ctypedef struct SCWork:
    int32_t* ws                 # word starts (portable path) / candidate positions (SIMD)
    uint8_t* fb                 # folded window (SIMD path)
    uint64_t* ck                # candidate keys (SIMD path)
    int32_t* chm                # candidate class masks (SIMD path)
    uint64_t* gr                # prefilter record of every group of 8 word starts (SIMD
                                # path: see sc_groups_shared)
    uint8_t* sq                 # squeezed letters of the window (SIMD path)
    int32_t* wj                 # squeezed index of each word start (SIMD path; window, then
                                # look-ahead)
    uint64_t* bm                # letter mask of each 64-byte block of fb (SIMD path)
    int32_t* bn                 # squeezed index of each block's first letter (SIMD path)
    uint64_t* pm                # pattern start / next / word-character masks, 3 per block of
                                # fb (SIMD path: read off the fold pass, see sc_fold_window)
    SCVec ph                    # pattern hits of the windows, appended after the terms' hits
    Py_ssize_t cap

ctypedef struct SCRoll:         # a rolling squeezed stretch of text (verification only)
    uint8_t chars[SC_ROLL]
    uint8_t gap[SC_ROLL]
    int32_t idx[SC_ROLL]
    Py_ssize_t n                # characters buffered
    Py_ssize_t cur              # index of the position being probed
    Py_ssize_t raw              # next raw byte to squeeze
    int glen, nb, nl            # separator run state at raw

ctypedef struct SCMatcher:
    SCTable ww              # whole-word terms
    SCTable ss              # substring terms
    const uint8_t* tchars
    const int32_t* toff
    const int32_t* tlen
    const uint8_t* tgap
    const int32_t* tord
    const SCTermQ* tq       # tord[q]'s probe data, packed
    const uint8_t* tclean
    const uint64_t* tkey8   # first min(8, len) characters of each term
    const uint64_t* tmask8
    int nterms
    const uint8_t* fold
    const uint8_t* cls
    int npat
    const uint64_t* pcm     # npat * 256 masks: bit k = byte accepted at position k
    const uint64_t* popt    # npat * 16: (run mask, fill mask) of each run of optional positions
    const int32_t* pnrun
    const uint64_t* pstart  # closure of the start state
    const int32_t* plen
    const uint8_t* pcan     # 256: byte can start some pattern
    int pc_ok               # all patterns side by side in one 64-bit NFA (see _sc_pat_at)
    int pc_nrun
    uint64_t pc_start       # their start closures, each at its offset
    uint64_t pc_acc         # their accepting bits (one past each pattern's last position)
    const uint64_t* pc_cm   # 256 masks
    const uint64_t* pc_runs # pc_nrun (trigger, fill) pairs
    const uint8_t* pc_pat   # 64: the pattern whose accepting bit is bit k
    const uint8_t* pflags   # 256: bit 0 can start a pattern, bit 1 can be the second byte
                            # of a match (or end a one-byte match), bit 2 word character,
                            # bits 3..5 can be the third..fifth byte (or come after the end
                            # of a shorter match)
    uint8_t pfhigh          # the same flags, conservative, for any byte >= 0x80 (SIMD)
    const uint8_t* alnum    # 256: a word character for pattern boundaries
    const uint8_t* b64      # 256: 1 base64 alphabet, 2 also hex
    const uint8_t* ssflags  # 256: substring first / single / second character flags
    int ss_npfx             # distinct first-4-character prefixes of the substring terms
                            # (0: too many, the flags pass above is used instead)
    const uint8_t* ss_pfx   # ss_npfx * 4 bytes, each prefix zero-padded
    const uint8_t* ss_plen  # ss_npfx lengths (1..4)
    Py_ssize_t enc_min


cdef extern from *:
    """
    #include <immintrin.h>
    #include <stdint.h>
    #define SC_SHARED_WORDS 256u

    /* Phase counters (rdtsc ticks) for profiling, compiled in only with -DSC_PROF=1
       (CFLAGS=-DSC_PROF=1 python setup.py build_ext --inplace): perf has no hardware
       counters in the VMs the bench runs on. */
    #ifndef SC_PROF
    #define SC_PROF 0
    #endif
    static unsigned long long sc_prof_t[16];
    #if SC_PROF
    static unsigned long long sc_prof_last;
    #endif
    static inline void sc_prof_mark(int phase) {
    #if SC_PROF
        unsigned long long t = __rdtsc();
        if (phase >= 0) sc_prof_t[phase] += t - sc_prof_last;
        sc_prof_last = t;
    #else
        (void)phase;
    #endif
    }

    /* AVX-512 (BW + VBMI) + BMI2 hot path, dispatched at run time (the build uses no
       -march flag, so the attributes below enable the instructions per function). */
    static int sc_simd_ok = -1;
    static int sc_simd_available(void) {
        if (sc_simd_ok < 0) {
            __builtin_cpu_init();
            sc_simd_ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2")
                && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd")
                && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512ifma")
                && __builtin_cpu_supports("bmi2")
                && __builtin_cpu_supports("popcnt");
        }
        return sc_simd_ok;
    }

    /* The squeeze of a window (see sc_ww_candidates), block by block: done inside the
       fold pass when both run (the folded block is still in a register: no store and
       reload of it, no loop of its own), else by sc_ww_candidates over the folded
       bytes. len: the window's length (the rest is look-ahead); carry: the byte before
       the window is a letter. */
    typedef struct {
        uint8_t* sq; int32_t* wj; uint64_t* bm; int32_t* bn;
        Py_ssize_t len, nsq, nw, nt, nwin;
        uint64_t carry;
        int done;
    } SCSqz;
    #define SC_BIOTA _mm512_set_epi8( \
            63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, \
            47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, \
            31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, \
            15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
    /* block i (a multiple of 64) of the folded bytes f, of fb_end in all */
    #define SC_SQUEEZE_BLOCK(Z, f, i, fb_end) do { \
            uint64_t m = _mm512_test_epi8_mask(f, f); \
            if ((fb_end) - (i) < 64) m &= (1ull << ((fb_end) - (i))) - 1; \
            uint64_t st = m & ~((m << 1) | (Z)->carry); \
            (Z)->carry = m >> 63; \
            Py_ssize_t len_ = (Z)->len, nsq_ = (Z)->nsq, nt_ = (Z)->nt; \
            uint64_t stl = (i) >= len_ ? 0 \
                : (len_ - (i) >= 64 ? st : st & ((1ull << (len_ - (i))) - 1)); \
            (Z)->bm[(i) >> 6] = m; \
            (Z)->bn[(i) >> 6] = (int32_t)nsq_; \
            if ((i) < len_) \
                (Z)->nwin = nsq_ + __builtin_popcountll( \
                    len_ - (i) >= 64 ? m : m & ((1ull << (len_ - (i))) - 1)); \
            _mm512_storeu_si512((void*)((Z)->sq + nsq_), _mm512_maskz_compress_epi8(m, f)); \
            /* squeezed offsets of the starts in this block, as bytes, then widened */ \
            uint64_t sst = _pext_u64(st, m); \
            int cnt = __builtin_popcountll(sst); \
            __m512i off = _mm512_maskz_compress_epi8(sst, biota); \
            __m512i base = _mm512_set1_epi32((int)nsq_); \
            int32_t* w_ = (Z)->wj + nt_; \
            _mm512_storeu_si512((void*)w_, _mm512_add_epi32( \
                _mm512_cvtepu8_epi32(_mm512_castsi512_si128(off)), base)); \
            _mm512_storeu_si512((void*)(w_ + 16), _mm512_add_epi32( \
                _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(off, 1)), base)); \
            if (__builtin_expect(cnt > 32, 0)) {   /* one-letter words: "a a a a ..." */ \
                _mm512_storeu_si512((void*)(w_ + 32), _mm512_add_epi32( \
                    _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(off, 2)), base)); \
                _mm512_storeu_si512((void*)(w_ + 48), _mm512_add_epi32( \
                    _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(off, 3)), base)); \
            } \
            (Z)->nt = nt_ + cnt; \
            (Z)->nw += __builtin_popcountll(stl); \
            (Z)->nsq = nsq_ + __builtin_popcountll(m); \
        } while (0)

    /* out[i] = fold[d[i]] for i < n (fold[b] == b for b >= 0x80), 64 bytes per step (one
       two-register byte permute looks the low 128 entries up), plus what the other
       whole-body passes need from the same bytes (one load and two byte permutes per 64
       bytes instead of three more passes over the body): pm[6k..6k+5]
       = the pattern flags of block k as masks (bit 0 can start, bit 1 can follow, bit 2
       word character, bits 3..5 can be the third..fifth byte: SCMatcher.pflags, hiflag
       for bytes >= 0x80), *nul = any NUL byte, *enc = some 32-byte half block (aligned)
       holds only base64/hex alphabet bytes (b64: every run of 63 or more holds one, so
       without any the encoded-run pass has nothing to find);
       returns the mask of bytes >= 0x80 (nonzero: the body is not pure ASCII). out gets
       whole 64-byte blocks (zero-filled past n: the caller's buffer has the slack);
       z (or NULL): the window is squeezed here too (SC_SQUEEZE_BLOCK, z->done set by
       the caller). */
    __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2,bmi2,popcnt")))
    static uint64_t sc_fold_window(const uint8_t* fold, const uint8_t* pflags, int hiflag,
                                   const uint8_t* b64, const uint8_t* d, Py_ssize_t n,
                                   uint8_t* out, uint64_t* pm, uint64_t* nul, uint64_t* enc,
                                   SCSqz* z) {
        const __m512i biota = SC_BIOTA;
        __m512i lo = _mm512_loadu_si512((const void*)fold);
        __m512i hi = _mm512_loadu_si512((const void*)(fold + 64));
        /* one table for all but the fold: the pattern flags in bits 0..5, bit 6 a
           base64/hex alphabet byte, bit 7 the NUL byte; a block's flags are then read
           off one permute, four by vptestmb (port 5, which the permutes, the squeeze's
           compresses and widenings also need) and four by vpmovb2m of the byte shifted
           left (port 0): with the squeeze in this loop, port 5 bound it */
        const __m512i m6 = _mm512_set1_epi8(63), b6 = _mm512_set1_epi8(64);
        const __m512i e0 = _mm512_loadu_si512((const void*)b64);
        const __m512i e1 = _mm512_loadu_si512((const void*)(b64 + 64));
        __m512i plo = _mm512_ternarylogic_epi64(_mm512_loadu_si512((const void*)pflags), m6,
            _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(e0, e0), b6), 0xEA);
        plo = _mm512_mask_mov_epi8(plo, 1, _mm512_or_si512(plo, _mm512_set1_epi8((char)0x80)));
        __m512i phi = _mm512_ternarylogic_epi64(
            _mm512_loadu_si512((const void*)(pflags + 64)), m6,
            _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(e1, e1), b6), 0xEA);
        __m512i hv = _mm512_set1_epi8((char)(hiflag & 63));
        __m512i one = _mm512_set1_epi8(1), two = _mm512_set1_epi8(2), four = _mm512_set1_epi8(4);
        __m512i b3 = _mm512_set1_epi8(8);
        uint64_t anyhi = 0, anynul = 0, anyenc = 0;
        for (Py_ssize_t i = 0; i < n; i += 64) {
            __mmask64 kx = n - i >= 64 ? ~0ull : ((1ull << (n - i)) - 1);
            __m512i x = _mm512_maskz_loadu_epi8(kx, (const void*)(d + i));
            __mmask64 h = _mm512_movepi8_mask(x);
            __m512i f = _mm512_mask_mov_epi8(_mm512_permutex2var_epi8(lo, x, hi), h, x);
            _mm512_storeu_si512((void*)(out + i), f);
            if (z != NULL)
                SC_SQUEEZE_BLOCK(z, f, i, n);
            /* zero past n: no flag there; bytes >= 0x80: hiflag (no bit 6 or 7) */
            __m512i px = _mm512_mask_mov_epi8(_mm512_maskz_permutex2var_epi8(kx, plo, x, phi),
                                              h, hv);
            __m512i p2 = _mm512_add_epi8(px, px), p4 = _mm512_add_epi8(p2, p2);
            uint64_t* q = pm + 6 * (i >> 6);
            q[0] = _mm512_test_epi8_mask(px, one);
            q[1] = _mm512_test_epi8_mask(px, two);
            q[2] = _mm512_test_epi8_mask(px, four);
            q[3] = _mm512_test_epi8_mask(px, b3);
            q[4] = _mm512_movepi8_mask(_mm512_add_epi8(p4, p4));
            q[5] = _mm512_movepi8_mask(p4);
            anyhi |= h;
            anynul |= _mm512_movepi8_mask(px);
            uint64_t ne = ~_mm512_movepi8_mask(p2);
            anyenc |= ((uint32_t)ne == 0) | ((ne >> 32) == 0);
        }
        *nul = anynul;
        *enc = anyenc;
        return anyhi;
    }

    /* Pattern start candidates of the window [0, len) from the masks of sc_fold_window,
       as sc_pat_candidates finds them, and whose next four bytes can also be the second
       to fifth of a match (or follow a shorter one): the later bytes' flags come partly
       from the next block's masks (the caller gives pm one more, zero block, with the
       "can follow" bit set at the text's end and the third..fifth byte flags set past
       it when the window reaches it), the previous byte's from wprev0 at 0. The later
       bytes matter: a number of the bench corpus ("1234 the", "123 and") can start
       every PII pattern and follow with a digit, but its fourth or fifth byte kills
       them all; the NFA runs were ~0.15 us per 4 KB. */
    static Py_ssize_t sc_pat_from_masks(const uint64_t* pm, Py_ssize_t len, uint64_t wprev0,
                                        int32_t* out) {
        Py_ssize_t nc = 0;
        uint64_t wprev = wprev0;
        for (Py_ssize_t k = 0; 64 * k < len; k++) {
            const uint64_t* q = pm + 6 * k;
            uint64_t st = q[0], co = q[1], wd = q[2];
            uint64_t c = st & ((co >> 1) | (q[7] << 63)) & ((q[3] >> 2) | (q[9] << 62))
                         & ((q[4] >> 3) | (q[10] << 61)) & ((q[5] >> 4) | (q[11] << 60))
                         & ~((wd << 1) | wprev);
            wprev = wd >> 63;
            if (len - 64 * k < 64) c &= (1ull << (len - 64 * k)) - 1;
            while (c) {
                out[nc++] = (int32_t)(64 * k + __builtin_ctzll(c));
                c &= c - 1;
            }
        }
        return nc;
    }

    /* The next run of >= minl bytes with b64[byte] != 0 at or after `from` (minl >= 16):
       64 bytes at a time, a block is skipped unless it holds 8 such bytes in a row (any
       run of 16 or more has 8 in a row inside one block) or its leading bytes complete
       the run carried in; only the rare flagged blocks are walked byte by byte.
       Returns 1 and the run's [start, end) when found. */
    __attribute__((target("avx512f,avx512bw,avx512vbmi")))
    static int sc_find_run(const uint8_t* b64, const uint8_t* d, Py_ssize_t n,
                           Py_ssize_t from, Py_ssize_t minl, Py_ssize_t* rs, Py_ssize_t* re) {
        __m512i lo = _mm512_loadu_si512((const void*)b64);
        __m512i hi = _mm512_loadu_si512((const void*)(b64 + 64));
        int wide = minl >= 32;   /* then a run holds 16 in a row inside one block */
        Py_ssize_t i = from, run = 0;
        while (i < n) {
            while (i + 64 <= n) {
                __m512i x = _mm512_loadu_si512((const void*)(d + i));
                __m512i t = _mm512_permutex2var_epi8(lo, x, hi);
                uint64_t m = _mm512_test_epi8_mask(t, t) & ~_mm512_movepi8_mask(x);
                uint64_t r = m & (m >> 1); r &= r >> 2; r &= r >> 4;
                if (wide) r &= r >> 8;
                /* a run carried in from the walk of the block before may reach minl
                   with this block's leading bytes alone (this skip used to drop it: an
                   encoded run left uninspected) */
                if (r || run + __builtin_ctzll(~m) >= minl) break;
                /* no long stretch here: only the ones at the block's end carry on */
                run = __builtin_clzll(~m);
                i += 64;
            }
            Py_ssize_t stop = i + 64 <= n ? i + 64 : n;
            for (; i < stop; i++) {
                if (b64[d[i]]) {
                    run++;
                    if (run >= minl) {
                        Py_ssize_t e = i + 1;
                        while (e < n && b64[d[e]]) e++;
                        *rs = i + 1 - run; *re = e;
                        return 1;
                    }
                } else {
                    run = 0;
                }
            }
        }
        return 0;
    }

    /* Substring-term candidates in folded bytes fb[0:len]: positions whose letter can
       start a term of 2+ characters and whose next byte can be its second character or
       is a separator (the second character may follow a gap), or whose letter is a
       one-character term. flags[c]: bit 0 first, bit 1 single, bit 2 second character
       (bytes >= 0x80 always pass). Writes positions, returns their number. */
    __attribute__((target("avx512f,avx512bw,avx512vbmi")))
    static Py_ssize_t sc_ss_candidates(const uint8_t* fb, Py_ssize_t len, const uint8_t* flags,
                                       int32_t* out) {
        __m512i lo = _mm512_loadu_si512((const void*)flags);
        __m512i hi = _mm512_loadu_si512((const void*)(flags + 64));
        __m512i one = _mm512_set1_epi8(1), two = _mm512_set1_epi8(2), four = _mm512_set1_epi8(4);
        Py_ssize_t nc = 0;
        for (Py_ssize_t i = 0; i < len; i += 64) {
            __m512i x = _mm512_loadu_si512((const void*)(fb + i));
            __m512i y = _mm512_loadu_si512((const void*)(fb + i + 1));
            __m512i fx = _mm512_permutex2var_epi8(lo, x, hi);
            __m512i fy = _mm512_permutex2var_epi8(lo, y, hi);
            fx = _mm512_mask_mov_epi8(fx, _mm512_movepi8_mask(x), _mm512_set1_epi8(7));
            fy = _mm512_mask_mov_epi8(fy, _mm512_movepi8_mask(y), _mm512_set1_epi8(7));
            uint64_t first = _mm512_test_epi8_mask(fx, one);
            uint64_t single = _mm512_test_epi8_mask(fx, two);
            uint64_t second = _mm512_test_epi8_mask(fy, four);
            uint64_t gap = _mm512_testn_epi8_mask(y, y);
            uint64_t c = (first & (second | gap)) | single;
            if (len - i < 64) c &= (1ull << (len - i)) - 1;
            while (c) {
                out[nc++] = (int32_t)(i + __builtin_ctzll(c));
                c &= c - 1;
            }
        }
        return nc;
    }

    /* Pattern start candidates in [a, b) of d[0:n]: d[i] can start a pattern, d[i+1]
       can continue it (or the text ends there), and d[i-1] is not a word character.
       flags as SCMatcher.pflags; hiflag for bytes >= 0x80. Writes positions. One load
       and one byte permute per 64 bytes: the three flags are read off the same permute
       and the neighbours' bits come from shifting the masks (carried across blocks). */
    static inline int sc_pflag(const uint8_t* flags, int hiflag, uint8_t c) {
        return c >= 0x80 ? hiflag : flags[c];
    }
    __attribute__((target("avx512f,avx512bw,avx512vbmi")))
    static Py_ssize_t sc_pat_candidates(const uint8_t* d, Py_ssize_t n, Py_ssize_t a,
                                        Py_ssize_t b, const uint8_t* flags, int hiflag,
                                        int32_t* out) {
        __m512i lo = _mm512_loadu_si512((const void*)flags);
        __m512i hi = _mm512_loadu_si512((const void*)(flags + 64));
        __m512i hv = _mm512_set1_epi8((char)hiflag);
        __m512i one = _mm512_set1_epi8(1), two = _mm512_set1_epi8(2), four = _mm512_set1_epi8(4);
        Py_ssize_t nc = 0;
        uint64_t wprev = a > 0 ? (uint64_t)((sc_pflag(flags, hiflag, d[a - 1]) >> 2) & 1) : 0;
        for (Py_ssize_t i = a; i < b; i += 64) {
            Py_ssize_t len = b - i < 64 ? b - i : 64;
            __mmask64 kx = len == 64 ? ~0ull : ((1ull << len) - 1);
            __m512i x = _mm512_maskz_loadu_epi8(kx, (const void*)(d + i));
            __m512i fx = _mm512_permutex2var_epi8(lo, x, hi);
            fx = _mm512_mask_mov_epi8(fx, _mm512_movepi8_mask(x), hv);
            uint64_t st = _mm512_test_epi8_mask(fx, one) & kx;
            uint64_t co = _mm512_test_epi8_mask(fx, two) & kx;
            uint64_t wd = _mm512_test_epi8_mask(fx, four) & kx;
            /* the byte after the block's last one: the next block's first, or the end */
            uint64_t last = i + len < n ? (uint64_t)((sc_pflag(flags, hiflag, d[i + len]) >> 1) & 1)
                                        : 1;
            uint64_t c = st & ((co >> 1) | (last << (len - 1))) & ~((wd << 1) | wprev);
            wprev = (wd >> (len - 1)) & 1;
            while (c) {
                out[nc++] = (int32_t)(i + __builtin_ctzll(c));
                c &= c - 1;
            }
        }
        return nc;
    }

    /* Batch pre-pass of one message: 1 when it holds a byte >= 0x80 (folded in Python),
       else 2 when it holds a NUL byte, else 0; 64 bytes per step (it used to cost one
       byte-at-a-time pass plus a memchr per message). */
    __attribute__((target("avx512f,avx512bw")))
    static int sc_prepass(const uint8_t* d, Py_ssize_t n) {
        uint64_t hi = 0, nul = 0;
        Py_ssize_t i = 0;
        for (; i < n; i += 64) {
            __mmask64 k = n - i >= 64 ? ~0ull : ((1ull << (n - i)) - 1);
            __m512i x = _mm512_maskz_loadu_epi8(k, (const void*)(d + i));
            hi |= _mm512_movepi8_mask(x);
            nul |= _mm512_testn_epi8_mask(x, x) & k;
            if (hi) return 1;
        }
        return nul ? 2 : 0;
    }

    /* The Bloom hashes are products modulo 2^52 of a 52-bit form of the key (sc_hin), so
       that the SIMD pass computes each with one IFMA instruction per 8 keys (vpmadd52luq,
       1 uop) instead of vpmullq (3 uops); the table builder and the scalar paths compute
       the very same values with a 64-bit multiply (the low 52 bits of a product depend
       only on the low 52 bits of its factors). sc_hin folds the top 12 bits of a key onto
       bits 40..51, so a class key (at most 5 characters, tag in the top byte) becomes
       chars | tag << 44 without loss (the SIMD pass builds that form directly). */
    #define SC_M52 ((1ull << 52) - 1)
    #define SC_HW 0x9E3779B97F4A7ull    /* word hash multiplier (odd, < 2^52) */
    #define SC_HB 0xC2B2AE3D27D4Bull    /* bit hash multiplier (odd, < 2^52) */
    static inline uint64_t sc_hin(uint64_t key) {
        return (key ^ ((key >> 52) << 40)) & SC_M52;
    }
    static inline uint64_t sc_lo52(uint64_t x, uint64_t c) {
        return (x * c) & SC_M52;
    }

    /* Blocked Bloom filter: each key sets two bits of ONE 64-bit word (the word and the
       first bit from the top bits of the hash, the second from a remix of all of it), so
       a test is still one load but passes by chance ~20x less often than one bit; this
       matters most with 20,000 terms, where each false pass costs a cache miss in the
       exact table. sc_bloom_mask gives (word index, mask) to the table builder. */
    /* The word: with SC_SHARED_WORDS (in `shift`, set by the builder for tables of at
       most 8,192 keys), keys of classes 4+, 8-character keys and the 8+ prefix keys
       (tag 0x15) all use the word of their FIRST 4 characters, so the SIMD pass tests
       every class of a word start with one gathered word (~10% faster at 2,000 terms);
       classes 1..3 hash their own. Larger tables would crowd the words of common
       4-letter prefixes (25% slower at 20,000 terms): every key hashes its own word.
       The two bits come from a second, independent hash of the whole key. */
    static inline uint32_t sc_bloom_word(uint64_t key, uint32_t shift) {
        uint64_t tag = key >> 56;
        uint64_t wk = (!(shift & SC_SHARED_WORDS) || (tag >= 1 && tag <= 3)) ? key
                      : ((key & 0xFFFFFFFFull) | (4ull << 56));
        /* the top bits_log - 6 bits of the 52-bit hash (shift = 32 - bits_log) */
        return (uint32_t)(sc_lo52(sc_hin(wk), SC_HW) >> (26 + (shift & 31)));
    }
    /* SC_BLOOM_K bits per key: their indices are the low 6 bits of the first SC_BLOOM_K
       bytes of the HIGH half of the 104-bit product (every byte of it depends on every
       bit of the key; the SIMD pass reads all of them with one vpmultishiftqb of the
       word, whatever K, and gets the product from one vpmadd52huq). More bits than two
       matter for the words shared by many keys (phrases that begin with a common word:
       "the ..." crowd the words of "the?"), where two bits passed ~1% of word starts. */
    #define SC_BLOOM_K 4
    static inline uint64_t sc_hi52(uint64_t x, uint64_t c) {
        return (uint64_t)(((unsigned __int128)x * c) >> 52) & SC_M52;
    }
    static inline uint64_t sc_bloom_bits(uint64_t key) {
        uint64_t p = sc_hi52(sc_hin(key), SC_HB), m = 0;
        for (int i = 0; i < SC_BLOOM_K; i++)
            m |= 1ull << ((p >> (8 * i)) & 63);
        return m;
    }
    static inline uint64_t sc_bloom_mask(uint64_t key, uint32_t shift, uint32_t* word) {
        *word = sc_bloom_word(key, shift);
        return sc_bloom_bits(key);
    }
    /* the first-stage key of the terms of 8+ characters: their first 5, tagged 0x15 */
    static inline uint64_t sc_long5(uint64_t k) {
        return (k & 0xFFFFFFFFFFull) | (0x15ull << 56);
    }
    static inline int sc_bloom(const uint64_t* bits, uint32_t shift, uint64_t key) {
        uint32_t w;
        uint64_t m = sc_bloom_mask(key, shift, &w);
        return (bits[w] & m) == m;
    }
    static inline uint64_t sc_ckey(uint64_t k, int m) {
        return (k & ((1ull << (8 * m)) - 1)) | ((uint64_t)m << 56);
    }

    /* First 8 squeezed characters from raw position p, zero-filled after the text end or
       a hard gap (same as _sc_key8). */
    static uint64_t sc_key8_raw(const uint8_t* fold, const uint8_t* cls, const uint8_t* d,
                                Py_ssize_t n, Py_ssize_t p) {
        uint64_t k = 0; int cnt = 0, glen = 0, nl = 0;
        for (Py_ssize_t j = p; j < n && cnt < 8; j++) {
            uint64_t f = fold[d[j]];
            if (f) { k |= f << (8 * cnt); cnt++; glen = 0; nl = 0; }
            else {
                glen++; nl += cls[d[j]] == 2;
                if (glen > 8 || nl >= 2) break;
            }
        }
        return k;
    }

    /* Prefix-class mask of one word start at raw position p, scalar (window tails):
       key = first 8 squeezed characters (zero-filled at a hard gap or the text end). */
    static int sc_ww_hm_one(const uint8_t* fold, const uint8_t* cls, const uint8_t* d,
                            Py_ssize_t n, Py_ssize_t p, const uint64_t* bits,
                            const uint64_t* bitsl, uint32_t shift, int classes,
                            uint64_t* kout) {
        uint64_t k = sc_key8_raw(fold, cls, d, n, p);
        int z = 0, m, hm, allowed;
        while (z < 8 && p + z < n && fold[d[p + z]]) z++;
        allowed = z >= 5 ? 16 : (16 | ((0xF << (z - 1)) & 0xF));
        hm = sc_bloom(bits, shift, sc_ckey(k, 5)) << 4;
        for (m = 1; m <= 4; m++)
            if (classes & (1 << (m - 1))) hm |= sc_bloom(bits, shift, sc_ckey(k, m)) << (m - 1);
        hm &= allowed & classes;
        if ((classes & 32) && sc_bloom(bits, shift, sc_long5(k)) && sc_bloom(bits, shift, k))
            hm |= 32;
        *kout = k;
        return hm;
    }

    /* The separator run at raw position j as _sc_first_gap classifies it: 0 none,
       1 tight, 2 loose, 3 hard, 4 the text ends before another letter. */
    static inline int sc_gap_at(const uint8_t* fold, const uint8_t* cls, const uint8_t* d,
                                Py_ssize_t n, Py_ssize_t j) {
        int glen = 0, nb = 0, nl = 0;
        if (j + 1 < n && d[j] == ' ' && fold[d[j + 1]])
            return 2;   /* the common case: one blank between words */
        while (j < n && fold[d[j]] == 0) {
            int c = cls[d[j]];
            glen++; nb += c == 1; nl += c == 2;
            if (glen > 8 || nl >= 2) return 3;
            j++;
        }
        if (j >= n) return 4;
        if (glen == 0) return 0;
        if ((nb == 0 && glen <= 3) || nl == 1) return 1;
        return 2;
    }
    /* A candidate word start at raw p whose first word has z = 1..7 letters, with class
       mask hm (key k): drop the classes whose terms cannot match there, as _sc_probe
       would reject them, before their exact-table lookups (cache misses) and local
       squeezes. A term longer than z crosses the separator run after the word: a hard
       one (or the text's end) rejects it (so only the class of length z, or of 5..7
       characters when z >= 5, is left); a loose one after 2+ letters rejects a
       5..7-character term unless it has a word break exactly there. A shorter term would
       end inside the word. So after a loose gap a 5..7-character term needs length z or
       a word break after z characters, which the Bloom key (first 5 characters, z in
       byte 5, tag 1: a word of its own, see sc_bloom_word) of every such term records.
       On the bench corpus this drops ~2/3 of the candidates ("the is" against the term
       "THEIS"). */
    static inline uint64_t sc_zkey(uint64_t k, int z) {
        return (k & 0xFFFFFFFFFFull) | ((uint64_t)z << 40) | (1ull << 56);
    }

    /* The Bloom key of a term of 8+ characters (first 8: k8) with its next t characters
       (tail, little-endian, zero past t; t = 3 for terms of 11 or more, else 0): a hash
       of both tagged 1..3 so that it has a word of its own (see sc_bloom_word). */
    static inline uint64_t sc_tail_key(uint64_t k8, uint32_t tail, int t) {
        uint64_t h = (k8 ^ ((uint64_t)tail * 0x9E3779B97F4A7C15ull) ^ (uint64_t)t)
                     * 0xC2B2AE3D27D4EB4Full;
        h ^= h >> 29;
        return (h & 0x00FFFFFFFFFFFFFFull) | ((uint64_t)(1 + t % 3) << 56);
    }

    /* Both cuts of one candidate of the SIMD pass (the word's gap, above; then, when
       the 8+ class is left, the tail test: does some term of key k go on as the text
       does? tailp: the 4 squeezed letters after the key, or NULL when they may lie past
       the squeezed look-ahead; tmask: bit t set when some term has that t, 0 or 3: two
       Bloom tests at most, one per tail length 1..4 cost more than they saved. Two-word
       terms whose first word is a common 8-letter one, "complete thie" against "complete
       the", passed both 8+ stages ~4 times per 4 KB of the bench corpus, each costing a
       probe). Few data-dependent branches: the Bloom tests are made whether needed or
       not and their results combined with masks. The candidate listing was bound by
       mispredicted branches (~100 ticks per candidate, ~20 candidates per 4 KB of the
       bench corpus). */
    static inline int sc_cand_cut(const uint8_t* fold, const uint8_t* cls, const uint8_t* d,
            Py_ssize_t n, Py_ssize_t p, int z, uint64_t k, int hm, const uint64_t* bits,
            uint32_t shift, const uint8_t* tailp, int tmask) {
        Py_ssize_t e = p + z;
        int g = 0;   /* a first fragment of 8 letters: nothing to cut */
        if (z <= 7)
            g = sc_gap_at(fold, cls, d, n, e);
        int cz = z <= 4 ? 1 << (z - 1) : 16;
        hm = g >= 3 ? hm & cz : hm;
        int zb = sc_bloom(bits, shift, sc_zkey(k, z));
        hm &= ~(((g == 2) & (z >= 2) & !zb) << 4);
        if (tailp != NULL) {
            uint32_t tail;
            int ok = 0;
            memcpy(&tail, tailp, 4);
            for (int tm = tmask; tm; tm &= tm - 1) {   /* the same for the whole call */
                int t = __builtin_ctz(tm);
                ok |= sc_bloom(bits, shift, sc_tail_key(k, tail & ((1u << (8 * t)) - 1), t));
            }
            hm &= ~((!ok) << 5);
        }
        return hm;
    }

    /* Eight blocked-Bloom tests at once (see sc_bloom_mask), lanes in lm only; keys in
       sc_hin form (a class key is built directly as chars | tag << 44, one vpternlogq). */
    #define SC_SIMD_TARGET "avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi,avx512ifma"
    /* Gather the Bloom words of eight word keys; shiftv = 26 + (shift & 31). */
    __attribute__((target(SC_SIMD_TARGET)))
    static inline __m512i sc_bword8(const uint64_t* bits, __m128i shiftv, __m512i wk,
                                    __mmask8 lm) {
        __m512i p = _mm512_madd52lo_epu64(_mm512_setzero_si512(), wk,
                                          _mm512_set1_epi64((long long)SC_HW));
        return _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), lm,
                                           _mm512_srl_epi64(p, shiftv), (const void*)bits, 8);
    }
    /* Test eight keys against their gathered words (sc_bloom_bits per lane): one
       vpmultishiftqb brings word bit p.byte[i] mod 64 to bit 0 of byte i. */
    __attribute__((target(SC_SIMD_TARGET)))
    static inline __mmask8 sc_btest8(__m512i w, __m512i key, __mmask8 lm) {
        const __m512i ones = _mm512_set1_epi64((long long)(0x0101010101010101ull
                                                           >> (64 - 8 * SC_BLOOM_K)));
        __m512i p = _mm512_madd52hi_epu64(_mm512_setzero_si512(), key,
                                          _mm512_set1_epi64((long long)SC_HB));
        __m512i ms = _mm512_multishift_epi64_epi8(p, w);
        return _mm512_mask_cmpeq_epi64_mask(lm, _mm512_and_si512(ms, ones), ones);
    }
    /* Eight blocked-Bloom tests of class 1..3 keys (their own words), lanes in lm. */
    __attribute__((target(SC_SIMD_TARGET)))
    static inline __mmask8 sc_bloom8(const uint64_t* bits, __m128i shiftv, __m512i key,
                                     __mmask8 lm) {
        return sc_btest8(sc_bword8(bits, shiftv, key, lm), key, lm);
    }
    /* (key & mask) | tag in one vpternlogq (0xEA: a & b | c) */
    __attribute__((target(SC_SIMD_TARGET)))
    static inline __m512i sc_ckey8(__m512i key, long long mask, long long tag) {
        return _mm512_ternarylogic_epi64(key, _mm512_set1_epi64(mask), _mm512_set1_epi64(tag),
                                         0xEA);
    }

    /* The group loops of sc_ww_candidates: the prefix-class mask of every word start
       wj[0:nv] (indices into the squeezed letters sq) as a record of 8 bytes per group of
       8 starts, rec[g / 8]. */
    #define SC_WW_TARGET "avx512f,avx512bw,avx512vbmi,avx512vbmi2,avx512dq,avx512cd,avx512vl,avx512ifma,bmi2,popcnt"
    /* byte 4l of a vector of 32-bit lanes into all 8 bytes of 64-bit lane l, plus the
       offsets 0..7 within each 64-bit lane */
    #define SC_KREP _mm512_set_epi8( \
            28, 28, 28, 28, 28, 28, 28, 28, 24, 24, 24, 24, 24, 24, 24, 24, \
            20, 20, 20, 20, 20, 20, 20, 20, 16, 16, 16, 16, 16, 16, 16, 16, \
            12, 12, 12, 12, 12, 12, 12, 12, 8, 8, 8, 8, 8, 8, 8, 8, \
            4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0)
    #define SC_KINC _mm512_set1_epi64(0x0706050403020100ll)
    /* The keys of the starts wj[G:G+8] (lanes in LMo): the 8 squeezed bytes at each start,
       cut out of the 128 bytes at the group's first start by one two-register byte
       permute. A gather there made the Bloom word gather wait for it, and gathers do not
       overlap one another: the two in a row cost ~4x the permute. Eight starts spanning
       more than 120 letters (very long words) take the gather. Lanes outside LMo hold
       garbage: every use of them is masked. */
    #define SC_KEYS8(G, Jo, KEYo, LMo) do { \
            Py_ssize_t r_ = nv - (G); \
            LMo = r_ >= 8 ? 0xFF : (__mmask8)((1u << r_) - 1); \
            Jo = _mm256_maskz_loadu_epi32(LMo, (const void*)(wj + (G))); \
            int32_t j0_ = wj[G]; \
            if (__builtin_expect(wj[(G) + (r_ >= 8 ? 7 : r_ - 1)] - j0_ > 120, 0)) { \
                KEYo = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), LMo, Jo, \
                                                   (const void*)sq, 1); \
            } else { \
                __m512i rel_ = _mm512_castsi256_si512( \
                    _mm256_sub_epi32(Jo, _mm256_set1_epi32(j0_))); \
                KEYo = _mm512_permutex2var_epi8( \
                    _mm512_loadu_si512((const void*)(sq + j0_)), \
                    _mm512_add_epi8(_mm512_permutexvar_epi8(krep, rel_), kinc), \
                    _mm512_loadu_si512((const void*)(sq + j0_ + 64))); \
            } \
        } while (0)

    /* With shared words (tables of at most 8,192 keys, see sc_bloom_word): classes 4,
       5..7 and 8+ (its 5-character prefix key and its 8-character key) of a start are
       all tested against ONE gathered word, the word of its first 4 characters. The
       four keys' SC_BLOOM_K = 4 bit indices go two keys to a 64-bit lane (the second
       key's moved up by one vpshufd), so two vpmultishiftqb and two compares test all
       16 bits of 8 starts. The loop is bound by the two ports that run 512-bit
       instructions (p0: IFMA, shifts, mask moves; p5: shuffles, compares), so it keeps
       to ~26 such uops per group: the compare masks are stored as they are (a record
       of 8 bytes per group, see below) and what depends on the first word's length
       (class 4 needs at most 4 letters, see sc_ww_candidates) is left to the ~2% of
       starts that pass; the constants are pinned in registers (gcc rematerialised a
       dozen broadcasts per group, all on p5). Record of group g/8 in rec[g/8]: bits
       0..15 the dword compare mask of (class 5..7 key, class 4 key) per lane (bit 2l:
       class 5..7, 2l + 1: class 4), bits 16..23 the 8+ keys, bits 24 + 8(m - 1)..
       class m = 1..3 (tested only where the first word has at most m letters: their
       own words, one more gather each). Stage A (keys, shared word gather) runs one
       group ahead of the tests. */
    #if SC_BLOOM_K != 4
    #error "sc_groups_shared packs two keys' 4 bit indices per 64-bit lane"
    #endif
    #define SC_PIN(v) __asm__("" : "+v"(v))
    __attribute__((target(SC_WW_TARGET)))
    static void sc_groups_shared(const uint8_t* sq, const int32_t* wj, Py_ssize_t nv,
                                 const uint64_t* bits, __m128i shiftv, int classes,
                                 uint64_t* rec) {
        __m512i krep = SC_KREP, kinc = SC_KINC;
        const __m512i zero = _mm512_setzero_si512();
        __m512i m32 = _mm512_set1_epi64(0xFFFFFFFFll);
        __m512i m40 = _mm512_set1_epi64(0xFFFFFFFFFFll);
        __m512i t4 = _mm512_set1_epi64(4ll << 44), t5 = _mm512_set1_epi64(5ll << 44);
        __m512i t15 = _mm512_set1_epi64(0x15ll << 44);
        __m512i f12 = _mm512_set1_epi64((long long)(0xFFFull << 40));
        __m512i hwv = _mm512_set1_epi64((long long)SC_HW);
        __m512i hbv = _mm512_set1_epi64((long long)SC_HB);
        __m512i ones = _mm512_set1_epi32(0x01010101);
        __m512i shv = _mm512_broadcastq_epi64(shiftv);
        const int shortc = classes & 7;
        __m256i J, Jx;
        __m512i key, keyx, W, Wx, k4x;
        __mmask8 lm, lmx;
        if (nv <= 0)
            return;
    #define SC_STAGE_A(G) do { \
            SC_KEYS8(G, Jx, keyx, lmx); \
            k4x = _mm512_ternarylogic_epi64(keyx, m32, t4, 0xEA); \
            __m512i h_ = _mm512_madd52lo_epu64(zero, k4x, hwv); \
            Wx = _mm512_mask_i64gather_epi64(zero, lmx, _mm512_srlv_epi64(h_, shv), \
                                             (const void*)bits, 8); \
        } while (0)
        /* opaque to the compiler from here: kept in registers, not rematerialised */
        SC_PIN(krep); SC_PIN(kinc); SC_PIN(m32); SC_PIN(m40); SC_PIN(t4); SC_PIN(t5);
        SC_PIN(t15); SC_PIN(f12); SC_PIN(hwv); SC_PIN(hbv); SC_PIN(ones); SC_PIN(shv);
        SC_STAGE_A(0);
        for (Py_ssize_t g = 0; g < nv; g += 8) {
            J = Jx; key = keyx; W = Wx; lm = lmx;
            __m512i p4 = _mm512_madd52hi_epu64(zero, k4x, hbv);   /* class 4 key, stage A's */
            if (g + 8 < nv)
                SC_STAGE_A(g + 8);
            /* class keys in sc_hin form: chars | tag << 44; the 8-character key as
               key ^ ((key >> 12) & 0xFFF << 40) (IFMA reads the low 52 bits) */
            __m512i p5 = _mm512_madd52hi_epu64(zero,
                _mm512_ternarylogic_epi64(key, m40, t5, 0xEA), hbv);
            __m512i pl = _mm512_madd52hi_epu64(zero,
                _mm512_ternarylogic_epi64(key, m40, t15, 0xEA), hbv);
            __m512i p8 = _mm512_madd52hi_epu64(zero,
                _mm512_ternarylogic_epi64(key, _mm512_srli_epi64(key, 12), f12, 0x78), hbv);
            /* (p5 low dword, p4 low dword) and (pl, p8) per lane: dword 2l+1 <- 2l */
            __m512i q1 = _mm512_mask_shuffle_epi32(p5, 0xAAAA, p4, (_MM_PERM_ENUM)0xA0);
            __m512i q2 = _mm512_mask_shuffle_epi32(pl, 0xAAAA, p8, (_MM_PERM_ENUM)0xA0);
            /* all the selected bits of W set: none of ~W (one NOT for both tests, then
               one vptestnm each instead of an AND and a compare); lanes outside lm
               gathered a zero word: all their bits fail */
            __m512i nw = _mm512_ternarylogic_epi64(W, W, W, 0x55);
            __mmask16 c1 = _mm512_mask_testn_epi32_mask(
                0xFFFF, _mm512_multishift_epi64_epi8(q1, nw), ones);
            __mmask8 c2 = _mm512_testn_epi64_mask(_mm512_multishift_epi64_epi8(q2, nw), ones);
            uint8_t* r = (uint8_t*)(rec + (g >> 3));
            _store_mask16((__mmask16*)r, c1);
            _store_mask8((__mmask8*)(r + 2), c2);
            if (shortc) {   /* the same for the whole call: predicted */
                __m256i zl = _mm256_sub_epi32(
                    _mm256_maskz_loadu_epi32(lm, (const void*)(wj + g + 1)), J);
                for (int m = 1; m <= 3; m++) {
                    __mmask8 al = 0;
                    if (shortc & (1 << (m - 1))) {
                        __m512i km = sc_ckey8(key, (long long)((1ull << (8 * m)) - 1),
                                              (long long)m << 44);
                        al = sc_bloom8(bits, shiftv, km,
                            _mm256_mask_cmple_epi32_mask(lm, zl, _mm256_set1_epi32(m)));
                    }
                    r[2 + m] = al;
                }
            }
        }
    #undef SC_STAGE_A
    }

    /* Without shared words (larger tables): every class key hashes its own word; the
       record of a group is the class mask of each lane, a byte each. */
    __attribute__((target(SC_WW_TARGET)))
    static void sc_groups_own(const uint8_t* sq, const int32_t* wj, Py_ssize_t nv,
                              const uint64_t* bits, __m128i shiftv, int classes,
                              uint64_t* rec) {
        const __m512i krep = SC_KREP, kinc = SC_KINC;
        /* allowed classes by first-fragment length z = 1..8 (index z - 1), 32-bit lanes */
        const __m256i atab = _mm256_and_si256(
            _mm256_set_epi32(16, 16, 16, 16, 16 | 8, 16 | 12, 16 | 14, 16 | 15),
            _mm256_set1_epi32(classes & 31));
        const long long M40 = 0xFFFFFFFFFFll;
        __m256i J;
        __m512i key;
        __mmask8 lm;
        for (Py_ssize_t g = 0; g < nv; g += 8) {
            SC_KEYS8(g, J, key, lm);
            __m256i Jn = _mm256_maskz_loadu_epi32(lm, (const void*)(wj + g + 1));
            __m256i zi = _mm256_min_epu32(
                _mm256_sub_epi32(_mm256_sub_epi32(Jn, J), _mm256_set1_epi32(1)),
                _mm256_set1_epi32(7));
            __m256i allow = _mm256_permutexvar_epi32(zi, atab);
            __mmask8 al = _mm256_mask_test_epi32_mask(lm, allow, _mm256_set1_epi32(16));
            __mmask8 ps = sc_bloom8(bits, shiftv, sc_ckey8(key, M40, 5ll << 44), al);
            __m256i hm = _mm256_maskz_mov_epi32(ps, _mm256_set1_epi32(16));
            for (int m = 1; m <= 4; m++) {
                if (!(classes & (1 << (m - 1)))) continue;
                al = _mm256_mask_test_epi32_mask(lm, allow, _mm256_set1_epi32(1 << (m - 1)));
                __m512i km = sc_ckey8(key, (long long)((1ull << (8 * m)) - 1),
                                      (long long)m << 44);
                ps = sc_bloom8(bits, shiftv, km, al);
                hm = _mm256_mask_or_epi32(hm, ps, hm, _mm256_set1_epi32(1 << (m - 1)));
            }
            if (classes & 32) {
                ps = sc_bloom8(bits, shiftv, sc_ckey8(key, M40, 0x15ll << 44), lm);
                if (ps) {   /* a second gather: worth a branch */
                    /* the 8-character key in sc_hin form */
                    __m512i h8 = _mm512_ternarylogic_epi64(key, _mm512_srli_epi64(key, 12),
                        _mm512_set1_epi64((long long)(0xFFFull << 40)), 0x78);
                    ps = sc_bloom8(bits, shiftv, h8, ps);
                    hm = _mm256_mask_or_epi32(hm, ps, hm, _mm256_set1_epi32(32));
                }
            }
            _mm_storel_epi64((__m128i*)(rec + (g >> 3)), _mm256_cvtepi32_epi8(hm));
        }
    }
    #undef SC_KEYS8

    /* Whole-word candidates of the window [a, b), AVX-512 (BW, VBMI2, DQ, CD) + BMI2.
       1. Squeeze (already done by the fold pass when zq->done: SCSqz): the letters of
          the folded bytes fb[0:fb_end] (window + look-ahead) are packed 64 bytes per
          vpcompressb into sq, and the squeezed index of every word start is listed in
          wj (the nw starts inside the window first, then those of the
          look-ahead: the one after the last window start gives its first fragment's
          length). Only squeezed indices are listed: raw positions are needed for the few
          candidates alone, and come from the block letter masks bm and the squeezed index
          bn of each block's first letter. The listing is one vpcompressb of a byte iota
          and two widenings per block: listing both raw and squeezed positions with eight
          vpcompressd and their broadcasts saturated the shuffle port (~2.5x slower).
       2. Eight word starts at a time gather their first 8 squeezed characters (the key:
          separators are skipped for free, so "N.O.F.O.R.N" keys as "NOFORN"), take the
          first fragment's length from the next start, then test every prefix class
          with gathered Bloom words; a key may run across a hard gap, which only costs an
          extra probe (verification rejects it). Starts too close to a cut window end are
          done by sc_ww_hm_one. Every group leaves a record of its lanes' test results
          in rec (see sc_groups_shared); the groups with one left are found 8 at a time
          and the rare candidates written out as (raw position cp, key ck, class mask
          chm). */
    __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2,avx512dq,avx512cd,avx512vl,avx512ifma,bmi2,popcnt")))
    static Py_ssize_t sc_ww_candidates(const uint8_t* fold, const uint8_t* cls,
            const uint8_t* d, Py_ssize_t n, Py_ssize_t a, Py_ssize_t b, const uint8_t* fb,
            Py_ssize_t fb_end, const uint64_t* bits, const uint64_t* bitsl, uint32_t shift,
            int classes, uint8_t* sq, int32_t* wj, int32_t* cp, uint64_t* ck,
            int32_t* chm, uint64_t* rec, uint64_t* bm, int32_t* bn, Py_ssize_t* nsq_win,
            int keys, const SCSqz* zq) {
        Py_ssize_t nc = 0, k;
        SCSqz zl_;
        if (zq == NULL || !zq->done) {
            const __m512i biota = SC_BIOTA;
            zl_.sq = sq; zl_.wj = wj; zl_.bm = bm; zl_.bn = bn;
            zl_.len = b - a; zl_.nsq = zl_.nw = zl_.nt = zl_.nwin = 0;
            zl_.carry = (a > 0 && fold[d[a - 1]]) ? 1 : 0;
            for (Py_ssize_t i = 0; i < fb_end; i += 64) {
                __m512i f = _mm512_loadu_si512((const void*)(fb + i));
                SC_SQUEEZE_BLOCK(&zl_, f, i, fb_end);
            }
            zq = &zl_;
        }
        Py_ssize_t nsq = zq->nsq, nw = zq->nw, nt = zq->nt, nwin = zq->nwin;
        bn[(fb_end + 63) >> 6] = (int32_t)nsq;
        *nsq_win = nwin;
        sc_prof_mark(1);
        memset(sq + nsq, 0, 80);   /* the substring pass reads 4 bytes past any letter */
        if (!keys)
            return 0;   /* squeeze only: for the substring pass */
        if (nt == nw)   /* sentinel: no start after the last one, the letters end */
            wj[nw] = (int32_t)nsq;
        /* starts whose 8 characters may lie past the squeezed look-ahead: scalar */
        Py_ssize_t nv = nw;
        if (a + fb_end < n)
            while (nv > 0 && wj[nv - 1] + 9 > nsq) nv--;
        const __m128i shiftv = _mm_cvtsi32_si128(26 + (int)(shift & 31));
        const int shared = (shift & SC_SHARED_WORDS) != 0;
        if (shared)
            sc_groups_shared(sq, wj, nv, bits, shiftv, classes, rec);
        else
            sc_groups_own(sq, wj, nv, bits, shiftv, classes, rec);
        /* the lanes with a test passed (~2% of them), as indices of wj into cp (the
           candidates' raw positions are written over them below: nc2 <= k), 64 lanes (8
           records) at a time without a branch per group or lane: a mispredicted branch
           per visited group and lane cost ~30 ticks each */
        const uint64_t valid = !shared ? ~0ull
                               : (classes & 7) ? 0xFFFFFFFFFFFFull : 0xFFFFFFull;
        const __m512i validv = _mm512_set1_epi64((long long)valid);
        const __m512i iota16 = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8,
                                                7, 6, 5, 4, 3, 2, 1, 0);
        Py_ssize_t ng = (nv + 7) >> 3;
        for (Py_ssize_t gg = 0; gg < ng; gg += 8) {
            __mmask8 l8 = ng - gg >= 8 ? 0xFF : (__mmask8)((1u << (ng - gg)) - 1);
            __m512i rv = _mm512_and_si512(
                _mm512_maskz_loadu_epi64(l8, (const void*)(rec + gg)), validv);
            uint64_t lanes;
            if (shared) {
                /* per record: lane l passed when bit 2l or 2l + 1 (classes 5..7, 4) or
                   bit l of bytes 2..5 (8+, classes 1..3) is set */
                __m512i x = _mm512_and_si512(_mm512_or_si512(rv, _mm512_srli_epi64(rv, 1)),
                                             _mm512_set1_epi64(0x5555));
                x = _mm512_and_si512(_mm512_or_si512(x, _mm512_srli_epi64(x, 1)),
                                     _mm512_set1_epi64(0x3333));
                x = _mm512_and_si512(_mm512_or_si512(x, _mm512_srli_epi64(x, 2)),
                                     _mm512_set1_epi64(0x0F0F));
                x = _mm512_or_si512(x, _mm512_srli_epi64(x, 4));
                x = _mm512_ternarylogic_epi64(x, _mm512_srli_epi64(rv, 16),
                                              _mm512_srli_epi64(rv, 24), 0xFE);
                x = _mm512_ternarylogic_epi64(x, _mm512_srli_epi64(rv, 32),
                                              _mm512_srli_epi64(rv, 40), 0xFE);
                lanes = (uint64_t)_mm_cvtsi128_si64(_mm512_cvtepi64_epi8(x));
            } else {
                lanes = _mm512_test_epi8_mask(rv, rv);
            }
            for (int h = 0; h < 64; h += 16) {
                __mmask16 c = (__mmask16)(lanes >> h);
                _mm512_storeu_si512((void*)(cp + nc), _mm512_maskz_compress_epi32(c,
                    _mm512_add_epi32(iota16, _mm512_set1_epi32((int)(8 * gg + h)))));
                nc += __builtin_popcount(c);
            }
        }
        /* their raw positions (the r-th letter of a block is the r-th set bit of its
           mask), keys (the 8 bytes the groups read) and class masks */
        Py_ssize_t blk = 0, nc2 = 0;
        const int keep = classes & 63;
        for (k = 0; k < nc; k++) {
            int32_t q = cp[k], j = wj[q];
            uint64_t r = rec[q >> 3] & valid;
            int l = q & 7;
            int hmk = shared
                ? (int)((((r >> (2 * l)) & 1) << 4) | (((r >> (2 * l + 1)) & 1) << 3)
                        | (((r >> (16 + l)) & 1) << 5) | ((r >> (24 + l)) & 1)
                        | (((r >> (32 + l)) & 1) << 1) | (((r >> (40 + l)) & 1) << 2))
                : (int)((r >> (8 * l)) & 0xFF);
            int32_t zz = wj[q + 1] - j;   /* the first fragment: to the next start */
            int z = zz < 8 ? zz : 8;
            /* a term shorter than the word it starts cannot match: class m <= 4 only
               where the first word has at most m letters */
            hmk &= keep & (0x30 | ((0xF << (z - 1)) & 0xF));
            /* the block of squeezed index j: 16 entries of bn per step */
            for (;;) {
                __mmask16 le = _mm512_cmple_epi32_mask(
                    _mm512_loadu_si512((const void*)(bn + blk + 1)), _mm512_set1_epi32(j));
                if (le != 0xFFFF) {
                    blk += __builtin_ctz(~(unsigned)le);
                    break;
                }
                blk += 16;
            }
            uint64_t bit = _pdep_u64(1ull << (j - bn[blk]), bm[blk]);
            int32_t pk = (int32_t)(a + 64 * blk + __builtin_ctzll(bit));
            uint64_t kk;
            memcpy(&kk, sq + j, 8);
            /* the tail test needs the 4 letters after the key, or the text's end */
            hmk = sc_cand_cut(fold, cls, d, n, pk, z, kk, hmk, bits, shift,
                              (hmk & 32) && (j + 12 <= nsq || a + fb_end >= n)
                              ? sq + j + 8 : NULL, (classes >> 8) & 31);
            cp[nc2] = pk; chm[nc2] = hmk; ck[nc2] = kk;
            nc2 += hmk != 0;
        }
        nc = nc2;
        for (k = nv; k < nw; k++) {
            uint64_t kk;
            int32_t j = wj[k];
            while (bn[blk + 1] <= j) blk++;
            uint64_t bit = _pdep_u64(1ull << (j - bn[blk]), bm[blk]);
            int32_t pk = (int32_t)(a + 64 * blk + __builtin_ctzll(bit));
            int hmk = sc_ww_hm_one(fold, cls, d, n, pk, bits, bitsl, shift, classes, &kk);
            cp[nc] = pk; ck[nc] = kk; chm[nc] = hmk;
            nc += hmk != 0;
        }
        sc_prof_mark(2);
        return nc;
    }

    /* Substring-term candidates of a window from its squeezed letters sq[0:nsq] (as left
       by sc_ww_candidates, with look-ahead and zero padding past them): the letters where
       a term's first min(4, len) characters begin, compared exactly, 64 letters per step
       (one compare per prefix character). Separators are already gone from sq, so
       "S.E.C.R.E.T" and "SE-CRET" are candidates like "SECRET"; verification checks the
       gaps. Each candidate's raw position comes from the block letter masks bm and the
       squeezed index bn of each block's first letter (the r-th letter of a block is the
       r-th set bit of its mask). Writes absolute raw positions (a + offset), increasing. */
    __attribute__((target("avx512f,avx512bw,bmi2")))
    static Py_ssize_t sc_ss_prefix_candidates(const uint8_t* sq, Py_ssize_t nsq,
            const uint8_t* pfx, const uint8_t* plen, int npfx, const uint64_t* bm,
            const int32_t* bn, Py_ssize_t a, int32_t* out) {
        Py_ssize_t nc = 0, blk = 0;
        for (Py_ssize_t j = 0; j < nsq; j += 64) {
            __m512i l0 = _mm512_loadu_si512((const void*)(sq + j));
            __m512i l1 = _mm512_loadu_si512((const void*)(sq + j + 1));
            __m512i l2 = _mm512_loadu_si512((const void*)(sq + j + 2));
            __m512i l3 = _mm512_loadu_si512((const void*)(sq + j + 3));
            uint64_t c = 0;
            for (int q = 0; q < npfx; q++) {
                const uint8_t* pq = pfx + 4 * q;
                int lq = plen[q];
                __mmask64 mq = _mm512_cmpeq_epi8_mask(l0, _mm512_set1_epi8((char)pq[0]));
                if (lq > 1) mq = _mm512_mask_cmpeq_epi8_mask(mq, l1, _mm512_set1_epi8((char)pq[1]));
                if (lq > 2) mq = _mm512_mask_cmpeq_epi8_mask(mq, l2, _mm512_set1_epi8((char)pq[2]));
                if (lq > 3) mq = _mm512_mask_cmpeq_epi8_mask(mq, l3, _mm512_set1_epi8((char)pq[3]));
                c |= mq;
            }
            if (nsq - j < 64) c &= (1ull << (nsq - j)) - 1;
            while (c) {
                Py_ssize_t jj = j + __builtin_ctzll(c);
                c &= c - 1;
                while (bn[blk + 1] <= jj) blk++;
                uint64_t bit = _pdep_u64(1ull << (jj - bn[blk]), bm[blk]);
                out[nc++] = (int32_t)(a + 64 * blk + __builtin_ctzll(bit));
            }
        }
        return nc;
    }
    """
    ctypedef struct SCSqz:
        uint8_t* sq
        int32_t* wj
        uint64_t* bm
        int32_t* bn
        Py_ssize_t len, nsq, nw, nt, nwin
        uint64_t carry
        int done
    int sc_simd_available() nogil
    void sc_prof_mark(int phase) nogil
    int SC_PROF
    unsigned long long sc_prof_t[16]
    int sc_prepass(const uint8_t* d, Py_ssize_t n) nogil
    int sc_bloom(const uint64_t* bits, uint32_t shift, uint64_t key) nogil
    uint64_t sc_long5(uint64_t k) nogil
    uint64_t sc_bloom_mask(uint64_t key, uint32_t shift, uint32_t* word) nogil
    uint64_t sc_tail_key(uint64_t k8, uint32_t tail, int t) nogil
    Py_ssize_t sc_ss_candidates(const uint8_t* fb, Py_ssize_t len, const uint8_t* flags,
                                int32_t* out) nogil
    int sc_find_run(const uint8_t* b64, const uint8_t* d, Py_ssize_t n, Py_ssize_t start,
                    Py_ssize_t minl, Py_ssize_t* rs, Py_ssize_t* re) nogil
    uint64_t sc_fold_window(const uint8_t* fold, const uint8_t* pflags, int hiflag,
                            const uint8_t* b64, const uint8_t* d, Py_ssize_t n, uint8_t* out,
                            uint64_t* pm, uint64_t* nul, uint64_t* enc, SCSqz* z) nogil
    Py_ssize_t sc_pat_from_masks(const uint64_t* pm, Py_ssize_t len, uint64_t wprev0,
                                 int32_t* out) nogil
    Py_ssize_t sc_pat_candidates(const uint8_t* d, Py_ssize_t n, Py_ssize_t a, Py_ssize_t b,
                                 const uint8_t* flags, int hiflag, int32_t* out) nogil
    Py_ssize_t sc_ww_candidates(const uint8_t* fold, const uint8_t* cls, const uint8_t* d,
                                Py_ssize_t n, Py_ssize_t a, Py_ssize_t b, const uint8_t* fb,
                                Py_ssize_t fb_end, const uint64_t* bits,
                                const uint64_t* bitsl, uint32_t shift, int classes,
                                uint8_t* sq, int32_t* wj, int32_t* cp,
                                uint64_t* ck, int32_t* chm, uint64_t* rec, uint64_t* bm,
                                int32_t* bn,
                                Py_ssize_t* nsq_win, int keys, const SCSqz* zq) nogil
    Py_ssize_t sc_ss_prefix_candidates(const uint8_t* sq, Py_ssize_t nsq, const uint8_t* pfx,
                                       const uint8_t* plen, int npfx, const uint64_t* bm,
                                       const int32_t* bn, Py_ssize_t a, int32_t* out) nogil

cdef int _sc_use_simd = -1


def scan_simd(enable=None):
    """Whether the AVX-512/BMI2 hot path is used; enable=False forces the portable path
    (tests run both), True re-enables it when the CPU has it."""
    global _sc_use_simd
    if enable is not None:
        _sc_use_simd = 1 if (enable and sc_simd_available()) else 0
    elif _sc_use_simd < 0:
        _sc_use_simd = sc_simd_available()
    return bool(_sc_use_simd)


scan_simd()


cdef inline uint32_t _sc_hash(uint64_t key) noexcept nogil:
    return <uint32_t>((key * <uint64_t>0x9E3779B97F4A7C15u) >> 32)


cdef inline int _sc_vec_push(SCVec* v, int32_t msg, int32_t code, int64_t s, int64_t e) noexcept nogil:
    cdef SCHit* na
    cdef Py_ssize_t nc
    if v.n == v.cap:
        nc = v.cap * 2 + 64
        na = <SCHit*>realloc(v.a, nc * sizeof(SCHit))
        if na == NULL:
            v.oom = 1
            return -1
        v.a = na
        v.cap = nc
    v.a[v.n].msg = msg
    v.a[v.n].code = code
    v.a[v.n].start = s
    v.a[v.n].end = e
    v.n += 1
    return 0


cdef int _sc_work_reserve(SCWork* w, Py_ssize_t n) noexcept nogil:
    """Room for a window of n bytes (at most n/2 + 1 word starts)."""
    # slack: the SIMD passes store whole vectors past the last entry; the window is
    # folded and squeezed with SC_LOOKAHEAD bytes beyond its end. ws also receives the
    # substring candidates, up to one per byte ("pppp..." when a term starts with "pp"):
    # it has room for all of them, not only for the word starts.
    cdef Py_ssize_t k = n // 2 + 64
    cdef Py_ssize_t kw = (n + SC_LOOKAHEAD) // 2 + 160   # + whole-vector listing stores
    cdef Py_ssize_t nblk = (n + SC_LOOKAHEAD) // 64 + 4
    if n <= w.cap:
        return 0
    _sc_work_free(w)
    w.ws = <int32_t*>malloc((n + 64) * sizeof(int32_t))
    w.bm = <uint64_t*>malloc(nblk * sizeof(uint64_t))
    w.bn = <int32_t*>malloc((nblk + 16) * sizeof(int32_t))   # + a vector read past the end
    w.pm = <uint64_t*>malloc(6 * nblk * sizeof(uint64_t))
    w.fb = <uint8_t*>malloc(n + SC_LOOKAHEAD + 160)
    w.ck = <uint64_t*>malloc(k * sizeof(uint64_t))
    w.chm = <int32_t*>malloc(k * sizeof(int32_t))
    w.gr = <uint64_t*>malloc((k // 8 + 16) * sizeof(uint64_t))
    w.sq = <uint8_t*>malloc(n + SC_LOOKAHEAD + 160)
    w.wj = <int32_t*>malloc(kw * sizeof(int32_t))
    if (w.ws == NULL or w.fb == NULL or w.ck == NULL or w.chm == NULL or w.gr == NULL
            or w.sq == NULL
            or w.wj == NULL or w.bm == NULL or w.bn == NULL
            or w.pm == NULL):
        _sc_work_free(w)
        return -1
    w.cap = n
    return 0


cdef void _sc_work_free(SCWork* w) noexcept nogil:
    free(w.ws); free(w.fb); free(w.ck); free(w.chm); free(w.gr); free(w.sq); free(w.wj)
    free(w.bm); free(w.bn); free(w.pm); free(w.ph.a)
    w.pm = NULL
    memset(&w.ph, 0, sizeof(SCVec))
    w.bm = NULL
    w.bn = NULL
    w.sq = NULL
    w.wj = NULL
    w.ws = NULL
    w.fb = NULL
    w.ck = NULL
    w.chm = NULL
    w.gr = NULL
    w.cap = 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _sc_word_starts(const uint8_t* fold, const uint8_t* d, Py_ssize_t a,
                                Py_ssize_t b, int32_t* ws) noexcept nogil:
    """List i in [a, b) where d[i] is a letter/digit and d[i-1] is not (branch-free)."""
    cdef Py_ssize_t i, nw = 0
    cdef uint32_t prev = (fold[d[a - 1]] != 0) if a > 0 else 0
    cdef uint32_t cur
    for i in range(a, b):
        cur = fold[d[i]] != 0
        ws[nw] = <int32_t>i
        nw += cur & (prev ^ 1)
        prev = cur
    return nw


cdef inline uint8_t _sc_gap_kind(int glen, int nb, int nl) noexcept nogil:
    if glen == 0:
        return SC_GAP_NONE
    if glen > SC_MAX_GAP or nl >= 2:
        return SC_GAP_HARD
    if (nb == 0 and glen <= 3) or nl == 1:
        return SC_GAP_TIGHT
    return SC_GAP_LOOSE


cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil
    void __builtin_prefetch(const void*) nogil


@cython.boundscheck(False)
@cython.wraparound(False)
cdef uint64_t _sc_key8(const uint8_t* fold, const uint8_t* cls, const uint8_t* d, Py_ssize_t n,
                       Py_ssize_t p) noexcept nogil:
    """The first 8 squeezed characters from p (d[p] is a letter), zero-filled when the
    text ends or a hard gap comes first (no term can match across one)."""
    cdef uint64_t k = 0, f
    cdef int cnt = 0, glen = 0, nl = 0
    cdef Py_ssize_t j = p
    while j < n and cnt < 8:
        f = fold[d[j]]
        if f:
            k |= f << (8 * cnt)
            cnt += 1
            glen = 0
            nl = 0
        else:
            glen += 1
            nl += cls[d[j]] == 2
            if glen > SC_MAX_GAP or nl >= 2:
                break
        j += 1
    return k


cdef inline uint64_t _sc_zero_bytes(uint64_t v) noexcept nogil:
    """0x80 in every byte of v that is zero, exactly (no false carries)."""
    cdef uint64_t L7 = 0x7F7F7F7F7F7F7F7Fu
    return ~(((v & L7) + L7) | v | L7)


cdef inline uint64_t _sc_close_gap(uint64_t v) noexcept nogil:
    """Remove the first run of zero bytes of v (byte 0 is nonzero), shifting the rest down."""
    cdef uint64_t zm = _sc_zero_bytes(v), zr, rest
    cdef int z, g
    z = __builtin_ctzll(zm | (<uint64_t>1 << 63)) >> 3
    zr = zm >> (8 * z)
    g = __builtin_ctzll((~zr & <uint64_t>0x8080808080808080u) | (<uint64_t>1 << 63)) >> 3
    rest = (v >> (8 * z)) >> (8 * g)
    return (v & ((<uint64_t>1 << (8 * z)) - 1)) | (rest << (8 * z))


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline uint64_t _sc_key_fast(const uint8_t* fold, const uint8_t* cls, const uint8_t* d,
                                  Py_ssize_t n, Py_ssize_t p) noexcept nogil:
    """The first 5 squeezed characters from p without branches in the common case: fold
    8 bytes into a word and close up to two separator runs with shifts (SWAR); rarer
    shapes (three runs within 5 letters, end of text) take the general loop."""
    cdef uint64_t v
    if p + 8 > n:
        return _sc_key8(fold, cls, d, n, p)
    v = (<uint64_t>fold[d[p]] | (<uint64_t>fold[d[p + 1]] << 8)
         | (<uint64_t>fold[d[p + 2]] << 16) | (<uint64_t>fold[d[p + 3]] << 24)
         | (<uint64_t>fold[d[p + 4]] << 32) | (<uint64_t>fold[d[p + 5]] << 40)
         | (<uint64_t>fold[d[p + 6]] << 48) | (<uint64_t>fold[d[p + 7]] << 56))
    v = _sc_close_gap(_sc_close_gap(v))
    if _sc_zero_bytes(v) & <uint64_t>0x8080808080u:
        return _sc_key8(fold, cls, d, n, p)
    return v


cdef inline uint64_t _sc_class_key(uint64_t k, int m) noexcept nogil:
    """The key of prefix class m: the first m characters (m = 5: terms of 5 or more)."""
    return (k & ((<uint64_t>1 << (8 * m)) - 1)) | (<uint64_t>m << 56)


cdef inline int _sc_bit(const SCTable* T, uint64_t key) noexcept nogil:
    return sc_bloom(T.bits, T.shift, key)


cdef inline int _sc_hits(const SCMatcher* M, const SCTable* T, uint64_t* kp, int allowed,
                         const uint8_t* d, Py_ssize_t n, Py_ssize_t p) noexcept nogil:
    """Bitset test of every prefix class present: a mask of the classes that pass. For
    the class of 8+ characters the key is widened to 8 characters in *kp."""
    cdef int cl = T.classes, out = 0, m
    cdef uint64_t k = kp[0], k8
    cdef uint32_t h
    if cl & 16:
        out = _sc_bit(T, _sc_class_key(k, 5)) << 4
    if cl & 15:
        for m in range(1, 5):
            if (cl >> (m - 1)) & 1:
                out |= _sc_bit(T, _sc_class_key(k, m)) << (m - 1)
    out &= allowed
    if cl & 32:
        if sc_bloom(T.bits, T.shift, sc_long5(k)):
            k8 = _sc_key8(M.fold, M.cls, d, n, p)
            if _sc_bit(T, k8):
                out |= 32
                kp[0] = k8
    return out


cdef inline void _sc_roll_reset(SCRoll* R) noexcept nogil:
    R.n = 0
    R.cur = 0
    R.raw = -1


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _sc_roll(const uint8_t* fold, const uint8_t* cls, const uint8_t* d,
                         Py_ssize_t n, Py_ssize_t p, int need, SCRoll* R) noexcept nogil:
    """Make R hold at least `need` squeezed characters from position p (a letter) when
    the text has them; return how many it holds from p. Probes come in increasing order
    of p, so each raw byte is squeezed once per loop (linear even when every word start
    is a candidate for a long term, e.g. "a a a a ..." against "aaa...ab")."""
    cdef uint8_t f
    cdef int c
    cdef Py_ssize_t k
    while R.cur < R.n and R.idx[R.cur] < p:
        R.cur += 1
    if R.cur >= R.n or R.idx[R.cur] != p:
        R.n = 0
        R.cur = 0
        R.raw = p
        R.glen = 0
        R.nb = 0
        R.nl = 0
    while R.n - R.cur < need and R.raw < n:
        if R.n == SC_ROLL:
            k = R.n - R.cur
            memmove(R.chars, R.chars + R.cur, k)
            memmove(R.gap, R.gap + R.cur, k)
            memmove(R.idx, R.idx + R.cur, k * sizeof(int32_t))
            R.n = k
            R.cur = 0
        f = fold[d[R.raw]]
        if f:
            R.gap[R.n] = _sc_gap_kind(R.glen, R.nb, R.nl)
            R.chars[R.n] = f
            R.idx[R.n] = <int32_t>R.raw
            R.n += 1
            R.glen = 0
            R.nb = 0
            R.nl = 0
        else:
            if R.glen < 1000:
                R.glen += 1
            c = cls[d[R.raw]]
            R.nb += c == 1
            if R.nl < 2:
                R.nl += c == 2
        R.raw += 1
    return R.n - R.cur


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline bint _sc_gaps_ok(const SCMatcher* M, int32_t t, const uint8_t* gap,
                             Py_ssize_t m) noexcept nogil:
    """Are the separator runs inside a candidate match plausible for term t?"""
    cdef const uint8_t* tg = M.tgap + M.toff[t]
    cdef Py_ssize_t j
    cdef uint8_t g
    for j in range(1, m):
        g = gap[j]
        if g == SC_GAP_NONE:
            continue
        if g == SC_GAP_HARD:
            return False
        if tg[j]:
            continue            # the term itself has a word break here
        if g == SC_GAP_TIGHT:
            continue            # "NO-FORN", "NO\nFORN"
        # a loose gap inside a word: only between single letters ("N O F O R N")
        if not (j == 1 or gap[j - 1] != SC_GAP_NONE):
            return False
        if not (j + 1 == m or gap[j + 1] != SC_GAP_NONE):
            return False
    return True


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _sc_first_gap(const SCMatcher* M, const uint8_t* d, Py_ssize_t n,
                       Py_ssize_t j) noexcept nogil:
    """The kind of the separator run at j (as _sc_roll classifies it), or SC_GAP_HARD + 1
    when no letter follows before the text ends."""
    cdef int glen = 0, nb = 0, nl = 0, c
    while j < n and M.fold[d[j]] == 0:
        glen += 1
        c = M.cls[d[j]]
        nb += c == 1
        nl += c == 2
        if glen > SC_MAX_GAP or nl >= 2:
            return SC_GAP_HARD
        j += 1
    if j >= n:
        return SC_GAP_HARD + 1
    return _sc_gap_kind(glen, nb, nl)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _sc_probe(const SCMatcher* M, const SCTable* T, bint whole, int cl, uint64_t k,
                    const uint8_t* d, Py_ssize_t n, Py_ssize_t p, const int32_t* ostart,
                    const int32_t* oend, int32_t msg, int64_t base, SCVec* hits,
                    SCRoll* R) noexcept nogil:
    """Slow path: the prefix classes in cl passed the bitset at position p (key k); look
    the keys up exactly, pre-check each candidate term on 8 characters with one 64-bit
    compare, squeeze the text locally and verify; record the matches."""
    cdef uint64_t key, valid
    cdef uint32_t slot
    cdef int m, nvalid, j0, zfrag, g1 = -1
    cdef int32_t lo, hi, q, t
    cdef Py_ssize_t tl, fs, fe, j, have = -1, hmax
    cdef const SCTermQ* tq
    cdef const uint8_t* tc
    cdef const uint8_t* gp
    zfrag = 0
    if whole:
        while zfrag < SC_MAX_TERM + 1 and p + zfrag < n and M.fold[d[p + zfrag]]:
            zfrag += 1
    nvalid = __builtin_ctzll(_sc_zero_bytes(k) | (<uint64_t>1 << 63)) >> 3
    if _sc_zero_bytes(k) == 0:
        nvalid = 8
    valid = <uint64_t>0xFFFFFFFFFFFFFFFFu if nvalid >= 8 else ((<uint64_t>1 << (8 * nvalid)) - 1)
    for m in range(1, 7):
        if not (cl >> (m - 1)) & 1:
            continue
        if m == 6:
            if nvalid < 8:
                continue
            key = k             # class of 8+ characters: keyed on all 8
        else:
            key = _sc_class_key(k, m)
        slot = _sc_hash(key ^ <uint64_t>0x5bd1e995u) & T.hmask
        while T.slots[slot].key != 0 and T.slots[slot].key != key:
            slot = (slot + 1) & T.hmask
        if T.slots[slot].key == 0:
            continue
        lo = T.slots[slot].lo
        hi = T.slots[slot].hi
        hmax = T.slots[slot].max
        for q in range(lo, hi):
            tq = &M.tq[q]
            # k holds the first >= 5 squeezed characters (up to 8, zero after): any
            # difference in those rejects the term with one 64-bit compare
            if (k ^ tq.key8) & tq.mask8 & valid:
                continue
            t = tq.t
            tl = tq.len
            if whole and tl < zfrag:
                continue        # would end inside the first word: not a whole word
            tc = M.tchars + tq.off
            j0 = nvalid if tl > nvalid else <int>tl
            if whole and tl == zfrag:
                # the whole first word, letters contiguous: compare in place, no squeeze
                # (no inner gaps; the word's end is the boundary)
                j = j0
                while j < tl and M.fold[d[p + j]] == tc[j]:
                    j += 1
                if j == tl:
                    if ostart != NULL:
                        _sc_vec_push(hits, msg, t, ostart[p], oend[p + tl - 1])
                    else:
                        _sc_vec_push(hits, msg, t, base + p, base + p + tl)
                continue
            if whole:
                # the term runs past the first word: the separator run after it decides
                # most cases without squeezing (as _sc_gaps_ok would at j = zfrag)
                if g1 < 0:
                    g1 = _sc_first_gap(M, d, n, p + zfrag)
                if g1 == SC_GAP_HARD or g1 > SC_GAP_HARD:
                    continue    # a hard gap, or the text ends: no match
                if g1 == SC_GAP_LOOSE and zfrag >= 2 and M.tgap[tq.off + zfrag] == 0:
                    continue    # a loose gap inside a word after 2+ letters
            if have < hmax:
                have = _sc_roll(M.fold, M.cls, d, n, p, hmax, R)
            if tl > have:
                continue
            if memcmp(R.chars + R.cur + j0, tc + j0, tl - j0) != 0:
                continue
            fe = R.idx[R.cur + tl - 1]
            if whole and fe + 1 < n and M.fold[d[fe + 1]] != 0:
                continue
            gp = R.gap + R.cur
            if not _sc_gaps_ok(M, t, gp, tl):
                continue
            fs = p
            if ostart != NULL:
                _sc_vec_push(hits, msg, t, ostart[fs], oend[fe])
            else:
                _sc_vec_push(hits, msg, t, base + fs, base + fe + 1)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _sc_prefetch_slots(const SCTable* T, const int32_t* chm, const uint64_t* ck,
                             Py_ssize_t nc) noexcept nogil:
    """Start loading the exact-hash slots of every candidate before any is probed: the
    table is larger than L1 and each probe's first access is a miss; issued together,
    the misses overlap instead of stalling one probe after the other."""
    cdef Py_ssize_t k
    cdef int m, cl
    cdef uint64_t key
    for k in range(nc):
        cl = chm[k]
        for m in range(1, 7):
            if (cl >> (m - 1)) & 1:
                key = ck[k] if m == 6 else _sc_class_key(ck[k], m)
                __builtin_prefetch(&T.slots[_sc_hash(key ^ <uint64_t>0x5bd1e995u) & T.hmask])


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _sc_ww_loop(const SCMatcher* M, const uint8_t* d, Py_ssize_t n, const int32_t* ws,
                      Py_ssize_t nws, const int32_t* ostart, const int32_t* oend, int32_t msg,
                      int64_t base, SCVec* hits, SCRoll* R) noexcept nogil:
    """The hot loop: key + bitset test at every word start, slow path on a pass."""
    cdef const SCTable* T = &M.ww
    cdef Py_ssize_t k, p
    cdef uint64_t key
    cdef int hm, z
    for k in range(nws):
        p = ws[k]
        key = _sc_key_fast(M.fold, M.cls, d, n, p)
        z = 0
        while z < 5 and p + z < n and M.fold[d[p + z]]:
            z += 1
        hm = _sc_hits(M, T, &key, 16 if z >= 5 else (16 | ((0xF << (z - 1)) & 0xF)), d, n, p)
        if hm:
            _sc_probe(M, T, True, hm, key, d, n, p, ostart, oend, msg, base, hits, R)


cdef inline void _sc_probe_ss(const SCMatcher* M, int clmask, const uint8_t* d, Py_ssize_t n,
                              Py_ssize_t p, const int32_t* ostart, const int32_t* oend,
                              int32_t msg, int64_t base, SCVec* hits, SCRoll* R) noexcept nogil:
    cdef uint64_t key = _sc_key8(M.fold, M.cls, d, n, p)
    cdef int hm = _sc_hits(M, &M.ss, &key, 31, d, n, p) & clmask
    if hm:
        _sc_probe(M, &M.ss, False, hm, key, d, n, p, ostart, oend, msg, base, hits, R)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _sc_ss_at(const SCMatcher* M, const uint8_t* d, Py_ssize_t n, Py_ssize_t p,
                    const int32_t* ostart, const int32_t* oend, int32_t msg, int64_t base,
                    SCVec* hits, SCRoll* R) noexcept nogil:
    """A SIMD substring candidate at p: a one-character term, and/or the bigram of p's
    letter with the next letter within a joinable gap passes the bigram bitset."""
    cdef uint32_t f = M.fold[d[p]], g, k2
    cdef Py_ssize_t j
    if f == 0:
        return
    if M.ss.single[f]:
        _sc_probe_ss(M, 1, d, n, p, ostart, oend, msg, base, hits, R)
    j = p + 1
    while j < n and j <= p + SC_MAX_GAP + 1:
        g = M.fold[d[j]]
        if g:
            k2 = (f << 8) | g
            if (M.ss.big[k2 >> 6] >> (k2 & 63)) & 1:
                _sc_probe_ss(M, 62, d, n, p, ostart, oend, msg, base, hits, R)
            return
        j += 1


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _sc_substrings(const SCMatcher* M, const uint8_t* d, Py_ssize_t n, Py_ssize_t a,
                         Py_ssize_t b, const int32_t* ostart, const int32_t* oend, int32_t msg,
                         int64_t base, SCVec* hits, SCRoll* R) noexcept nogil:
    """Substring terms: a bigram bitset over consecutive squeezed characters picks the
    positions to probe (every letter is a possible start, not only word starts)."""
    cdef const uint8_t* fold = M.fold
    cdef const uint64_t* big = M.ss.big
    cdef const uint8_t* single = M.ss.single
    cdef Py_ssize_t i, last = -1
    cdef uint32_t lastc = 0, f, k2, hit
    # the letter before a (if any) pairs with the first letter of this window
    i = a - 1
    while i >= 0 and i >= a - SC_MAX_GAP - 1:
        if fold[d[i]]:
            last = i
            lastc = fold[d[i]]
            break
        i -= 1
    for i in range(a, b):
        f = fold[d[i]]
        k2 = (lastc << 8) | f
        hit = ((big[k2 >> 6] >> (k2 & 63)) & 1) & (f != 0) & (lastc != 0)
        if hit | single[f]:
            if hit and last >= a:
                _sc_probe_ss(M, 62, d, n, last, ostart, oend, msg, base, hits, R)
            if single[f] and f:
                _sc_probe_ss(M, 1, d, n, i, ostart, oend, msg, base, hits, R)
        if f:
            last = i
            lastc = f
    # a bigram that starts in this window and ends past it
    if last >= a and last < b:
        i = b
        while i < n and i <= last + SC_MAX_GAP + 1:
            f = fold[d[i]]
            if f:
                k2 = (lastc << 8) | f
                if (big[k2 >> 6] >> (k2 & 63)) & 1:
                    _sc_probe_ss(M, 62, d, n, last, ostart, oend, msg, base, hits, R)
                break
            i += 1


cdef enum:
    SC_SS_MAX_PFX = 16          # more substring prefixes: the (coarser) flags pass
    SC_PAT_CHUNK = 2048         # positions per SIMD candidate pass of the pattern prefilter


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _sc_pat_at(const SCMatcher* M, const uint8_t* d, Py_ssize_t n, Py_ssize_t i,
                     const int32_t* ostart, const int32_t* oend, int32_t msg, int64_t base,
                     SCVec* hits) noexcept nogil:
    """Run every pattern's bit-parallel NFA from position i (a candidate start)."""
    cdef Py_ssize_t j, best
    cdef int p, L, r, nr, bit
    cdef uint64_t st, x, acc, found, a
    cdef const uint64_t* cm
    cdef const uint64_t* runs
    cdef int32_t bestb[64]
    if M.pc_ok:
        # all patterns at once: each has its own bits (positions, then its accepting bit,
        # which no mask lets through, so nothing leaks into the next pattern), and the
        # one loop ends when every pattern has died: one exit per start instead of one per
        # pattern (mispredicted exits were most of the cost of the shipped PII patterns)
        cm = M.pc_cm
        runs = M.pc_runs
        nr = M.pc_nrun
        acc = M.pc_acc
        st = M.pc_start
        found = 0
        j = i
        while j < n:
            st = (st & cm[d[j]]) << 1
            for r in range(nr):
                x = st & runs[2 * r]
                st |= runs[2 * r + 1] & ~((x & (~x + 1)) - 1)
            if st == 0:
                break
            if st & acc:
                if j + 1 == n or not M.alnum[d[j + 1]]:
                    a = st & acc
                    found |= a
                    while a:
                        bestb[__builtin_ctzll(a)] = <int32_t>(j + 1 - i)
                        a &= a - 1
            j += 1
        while found:        # lowest bit first: pattern order, as the loop below
            bit = __builtin_ctzll(found)
            found &= found - 1
            best = i + bestb[bit]
            p = M.pc_pat[bit]
            if ostart != NULL:
                _sc_vec_push(hits, msg, M.nterms + p, ostart[i], oend[best - 1])
            else:
                _sc_vec_push(hits, msg, M.nterms + p, base + i, base + best)
        return
    for p in range(M.npat):
        cm = M.pcm + p * 256
        if not (cm[d[i]] & M.pstart[p]):
            continue
        runs = M.popt + p * 16
        nr = M.pnrun[p]
        L = M.plen[p]
        acc = (<uint64_t>1) << L
        st = M.pstart[p]
        best = -1
        j = i
        while j < n:
            st = (st & cm[d[j]]) << 1
            for r in range(nr):
                x = st & runs[2 * r]
                st |= runs[2 * r + 1] & ~((x & (~x + 1)) - 1)
            if st == 0:
                break
            if st & acc:
                if j + 1 == n or not M.alnum[d[j + 1]]:
                    best = j + 1
            j += 1
        if best >= 0:
            if ostart != NULL:
                _sc_vec_push(hits, msg, M.nterms + p, ostart[i], oend[best - 1])
            else:
                _sc_vec_push(hits, msg, M.nterms + p, base + i, base + best)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _sc_patterns(const SCMatcher* M, const uint8_t* d, Py_ssize_t n,
                       const int32_t* ostart, const int32_t* oend, int32_t msg, int64_t base,
                       SCVec* hits) noexcept nogil:
    """Bit-parallel NFA per pattern from every candidate start position.

    A start must be a byte that can begin some pattern, not preceded by a word character,
    and followed by a byte that can be a pattern's second byte (pflags, derived from the
    NFAs in ScanCore.__init__: the run from i dies at i + 1 otherwise) or by the end of
    the text; the SIMD pass tests all three on 64 bytes at a time, so English text costs
    almost nothing. The epsilon closure of bounded repeats ({n,m}: m-n optional positions
    in a run) is computed per run without a loop: a set bit in a run fills the rest of the
    run and the position after it (fill & ~(lowest bit - 1)), so a step costs O(runs).
    """
    cdef Py_ssize_t i, a, b, nc, k
    cdef const uint8_t* pf = M.pflags
    cdef int32_t cand[SC_PAT_CHUNK]
    if _sc_use_simd > 0:
        a = 0
        while a < n:
            b = a + SC_PAT_CHUNK if a + SC_PAT_CHUNK < n else n
            sc_prof_mark(5)
            nc = sc_pat_candidates(d, n, a, b, pf, M.pfhigh, cand)
            sc_prof_mark(9)
            if SC_PROF:
                sc_prof_t[10] += nc
            for k in range(nc):
                _sc_pat_at(M, d, n, cand[k], ostart, oend, msg, base, hits)
            a = b
        return
    for i in range(n):
        if not (pf[d[i]] & 1):
            continue
        if i > 0 and (pf[d[i - 1]] & 4):
            continue
        if i + 1 < n and not (pf[d[i + 1]] & 2):
            continue
        _sc_pat_at(M, d, n, i, ostart, oend, msg, base, hits)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _sc_encoded(const SCMatcher* M, const uint8_t* d, Py_ssize_t n,
                      const int32_t* ostart, const int32_t* oend, int32_t msg, int64_t base,
                      SCVec* runs) noexcept nogil:
    """Record runs of base64/hex alphabet bytes at least enc_min long (code 0 b64, 1 hex).

    A branch-free run counter; the rare run that reaches enc_min is then walked to its end.
    """
    cdef Py_ssize_t i = 0, j, s, run = 0, minl = M.enc_min
    cdef const uint8_t* b64 = M.b64
    cdef int allhex
    if minl <= 0:
        return
    if _sc_use_simd > 0 and minl >= 16:
        while sc_find_run(b64, d, n, i, minl, &s, &j):
            allhex = 1
            for i in range(s, j):
                if b64[d[i]] != 2:
                    allhex = 0
                    break
            if ostart != NULL:
                _sc_vec_push(runs, msg, allhex, ostart[s], oend[j - 1])
            else:
                _sc_vec_push(runs, msg, allhex, base + s, base + j)
            i = j
        return
    while i < n:
        run = (run + 1) & (<Py_ssize_t>0 - (b64[d[i]] != 0))
        if run == minl:
            s = i + 1 - minl
            j = i + 1
            while j < n and b64[d[j]]:
                j += 1
            allhex = 1
            for i in range(s, j):
                if b64[d[i]] != 2:
                    allhex = 0
                    break
            if ostart != NULL:
                _sc_vec_push(runs, msg, allhex, ostart[s], oend[j - 1])
            else:
                _sc_vec_push(runs, msg, allhex, base + s, base + j)
            run = 0
            i = j
        i += 1


cdef int _sc_cmp_start(const void* a, const void* b) noexcept nogil:
    cdef const SCHit* x = <const SCHit*>a
    cdef const SCHit* y = <const SCHit*>b
    if x.start < y.start:
        return -1
    if x.start > y.start:
        return 1
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _sc_apply_clean(const SCMatcher* M, SCVec* hits, Py_ssize_t h0) noexcept nogil:
    """Drop dirty hits (from h0) that overlap a clean hit, then drop the clean hits."""
    cdef Py_ssize_t i, k, nc = 0, lo, hi, mid, w
    cdef SCHit* cl
    cdef int64_t* pmax
    cdef int32_t code
    for i in range(h0, hits.n):
        code = hits.a[i].code
        if code < M.nterms and M.tclean[code]:
            nc += 1
    if nc == 0:
        return 0
    cl = <SCHit*>malloc(nc * sizeof(SCHit))
    pmax = <int64_t*>malloc(nc * sizeof(int64_t))
    if cl == NULL or pmax == NULL:
        free(cl); free(pmax)
        return -1
    k = 0
    for i in range(h0, hits.n):
        code = hits.a[i].code
        if code < M.nterms and M.tclean[code]:
            cl[k] = hits.a[i]
            k += 1
    qsort(cl, nc, sizeof(SCHit), _sc_cmp_start)
    for k in range(nc):
        pmax[k] = cl[k].end if k == 0 or cl[k].end > pmax[k - 1] else pmax[k - 1]
    w = h0
    for i in range(h0, hits.n):
        code = hits.a[i].code
        if code < M.nterms and M.tclean[code]:
            continue
        if code < M.nterms:
            # cleans with start < this end: binary search
            lo = 0
            hi = nc
            while lo < hi:
                mid = (lo + hi) >> 1
                if cl[mid].start < hits.a[i].end:
                    lo = mid + 1
                else:
                    hi = mid
            if lo > 0 and pmax[lo - 1] > hits.a[i].start:
                continue
        hits.a[w] = hits.a[i]
        w += 1
    hits.n = w
    free(cl); free(pmax)
    return 0


cdef inline bint _sc_fused(const SCMatcher* M) noexcept nogil:
    """Whether _sc_scan_one folds bodies with sc_fold_window (SIMD path with terms): it
    then finds the pattern starts and does the batch pre-pass in that same pass."""
    return _sc_use_simd > 0 and (M.ww.nterms != 0 or M.ss.nterms != 0)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _sc_scan_one(const SCMatcher* M, const uint8_t* d, Py_ssize_t n,
                      const int32_t* ostart, const int32_t* oend, int32_t msg, int64_t base,
                      SCWork* w, SCVec* hits, SCVec* runs, int* pre) noexcept nogil:
    """Scan one folded body d[0:n]; hits get original offsets (+ base when identity).

    pre (batch pre-pass fused into the fold, see _sc_fused): NULL, or gets 2 when the
    body holds a NUL byte (else 0); the scan then stops at the first byte >= 0x80 and
    returns 2 with nothing recorded (the caller folds that body first)."""
    cdef Py_ssize_t h0 = hits.n, r0 = runs.n, a, b, nws, k, fe = 0, nsqw = 0, nb
    cdef SCRoll R
    cdef SCSqz zq
    cdef bint simd = _sc_use_simd > 0
    cdef bint sspfx = M.ss.nterms > 0 and M.ss_npfx > 0
    cdef bint fused = _sc_fused(M)
    cdef uint64_t nul = 0, anynul = 0, enc = 0, anyenc = 0
    cdef Py_ssize_t p0
    if pre != NULL:
        pre[0] = 0
    w.ph.n = 0
    zq.done = 0
    if ((M.ww.nterms or M.ss.nterms)
            and _sc_work_reserve(w, n if n < SC_WINDOW else SC_WINDOW) < 0):
        return -1
    a = 0
    while a < n:
        b = a + SC_WINDOW
        if b > n:
            b = n
        if simd and (M.ww.nterms or M.ss.nterms):
            # fold the window (+ SC_LOOKAHEAD bytes) 64 bytes at a time
            fe = b + SC_LOOKAHEAD if b + SC_LOOKAHEAD < n else n
            # the squeeze rides along when the whole-word or prefix pass needs it
            zq.sq = w.sq
            zq.wj = w.wj
            zq.bm = w.bm
            zq.bn = w.bn
            zq.len = b - a
            zq.nsq = zq.nw = zq.nt = zq.nwin = 0
            zq.carry = 1 if a > 0 and M.fold[d[a - 1]] else 0
            zq.done = M.ww.nterms != 0 or sspfx
            if sc_fold_window(M.fold, M.pflags, M.pfhigh, M.b64, d + a, fe - a, w.fb, w.pm,
                              &nul, &enc, &zq if zq.done else NULL):
                if pre != NULL:
                    hits.n = h0     # not pure ASCII: the caller folds it, then scans again
                    runs.n = r0
                    return 2
            anynul |= nul
            anyenc |= enc
            memset(w.fb + (fe - a), 0, 80)
            # one more, zero block of pattern masks; past the text's end "can follow",
            # and any byte can be a match's third..fifth (the text may end first)
            nb = (fe - a + 63) >> 6
            memset(w.pm + 6 * nb, 0, 6 * sizeof(uint64_t))
            if fe == n:
                w.pm[6 * ((fe - a) >> 6) + 1] |= (<uint64_t>1) << ((fe - a) & 63)
                for k in range(3, 6):
                    w.pm[6 * ((fe - a) >> 6) + k] |= ~(((<uint64_t>1) << ((fe - a) & 63)) - 1)
                    w.pm[6 * nb + k] = ~(<uint64_t>0)
            sc_prof_mark(0)
        if simd and (M.ww.nterms or sspfx):
            # squeeze the window; find the word starts and test their keys with bit
            # masks (whole-word terms only); probe candidates
            nws = sc_ww_candidates(M.fold, M.cls, d, n, a, b, w.fb, fe - a, M.ww.bits,
                                   M.ww.bitsl, M.ww.shift, M.ww.classes, w.sq, w.wj,
                                   w.ws, w.ck, w.chm, w.gr, w.bm, w.bn, &nsqw,
                                   M.ww.nterms != 0, &zq)
            if M.ww.nterms:
                _sc_roll_reset(&R)
                _sc_prefetch_slots(&M.ww, w.chm, w.ck, nws)
                if SC_PROF:
                    sc_prof_t[11] += nws
                for k in range(nws):
                    _sc_probe(M, &M.ww, True, w.chm[k], w.ck[k], d, n, w.ws[k], ostart,
                              oend, msg, base, hits, &R)
                sc_prof_mark(3)
        elif M.ww.nterms:
            nws = _sc_word_starts(M.fold, d, a, b, w.ws)
            _sc_roll_reset(&R)
            _sc_ww_loop(M, d, n, w.ws, nws, ostart, oend, msg, base, hits, &R)
        if sspfx and simd:
            # exact first-4-character prefixes on the squeezed letters: few candidates
            nws = sc_ss_prefix_candidates(w.sq, nsqw, M.ss_pfx, M.ss_plen, M.ss_npfx, w.bm,
                                          w.bn, a, w.ws)
            _sc_roll_reset(&R)
            for k in range(nws):
                _sc_probe_ss(M, 63, d, n, w.ws[k], ostart, oend, msg, base, hits, &R)
        elif M.ss.nterms and simd:
            nws = sc_ss_candidates(w.fb, b - a, M.ssflags, w.ws)
            _sc_roll_reset(&R)
            for k in range(nws):
                _sc_ss_at(M, d, n, a + w.ws[k], ostart, oend, msg, base, hits, &R)
        elif M.ss.nterms:
            _sc_roll_reset(&R)
            _sc_substrings(M, d, n, a, b, ostart, oend, msg, base, hits, &R)
        sc_prof_mark(4)
        if fused and M.npat:
            # pattern starts from the fold pass's masks; their hits wait in w.ph so that
            # the rows keep the order of the separate pass (terms first, then patterns)
            nws = sc_pat_from_masks(w.pm, b - a, (M.pflags[d[a - 1]] >> 2) & 1 if a > 0 else 0,
                                    w.ws)
            for k in range(nws):
                _sc_pat_at(M, d, n, a + w.ws[k], ostart, oend, msg, base, &w.ph)
        a = b
    if fused:
        if pre != NULL and anynul:
            pre[0] = 2
        for k in range(w.ph.n):
            _sc_vec_push(hits, msg, w.ph.a[k].code, w.ph.a[k].start, w.ph.a[k].end)
        if w.ph.oom:
            hits.oom = 1
        w.ph.n = 0
    elif M.npat:
        _sc_patterns(M, d, n, ostart, oend, msg, base, hits)
    sc_prof_mark(5)
    # the fold pass saw no 32-byte half block of alphabet bytes: no run of 63 or more
    if not (fused and M.enc_min >= 63 and anyenc == 0):
        _sc_encoded(M, d, n, ostart, oend, msg, base, runs)
    sc_prof_mark(6)
    if _sc_apply_clean(M, hits, h0) < 0:
        return -1
    sc_prof_mark(7)
    if hits.oom or runs.oom:
        return -1
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef object _sc_vec_arrays(SCVec* v):
    """Copy a hit vector into numpy arrays (msg, code, start, end)."""
    cdef Py_ssize_t i, n = v.n
    msg = _np.empty(n, dtype=_np.int32)
    code = _np.empty(n, dtype=_np.int32)
    start = _np.empty(n, dtype=_np.int64)
    end = _np.empty(n, dtype=_np.int64)
    cdef int32_t[::1] mv = msg
    cdef int32_t[::1] cv = code
    cdef int64_t[::1] sv = start
    cdef int64_t[::1] ev = end
    for i in range(n):
        mv[i] = v.a[i].msg
        cv[i] = v.a[i].code
        sv[i] = v.a[i].start
        ev[i] = v.a[i].end
    return msg, code, start, end


cdef class _ScanWork:
    """Scratch memory of one scan, kept in a pool so small scans do not malloc."""
    cdef SCWork w

    def __cinit__(self):
        memset(&self.w, 0, sizeof(SCWork))

    def __dealloc__(self):
        _sc_work_free(&self.w)


cdef list _sc_vec_tuples(SCVec* v):
    """A hit vector as a list of (code, start, end) tuples."""
    cdef Py_ssize_t i
    return [(v.a[i].code, v.a[i].start, v.a[i].end) for i in range(v.n)]


_SC_SLOT_DTYPE = _np.dtype([("key", "<u8"), ("lo", "<i4"), ("hi", "<i4"), ("max", "<i4"),
                            ("pad", "<i4")])
_SC_TERMQ_DTYPE = _np.dtype([("key8", "<u8"), ("mask8", "<u8"), ("t", "<i4"), ("len", "<i4"),
                             ("off", "<i4"), ("pad", "<i4")])
assert _SC_SLOT_DTYPE.itemsize == sizeof(SCSlot) and _SC_TERMQ_DTYPE.itemsize == sizeof(SCTermQ)


cdef class _ScanTable:
    """Owner of one prefix table's arrays (bitset + exact hash of prefix keys)."""
    cdef public object bits, bitsl, hkeys, hlo, hhi, hmax, big, single, slots
    cdef SCTable t

    def __init__(self, uint32_t shift, int classes, int nterms, bits, bitsl, hkeys, hlo, hhi,
                 hmax, big, single):
        self.bits = _np.ascontiguousarray(bits, dtype=_np.uint64)
        self.bitsl = _np.ascontiguousarray(bitsl, dtype=_np.uint64)
        if self.bitsl.shape != self.bits.shape:
            raise ValueError("bitsl must match bits")
        self.hkeys = _np.ascontiguousarray(hkeys, dtype=_np.uint64)
        self.hlo = _np.ascontiguousarray(hlo, dtype=_np.int32)
        self.hhi = _np.ascontiguousarray(hhi, dtype=_np.int32)
        self.hmax = _np.ascontiguousarray(hmax, dtype=_np.int32)
        self.big = _np.ascontiguousarray(big, dtype=_np.uint64)
        self.single = _np.ascontiguousarray(single, dtype=_np.uint8)
        if self.big.size != 1024 or self.single.size != 256:
            raise ValueError("bigram bitset must have 65536 bits and single 256 flags")
        cdef const uint64_t[::1] bv = self.bits
        cdef const uint64_t[::1] blv = self.bitsl
        cdef const uint64_t[::1] gv = self.big
        cdef const uint8_t[::1] sv = self.single
        self.t.bits = &bv[0]
        self.t.bitsl = &blv[0]
        self.t.shift = shift
        self.t.hmask = <uint32_t>(len(self.hkeys) - 1)
        if len(self.hkeys) & (len(self.hkeys) - 1) or not (
                len(self.hkeys) == len(self.hlo) == len(self.hhi) == len(self.hmax)):
            raise ValueError("hash arrays must share one power-of-two length")
        # packed: a probe reads one slot, not four arrays; the arrays stay as views
        self.slots = _np.zeros(len(self.hkeys), dtype=_SC_SLOT_DTYPE)
        self.slots["key"] = self.hkeys
        self.slots["lo"] = self.hlo
        self.slots["hi"] = self.hhi
        self.slots["max"] = self.hmax
        self.hkeys, self.hlo = self.slots["key"], self.slots["lo"]
        self.hhi, self.hmax = self.slots["hi"], self.slots["max"]
        cdef const uint8_t[::1] slv = self.slots.view(_np.uint8)
        self.t.slots = <const SCSlot*>&slv[0]
        self.t.classes = classes
        self.t.nterms = nterms
        self.t.big = &gv[0]
        self.t.single = &sv[0]

    def nbytes(self):
        return sum(a.nbytes for a in (self.bits, self.bitsl, self.big, self.single,
                                      self.slots))


def scan_prof(bint reset=True):
    """rdtsc ticks per phase of the batch scan (all zero unless built with -DSC_PROF=1):
    0 fold, 1 squeeze, 2 prefilter groups, 3 verify, 4 substring terms, 5 patterns,
    6 encoded runs, 7 clean words, 8 prepass."""
    out = [sc_prof_t[i] for i in range(12)]
    if reset:
        for i in range(16):
            sc_prof_t[i] = 0
    return out


def scan_prefix_key(bytes chars, int m=0):
    """The prefix-class key of a squeezed term (as the core computes it at a position):
    its first 8 characters when it has 8 or more, else its class key (m forces class m)."""
    cdef uint64_t k = 0
    cdef int i
    if m == 0 and len(chars) >= 8:
        for i in range(8):
            k |= (<uint64_t>chars[i]) << (8 * i)
        return k
    if m == 0:
        m = min(5, len(chars))
    for i in range(m):
        k |= (<uint64_t>chars[i]) << (8 * i)
    return _sc_class_key(k, m)


def scan_key8(bytes chars):
    """(key, mask) of a term's first 8 characters, for the 64-bit candidate pre-check."""
    cdef int m = min(8, len(chars))
    cdef uint64_t k = 0
    cdef int i
    for i in range(m):
        k |= (<uint64_t>chars[i]) << (8 * i)
    return k, (<uint64_t>0xFFFFFFFFFFFFFFFFu) if m == 8 else ((<uint64_t>1 << (8 * m)) - 1)


def scan_tail_key(bytes chars):
    """The Bloom tail key of a squeezed term of 8+ characters (see sc_tail_key)."""
    cdef uint64_t k8 = 0
    cdef uint32_t tail = 0
    cdef int i, t = 3 if len(chars) >= 11 else 0
    if len(chars) < 8:
        raise ValueError("a term of 8 or more characters")
    for i in range(8):
        k8 |= (<uint64_t>chars[i]) << (8 * i)
    for i in range(t):
        tail |= (<uint32_t>chars[8 + i]) << (8 * i)
    return sc_tail_key(k8, tail, t)


def scan_bloom(uint64_t key, uint32_t shift):
    """(word index, two-bit mask) of key in a prefilter bitset (see sc_bloom_mask)."""
    cdef uint32_t w
    cdef uint64_t m = sc_bloom_mask(key, shift, &w)
    return w, m


def scan_hash(uint64_t key, bint slot=False):
    """The core's multiplicative hash (slot=True: the exact table's probe start)."""
    if slot:
        return _sc_hash(key ^ <uint64_t>0x5bd1e995u)
    return _sc_hash(key)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _sc_pattern_flags(SCMatcher* M, uint8_t* pf) noexcept nogil:
    """M.pflags (see SCMatcher), derived with the very NFA step of _sc_pat_at, so that the
    prefilter only drops starts whose run would die at once: bit 0 where a run can begin
    (cm & start), bit 1 for every byte the state after one step accepts, and for every
    non-word byte when one byte can already be a whole match; bits 3..5 likewise for the
    third..fifth byte; M.pfhigh for bytes >= 0x80."""
    cdef int p, b, c, r, nr, k, hi_or = 0, hi_and = 4
    cdef bint ended
    cdef uint64_t st, x, acc, sk, nxt
    cdef const uint64_t* cm
    cdef const uint64_t* runs
    for b in range(256):
        pf[b] = 4 if M.alnum[b] else 0
    for p in range(M.npat):
        cm = M.pcm + p * 256
        runs = M.popt + p * 16
        nr = M.pnrun[p]
        acc = (<uint64_t>1) << M.plen[p]
        for b in range(256):
            if not (cm[b] & M.pstart[p]):
                continue
            pf[b] |= 1
            st = (M.pstart[p] & cm[b]) << 1
            for r in range(nr):
                x = st & runs[2 * r]
                st |= runs[2 * r + 1] & ~((x & (~x + 1)) - 1)
            for c in range(256):
                if (st & cm[c]) or ((st & acc) and not M.alnum[c]):
                    pf[c] |= 2
        # bits 3..5: the bytes that can come third..fifth. sk over-approximates the states
        # after k bytes (the union over every byte of one step from the states before: the
        # step is monotone, so every real run's state is inside); once a run may have
        # ended before byte k (an accepting state), any byte may come there
        sk = 0
        for b in range(256):
            if cm[b] & M.pstart[p]:
                sk |= M.pstart[p] & cm[b]
        for k in range(1, 5):   # sk: the states after k bytes (k = 1: the start's step)
            sk <<= 1
            for r in range(nr):
                x = sk & runs[2 * r]
                sk |= runs[2 * r + 1] & ~((x & (~x + 1)) - 1)
            if k == 1:
                ended = (sk & acc) != 0
                nxt = 0
                for c in range(256):
                    nxt |= sk & cm[c]
                sk = nxt
                continue
            nxt = 0
            for c in range(256):
                if ended or (sk & cm[c]) or ((sk & acc) and not M.alnum[c]):
                    pf[c] |= 1 << (k + 1)
                nxt |= sk & cm[c]
            ended = ended or (sk & acc) != 0
            sk = nxt
    for b in range(128, 256):
        hi_or |= pf[b] & 0x3B
        hi_and &= pf[b]
    M.pfhigh = <uint8_t>(hi_or | (hi_and & 4))


cdef class ScanCore:
    """A compiled matcher: term tables, pattern NFAs and byte maps. Immutable, thread-safe."""
    cdef SCMatcher M
    cdef _ScanTable ww, ss
    cdef object keep
    cdef list pool
    cdef public int nterms, npat

    def __init__(self, _ScanTable ww, _ScanTable ss, tchars, toff, tlen, tgap, tord, tclean,
                 tkey8, tmask8, fold, cls, pcm, popt, pnrun, pstart, plen, pcan, alnum, b64,
                 Py_ssize_t enc_min):
        arrs = [
            _np.ascontiguousarray(tchars, dtype=_np.uint8),
            _np.ascontiguousarray(toff, dtype=_np.int32),
            _np.ascontiguousarray(tlen, dtype=_np.int32),
            _np.ascontiguousarray(tgap, dtype=_np.uint8),
            _np.ascontiguousarray(tord, dtype=_np.int32),
            _np.ascontiguousarray(tclean, dtype=_np.uint8),
            _np.frombuffer(fold, dtype=_np.uint8).copy(),
            _np.frombuffer(cls, dtype=_np.uint8).copy(),
            _np.ascontiguousarray(pcm, dtype=_np.uint64),
            _np.ascontiguousarray(popt, dtype=_np.uint64),
            _np.ascontiguousarray(pstart, dtype=_np.uint64),
            _np.ascontiguousarray(plen, dtype=_np.int32),
            _np.ascontiguousarray(pcan, dtype=_np.uint8),
            _np.ascontiguousarray(alnum, dtype=_np.uint8),
            _np.ascontiguousarray(b64, dtype=_np.uint8),
            _np.ascontiguousarray(tkey8, dtype=_np.uint64),
            _np.ascontiguousarray(tmask8, dtype=_np.uint64),
            _np.ascontiguousarray(pnrun, dtype=_np.int32),
        ]
        # never-empty arrays so that &a[0] is valid
        for i, a in enumerate(arrs):
            if a.size == 0:
                arrs[i] = _np.zeros(1, dtype=a.dtype)
        # substring character flags for the SIMD candidate pass (from the bigram bitset)
        ssf = _np.zeros(256, dtype=_np.uint8)
        big = _np.unpackbits(ss.big.view(_np.uint8), bitorder="little")
        pairs = _np.flatnonzero(big)
        ssf[pairs >> 8] |= 1
        ssf[pairs & 255] |= 4
        ssf[_np.flatnonzero(ss.single)] |= 2
        arrs.append(ssf)
        # distinct first-4-character prefixes of the substring terms (tord lists the
        # whole-word terms, then the substring terms)
        ss_set = set()
        ss_chars = bytes(arrs[0])
        for ss_q in range(ww.t.nterms, ww.t.nterms + ss.t.nterms):
            ss_t = int(arrs[4][ss_q])
            ss_o = int(arrs[1][ss_t])
            ss_set.add(ss_chars[ss_o:ss_o + min(4, int(arrs[2][ss_t]))])
        pfx_list = sorted(ss_set) if 0 < len(ss_set) <= SC_SS_MAX_PFX else []
        ss_pfx = _np.zeros(4 * max(1, len(pfx_list)), dtype=_np.uint8)
        ss_plen = _np.ones(max(1, len(pfx_list)), dtype=_np.uint8)
        for ss_q, ss_pb in enumerate(pfx_list):
            ss_pfx[4 * ss_q:4 * ss_q + len(ss_pb)] = list(ss_pb)
            ss_plen[ss_q] = len(ss_pb)
        arrs.append(ss_pfx)
        arrs.append(ss_plen)
        self.keep = arrs
        self.pool = []
        self.ww = ww
        self.ss = ss
        cdef const uint8_t[::1] a0 = arrs[0]
        cdef const int32_t[::1] a1 = arrs[1]
        cdef const int32_t[::1] a2 = arrs[2]
        cdef const uint8_t[::1] a3 = arrs[3]
        cdef const int32_t[::1] a4 = arrs[4]
        cdef const uint8_t[::1] a5 = arrs[5]
        cdef const uint8_t[::1] a6 = arrs[6]
        cdef const uint8_t[::1] a7 = arrs[7]
        cdef const uint64_t[::1] a8 = arrs[8]
        cdef const uint64_t[::1] a9 = arrs[9]
        cdef const uint64_t[::1] a10 = arrs[10]
        cdef const int32_t[::1] a11 = arrs[11]
        cdef const uint8_t[::1] a12 = arrs[12]
        cdef const uint8_t[::1] a13 = arrs[13]
        cdef const uint8_t[::1] a14 = arrs[14]
        cdef const uint64_t[::1] a15 = arrs[15]
        cdef const uint64_t[::1] a16 = arrs[16]
        cdef const int32_t[::1] a17 = arrs[17]
        cdef const uint8_t[::1] a18 = arrs[18]
        cdef const uint8_t[::1] a19 = arrs[19]
        cdef const uint8_t[::1] a20 = arrs[20]
        self.M.ww = ww.t
        self.M.ss = ss.t
        self.M.tchars = &a0[0]
        self.M.toff = &a1[0]
        self.M.tlen = &a2[0]
        self.M.tgap = &a3[0]
        self.M.tord = &a4[0]
        tq = _np.zeros(max(len(arrs[4]), 1), dtype=_SC_TERMQ_DTYPE)
        if len(tlen):
            order = arrs[4][:len(tlen)] if len(tord) else arrs[4][:0]
            tq["t"][:len(order)] = order
            tq["key8"][:len(order)] = arrs[15][order]
            tq["mask8"][:len(order)] = arrs[16][order]
            tq["len"][:len(order)] = arrs[2][order]
            tq["off"][:len(order)] = arrs[1][order]
        self.keep.append(tq)
        cdef const uint8_t[::1] tqv = tq.view(_np.uint8)
        self.M.tq = <const SCTermQ*>&tqv[0]
        self.M.tclean = &a5[0]
        self.M.tkey8 = &a15[0]
        self.M.tmask8 = &a16[0]
        self.M.nterms = len(tlen)
        self.M.fold = &a6[0]
        self.M.cls = &a7[0]
        self.M.pcm = &a8[0]
        self.M.popt = &a9[0]
        self.M.pnrun = &a17[0]
        self.M.ssflags = &a18[0]
        self.M.ss_pfx = &a19[0]
        self.M.ss_plen = &a20[0]
        self.M.ss_npfx = len(pfx_list)
        self.M.pstart = &a10[0]
        self.M.plen = &a11[0]
        self.M.npat = len(plen)
        self.M.pcan = &a12[0]
        self.M.alnum = &a13[0]
        self.M.b64 = &a14[0]
        self.M.enc_min = enc_min
        self._combine_patterns(arrs[8], arrs[9], arrs[17], arrs[10], arrs[11], len(plen))
        pflags = _np.zeros(256, dtype=_np.uint8)
        cdef uint8_t[::1] pfv = pflags
        self.M.pflags = &pfv[0]
        _sc_pattern_flags(&self.M, &pfv[0])
        self.keep.append(pflags)
        self.nterms = self.M.nterms
        self.npat = self.M.npat

    def _combine_patterns(self, pcm, popt, pnrun, pstart, plen, int npat):
        """Lay every pattern's NFA side by side in one 64-bit state when they fit (each
        takes its length + 1 bits; at most 16 optional runs in all): M.pc_*."""
        self.M.pc_ok = 0
        total = sum(int(x) + 1 for x in plen[:npat])
        nrun = sum(int(x) for x in pnrun[:npat])
        if npat == 0 or total > 64 or nrun > 16:
            return
        m64 = (1 << 64) - 1
        cm = [0] * 256
        runs = []
        start = acc = 0
        pat = _np.zeros(64, dtype=_np.uint8)
        off = 0
        for p in range(npat):
            row = pcm[p * 256:(p + 1) * 256].tolist()
            for b in range(256):
                cm[b] |= (row[b] << off) & m64
            for r in range(int(pnrun[p])):
                runs.append((int(popt[p * 16 + 2 * r]) << off) & m64)
                runs.append((int(popt[p * 16 + 2 * r + 1]) << off) & m64)
            start |= (int(pstart[p]) << off) & m64
            acc |= 1 << (off + int(plen[p]))
            pat[off + int(plen[p])] = p
            off += int(plen[p]) + 1
        cma = _np.array(cm, dtype=_np.uint64)
        runa = _np.array(runs or [0, 0], dtype=_np.uint64)
        self.keep += [cma, runa, pat]
        cdef const uint64_t[::1] cv = cma
        cdef const uint64_t[::1] rv = runa
        cdef const uint8_t[::1] pv = pat
        self.M.pc_cm = &cv[0]
        self.M.pc_runs = &rv[0]
        self.M.pc_pat = &pv[0]
        self.M.pc_nrun = nrun
        self.M.pc_start = start
        self.M.pc_acc = acc
        self.M.pc_ok = 1

    def nbytes(self):
        """Bytes held by the compiled tables."""
        total = sum(a.nbytes for a in self.keep)
        total += self.ww.nbytes() + self.ss.nbytes()
        return total

    def scan(self, const uint8_t[::1] data, ostart=None, oend=None, bint as_lists=False):
        """Scan one folded body. ostart/oend (int32, per byte) map to original offsets.

        Returns ((msg, code, start, end), (msg, kind, start, end)) numpy arrays of the
        term/pattern hits and of the encoded-run candidates (as_lists: lists of
        (code, start, end) tuples, cheaper for one small body); raises MemoryError.
        """
        cdef Py_ssize_t n = data.shape[0]
        cdef const int32_t* osp = NULL
        cdef const int32_t* oep = NULL
        cdef const int32_t[::1] osv
        cdef const int32_t[::1] oev
        cdef const uint8_t* dp
        cdef uint8_t zero = 0
        cdef _ScanWork work
        cdef SCVec hits
        cdef SCVec runs
        cdef int rc
        if n > SC_MAX_BODY:
            raise MemoryError("scan: body too large for the core")
        if ostart is not None:
            osv = ostart
            oev = oend
            if osv.shape[0] != n or oev.shape[0] != n:
                raise ValueError("offset maps must have one entry per byte")
            if n:
                osp = &osv[0]
                oep = &oev[0]
        dp = &data[0] if n else &zero
        memset(&hits, 0, sizeof(hits))
        memset(&runs, 0, sizeof(runs))
        work = self.pool.pop() if self.pool else _ScanWork()   # list ops are atomic
        try:
            with nogil:
                rc = _sc_scan_one(&self.M, dp, n, osp, oep, 0, 0, &work.w, &hits, &runs, NULL)
            if rc < 0:
                raise MemoryError("scan: out of memory")
            if as_lists:
                return _sc_vec_tuples(&hits), _sc_vec_tuples(&runs)
            return _sc_vec_arrays(&hits), _sc_vec_arrays(&runs)
        finally:
            if work.w.cap <= 1 << 20 and len(self.pool) < 8:
                self.pool.append(work)
            free(hits.a)
            free(runs.a)

    def scan_batch(self, const uint8_t[::1] buf, const int64_t[::1] offsets,
                   Py_ssize_t max_bytes):
        """Scan every pure-ASCII message of a batch with the GIL released.

        Returns (hits, runs, flags, slow): slow[i] == 1 marks a message that is not pure
        ASCII and must be folded by the caller; flags get NUL / oversize bits.
        """
        cdef Py_ssize_t nm = offsets.shape[0] - 1
        cdef Py_ssize_t i, j, s, e, blen = buf.shape[0]
        cdef uint8_t acc
        cdef const uint8_t* bp
        cdef uint8_t zero = 0
        cdef int rc = 0, pre, r1
        cdef bint simd = _sc_use_simd > 0
        cdef bint fused = _sc_fused(&self.M)
        cdef Py_ssize_t h0, r0
        cdef SCWork w
        cdef SCVec hits
        cdef SCVec runs
        if nm < 0:
            raise ValueError("offsets must have n+1 entries")
        for i in range(nm):
            if offsets[i] < 0 or offsets[i] > offsets[i + 1] or offsets[i + 1] > blen:
                raise ValueError(f"offsets[{i}:{i + 2}] out of range")
        flags = _np.zeros(nm, dtype=_np.uint32)
        slow = _np.zeros(nm, dtype=_np.uint8)
        cdef uint32_t[::1] fv = flags
        cdef uint8_t[::1] sv = slow
        bp = &buf[0] if blen else &zero
        memset(&w, 0, sizeof(w))
        memset(&hits, 0, sizeof(hits))
        memset(&runs, 0, sizeof(runs))
        try:
            with nogil:
                for i in range(nm):
                    s = offsets[i]
                    e = offsets[i + 1]
                    sc_prof_mark(-1)
                    if fused and rc >= 0 and e - s <= SC_MAX_BODY:
                        # the pre-pass is part of the scan's fold pass (one read of the
                        # bytes, not two): a body that is not pure ASCII stops the scan
                        h0 = hits.n
                        r0 = runs.n
                        r1 = _sc_scan_one(&self.M, bp + s, e - s, NULL, NULL, <int32_t>i, 0,
                                          &w, &hits, &runs, &pre)
                        if r1 == 2:
                            sv[i] = 1
                            continue
                        if r1 < 0:
                            rc = -1             # out of memory: as below, fail closed
                            hits.n = h0
                            runs.n = r0
                            pre = sc_prepass(bp + s, e - s)
                            if pre == 1:
                                sv[i] = 1
                                continue
                            fv[i] |= SC_F_ERROR
                        if pre == 2:
                            fv[i] |= SC_F_NUL
                        if e - s > max_bytes:
                            fv[i] |= SC_F_OVERSIZE
                        continue
                    if simd:
                        pre = sc_prepass(bp + s, e - s)
                    else:
                        acc = 0
                        for j in range(s, e):
                            acc |= bp[j]
                        pre = 1 if acc & 0x80 else (
                            2 if e > s and memchr(bp + s, 0, e - s) != NULL else 0)
                    sc_prof_mark(8)
                    if pre == 1:
                        sv[i] = 1
                        continue
                    if pre == 2:
                        fv[i] |= SC_F_NUL
                    if e - s > max_bytes:
                        fv[i] |= SC_F_OVERSIZE
                    if e - s > SC_MAX_BODY:
                        fv[i] |= SC_F_ERROR     # positions are int32: refuse, fail closed
                        continue
                    if rc < 0 or _sc_scan_one(&self.M, bp + s, e - s, NULL, NULL, <int32_t>i,
                                              0, &w, &hits, &runs, NULL) < 0:
                        fv[i] |= SC_F_ERROR      # out of memory: fail closed, keep going
                        rc = -1
            return _sc_vec_arrays(&hits), _sc_vec_arrays(&runs), flags, slow
        finally:
            _sc_work_free(&w)
            free(hits.a)
            free(runs.a)


# ---- Match objects ----------------------------------------------------------------------
# The pipeline reads a batch's matches as guard.scanner.Match tuples (a NamedTuple). Built
# in Python they cost ~1 us each (tolist, star-unpacking, tuple.__new__); here each is one
# allocation of the tuple subclass filled in place, exactly what tuple.__new__(Match, ...)
# does in CPython (tp_alloc, then PyTuple_SET_ITEM), with the three strings shared.

from cpython.object cimport PyTypeObject
from cpython.ref cimport PyObject

cdef extern from *:
    """
    /* One Match: (name, kind, term) from the 3-tuple nm, then start and end. */
    static PyObject* sc_match_new(PyTypeObject* tp, PyObject* nm, PyObject** ints,
                                  long long s, long long e) {
        PyObject* o = tp->tp_alloc(tp, 5);
        PyObject* x;
        int k;
        if (o == NULL) return NULL;
        for (k = 0; k < 3; k++) {
            x = PyTuple_GET_ITEM(nm, k);
            Py_INCREF(x);
            PyTuple_SET_ITEM(o, k, x);
        }
        x = shared_int_ref(ints, s);
        if (x == NULL) { Py_DECREF(o); return NULL; }
        PyTuple_SET_ITEM(o, 3, x);
        x = shared_int_ref(ints, e);
        if (x == NULL) { Py_DECREF(o); return NULL; }
        PyTuple_SET_ITEM(o, 4, x);
        /* three strings and two ints cannot be part of a reference cycle (the type has
           no __dict__, checked by MatchTable): off the GC's lists, as CPython untracks
           such plain tuples itself, so the collections a big batch triggers stay short */
        PyObject_GC_UnTrack(o);
        return o;
    }

    /* The Matches of rows [a, b) as a new list; NULL with IndexError when a row names a
       (list, term) the table does not have. lbase[l]..lbase[l+1] are list l's entries of
       names (list -1, an encoded run, is list nl). */
    static PyObject* sc_match_list(PyTypeObject* tp, PyObject* names, PyObject** ints,
                                   const int64_t* lbase, int nl, const int16_t* li, const int32_t* ti,
                                   const int64_t* st, const int64_t* en, Py_ssize_t a,
                                   Py_ssize_t b) {
        PyObject* out = PyList_New(b - a);
        Py_ssize_t k;
        if (out == NULL) return NULL;
        for (k = a; k < b; k++) {
            int l = li[k] < 0 ? nl : li[k];
            int64_t idx = (li[k] < -1 || li[k] >= nl) ? -1 : lbase[l] + ti[k];
            if (idx < lbase[l] || idx >= lbase[l + 1]) {
                Py_DECREF(out);
                PyErr_Format(PyExc_IndexError, "match row %zd: no term (%d, %d)", k,
                             (int)li[k], (int)ti[k]);
                return NULL;
            }
            PyObject* m = sc_match_new(tp, PyTuple_GET_ITEM(names, idx), ints, st[k], en[k]);
            if (m == NULL) { Py_DECREF(out); return NULL; }
            PyList_SET_ITEM(out, k - a, m);
        }
        return out;
    }
    """
    object sc_match_list(PyTypeObject* tp, object names, PyObject** ints, const int64_t* lbase,
                         int nl, const int16_t* li, const int32_t* ti, const int64_t* st,
                         const int64_t* en, Py_ssize_t a, Py_ssize_t b)


cdef class MatchTable:
    """Builds ``Match`` objects from result rows (list_id, term_id, start, end).

    ``cls`` is the Match type (a tuple subclass of 5 fields); ``prefix[l][t]`` is the
    (list name, kind, term) of term t of list l, its last entry that of the encoded runs
    (list_id -1)."""
    cdef object cls
    cdef tuple names
    cdef object lbase_arr
    cdef const int64_t* lbase
    cdef int nl

    def __init__(self, cls, prefix):
        if not (isinstance(cls, type) and issubclass(cls, tuple)
                and len(getattr(cls, "_fields", ())) == 5):
            raise TypeError("cls must be a tuple subclass of 5 fields")
        if cls.__dictoffset__ != 0 or cls.__itemsize__ != sizeof(PyObject*):
            raise TypeError("cls must not have a __dict__ (its objects are not GC-tracked)")
        if not prefix:
            raise ValueError("prefix needs at least the encoded entry")
        names = []
        base = [0]
        for row in prefix:
            for nm in row:
                nm = tuple(nm)
                if len(nm) != 3:
                    raise ValueError("each prefix entry is (list name, kind, term)")
                names.append(nm)
            base.append(len(names))
        self.cls = cls
        self.names = tuple(names)
        self.nl = len(prefix) - 1
        self.lbase_arr = _np.array(base, dtype=_np.int64)
        cdef const int64_t[::1] bv = self.lbase_arr
        self.lbase = &bv[0]

    def view(self, msg, list_id, term_id, start, end, Py_ssize_t nmsg):
        """A per-batch reader of the rows (``msg`` sorted, one entry per row)."""
        return _MatchView(self, msg, list_id, term_id, start, end, nmsg)

    def rows(self, list_id, term_id, start, end):
        """The Match of every row, in order (1-D sequences of one length)."""
        v = _MatchView(self, _np.zeros(len(list_id), dtype=_np.int32), list_id, term_id,
                       start, end, 1)
        return v.for_message(0)


cdef class _MatchView:
    """Match objects of one batch's rows, per message or all at once."""
    cdef MatchTable t
    cdef const int32_t[::1] msg
    cdef const int16_t[::1] li
    cdef const int32_t[::1] ti
    cdef const int64_t[::1] st
    cdef const int64_t[::1] en
    cdef Py_ssize_t n, nmsg

    def __init__(self, MatchTable t, msg, list_id, term_id, start, end, Py_ssize_t nmsg):
        cdef Py_ssize_t k
        self.t = t
        self.msg = _np.ascontiguousarray(msg, dtype=_np.int32)
        self.li = _np.ascontiguousarray(list_id, dtype=_np.int16)
        self.ti = _np.ascontiguousarray(term_id, dtype=_np.int32)
        self.st = _np.ascontiguousarray(start, dtype=_np.int64)
        self.en = _np.ascontiguousarray(end, dtype=_np.int64)
        self.n = self.msg.shape[0]
        self.nmsg = nmsg
        if not (self.li.shape[0] == self.ti.shape[0] == self.st.shape[0] == self.en.shape[0]
                == self.n):
            raise ValueError("row arrays must have one length")
        for k in range(1, self.n):
            if self.msg[k] < self.msg[k - 1]:
                raise ValueError("rows must be sorted by message")

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef Py_ssize_t _lower(self, Py_ssize_t i) noexcept:
        """The first row whose message is >= i (binary search)."""
        cdef Py_ssize_t lo = 0, hi = self.n, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.msg[mid] < i:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef object _list(self, Py_ssize_t a, Py_ssize_t b):
        if a >= b:
            return []
        return sc_match_list(<PyTypeObject*>self.t.cls, self.t.names, shared_ints(),
                             self.t.lbase,
                             self.t.nl, &self.li[0], &self.ti[0], &self.st[0], &self.en[0],
                             a, b)

    def for_message(self, Py_ssize_t i):
        """The matches of message i (a new list; empty when i is out of range)."""
        if i < 0 or i >= self.nmsg:
            return []
        return self._list(self._lower(i), self._lower(i + 1))

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def by_message(self):
        """One new list of matches per message, in one pass over the rows."""
        cdef Py_ssize_t i, a = 0, b
        out = []
        b = self._lower(0)  # rows of negative messages (none in practice) are not shown
        for i in range(self.nmsg):
            a = b
            while b < self.n and self.msg[b] == i:
                b += 1
            out.append(self._list(a, b))
        return out
