# Offsets as shared int objects: one per value below SHARED_INT_LIMIT, made on first use
# (like CPython's small ints, which stop at 256). The spans of a batch's Matches, findings
# and kept lines repeat the same few thousand byte offsets, and allocating and freeing two
# ints per Match or Finding cost as much as the object itself. One table for the process,
# held for its life (2 MB at most when every value is used); read and filled only with the
# GIL held (every caller is building Python objects).

from cpython.ref cimport PyObject
from libc.stdlib cimport calloc

cdef extern from *:
    """
    #define SHARED_INT_LIMIT 65536
    /* A new reference to int(v): the shared one below the limit when the table exists
       (ints NULL: the allocation failed, which only means no sharing); NULL when Python
       is out of memory. */
    static inline PyObject* shared_int_ref(PyObject** ints, long long v) {
        PyObject* x;
        if (ints == NULL || v < 0 || v >= SHARED_INT_LIMIT)
            return PyLong_FromLongLong(v);
        x = ints[v];
        if (x == NULL) {
            x = PyLong_FromLongLong(v);
            if (x == NULL) return NULL;
            ints[v] = x;   /* the table's own reference, never released */
        }
        Py_INCREF(x);
        return x;
    }
    """
    int SHARED_INT_LIMIT
    object shared_int_ref(PyObject** ints, long long v)

cdef PyObject** _shared_ints = NULL


cdef PyObject** shared_ints() noexcept:
    """The process's table of shared ints (made on first use; NULL if out of memory)."""
    global _shared_ints
    if _shared_ints == NULL:
        _shared_ints = <PyObject**>calloc(SHARED_INT_LIMIT, sizeof(PyObject*))
    return _shared_ints


cdef inline object shared_int(long long v):
    """``int(v)``, the shared object when v is below SHARED_INT_LIMIT."""
    return shared_int_ref(shared_ints(), v)
