/* The packet log's lines, rendered in C: in Python each line costs about 5 us (the f-string,
 * hashlib's MD5 called per packet, the preview's translate and escape), which caps the log at
 * some 190,000 lines/s; here a line costs well under a microsecond, most of it the MD5.
 *
 * No rule lives here. log_lines.py works out every column with numpy (which packets, their
 * classes, clients, payload spans) and every text that depends on a rule or on the locale
 * (times, addresses, class names, TCP flags, directions) goes into a table of texts; this file
 * only lays the columns out in the fixed order of the log's keys, and computes the two things
 * that need every payload byte: the MD5 and the preview. log_lines.py holds the same layout in
 * Python, used when this module could not be compiled, and the tests check both give the same
 * bytes.
 *
 * The MD5 is RFC 1321's, written out here rather than called from hashlib: calling back into
 * Python per packet would hold the GIL for every line, and linking OpenSSL would make every
 * install need its headers. The tests compare it with hashlib on every length up to several
 * blocks. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The per-packet int64 columns, in this order (COLUMNS, exported, must equal log_lines.COLUMNS:
 * the module is not used otherwise). Columns marked (text) are indices into the table. */
enum {
    C_TS,           /* (text) "YYYY-MM-DDTHH:MM:SS" then the UTC offset: microseconds go between */
    C_MICRO,        /* microseconds, 0..999999 */
    C_SRC,          /* (text) */
    C_DST,          /* (text) */
    C_SPORT,        /* < 0: null */
    C_DPORT,        /* < 0: null */
    C_PROTO,
    C_CLASS,        /* (text), JSON as it stands */
    C_DIRECTION,    /* (text), JSON as it stands */
    C_CLIENT,       /* (text) */
    C_IP_BYTES,
    C_FLAGS,        /* (text), JSON as it stands */
    C_PAYLOAD_LEN,  /* < 0: null (and then no payload) */
    C_PAYLOAD_AT,   /* the captured payload's offset in the frames buffer */
    C_PAYLOAD_SIZE, /* its captured length; 0: no md5 */
    C_TRUNCATED,    /* 0 false, 1 true, other null */
    N_COLUMNS
};
static const char *const COLUMN_NAMES[N_COLUMNS] = {
    "ts", "micro", "src", "dst", "sport", "dport", "proto", "class", "direction", "client",
    "ip_bytes", "flags", "payload_len", "payload_at", "payload_size", "truncated",
};

#define PREVIEW_BYTES 64
#define DATE_CHARS 19

/* ---- MD5 (RFC 1321) ---- */
/* The 64 steps written out (as the RFC's reference code does): with constant rotations and
 * no table lookups the compiler keeps the state in registers; a loop over tables runs at two
 * thirds of the speed. T = floor(2^32 * |sin(i + 1)|). */
#define F(x, y, z) (((x) & (y)) | (~(x) & (z)))
#define G(x, y, z) (((x) & (z)) | ((y) & ~(z)))
#define H(x, y, z) ((x) ^ (y) ^ (z))
#define I(x, y, z) ((y) ^ ((x) | ~(z)))
#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
#define STEP(f, a, b, c, d, word, t, s)            \
    do {                                           \
        (a) += f((b), (c), (d)) + (word) + (t);    \
        (a) = (b) + ROTL((a), (s));                \
    } while (0)

static void md5_block(uint32_t h[4], const unsigned char *p)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | ((uint32_t)p[4 * i + 1] << 8) |
               ((uint32_t)p[4 * i + 2] << 16) | ((uint32_t)p[4 * i + 3] << 24);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    STEP(F, a, b, c, d, m[ 0], 0xd76aa478u,  7);
    STEP(F, d, a, b, c, m[ 1], 0xe8c7b756u, 12);
    STEP(F, c, d, a, b, m[ 2], 0x242070dbu, 17);
    STEP(F, b, c, d, a, m[ 3], 0xc1bdceeeu, 22);
    STEP(F, a, b, c, d, m[ 4], 0xf57c0fafu,  7);
    STEP(F, d, a, b, c, m[ 5], 0x4787c62au, 12);
    STEP(F, c, d, a, b, m[ 6], 0xa8304613u, 17);
    STEP(F, b, c, d, a, m[ 7], 0xfd469501u, 22);
    STEP(F, a, b, c, d, m[ 8], 0x698098d8u,  7);
    STEP(F, d, a, b, c, m[ 9], 0x8b44f7afu, 12);
    STEP(F, c, d, a, b, m[10], 0xffff5bb1u, 17);
    STEP(F, b, c, d, a, m[11], 0x895cd7beu, 22);
    STEP(F, a, b, c, d, m[12], 0x6b901122u,  7);
    STEP(F, d, a, b, c, m[13], 0xfd987193u, 12);
    STEP(F, c, d, a, b, m[14], 0xa679438eu, 17);
    STEP(F, b, c, d, a, m[15], 0x49b40821u, 22);
    STEP(G, a, b, c, d, m[ 1], 0xf61e2562u,  5);
    STEP(G, d, a, b, c, m[ 6], 0xc040b340u,  9);
    STEP(G, c, d, a, b, m[11], 0x265e5a51u, 14);
    STEP(G, b, c, d, a, m[ 0], 0xe9b6c7aau, 20);
    STEP(G, a, b, c, d, m[ 5], 0xd62f105du,  5);
    STEP(G, d, a, b, c, m[10], 0x02441453u,  9);
    STEP(G, c, d, a, b, m[15], 0xd8a1e681u, 14);
    STEP(G, b, c, d, a, m[ 4], 0xe7d3fbc8u, 20);
    STEP(G, a, b, c, d, m[ 9], 0x21e1cde6u,  5);
    STEP(G, d, a, b, c, m[14], 0xc33707d6u,  9);
    STEP(G, c, d, a, b, m[ 3], 0xf4d50d87u, 14);
    STEP(G, b, c, d, a, m[ 8], 0x455a14edu, 20);
    STEP(G, a, b, c, d, m[13], 0xa9e3e905u,  5);
    STEP(G, d, a, b, c, m[ 2], 0xfcefa3f8u,  9);
    STEP(G, c, d, a, b, m[ 7], 0x676f02d9u, 14);
    STEP(G, b, c, d, a, m[12], 0x8d2a4c8au, 20);
    STEP(H, a, b, c, d, m[ 5], 0xfffa3942u,  4);
    STEP(H, d, a, b, c, m[ 8], 0x8771f681u, 11);
    STEP(H, c, d, a, b, m[11], 0x6d9d6122u, 16);
    STEP(H, b, c, d, a, m[14], 0xfde5380cu, 23);
    STEP(H, a, b, c, d, m[ 1], 0xa4beea44u,  4);
    STEP(H, d, a, b, c, m[ 4], 0x4bdecfa9u, 11);
    STEP(H, c, d, a, b, m[ 7], 0xf6bb4b60u, 16);
    STEP(H, b, c, d, a, m[10], 0xbebfbc70u, 23);
    STEP(H, a, b, c, d, m[13], 0x289b7ec6u,  4);
    STEP(H, d, a, b, c, m[ 0], 0xeaa127fau, 11);
    STEP(H, c, d, a, b, m[ 3], 0xd4ef3085u, 16);
    STEP(H, b, c, d, a, m[ 6], 0x04881d05u, 23);
    STEP(H, a, b, c, d, m[ 9], 0xd9d4d039u,  4);
    STEP(H, d, a, b, c, m[12], 0xe6db99e5u, 11);
    STEP(H, c, d, a, b, m[15], 0x1fa27cf8u, 16);
    STEP(H, b, c, d, a, m[ 2], 0xc4ac5665u, 23);
    STEP(I, a, b, c, d, m[ 0], 0xf4292244u,  6);
    STEP(I, d, a, b, c, m[ 7], 0x432aff97u, 10);
    STEP(I, c, d, a, b, m[14], 0xab9423a7u, 15);
    STEP(I, b, c, d, a, m[ 5], 0xfc93a039u, 21);
    STEP(I, a, b, c, d, m[12], 0x655b59c3u,  6);
    STEP(I, d, a, b, c, m[ 3], 0x8f0ccc92u, 10);
    STEP(I, c, d, a, b, m[10], 0xffeff47du, 15);
    STEP(I, b, c, d, a, m[ 1], 0x85845dd1u, 21);
    STEP(I, a, b, c, d, m[ 8], 0x6fa87e4fu,  6);
    STEP(I, d, a, b, c, m[15], 0xfe2ce6e0u, 10);
    STEP(I, c, d, a, b, m[ 6], 0xa3014314u, 15);
    STEP(I, b, c, d, a, m[13], 0x4e0811a1u, 21);
    STEP(I, a, b, c, d, m[ 4], 0xf7537e82u,  6);
    STEP(I, d, a, b, c, m[11], 0xbd3af235u, 10);
    STEP(I, c, d, a, b, m[ 2], 0x2ad7d2bbu, 15);
    STEP(I, b, c, d, a, m[ 9], 0xeb86d391u, 21);
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
}

static const char HEX[] = "0123456789abcdef";

/* 32 lowercase hex digits of the MD5 of data[0:size] into out */
static void md5_hex(const unsigned char *data, size_t size, char *out)
{
    uint32_t h[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
    size_t whole = size & ~(size_t)63;
    for (size_t at = 0; at < whole; at += 64)
        md5_block(h, data + at);
    unsigned char tail[128];
    size_t rest = size - whole;
    memcpy(tail, data + whole, rest);
    tail[rest] = 0x80;
    size_t padded = rest < 56 ? 64 : 128;
    memset(tail + rest + 1, 0, padded - rest - 1);
    uint64_t bits = (uint64_t)size * 8;
    for (int i = 0; i < 8; i++)
        tail[padded - 8 + i] = (unsigned char)(bits >> (8 * i));
    md5_block(h, tail);
    if (padded == 128)
        md5_block(h, tail + 64);
    for (int i = 0; i < 16; i++) {
        unsigned char byte = (unsigned char)(h[i / 4] >> (8 * (i % 4)));
        out[2 * i] = HEX[byte >> 4];
        out[2 * i + 1] = HEX[byte & 15];
    }
}

/* ---- the lines ---- */
typedef struct {
    const char *text;
    const int64_t *ends;  /* entry i is text[ends[i-1]:ends[i]] (0 for i = 0) */
    Py_ssize_t count;
} table_t;

static char *put(char *at, const char *text, size_t size)
{
    memcpy(at, text, size);
    return at + size;
}
#define PUT(at, literal) put((at), (literal), sizeof(literal) - 1)

static char *put_entry(char *at, const table_t *table, int64_t i)
{
    int64_t begin = i ? table->ends[i - 1] : 0;
    return put(at, table->text + begin, (size_t)(table->ends[i] - begin));
}

static char *put_int(char *at, int64_t value)
{
    char digits[24];
    int n = 0;
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    do {
        digits[n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        *at++ = '-';
    while (n)
        *at++ = digits[--n];
    return at;
}

static char *put_count(char *at, int64_t value) /* a port or a length: null when negative */
{
    return value < 0 ? PUT(at, "null") : put_int(at, value);
}

static int64_t entry_size(const table_t *table, int64_t i)
{
    return table->ends[i] - (i ? table->ends[i - 1] : 0);
}

/* The fixed text of a line, its numbers (at most 20 characters each) and null/true/false. */
#define LINE_FIXED 512

/* An upper bound of the line's size, or -1 when a column is out of range. */
static Py_ssize_t line_bound(const int64_t *c, const table_t *table, Py_ssize_t frames_size,
                             int with_payload)
{
    static const int texts[] = {C_TS, C_SRC, C_DST, C_CLASS, C_DIRECTION, C_CLIENT, C_FLAGS};
    Py_ssize_t bound = LINE_FIXED;
    for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
        int64_t i = c[texts[k]];
        if (i < 0 || i >= table->count)
            return -1;
        bound += (Py_ssize_t)entry_size(table, i);
    }
    if (entry_size(table, c[C_TS]) < DATE_CHARS || c[C_MICRO] < 0 || c[C_MICRO] > 999999)
        return -1;
    int64_t at = c[C_PAYLOAD_AT], size = c[C_PAYLOAD_SIZE];
    if (size < 0 || (size && (at < 0 || at > frames_size || size > frames_size - at)))
        return -1;
    bound += 2 * PREVIEW_BYTES + (with_payload ? 2 * (Py_ssize_t)size : 0);
    return bound;
}

static char *put_line(char *o, const int64_t *c, const table_t *t, const unsigned char *frames,
                      int with_payload)
{
    o = PUT(o, "{\"ts\":\"");
    int64_t ts = c[C_TS], ts_begin = ts ? t->ends[ts - 1] : 0;
    o = put(o, t->text + ts_begin, DATE_CHARS);
    *o++ = '.';
    for (int64_t micro = c[C_MICRO], scale = 100000; scale; scale /= 10)
        *o++ = (char)('0' + (micro / scale) % 10);
    o = put(o, t->text + ts_begin + DATE_CHARS, (size_t)(t->ends[ts] - ts_begin - DATE_CHARS));
    o = PUT(o, "\",\"src\":\"");
    o = put_entry(o, t, c[C_SRC]);
    o = PUT(o, "\",\"dst\":\"");
    o = put_entry(o, t, c[C_DST]);
    o = PUT(o, "\",\"sport\":");
    o = put_count(o, c[C_SPORT]);
    o = PUT(o, ",\"dport\":");
    o = put_count(o, c[C_DPORT]);
    o = PUT(o, ",\"proto\":");
    o = put_int(o, c[C_PROTO]);
    o = PUT(o, ",\"class\":");
    o = put_entry(o, t, c[C_CLASS]);
    o = PUT(o, ",\"direction\":");
    o = put_entry(o, t, c[C_DIRECTION]);
    o = PUT(o, ",\"client\":\"");
    o = put_entry(o, t, c[C_CLIENT]);
    o = PUT(o, "\",\"ip_bytes\":");
    o = put_int(o, c[C_IP_BYTES]);
    o = PUT(o, ",\"tcp_flags\":");
    o = put_entry(o, t, c[C_FLAGS]);
    o = PUT(o, ",\"payload_len\":");
    o = put_count(o, c[C_PAYLOAD_LEN]);
    int64_t size = c[C_PAYLOAD_SIZE];
    int has_payload = c[C_PAYLOAD_LEN] >= 0;
    /* the offset is checked only for a payload that is there (size > 0) */
    const unsigned char *payload = size ? frames + c[C_PAYLOAD_AT] : frames;
    o = PUT(o, ",\"md5\":");
    if (size) {
        *o++ = '"';
        md5_hex(payload, (size_t)size, o);
        o += 32;
        *o++ = '"';
    } else {
        o = PUT(o, "null");
    }
    o = PUT(o, ",\"preview\":");
    if (size || has_payload) {
        *o++ = '"';
        for (int64_t i = 0; i < size && i < PREVIEW_BYTES; i++) {
            unsigned char byte = payload[i];
            if (byte < 0x20 || byte >= 0x7f)
                byte = '.';
            else if (byte == '"' || byte == '\\')
                *o++ = '\\';
            *o++ = (char)byte;
        }
        *o++ = '"';
    } else {
        o = PUT(o, "null");
    }
    o = PUT(o, ",\"truncated\":");
    o = c[C_TRUNCATED] == 0 ? PUT(o, "false") : c[C_TRUNCATED] == 1 ? PUT(o, "true")
                                                                     : PUT(o, "null");
    o = PUT(o, ",\"payload_hex\":");
    if (with_payload && (size || has_payload)) {
        *o++ = '"';
        for (int64_t i = 0; i < size; i++) {
            *o++ = HEX[payload[i] >> 4];
            *o++ = HEX[payload[i] & 15];
        }
        *o++ = '"';
    } else {
        o = PUT(o, "null");
    }
    return PUT(o, "}\n");
}

/* A private copy of a buffer's bytes (the checks and the rendering then read the same values,
 * whatever the caller's buffers share or another thread changes); NULL with MemoryError. */
static void *private_copy(const Py_buffer *from)
{
    void *copy = PyMem_RawMalloc((size_t)from->len + 1);
    if (copy == NULL)
        PyErr_NoMemory();
    else
        memcpy(copy, from->buf, (size_t)from->len);
    return copy;
}

static PyObject *render(PyObject *self, PyObject *args)
{
    Py_buffer text, ends, columns, frames, line_ends;
    int with_payload;
    if (!PyArg_ParseTuple(args, "y*y*y*y*pw*", &text, &ends, &columns, &frames, &with_payload,
                          &line_ends))
        return NULL;
    PyObject *result = NULL;
    char *out = NULL;
    int64_t *table_ends = NULL, *cols = NULL, *line_end = NULL;
    Py_ssize_t n = columns.len / (Py_ssize_t)(sizeof(int64_t) * N_COLUMNS);
    if (columns.len % (Py_ssize_t)(sizeof(int64_t) * N_COLUMNS) != 0 ||
        line_ends.len < n * (Py_ssize_t)sizeof(int64_t) ||
        ends.len % (Py_ssize_t)sizeof(int64_t) != 0) {
        PyErr_SetString(PyExc_ValueError, "render: the columns or line ends have a wrong size");
        goto done;
    }
    /* The indexes and spans are checked on private copies: a caller whose line ends share
     * memory with the columns, or a thread changing them, cannot move a checked value. The
     * texts and frames are only read, at checked offsets of their fixed lengths. */
    table_ends = private_copy(&ends);
    cols = private_copy(&columns);
    line_end = PyMem_RawMalloc((size_t)n * sizeof(int64_t) + 1);
    if (table_ends == NULL || cols == NULL || line_end == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    table_t table = {(const char *)text.buf, table_ends, ends.len / (Py_ssize_t)sizeof(int64_t)};
    int bad = 0;
    for (Py_ssize_t i = 1; !bad && i < table.count; i++)
        bad = table.ends[i] < table.ends[i - 1];
    if (!bad && table.count)
        bad = table.ends[0] < 0 || table.ends[table.count - 1] > text.len;
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; !bad && i < n; i++) {
        Py_ssize_t bound = line_bound(cols + i * N_COLUMNS, &table, frames.len, with_payload);
        bad = bound < 0 || bound > PY_SSIZE_T_MAX - 1 - total;
        if (!bad)
            total += bound;
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "render: a column or table entry is out of range");
        goto done;
    }
    out = PyMem_RawMalloc((size_t)total + 1);
    if (out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    char *o = out;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        o = put_line(o, cols + i * N_COLUMNS, &table, (const unsigned char *)frames.buf,
                     with_payload);
        line_end[i] = o - out;
    }
    Py_END_ALLOW_THREADS
    memcpy(line_ends.buf, line_end, (size_t)n * sizeof(int64_t));
    result = PyBytes_FromStringAndSize(out, o - out);
done:
    PyMem_RawFree(out);
    PyMem_RawFree(table_ends);
    PyMem_RawFree(cols);
    PyMem_RawFree(line_end);
    PyBuffer_Release(&text);
    PyBuffer_Release(&ends);
    PyBuffer_Release(&columns);
    PyBuffer_Release(&frames);
    PyBuffer_Release(&line_ends);
    return result;
}

static PyObject *md5(PyObject *self, PyObject *args)
{
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    char hex[32];
    md5_hex((const unsigned char *)data.buf, (size_t)data.len, hex);
    PyBuffer_Release(&data);
    return PyUnicode_FromStringAndSize(hex, 32);
}

static PyMethodDef methods[] = {
    {"render", render, METH_VARARGS,
     "render(text, text_ends, columns, frames, with_payload, line_ends_out) -> bytes: the "
     "lines of the packets whose int64 columns (COLUMNS order, one row each) are given; "
     "line_ends_out[i] gets the offset after line i's newline. ValueError when a column points "
     "outside the table or the frames."},
    {"md5", md5, METH_VARARGS, "md5(data) -> the 32 hex digits of data's MD5 (for the tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_log_lines", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__log_lines(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *names = PyTuple_New(N_COLUMNS);
    if (names == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < N_COLUMNS; i++) {
        PyObject *name = PyUnicode_FromString(COLUMN_NAMES[i]);
        if (name == NULL) {
            Py_DECREF(names);
            Py_DECREF(m);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    if (PyModule_AddObject(m, "COLUMNS", names) < 0) {
        Py_DECREF(names);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
