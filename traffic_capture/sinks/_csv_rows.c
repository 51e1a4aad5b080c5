/* csv_rows.python_window_text's loop: a closed window's rows as the CSV's text. In Python it is
 * one %-format per row (about 0.9 us each, 0.1 s for the 100,000 rows of a 1 M-packet trace,
 * all of it holding the GIL on the CSV writer's thread while the capture thread wants it);
 * here the digits are written without the GIL. csv_rows.py holds the Python twin, which is
 * where the row's layout is written; tests/test_csv_window_text.py checks both give the same
 * text. An IPv4 client's text is written here too, from its address (v4), so that the CSV's
 * commonest rows need no Python string. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* An ASCII str's characters, or NULL (and a ValueError) for anything else: every text a row
 * holds (times, addresses, directions, delimiters) is ASCII. */
static const char *ascii_of(PyObject *text, Py_ssize_t *size)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "csv_rows: a text that is not a str");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(text)) { /* the caller lays such a window out in Python */
        PyErr_SetString(PyExc_UnicodeError, "csv_rows: a text that is not ASCII");
        return NULL;
    }
    *size = PyUnicode_GET_LENGTH(text);
    return (const char *)PyUnicode_DATA(text);
}

/* A short text (a delimiter, a direction, an address) copied in place: a memcpy call per
 * field cost more than the field. */
static char *put_text(char *out, const char *text, Py_ssize_t size)
{
    for (Py_ssize_t k = 0; k < size; k++)
        out[k] = text[k];
    return out + size;
}

/* Decimal digits of a value as %d writes it (a '-' first when negative). */
static Py_ssize_t decimal_size(int64_t value)
{
    uint64_t magnitude = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
    Py_ssize_t size = value < 0 ? 2 : 1;
    while (magnitude >= 10) {
        magnitude /= 10;
        size++;
    }
    return size;
}

static char *put_decimal(char *out, int64_t value)
{
    uint64_t magnitude = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
    char digits[20];
    int count = 0;
    do {
        digits[count++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        *out++ = '-';
    while (count)
        *out++ = digits[--count];
    return out;
}

/* An IPv4 address's dotted text (as Python's ipaddress writes it): its size, and the text. */
static Py_ssize_t dotted_size(uint32_t address)
{
    Py_ssize_t size = 3;
    for (int shift = 24; shift >= 0; shift -= 8)
        size += decimal_size((address >> shift) & 0xFF);
    return size;
}

static char *put_dotted(char *out, uint32_t address)
{
    for (int shift = 24; shift >= 0; shift -= 8) {
        out = put_decimal(out, (address >> shift) & 0xFF);
        if (shift)
            *out++ = '.';
    }
    return out;
}

/* A row's total: numpy's int64 sum, which wraps around (never reached: bytes of one client). */
static int64_t row_total(const int64_t *counts, Py_ssize_t classes)
{
    uint64_t total = 0;
    for (Py_ssize_t k = 0; k < classes; k++)
        total += (uint64_t)counts[k];
    return (int64_t)total;
}

static PyObject *window_text(PyObject *self, PyObject *args)
{
    PyObject *prefix_obj, *delimiter_obj, *clients_obj, *in_obj, *out_obj;
    Py_buffer inbound, counts, v4_in = {0};
    Py_ssize_t classes;
    if (!PyArg_ParseTuple(args, "UUOUUy*y*n|y*", &prefix_obj, &delimiter_obj, &clients_obj,
                          &in_obj, &out_obj, &inbound, &counts, &classes, &v4_in))
        return NULL;
    PyObject *clients = NULL, *result = NULL;
    const char **client_text = NULL;
    Py_ssize_t *client_size = NULL;
    /* Copies of counts and inbound: what is sized is what is written, whatever another
     * thread does to the arrays while the GIL is let go. */
    int64_t *count = NULL, *v4 = NULL;
    unsigned char *is_in = NULL;
    Py_ssize_t rows = 0;
    Py_ssize_t prefix_size, delimiter_size, in_size, out_size;
    const char *prefix = ascii_of(prefix_obj, &prefix_size);
    const char *delimiter = prefix ? ascii_of(delimiter_obj, &delimiter_size) : NULL;
    const char *in_text = delimiter ? ascii_of(in_obj, &in_size) : NULL;
    const char *out_text = in_text ? ascii_of(out_obj, &out_size) : NULL;
    if (out_text == NULL)
        goto done;
    /* A tuple holds its texts while the GIL is let go, whatever happens to the caller's list. */
    clients = PySequence_Tuple(clients_obj);
    if (clients == NULL)
        goto done;
    /* With v4, one int64 per row: its IPv4 address, or -1 for a row whose text is the next
     * of `clients`; without, one text per row. */
    Py_ssize_t texts = PyTuple_GET_SIZE(clients), taken = 0;
    rows = v4_in.obj != NULL ? v4_in.len / 8 : texts;
    /* Divisions, not products: nothing here can overflow, whatever classes is. */
    Py_ssize_t row_bytes = classes >= 1 && classes <= PY_SSIZE_T_MAX / 8 ? classes * 8 : 0;
    if (!row_bytes || inbound.len != rows || counts.len % row_bytes ||
        counts.len / row_bytes != rows || (v4_in.obj != NULL && v4_in.len % 8)) {
        PyErr_SetString(PyExc_ValueError, "csv_rows: clients, directions and counts differ");
        goto done;
    }
    client_text = PyMem_RawMalloc((size_t)rows * sizeof(char *) + 1);
    client_size = PyMem_RawMalloc((size_t)rows * sizeof(Py_ssize_t) + 1);
    count = PyMem_RawMalloc((size_t)counts.len + 1);
    is_in = PyMem_RawMalloc((size_t)rows + 1);
    v4 = PyMem_RawMalloc((size_t)rows * 8 + 1);
    if (client_text == NULL || client_size == NULL || count == NULL || is_in == NULL ||
        v4 == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(count, counts.buf, (size_t)counts.len);
    memcpy(is_in, inbound.buf, (size_t)rows);
    for (Py_ssize_t i = 0; i < rows; i++) /* -1: the row's text is one of `clients` */
        v4[i] = v4_in.obj != NULL ? ((const int64_t *)v4_in.buf)[i] : -1;
    for (Py_ssize_t i = 0; i < rows; i++) { /* the texts' characters, with the GIL */
        if (v4[i] > 0xFFFFFFFFLL) {
            PyErr_SetString(PyExc_ValueError, "csv_rows: an IPv4 address out of range");
            goto done;
        }
        if (v4[i] >= 0) {
            client_text[i] = NULL;
            client_size[i] = dotted_size((uint32_t)v4[i]);
            continue;
        }
        if (taken == texts) {
            PyErr_SetString(PyExc_ValueError, "csv_rows: clients, directions and counts differ");
            goto done;
        }
        client_text[i] = ascii_of(PyTuple_GET_ITEM(clients, taken++), &client_size[i]);
        if (client_text[i] == NULL)
            goto done;
    }
    if (taken != texts) {
        PyErr_SetString(PyExc_ValueError, "csv_rows: clients, directions and counts differ");
        goto done;
    }
    /* The exact size, without the GIL (the tuple holds the texts), so the str is made once. */
    Py_ssize_t total = 0, fixed = rows ? prefix_size + (classes + 2) * delimiter_size + 1 : 0;
    int too_big = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < rows && !too_big; i++) {
        const int64_t *row = count + i * classes;
        Py_ssize_t size = fixed + client_size[i] + (is_in[i] ? in_size : out_size) +
                          decimal_size(row_total(row, classes));
        for (Py_ssize_t k = 0; k < classes; k++)
            size += decimal_size(row[k]);
        too_big = size > PY_SSIZE_T_MAX - total;
        total += too_big ? 0 : size;
    }
    Py_END_ALLOW_THREADS
    if (too_big) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyUnicode_New(total, 127);
    if (result == NULL)
        goto done;
    char *o = (char *)PyUnicode_1BYTE_DATA(result);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < rows; i++) {
        const int64_t *row = count + i * classes;
        o = put_text(o, prefix, prefix_size);
        if (client_text[i] != NULL)
            o = put_text(o, client_text[i], client_size[i]);
        else
            o = put_dotted(o, (uint32_t)v4[i]);
        o = put_text(o, delimiter, delimiter_size);
        o = is_in[i] ? put_text(o, in_text, in_size) : put_text(o, out_text, out_size);
        o = put_text(o, delimiter, delimiter_size);
        o = put_decimal(o, row_total(row, classes));
        for (Py_ssize_t k = 0; k < classes; k++) {
            o = put_text(o, delimiter, delimiter_size);
            o = put_decimal(o, row[k]);
        }
        *o++ = '\n';
    }
    Py_END_ALLOW_THREADS
done:
    PyMem_RawFree(count);
    PyMem_RawFree(is_in);
    PyMem_RawFree(v4);
    PyMem_RawFree(client_text);
    PyMem_RawFree(client_size);
    Py_XDECREF(clients);
    PyBuffer_Release(&inbound);
    PyBuffer_Release(&counts);
    PyBuffer_Release(&v4_in);  /* a no-op when v4 was not given (zeroed) */
    return result;
}

static PyMethodDef methods[] = {
    {"window_text", window_text, METH_VARARGS,
     "window_text(prefix, delimiter, clients, in_text, out_text, inbound, counts, classes"
     "[, v4]) -> str: per row, prefix, the client, its direction (in_text where inbound[i] is "
     "non-zero, else out_text), the row's total and its `classes` int64 counts, delimited, "
     "then a newline. With v4 (int64 per row), a row's client is that IPv4 address, or for "
     "-1 the next of `clients`. UnicodeError for a text that is not ASCII, ValueError for "
     "columns of different lengths."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_csv_rows", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__csv_rows(void)
{
    return PyModule_Create(&module);
}
