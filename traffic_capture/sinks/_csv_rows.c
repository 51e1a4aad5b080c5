/* csv_rows.python_window_text's loop: a closed window's rows as the CSV's text. In Python it is
 * one %-format per row (about 0.9 us each, 0.1 s for the 100,000 rows of a 1 M-packet trace,
 * all of it holding the GIL on the CSV writer's thread while the capture thread wants it);
 * here the digits are written without the GIL. csv_rows.py holds the Python twin, which is
 * where the row's layout is written; tests/test_csv_window_text.py checks both give the same
 * text. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* An ASCII str's characters, or NULL (and a ValueError) for anything else: every text a row
 * holds (times, addresses, directions, delimiters) is ASCII. */
static const char *ascii_of(PyObject *text, Py_ssize_t *size)
{
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) {
        PyErr_SetString(PyExc_ValueError, "csv_rows: a text that is not ASCII");
        return NULL;
    }
    *size = PyUnicode_GET_LENGTH(text);
    return (const char *)PyUnicode_DATA(text);
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
    Py_buffer inbound, counts;
    Py_ssize_t classes;
    if (!PyArg_ParseTuple(args, "UUOUUy*y*n", &prefix_obj, &delimiter_obj, &clients_obj,
                          &in_obj, &out_obj, &inbound, &counts, &classes))
        return NULL;
    PyObject *clients = NULL, *result = NULL;
    const char **client_text = NULL;
    Py_ssize_t *client_size = NULL;
    int64_t *count = NULL; /* a copy of counts: no one changes it while the GIL is let go */
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
    rows = PyTuple_GET_SIZE(clients);
    /* (classes is checked against the buffer's size before it multiplies anything.) */
    if (classes < 1 || inbound.len != rows ||
        (rows ? classes > counts.len ||
                    counts.len != rows * classes * (Py_ssize_t)sizeof(int64_t)
              : counts.len != 0)) {
        PyErr_SetString(PyExc_ValueError, "csv_rows: clients, directions and counts differ");
        goto done;
    }
    client_text = PyMem_RawMalloc((size_t)rows * sizeof(char *) + 1);
    client_size = PyMem_RawMalloc((size_t)rows * sizeof(Py_ssize_t) + 1);
    count = PyMem_RawMalloc((size_t)counts.len + 1);
    if (client_text == NULL || client_size == NULL || count == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(count, counts.buf, (size_t)counts.len);
    const unsigned char *is_in = inbound.buf;
    /* The exact size first, so the str is made once and filled without the GIL. */
    Py_ssize_t total = 0, fixed = prefix_size + (classes + 2) * delimiter_size + 1;
    for (Py_ssize_t i = 0; i < rows; i++) {
        client_text[i] = ascii_of(PyTuple_GET_ITEM(clients, i), &client_size[i]);
        if (client_text[i] == NULL)
            goto done;
        const int64_t *row = count + i * classes;
        Py_ssize_t size = fixed + client_size[i] + (is_in[i] ? in_size : out_size) +
                          decimal_size(row_total(row, classes));
        for (Py_ssize_t k = 0; k < classes; k++)
            size += decimal_size(row[k]);
        if (size > PY_SSIZE_T_MAX - total) {
            PyErr_NoMemory();
            goto done;
        }
        total += size;
    }
    result = PyUnicode_New(total, 127);
    if (result == NULL)
        goto done;
    char *o = (char *)PyUnicode_1BYTE_DATA(result);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < rows; i++) {
        const int64_t *row = count + i * classes;
        memcpy(o, prefix, (size_t)prefix_size);
        o += prefix_size;
        memcpy(o, client_text[i], (size_t)client_size[i]);
        o += client_size[i];
        memcpy(o, delimiter, (size_t)delimiter_size);
        o += delimiter_size;
        if (is_in[i]) {
            memcpy(o, in_text, (size_t)in_size);
            o += in_size;
        } else {
            memcpy(o, out_text, (size_t)out_size);
            o += out_size;
        }
        memcpy(o, delimiter, (size_t)delimiter_size);
        o += delimiter_size;
        o = put_decimal(o, row_total(row, classes));
        for (Py_ssize_t k = 0; k < classes; k++) {
            memcpy(o, delimiter, (size_t)delimiter_size);
            o += delimiter_size;
            o = put_decimal(o, row[k]);
        }
        *o++ = '\n';
    }
    Py_END_ALLOW_THREADS
done:
    PyMem_RawFree(count);
    PyMem_RawFree(client_text);
    PyMem_RawFree(client_size);
    Py_XDECREF(clients);
    PyBuffer_Release(&inbound);
    PyBuffer_Release(&counts);
    return result;
}

static PyMethodDef methods[] = {
    {"window_text", window_text, METH_VARARGS,
     "window_text(prefix, delimiter, clients, in_text, out_text, inbound, counts, classes) -> "
     "str: per row, prefix, the client, its direction (in_text where inbound[i] is non-zero, "
     "else out_text), the row's total and its `classes` int64 counts, delimited, then a "
     "newline. ValueError for a text that is not ASCII or columns of different lengths."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_csv_rows", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__csv_rows(void)
{
    return PyModule_Create(&module);
}
