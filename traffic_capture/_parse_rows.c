/* The batch parse's one pass over the frames' first bytes (parse.py's python_parse_rows is
 * the same in numpy, and the tests check that both give the same arrays, byte for byte).
 * numpy needs some forty whole-array steps per batch for it, each a pass over memory; here
 * one pass reads each row once, while it is in the CPU cache. No rule lives only here:
 * parse.py says what each field means and why.
 *
 * parse_rows(table, base, ip_at, ethertype_at, lengths, wire, bounded, fcs_bytes,
 *            is_ip, is6, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, ip_bytes,
 *            payload_at, scalar) -> malformed
 * table: uint8 rows (n, width), the frame's first bytes from column `base`; lengths, wire:
 * int64 captured and wire lengths; ethertype_at < 0: no ethertype (the version nibble says);
 * bounded: the wire lengths are known (they bound what an IP length field may count). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define NO_PORT (-1)
#define NO_BOUND ((int64_t)1 << 62)

static inline int64_t be16(const unsigned char *p) { return ((int64_t)p[0] << 8) | p[1]; }

static inline uint64_t be32(const unsigned char *p)
{
    return ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) | ((uint64_t)p[2] << 8) | p[3];
}

static inline uint64_t be64(const unsigned char *p) { return (be32(p) << 32) | be32(p + 4); }

static int is_vlan_tag(int64_t ethertype)
{
    return ethertype == 0x8100 || ethertype == 0x88A8 || ethertype == 0x9100;
}

/* IPv6 extension headers followed by the frame-by-frame parser (parse.IPV6_EXTENSIONS). */
static int is_ipv6_extension(int64_t next_header)
{
    switch (next_header) {
    case 0: case 43: case 44: case 51: case 60: case 135: case 139: case 140: case 253:
    case 254:
        return 1;
    default:
        return 0;
    }
}

static PyObject *parse_rows(PyObject *self, PyObject *args)
{
    Py_buffer table_in, lengths_in, wire_in, out[12];
    Py_ssize_t width, base, ip, ethertype_at, fcs;
    int bounded;
    if (!PyArg_ParseTuple(args, "y*nnnny*y*pnw*w*w*w*w*w*w*w*w*w*w*w*", &table_in, &width,
                          &base, &ip, &ethertype_at, &lengths_in, &wire_in, &bounded, &fcs,
                          &out[0], &out[1], &out[2], &out[3], &out[4], &out[5], &out[6],
                          &out[7], &out[8], &out[9], &out[10], &out[11]))
        return NULL;
    Py_ssize_t n = lengths_in.len / 8;
    int ok = width > 0 && base >= 0 && ip >= 0 && base + ip + 40 <= width
             && base + ip + 60 + 13 <= width && table_in.len >= n * width
             && (ethertype_at < 0 || base + ethertype_at + 2 <= width)
             && wire_in.len >= n * 8;
    Py_ssize_t sizes[12] = {1, 1, 8, 8, 8, 8, 8, 8, 8, 8, 8, 1};
    for (int k = 0; k < 12; k++)
        ok = ok && out[k].len >= n * sizes[k];
    Py_ssize_t malformed = 0;
    if (ok) {
        const unsigned char *table = table_in.buf;
        const int64_t *lengths = lengths_in.buf, *wire = wire_in.buf;
        unsigned char *is_ip = out[0].buf, *is6_out = out[1].buf, *scalar_out = out[11].buf;
        uint64_t *src_hi = out[2].buf, *src_lo = out[3].buf, *dst_hi = out[4].buf,
                 *dst_lo = out[5].buf;
        int64_t *proto_out = out[6].buf, *sport = out[7].buf, *dport = out[8].buf,
                *ip_bytes = out[9].buf, *payload_at = out[10].buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            const unsigned char *h = table + i * width + base, *header = h + ip;
            int64_t length = lengths[i];
            int link_ok, scalar = 0;
            if (ethertype_at < 0) {  /* IP just after the link header, if any was captured */
                link_ok = length > ip;
            } else {
                int64_t ethertype = be16(h + ethertype_at);
                scalar = is_vlan_tag(ethertype) && length >= ip;
                link_ok = length >= ip && (ethertype == 0x0800 || ethertype == 0x86DD);
            }
            int64_t first = header[0], version = first >> 4;
            int v4 = link_ok && version == 4 && length >= ip + 20 && (first & 0x0F) >= 5;
            int v6 = link_ok && version == 6 && length >= ip + 40;
            int64_t on_wire = wire[i] > length ? wire[i] : length;
            int64_t after_link = on_wire - fcs - ip;
            if (after_link < 20)
                after_link = 20;
            int64_t most = bounded ? after_link : NO_BOUND;
            int64_t header_len = (first & 0x0F) * 4, total_len = be16(header + 2);
            int64_t v4_bytes = total_len < header_len ? after_link : total_len;
            if (v4_bytes > most)
                v4_bytes = most;
            int64_t fragment = be16(header + 6) & 0x1FFF, payload_len = be16(header + 4);
            int64_t next_header = header[6];
            scalar = scalar || (v6 && is_ipv6_extension(next_header));
            int64_t v6_bytes = payload_len > 0 ? payload_len + 40 : after_link;
            if (v6_bytes > most)
                v6_bytes = most;
            int64_t proto = v6 ? next_header : header[9];
            int64_t l4 = v6 ? ip + 40 : ip + header_len;
            int with_ports = (proto == 6 || proto == 17) && length >= l4 + 4
                             && (v6 || fragment == 0);
            const unsigned char *transport = h + l4;
            sport[i] = with_ports ? be16(transport) : NO_PORT;
            dport[i] = with_ports ? be16(transport + 2) : NO_PORT;
            payload_at[i] = with_ports && proto == 6 && length >= l4 + 13
                                ? l4 + (transport[12] >> 4) * 4 : -1;
            src_hi[i] = v6 ? be64(header + 8) : 0;
            src_lo[i] = v6 ? be64(header + 16) : be32(header + 12);
            dst_hi[i] = v6 ? be64(header + 24) : 0;
            dst_lo[i] = v6 ? be64(header + 32) : be32(header + 16);
            proto_out[i] = proto;
            ip_bytes[i] = v6 ? v6_bytes : v4_bytes;
            is_ip[i] = (unsigned char)(v4 || v6);
            is6_out[i] = (unsigned char)v6;
            scalar_out[i] = (unsigned char)scalar;
            int claims_ip = ethertype_at >= 0 ? link_ok
                                              : link_ok && (version == 4 || version == 6);
            malformed += claims_ip - (v4 || v6);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&table_in);
    PyBuffer_Release(&lengths_in);
    PyBuffer_Release(&wire_in);
    for (int k = 0; k < 12; k++)
        PyBuffer_Release(&out[k]);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "parse_rows: rows too narrow or outputs too short");
        return NULL;
    }
    return PyLong_FromSsize_t(malformed);
}

static PyMethodDef methods[] = {
    {"parse_rows", parse_rows, METH_VARARGS,
     "parse_rows(table, width, base, ip_at, ethertype_at, lengths, wire, bounded, fcs_bytes, "
     "*12 outputs) -> malformed: the batch parse of parse.python_parse_rows in one pass."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_parse_rows", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__parse_rows(void)
{
    return PyModule_Create(&module);
}
