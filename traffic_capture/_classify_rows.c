/* The batch classification's one pass over the parsed fields (classify.py's
 * python_classify_rows is the same in numpy, and tests/test_classify_rows.py checks that both
 * give the same arrays, byte for byte). numpy needs some twenty whole-array steps per batch for
 * it; here one pass reads each packet's fields once. No rule lives only here: classify.py and
 * rules.py say what counts and why.
 *
 * classify_rows(is_ip, is6, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, payload_at,
 *               lengths, networks, port_flags, class_by_code, ftp_control_port,
 *               counted, inbound, client_hi, client_lo, protocol_class, ftp_port, ftp_control)
 * is_ip, is6: bool; addresses: uint64; proto, ports, payload_at, lengths: int64 (ports are -1
 * without a TCP/UDP header); networks: uint64 rows (is6, mask_hi, mask_lo, value_hi,
 * value_lo), values already masked; port_flags: int64 per port + 1 (bit 1: FTP, bit 2: HTTP);
 * class_by_code: int64 class by (TCP flags 0-3, 4 for UDP, 5 for anything else).
 *
 * may_announce(data, starts, lengths, payload_at, control, marks, found): which FTP control
 * packets' payloads hold one of `marks` (lower case; ASCII letters in the payload compared
 * without case), as classify.python_may_announce finds them; `found` gets their indexes. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define PROTO_TCP 6
#define PROTO_UDP 17
#define FTP_FLAG 1
#define CODES 6

static int member(const uint64_t *networks, Py_ssize_t count, int is6, uint64_t hi,
                  uint64_t lo)
{
    for (Py_ssize_t k = 0; k < count; k++) {
        const uint64_t *net = networks + 5 * k;
        if ((net[0] != 0) == is6 && (hi & net[1]) == net[3] && (lo & net[2]) == net[4])
            return 1;
    }
    return 0;
}

static PyObject *classify_rows(PyObject *self, PyObject *args)
{
    Py_buffer in[11], networks_in, flags_in, codes_in, out[7];
    Py_ssize_t control_port;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*y*y*y*y*nw*w*w*w*w*w*w*", &in[0], &in[1],
                          &in[2], &in[3], &in[4], &in[5], &in[6], &in[7], &in[8], &in[9],
                          &in[10], &networks_in, &flags_in, &codes_in, &control_port, &out[0],
                          &out[1], &out[2], &out[3], &out[4], &out[5], &out[6]))
        return NULL;
    Py_ssize_t n = in[0].len;
    Py_ssize_t in_sizes[11] = {1, 1, 8, 8, 8, 8, 8, 8, 8, 8, 8};
    Py_ssize_t out_sizes[7] = {1, 1, 8, 8, 8, 1, 1};
    int ok = networks_in.len % (5 * 8) == 0 && flags_in.len == 65537 * 8 &&
             codes_in.len == CODES * 8;
    for (int k = 0; k < 11; k++)
        ok = ok && in[k].len == n * in_sizes[k];
    for (int k = 0; k < 7; k++)
        ok = ok && out[k].len >= n * out_sizes[k];
    const char *refused = ok ? NULL : "classify_rows: columns of different lengths";
    const int64_t *sport = in[7].buf, *dport = in[8].buf;
    for (Py_ssize_t i = 0; ok && i < n; i++) /* the flags table is indexed by port + 1 */
        ok = sport[i] >= -1 && sport[i] <= 65535 && dport[i] >= -1 && dport[i] <= 65535;
    if (!ok && refused == NULL)
        refused = "classify_rows: a port out of range";
    if (ok) {
        const int64_t *codes = codes_in.buf;
        const unsigned char *is_ip = in[0].buf, *is6 = in[1].buf;
        const uint64_t *src_hi = in[2].buf, *src_lo = in[3].buf, *dst_hi = in[4].buf,
                       *dst_lo = in[5].buf, *networks = networks_in.buf;
        const int64_t *proto = in[6].buf, *payload_at = in[9].buf, *lengths = in[10].buf,
                      *port_flags = flags_in.buf;
        Py_ssize_t count = networks_in.len / (5 * 8);
        unsigned char *counted = out[0].buf, *inbound = out[1].buf, *ftp_port = out[5].buf,
                      *ftp_control = out[6].buf;
        uint64_t *client_hi = out[2].buf, *client_lo = out[3].buf;
        int64_t *protocol_class = out[4].buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            int six = is6[i] != 0;
            int to_server = is_ip[i] && member(networks, count, six, dst_hi[i], dst_lo[i]);
            int from_server = is_ip[i] && member(networks, count, six, src_hi[i], src_lo[i]);
            counted[i] = (unsigned char)(to_server || from_server);
            inbound[i] = (unsigned char)to_server;
            client_hi[i] = to_server ? src_hi[i] : dst_hi[i];
            client_lo[i] = to_server ? src_lo[i] : dst_lo[i];
            int tcp = proto[i] == PROTO_TCP;
            int64_t flags = port_flags[sport[i] + 1] | port_flags[dport[i] + 1];
            int64_t code = tcp ? (flags & 3) : (proto[i] == PROTO_UDP ? 4 : 5);
            protocol_class[i] = codes[code];
            ftp_port[i] = (unsigned char)(tcp && (flags & FTP_FLAG));
            ftp_control[i] = (unsigned char)(counted[i] && ftp_port[i] &&
                                             (sport[i] == control_port ||
                                              dport[i] == control_port) &&
                                             payload_at[i] > 0 && payload_at[i] < lengths[i]);
        }
        Py_END_ALLOW_THREADS
    }
    for (int k = 0; k < 11; k++)
        PyBuffer_Release(&in[k]);
    PyBuffer_Release(&networks_in);
    PyBuffer_Release(&flags_in);
    PyBuffer_Release(&codes_in);
    for (int k = 0; k < 7; k++)
        PyBuffer_Release(&out[k]);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, refused);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* An ASCII letter in lower case, as bytes.lower() makes it; any other byte as it is. */
static unsigned char lower(unsigned char byte)
{
    return byte >= 'A' && byte <= 'Z' ? (unsigned char)(byte + 32) : byte;
}

#define MAX_MARKS 16

/* `opens`: per byte, whether a mark may begin with it (in either case): most bytes are
 * passed over at one look. */
static int holds_mark(const unsigned char *text, Py_ssize_t size, const char *const *marks,
                      const Py_ssize_t *mark_sizes, Py_ssize_t mark_count,
                      const unsigned char *opens)
{
    for (Py_ssize_t at = 0; at < size; at++) {
        if (!opens[text[at]])
            continue;
        unsigned char first = lower(text[at]);
        for (Py_ssize_t m = 0; m < mark_count; m++) {
            Py_ssize_t k = 0;
            if ((unsigned char)marks[m][0] != first || mark_sizes[m] > size - at)
                continue;
            while (k < mark_sizes[m] && lower(text[at + k]) == (unsigned char)marks[m][k])
                k++;
            if (k == mark_sizes[m])
                return 1;
        }
    }
    return 0;
}

static PyObject *may_announce(PyObject *self, PyObject *args)
{
    Py_buffer data, starts_in, lengths_in, payload_in, control_in, found_out;
    PyObject *marks_obj;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*O!w*", &data, &starts_in, &lengths_in, &payload_in,
                          &control_in, &PyTuple_Type, &marks_obj, &found_out))
        return NULL;
    Py_ssize_t n = control_in.len, mark_count = PyTuple_GET_SIZE(marks_obj), found = 0;
    const char *marks[MAX_MARKS];
    Py_ssize_t mark_sizes[MAX_MARKS];
    int ok = starts_in.len == n * 8 && lengths_in.len == n * 8 && payload_in.len == n * 8 &&
             found_out.len >= n * 8 && mark_count <= MAX_MARKS;
    for (Py_ssize_t m = 0; ok && m < mark_count; m++) {
        PyObject *mark = PyTuple_GET_ITEM(marks_obj, m);
        ok = PyBytes_Check(mark) && PyBytes_GET_SIZE(mark) > 0;
        if (ok) {
            marks[m] = PyBytes_AS_STRING(mark);
            mark_sizes[m] = PyBytes_GET_SIZE(mark);
        }
    }
    if (ok) {
        const unsigned char *bytes = data.buf, *control = control_in.buf;
        const int64_t *starts = starts_in.buf, *lengths = lengths_in.buf,
                      *payload_at = payload_in.buf;
        int64_t *out = found_out.buf;
        unsigned char opens[256] = {0};
        for (int byte = 0; byte < 256; byte++)
            for (Py_ssize_t m = 0; m < mark_count; m++)
                opens[byte] |= lower((unsigned char)byte) == (unsigned char)marks[m][0];
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!control[i] || starts[i] < 0 || payload_at[i] < 0 || lengths[i] < 0)
                continue;
            /* The payload, within the buffer: [start + payload_at, start + length) */
            Py_ssize_t begin = (Py_ssize_t)(starts[i] < data.len ? starts[i] : data.len);
            Py_ssize_t end = begin + (Py_ssize_t)(lengths[i] < data.len - begin
                                                  ? lengths[i] : data.len - begin);
            begin += (Py_ssize_t)(payload_at[i] < end - begin ? payload_at[i] : end - begin);
            if (holds_mark(bytes + begin, end - begin, marks, mark_sizes, mark_count, opens))
                out[found++] = i;
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&starts_in);
    PyBuffer_Release(&lengths_in);
    PyBuffer_Release(&payload_in);
    PyBuffer_Release(&control_in);
    PyBuffer_Release(&found_out);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "may_announce: columns of different lengths or bad "
                                          "marks");
        return NULL;
    }
    return PyLong_FromSsize_t(found);
}

static PyMethodDef methods[] = {
    {"classify_rows", classify_rows, METH_VARARGS,
     "classify_rows(is_ip, is6, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, "
     "payload_at, lengths, networks, port_flags, class_by_code, ftp_control_port, *7 outputs): "
     "the batch classification of classify.python_classify_rows in one pass."},
    {"may_announce", may_announce, METH_VARARGS,
     "may_announce(data, starts, lengths, payload_at, control, marks, found) -> count: the "
     "indexes of the control packets whose payloads hold a mark, into found[:count] "
     "(classify.python_may_announce)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_classify_rows", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__classify_rows(void)
{
    return PyModule_Create(&module);
}
