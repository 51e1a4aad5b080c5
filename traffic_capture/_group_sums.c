/* A batch's packets summed per (client, direction) and class, in one pass through a hash table:
 * a window then keeps a few hundred sums per batch instead of tens of thousands of packets,
 * and its close sorts those (windows.py). numpy would sort every packet to do the same.
 * windows.py's python_group_sums gives the same groups, in the same order (first appearance),
 * and the tests check that, byte for byte.
 *
 * group_sums(is6, hi, lo, inbound, protocol_class, ip_bytes, first_out, counts_out, classes,
 *            seed) -> groups
 * is6, inbound: bool; hi, lo: uint64; protocol_class, ip_bytes: int64; first_out: int64, the
 * index of each group's first packet; counts_out: int64 (groups, classes), zeroed here. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* murmur3's finaliser: every input bit reaches every output bit. */
static uint64_t finalise(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDULL;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ULL;
    return h ^ (h >> 33);
}

/* Keyed by a secret seed, in two rounds: a client's address is the packet's source, which a
 * flood of spoofed sources chooses; without the seed no one can make its addresses collide and
 * turn each batch's pass into a quadratic one. */
static uint64_t slot_hash(uint64_t hi, uint64_t lo, uint64_t flags, uint64_t seed)
{
    uint64_t h = finalise(hi ^ seed);
    return finalise(h ^ lo ^ (flags << 62) ^ (seed * 0x9E3779B97F4A7C15ULL));
}

static PyObject *group_sums(PyObject *self, PyObject *args)
{
    Py_buffer is6_in, hi_in, lo_in, inbound_in, class_in, bytes_in, first_out, counts_out;
    Py_ssize_t classes;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*w*w*nK", &is6_in, &hi_in, &lo_in, &inbound_in,
                          &class_in, &bytes_in, &first_out, &counts_out, &classes, &seed))
        return NULL;
    Py_ssize_t n = is6_in.len, groups = 0;
    const char *error = NULL;
    if (classes <= 0 || classes > 64 || hi_in.len < n * 8 || lo_in.len < n * 8
        || inbound_in.len < n || class_in.len < n * 8 || bytes_in.len < n * 8
        || first_out.len < n * 8 || counts_out.len / 8 / classes < n)
        error = "group_sums: arrays of different lengths";
    Py_ssize_t size = 16;
    while (!error && size < 2 * n)
        size *= 2;
    int64_t *slots = error ? NULL : PyMem_Malloc((size_t)size * sizeof(int64_t));
    if (!error && !slots)
        error = "group_sums: out of memory";
    if (!error) {
        const unsigned char *is6 = is6_in.buf, *inbound = inbound_in.buf;
        const uint64_t *hi = hi_in.buf, *lo = lo_in.buf;
        const int64_t *protocol_class = class_in.buf, *ip_bytes = bytes_in.buf;
        int64_t *first = first_out.buf, *counts = counts_out.buf;
        Py_BEGIN_ALLOW_THREADS
        memset(slots, 0xFF, (size_t)size * sizeof(int64_t));  /* -1: empty */
        for (Py_ssize_t i = 0; i < n; i++) {
            if (protocol_class[i] < 0 || protocol_class[i] >= classes) {
                error = "group_sums: a class out of range";
                break;
            }
            uint64_t flags = (uint64_t)(is6[i] != 0) << 1 | (inbound[i] != 0);
            Py_ssize_t at = (Py_ssize_t)(slot_hash(hi[i], lo[i], flags, seed)
                                         & (uint64_t)(size - 1));
            int64_t group;
            for (;;) {
                group = slots[at];
                if (group < 0) {
                    group = slots[at] = groups++;
                    first[group] = i;
                    memset(counts + group * classes, 0, (size_t)classes * sizeof(int64_t));
                    break;
                }
                int64_t k = first[group];
                if (hi[k] == hi[i] && lo[k] == lo[i] && (is6[k] != 0) == (is6[i] != 0)
                    && (inbound[k] != 0) == (inbound[i] != 0))
                    break;
                at = (at + 1) & (size - 1);
            }
            counts[group * classes + protocol_class[i]] += ip_bytes[i];
        }
        Py_END_ALLOW_THREADS
    }
    PyMem_Free(slots);
    PyBuffer_Release(&is6_in);
    PyBuffer_Release(&hi_in);
    PyBuffer_Release(&lo_in);
    PyBuffer_Release(&inbound_in);
    PyBuffer_Release(&class_in);
    PyBuffer_Release(&bytes_in);
    PyBuffer_Release(&first_out);
    PyBuffer_Release(&counts_out);
    if (error) {
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    return PyLong_FromSsize_t(groups);
}

static PyMethodDef methods[] = {
    {"group_sums", group_sums, METH_VARARGS,
     "group_sums(is6, hi, lo, inbound, protocol_class, ip_bytes, first_out, counts_out, "
     "classes, seed) -> groups: the packets summed per (client, direction) and class, groups "
     "in order of first appearance (the seed keys the hash; the result does not depend on "
     "it)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_group_sums", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__group_sums(void)
{
    return PyModule_Create(&module);
}
