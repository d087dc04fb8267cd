# Portion-mark recognition: find "(...)" marks at the start of lines in a message body.
#
# A candidate starts at the beginning of the buffer or of a line (after optional spaces
# or tabs) with '(' and ends at the first ')' within MAX_PORTION bytes on the same line.
# It is a portion mark when its content holds "//" (any marking with controls), or is
# a bare classification (U, C, S, R, TS and the NATO forms), or contains non-ASCII bytes
# (look-alike letters must reach the parser so that they are reported, not skipped).
# Characters are otherwise not judged here: the parser reports what is wrong.

cimport cython
import numpy as np
cimport numpy as cnp
from libc.string cimport memchr

cnp.import_array()

DEF MAX_PORTION = 256


# boundscheck off: callers pass a..a+n inside the buffer (the content of a mark that
# ends at a ')' found at an index < buffer length).
@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline bint _bare_class(const unsigned char[::1] buf, Py_ssize_t a, Py_ssize_t n) nogil:
    # a..a+n is the content between the parentheses
    cdef unsigned char c0, c1, c2
    if n == 1:
        c0 = buf[a]
        return c0 == b'U' or c0 == b'C' or c0 == b'S' or c0 == b'R'
    if n == 2:
        c0 = buf[a]
        c1 = buf[a + 1]
        if c0 == b'T' and c1 == b'S':
            return True
        return c0 == b'N' and (c1 == b'U' or c1 == b'R' or c1 == b'C' or c1 == b'S')
    if n == 3:
        c0 = buf[a]
        c1 = buf[a + 1]
        c2 = buf[a + 2]
        return c0 == b'C' and c1 == b'T' and c2 == b'S'
    return False


# boundscheck off: every buf index is tested against n (or lim <= n) before the read,
# and out rows are written only while k < cap = out.shape[0].
@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _scan_portions(const unsigned char[::1] buf, cnp.int64_t[:, ::1] out) nogil:
    """Write (start, end) of each portion mark into ``out``; return how many (at most
    out.shape[0])."""
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t cap = out.shape[0]
    cdef Py_ssize_t i = 0, j, lim, k = 0
    cdef unsigned char c
    cdef bint slashes, high
    cdef const unsigned char *base
    cdef const void *nl
    if n == 0:
        return 0
    base = &buf[0]
    while i < n and k < cap:
        # i is the start of a line
        while i < n and (buf[i] == b' ' or buf[i] == b'\t'):
            i += 1
        if i < n and buf[i] == b'(':
            lim = i + 1 + MAX_PORTION
            if lim > n:
                lim = n
            slashes = False
            high = False
            j = i + 1
            while j < lim:
                c = buf[j]
                if c == b')' or c == b'\n' or c == b'(':
                    break
                if c == b'/' and j + 1 < lim and buf[j + 1] == b'/':
                    slashes = True
                elif c >= 0x80:
                    high = True
                j += 1
            if j < lim and buf[j] == b')' and j > i + 1:
                if slashes or high or _bare_class(buf, i + 1, j - i - 1):
                    out[k, 0] = i
                    out[k, 1] = j + 1
                    k += 1
        # next line
        if i >= n:
            break
        nl = memchr(base + i, b'\n', n - i)
        if nl == NULL:
            break
        i = (<const unsigned char *>nl - base) + 1
    return k


def find_portions(const unsigned char[::1] buf):
    """Spans of portion marks at line starts in ``buf``: int64 array of shape (k, 2)
    holding [start, end) byte offsets of each "(...)" mark."""
    cdef Py_ssize_t n = buf.shape[0]
    # at most one mark per line; a line holding a mark is at least 4 bytes "(U)\n"
    cdef Py_ssize_t cap = n // 3 + 1
    if cap > 65536:
        cap = 65536
    arr = np.empty((cap, 2), dtype=np.int64)
    cdef cnp.int64_t[:, ::1] out = arr
    cdef Py_ssize_t k
    with nogil:
        k = _scan_portions(buf, out)
    if k == cap and cap == 65536:
        # more marks than the fixed bound: scan the remainder too
        rest_start = int(arr[k - 1, 1])
        tail = find_portions(buf[rest_start:])
        if tail.shape[0]:
            tail = tail + rest_start
            return np.concatenate((arr[:k], tail))
    return arr[:k]


def portion_hits(bytes data, dict cache, object hit_type, object on_miss):
    """Portion marks of ``data`` as a list of ``hit_type(start, end, result)``, the
    result taken from ``cache`` (raw mark bytes -> parse) or, on a miss, from
    ``on_miss(raw)``. The scan is the nogil byte loop above; Python objects are made
    only per mark found."""
    cdef const unsigned char[::1] buf = data
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t cap = n // 3 + 1
    if cap > 65536:
        cap = 65536
    arr = np.empty((cap, 2), dtype=np.int64)
    cdef cnp.int64_t[:, ::1] out = arr
    cdef Py_ssize_t k, j, a, b
    with nogil:
        k = _scan_portions(buf, out)
    if k == cap and cap == 65536:
        # more marks than the fixed bound: fall back to the unbounded span finder
        spans = find_portions(buf)
        out = spans
        k = spans.shape[0]
    hits = []
    new = tuple.__new__
    for j in range(k):
        a = out[j, 0]
        b = out[j, 1]
        raw = data[a:b]
        result = cache.get(raw)
        if result is None:
            result = on_miss(raw)
        hits.append(new(hit_type, (a, b, result)))
    return hits


# ---- fast path of guard.markings.parse (tables installed by guard/markings/fast.py) ----
#
# The same algorithm as the pure-Python reference in guard/markings/fast.py, compiled:
# it accepts only clean, canonical, VALID US markings and returns None for anything
# else, so the full parser explains every problem. Python objects (str, dict, tuple)
# are used here - the input is a short marking string, not a byte stream - but typed
# locals and C integers for the rule bit masks remove the interpreter's overhead.

cdef dict _fp_class_b, _fp_class_p, _fp_simple_b, _fp_simple_p, _fp_info
cdef dict _fp_sci_sys_b, _fp_sci_sys_p, _fp_sci_comp_b, _fp_sci_comp_p, _fp_sub_len
cdef dict _fp_aea_b, _fp_aea_p, _fp_rel_rank, _fp_plain_rank, _fp_order
cdef tuple _fp_cnwdi_b, _fp_cnwdi_p
cdef frozenset _fp_frd_sigma
cdef object _fp_build, _fp_control, _fp_compartment
cdef bint _fp_ready = False

DEF FP_SCI = 2
DEF FP_SAP = 3
DEF FP_AEA = 4
DEF FP_FGI = 5
DEF FP_DISSEM = 6
DEF FP_NONIC = 7


def markings_fast_setup(dict t):
    """Install the tables built from the Register data (see guard/markings/fast.py)."""
    global _fp_class_b, _fp_class_p, _fp_simple_b, _fp_simple_p, _fp_info
    global _fp_sci_sys_b, _fp_sci_sys_p, _fp_sci_comp_b, _fp_sci_comp_p, _fp_sub_len
    global _fp_aea_b, _fp_aea_p, _fp_rel_rank, _fp_plain_rank, _fp_order
    global _fp_cnwdi_b, _fp_cnwdi_p, _fp_frd_sigma, _fp_build, _fp_control
    global _fp_compartment, _fp_ready
    _fp_class_b, _fp_class_p = t["class"]["banner"], t["class"]["portion"]
    _fp_simple_b, _fp_simple_p = t["simple"]["banner"], t["simple"]["portion"]
    _fp_info = t["info"]
    _fp_sci_sys_b, _fp_sci_sys_p = t["sci_sys"]["banner"], t["sci_sys"]["portion"]
    _fp_sci_comp_b, _fp_sci_comp_p = t["sci_comp"]["banner"], t["sci_comp"]["portion"]
    _fp_sub_len = t["sub_len"]
    _fp_aea_b, _fp_aea_p = t["aea_base"]["banner"], t["aea_base"]["portion"]
    _fp_cnwdi_b, _fp_cnwdi_p = t["cnwdi"]["banner"], t["cnwdi"]["portion"]
    _fp_rel_rank, _fp_plain_rank = t["rel_rank"], t["plain_rank"]
    _fp_order = t["order"]
    _fp_frd_sigma = frozenset(t["frd_sigma"])
    _fp_build, _fp_control, _fp_compartment = t["build"], t["control"], t["compartment"]
    for v in _fp_info.values():
        if v[0] >= (1 << 62):
            raise ValueError("too many Register keys for 64-bit masks")
    _fp_ready = True


cdef bint _fp_ordered(list codes, dict rank):
    """Every code known, strictly increasing in list order (so no duplicates)."""
    cdef long prev = -1, r
    for c in codes:
        v = rank.get(c)
        if v is None:
            return False
        r = v
        if r <= prev:
            return False
        prev = r
    return True


def markings_fast_parse(str text, str kind):
    """(kind, Marking) for a clean canonical valid US marking, else None."""
    cdef str body, cat, first, tok, level, key, name, cname, ckey, part, sub, prog, head
    cdef bint portion
    cdef long long present = 0, need = 0, excl = 0, bit, classes, req, exc, lbit
    cdef long rank, last_rank = 0, order, prev, n, lo, hi, i
    cdef list cats, tokens, parts, words, codes, controls, comps, found, dissem, non_ic
    cdef dict simple, systems, comps_tbl, table, bases
    cdef tuple hit, subs
    if not _fp_ready:
        return None
    n = len(text)
    if n == 0 or not (text.isascii() and text.isprintable() and text.isupper()):
        return None
    if "  " in text or " /" in text or "/ " in text or " ," in text:
        return None
    if text[0] == "(":
        if kind == "banner" or text[n - 1] != ")":
            return None
        portion = True
        body = text[1:n - 1]
        if "(" in body or ")" in body:
            return None
    else:
        portion = kind == "portion"
        if ")" in text or (portion and "(" in text):
            return None
        body = text
    if len(body) == 0 or body[0] == " " or body[len(body) - 1] == " ":
        return None
    cats = body.split("//")
    lv = (_fp_class_p if portion else _fp_class_b).get(cats[0])
    if lv is None:
        return None
    level = lv
    lbit = 1 if level == "TS" else 2 if level == "S" else 4 if level == "C" else 8
    simple = _fp_simple_p if portion else _fp_simple_b
    sci = ()
    sap = ()
    aea = ()
    sigma = ()
    fgi_marked = False
    fgi = ()
    dissem = []
    non_ic = []
    rel_to = ()
    rel_abbrev = False
    display = ()
    for i in range(1, len(cats)):
        cat = cats[i]
        tokens = cat.split("/")
        first = tokens[0]
        h = simple.get(first)
        if h is not None:
            rank = (<tuple>h)[0]
        elif first.startswith("REL") or first.startswith("DISPLAY ONLY "):
            rank = FP_DISSEM
        elif first.startswith("SAR-"):
            rank = FP_SAP
        elif first.startswith("FGI"):
            rank = FP_FGI
        else:
            head = first.split("-", 1)[0]
            if head in (_fp_aea_p if portion else _fp_aea_b):
                rank = FP_AEA
            elif head in (_fp_sci_sys_p if portion else _fp_sci_sys_b):
                rank = FP_SCI
            else:
                return None
        if rank <= last_rank:
            return None
        last_rank = rank
        if rank >= FP_DISSEM:
            prev = -1
            for tok in tokens:
                h = simple.get(tok)
                if h is not None:
                    hit = <tuple>h
                    if <long>hit[0] != rank:
                        return None
                    key = hit[1]
                    bit = hit[2]; classes = hit[3]; req = hit[4]; exc = hit[5]; order = hit[6]
                    if rank == FP_DISSEM:
                        dissem.append(key)
                    else:
                        non_ic.append(key)
                else:
                    if rank != FP_DISSEM:
                        return None
                    if tok.startswith("REL TO "):
                        key = "REL"
                        codes = tok[7:].split(", ")
                        if len(codes) < 2 or codes[0] != "USA" or \
                                not _fp_ordered(codes, _fp_rel_rank):
                            return None
                        rel_to = tuple(codes)
                    elif tok == "REL" and portion:
                        key = "REL"
                        rel_abbrev = True
                    elif tok.startswith("DISPLAY ONLY "):
                        key = "DISPLAY"
                        codes = tok[13:].split(", ")
                        if not _fp_ordered(codes, _fp_rel_rank):
                            return None
                        display = tuple(codes)
                    else:
                        return None
                    hit = <tuple>_fp_info[key]
                    bit = hit[0]; classes = hit[1]; req = hit[2]; exc = hit[3]; order = hit[4]
                if order <= prev or present & bit or not classes & lbit:
                    return None
                prev = order
                present |= bit
                need |= req
                excl |= exc
        elif rank == FP_SCI:
            systems = _fp_sci_sys_p if portion else _fp_sci_sys_b
            comps_tbl = _fp_sci_comp_p if portion else _fp_sci_comp_b
            controls = []
            prev_name = ""
            for tok in tokens:
                parts = tok.split("-")
                nm = systems.get(parts[0])
                if nm is None:
                    return None
                name = nm
                if name <= prev_name:
                    return None
                prev_name = name
                hit = <tuple>_fp_info[name]
                bit = hit[0]; classes = hit[1]; req = hit[2]; exc = hit[3]
                if not classes & lbit:
                    return None
                present |= bit
                need |= req
                excl |= exc
                if len(parts) == 1:
                    if name == "HCS" or name == "RSV":
                        return None  # needs a compartment: the full parser explains
                    controls.append(_fp_control(name))
                    continue
                t = comps_tbl.get(name)
                if t is None:
                    return None
                table = <dict>t
                comps = []
                prev_comp = ""
                for part in parts[1:]:
                    words = part.split(" ")
                    cn = table.get(words[0])
                    if cn is None:
                        return None
                    cname = cn
                    if cname <= prev_comp:
                        return None
                    prev_comp = cname
                    ckey = name + "-" + cname
                    hit = <tuple>_fp_info[ckey]
                    bit = hit[0]; classes = hit[1]; req = hit[2]; exc = hit[3]
                    if not classes & lbit:
                        return None
                    present |= bit
                    need |= req
                    excl |= exc
                    if len(words) > 1:
                        subs = tuple(words[1:])
                        bounds = _fp_sub_len.get(ckey)
                        if bounds is None or list(subs) != sorted(set(subs)):
                            return None
                        lo = (<tuple>bounds)[0]
                        hi = (<tuple>bounds)[1]
                        for sub in subs:
                            if not (lo <= len(sub) <= hi and sub.isalnum()):
                                return None
                            if ckey == "SI-G" and not sub.isalpha():
                                return None
                        hit = <tuple>_fp_info[ckey + ".sub"]
                        bit = hit[0]; classes = hit[1]; req = hit[2]; exc = hit[3]
                        if not classes & lbit:
                            return None
                        present |= bit
                        need |= req
                        excl |= exc
                        comps.append(_fp_compartment(cname, subs))
                    else:
                        comps.append(_fp_compartment(cname))
                controls.append(_fp_control(name, tuple(comps)))
            sci = tuple(controls)
        elif rank == FP_SAP:
            tokens[0] = first[4:]
            for prog in tokens:
                if not prog.isalnum() or (portion and len(prog) > 3):
                    return None
            sap = tuple([_fp_control(p) for p in tokens])
            hit = <tuple>_fp_info["SAR"]
            bit = hit[0]; classes = hit[1]; req = hit[2]; exc = hit[3]
            if not classes & lbit:
                return None
            present |= bit
            need |= req
            excl |= exc
        elif rank == FP_AEA:
            bases = _fp_aea_p if portion else _fp_aea_b
            prev = -1
            found = []
            for tok in tokens:
                h = simple.get(tok)
                if h is not None:
                    if <long>(<tuple>h)[0] != FP_AEA:
                        return None
                    key = (<tuple>h)[1]
                    found.append(key)
                else:
                    parts = tok.split("-")
                    k = bases.get(parts[0])
                    if k is None:
                        return None
                    key = k
                    found.append(key)
                    for part in parts[1:]:
                        if part in (_fp_cnwdi_p if portion else _fp_cnwdi_b):
                            if key != "RD" or sigma or "CNWDI" in found:
                                return None
                            found.append("CNWDI")
                            sub = "CNWDI"
                        elif part.startswith("SG " if portion else "SIGMA ") and not sigma:
                            nums = part[3 if portion else 6:].split(" ")
                            for x in nums:
                                if not (x.isdigit() and len(x) <= 2):
                                    return None
                            values = tuple([int(x) for x in nums])
                            if min(values) < 1 or list(values) != sorted(set(values)):
                                return None
                            if key == "FRD" and not _fp_frd_sigma.issuperset(values):
                                return None
                            sigma = values
                            sub = "SIGMA"
                        else:
                            return None
                        hit = <tuple>_fp_info[sub]
                        bit = hit[0]; classes = hit[1]; req = hit[2]; exc = hit[3]
                        if present & bit or not classes & lbit:
                            return None
                        present |= bit
                        need |= req
                        excl |= exc
                hit = <tuple>_fp_info[key]
                bit = hit[0]; classes = hit[1]; req = hit[2]; exc = hit[3]; order = hit[4]
                if order <= prev or present & bit or not classes & lbit:
                    return None
                prev = order
                present |= bit
                need |= req
                excl |= exc
            aea = tuple(sorted(found, key=_fp_order.__getitem__))
        else:  # FGI
            if len(tokens) != 1:
                return None
            if first != "FGI":
                if not first.startswith("FGI "):
                    return None
                codes = first[4:].split(" ")
                if "USA" in codes or not _fp_ordered(codes, _fp_plain_rank):
                    return None
                fgi = tuple(codes)
            fgi_marked = True
            hit = <tuple>_fp_info["FGI"]
            bit = hit[0]; classes = hit[1]
            if not classes & lbit:
                return None
            present |= bit
    # relationships, all from the Register data
    if need & present != need or excl & present:
        return None
    return ("portion" if portion else "banner"), _fp_build(
        level, "US", (), "", (), sci, sap, aea, sigma, fgi_marked, fgi, tuple(dissem),
        rel_to, rel_abbrev, (), display, tuple(non_ic))
