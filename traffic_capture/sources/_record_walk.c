/* Where each record of a capture file buffer starts: the one step of reading a capture file
 * that numpy cannot vectorise (each record's place depends on the previous one's length).
 * In Python it costs 0.3 s per million records, half the time budget for a whole file;
 * here, a few ms. On the way, each record's first bytes (its header and the frame's link,
 * IP and transport headers) are copied into one row of a table while they are in the CPU
 * cache: numpy reads every field from there. Framing only: no rule of what is counted lives
 * here. record_walk.py holds the same steps in Python, used when this module could not be
 * compiled, and the tests check that both give the same offsets and rows.
 *
 * walk: classic pcap records (16-byte header, incl_len at +8).
 * walk_pcapng: consecutive pcapng Enhanced Packet Blocks (type 6, length at +4, captured
 * length at +20, 28 bytes before the frame); it stops at any other block, or at an EPB whose
 * lengths do not add up, and leaves that block to the Python reader. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint32_t word_at(const unsigned char *field, int big_endian)
{
    return big_endian
        ? ((uint32_t)field[0] << 24) | ((uint32_t)field[1] << 16) | ((uint32_t)field[2] << 8) | field[3]
        : ((uint32_t)field[3] << 24) | ((uint32_t)field[2] << 16) | ((uint32_t)field[1] << 8) | field[0];
}

/* `width` bytes from `at` into row; zeros past the buffer's end */
static void copy_row(unsigned char *row, const unsigned char *bytes, Py_ssize_t at,
                     Py_ssize_t end, Py_ssize_t width)
{
    Py_ssize_t have = end - at < width ? end - at : width;
    memcpy(row, bytes + at, (size_t)have);
    memset(row + have, 0, (size_t)(width - have));
}

/* The walk of one format: the length of the record at `at` (header included) if it is one
 * this walk takes and lies whole before `end`, else -1. */
typedef Py_ssize_t (*record_length)(const unsigned char *bytes, Py_ssize_t at, Py_ssize_t end,
                                    int big_endian);

static Py_ssize_t pcap_record(const unsigned char *bytes, Py_ssize_t at, Py_ssize_t end,
                              int big_endian)
{
    if (at + 16 > end)
        return -1;
    Py_ssize_t length = 16 + (Py_ssize_t)word_at(bytes + at + 8, big_endian);
    return at + length <= end ? length : -1;
}

static Py_ssize_t pcapng_packet_block(const unsigned char *bytes, Py_ssize_t at, Py_ssize_t end,
                                      int big_endian)
{
    if (at + 32 > end || word_at(bytes + at, big_endian) != 6)
        return -1;
    Py_ssize_t length = (Py_ssize_t)word_at(bytes + at + 4, big_endian);
    Py_ssize_t captured = (Py_ssize_t)word_at(bytes + at + 20, big_endian);
    if (length < 32 || length % 4 || at + length > end || 28 + captured > length - 4)
        return -1;
    return length;
}

static PyObject *walk_with(PyObject *args, record_length length_of)
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
    while (count < capacity && at >= 0) {
        Py_ssize_t length = length_of(bytes, at, end, big_endian);
        if (length < 0)
            break;
        if (width)
            copy_row(rows + count * width, bytes, at, end, width);
        offsets[count++] = at;
        at += length;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    PyBuffer_Release(&rows_out);
    return Py_BuildValue("nn", count, at);
}

static PyObject *walk(PyObject *self, PyObject *args)
{
    return walk_with(args, pcap_record);
}

static PyObject *walk_pcapng(PyObject *self, PyObject *args)
{
    return walk_with(args, pcapng_packet_block);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(buffer, at, end, offsets_out, big_endian, rows_out, width) -> (count, at): offsets "
     "of the whole pcap records from `at` up to `end`, at most len(offsets_out) and "
     "len(rows_out) // width; `at` is where the next begins. With width > 0, row i of "
     "rows_out gets the `width` bytes from record i's start (zeros past `end`)."},
    {"walk_pcapng", walk_pcapng, METH_VARARGS,
     "walk_pcapng(...): as walk, over consecutive whole pcapng Enhanced Packet Blocks; `at` "
     "is then the first other block (or unfit one), or where the buffer's whole blocks end."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_record_walk", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__record_walk(void)
{
    return PyModule_Create(&module);
}
