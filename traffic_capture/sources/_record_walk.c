/* Where each record of a classic pcap buffer starts: the one step of reading a capture file
 * that numpy cannot vectorise (each record's place depends on the previous one's length).
 * In Python it costs 0.3 s per million records, half the time budget for a whole file;
 * here, a few ms. On the way, each record's first bytes (its header and the frame's link,
 * IP and transport headers) are copied into one row of a table while they are in the CPU
 * cache: numpy reads every field from there. Framing only: no rule of what is counted lives
 * here. record_walk.py holds the same steps in Python, used when this module could not be
 * compiled, and the tests check that both give the same offsets and rows. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *walk(PyObject *self, PyObject *args)
{
    Py_buffer data, out, rows_out;
    Py_ssize_t at, end, width;
    int big_endian;
    if (!PyArg_ParseTuple(args, "y*nnw*pw*n", &data, &at, &end, &out, &big_endian, &rows_out,
                          &width))
        return NULL;
    if (end > data.len)
        end = data.len;
    if (width < 0)
        width = 0;
    const unsigned char *bytes = (const unsigned char *)data.buf;
    int64_t *offsets = (int64_t *)out.buf;
    unsigned char *rows = (unsigned char *)rows_out.buf;
    Py_ssize_t capacity = out.len / (Py_ssize_t)sizeof(int64_t), count = 0;
    if (width && rows_out.len / width < capacity)
        capacity = rows_out.len / width;
    Py_BEGIN_ALLOW_THREADS
    while (count < capacity && at >= 0 && at + 16 <= end) {
        const unsigned char *field = bytes + at + 8; /* incl_len: bytes of this record */
        uint32_t caplen = big_endian
            ? ((uint32_t)field[0] << 24) | ((uint32_t)field[1] << 16) | ((uint32_t)field[2] << 8) | field[3]
            : ((uint32_t)field[3] << 24) | ((uint32_t)field[2] << 16) | ((uint32_t)field[1] << 8) | field[0];
        Py_ssize_t following = at + 16 + (Py_ssize_t)caplen;
        if (following > end)
            break;
        if (width) {
            /* width bytes from the record's start; zeros past the buffer's end */
            Py_ssize_t have = end - at < width ? end - at : width;
            unsigned char *row = rows + count * width;
            memcpy(row, bytes + at, (size_t)have);
            memset(row + have, 0, (size_t)(width - have));
        }
        offsets[count++] = at;
        at = following;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    PyBuffer_Release(&rows_out);
    return Py_BuildValue("nn", count, at);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(buffer, at, end, offsets_out, big_endian, rows_out, width) -> (count, at): offsets "
     "of the whole records from `at` up to `end`, at most len(offsets_out) and "
     "len(rows_out) // width; `at` is where the next begins. With width > 0, row i of "
     "rows_out gets the `width` bytes from record i's start (zeros past `end`)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_record_walk", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__record_walk(void)
{
    return PyModule_Create(&module);
}
