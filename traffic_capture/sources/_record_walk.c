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
 * lengths do not add up, and leaves that block to the Python reader.
 * walk_ring: the packets of the Linux capture ring's blocks the kernel handed over.
 * decode_pcap: the classic pcap record headers a walk copied into its table -> each frame's
 * start, lengths and time.
 * read_walk: a file's next bytes read in pieces, the pcap records walked after each piece;
 * read_walk_decode: the same, each record's header decoded as soon as it is walked. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#ifdef _WIN32
#include <io.h>
#include <stdlib.h>
#else
#include <unistd.h>
#endif

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
    if (have < 0)  /* a ring packet's tp_mac may point past the ring */
        have = 0;
    memcpy(row, bytes + at, (size_t)have);
    memset(row + have, 0, (size_t)(width - have));
}

/* The walk of one format: the length of the record at `at` (header included) if it is one
 * this walk takes and lies whole before `end`, else -1. */
typedef Py_ssize_t (*record_length)(const unsigned char *bytes, Py_ssize_t at, Py_ssize_t end,
                                    int big_endian);

/* Both compare lengths with what is left (end - at), never add them to `at`: a damaged length
 * (up to 2^32 - 1) or a far `at` cannot overflow, on 32-bit builds either. */
static Py_ssize_t pcap_record(const unsigned char *bytes, Py_ssize_t at, Py_ssize_t end,
                              int big_endian)
{
    if (at < 0 || at > end || end - at < 16)
        return -1;
    uint32_t captured = word_at(bytes + at + 8, big_endian);
    if ((size_t)captured > (size_t)(end - at - 16))
        return -1;
    return 16 + (Py_ssize_t)captured;
}

static Py_ssize_t pcapng_packet_block(const unsigned char *bytes, Py_ssize_t at, Py_ssize_t end,
                                      int big_endian)
{
    if (at < 0 || at > end || end - at < 32 || word_at(bytes + at, big_endian) != 6)
        return -1;
    uint32_t length = word_at(bytes + at + 4, big_endian);
    uint32_t captured = word_at(bytes + at + 20, big_endian);
    if (length < 32 || length % 4 || (size_t)length > (size_t)(end - at)
        || (size_t)captured + 28 > (size_t)length - 4)
        return -1;
    return (Py_ssize_t)length;
}

/* The records from `at` that lie whole before `end`, appended to offsets (and rows) from
 * *count while it is under capacity: where the first record not taken begins. */
static Py_ssize_t walk_span(const unsigned char *bytes, Py_ssize_t at, Py_ssize_t end,
                            int big_endian, record_length length_of, int64_t *offsets,
                            unsigned char *rows, Py_ssize_t width, Py_ssize_t capacity,
                            Py_ssize_t *count)
{
    while (*count < capacity && at >= 0) {
        Py_ssize_t length = length_of(bytes, at, end, big_endian);
        if (length < 0)
            break;
        if (width)
            copy_row(rows + *count * width, bytes, at, end, width);
        offsets[(*count)++] = at;
        at += length;
    }
    return at;
}

/* How many records a walk may take: as many as both outputs hold. */
static Py_ssize_t walk_capacity(const Py_buffer *offsets_out, const Py_buffer *rows_out,
                                Py_ssize_t width)
{
    Py_ssize_t capacity = offsets_out->len / (Py_ssize_t)sizeof(int64_t);
    if (width && rows_out->len / width < capacity)
        capacity = rows_out->len / width;
    return capacity;
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
    Py_ssize_t capacity = walk_capacity(&out, &rows_out, width), count = 0;
    Py_BEGIN_ALLOW_THREADS
    at = walk_span(bytes, at, end, big_endian, length_of, offsets, rows, width, capacity,
                   &count);
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

#ifdef _WIN32
/* The C runtime ends the process on a bad descriptor unless told otherwise (CPython's os.read
 * does the same): the error is then EBADF, raised as OSError. */
static void ignore_invalid_parameter(const wchar_t *expression, const wchar_t *function,
                                     const wchar_t *file, unsigned int line, uintptr_t reserved)
{
}
#endif

static Py_ssize_t read_some(int fd, unsigned char *into, Py_ssize_t size)
{
#ifdef _WIN32
    _invalid_parameter_handler before =
        _set_thread_local_invalid_parameter_handler(ignore_invalid_parameter);
    int n = _read(fd, into, (unsigned int)(size > INT_MAX ? INT_MAX : size));
    _set_thread_local_invalid_parameter_handler(before);
    return (Py_ssize_t)n;
#else
    return (Py_ssize_t)read(fd, into, (size_t)size);
#endif
}

/* A decode's settings, outputs and progress (decode_pcap's, read_walk_decode's). */
typedef struct {
    int big_endian;
    long long scale, fraction_limit, max_captured;
    int64_t *starts, *captured, *wire, *ts;
    Py_ssize_t usable, bad;
    int stopped;
} decoding;

/* The pcap record headers in the first 16 bytes of table rows [from, to): see decode_pcap.
 * Stops for good at the first record claiming more than max_captured bytes (stopped). */
static void decode_rows(decoding *d, const unsigned char *rows, Py_ssize_t width,
                        const int64_t *offsets, Py_ssize_t from, Py_ssize_t to)
{
    for (Py_ssize_t i = from; i < to && !d->stopped; i++) {
        const unsigned char *row = rows + i * width;
        int64_t length = word_at(row + 8, d->big_endian);
        if (length > d->max_captured) {
            d->stopped = 1;
            break;
        }
        int64_t fraction = word_at(row + 4, d->big_endian);
        if (fraction >= d->fraction_limit) {
            fraction = 0;
            d->bad++;
        }
        d->starts[i] = offsets[i] + 16;
        d->captured[i] = length;
        d->wire[i] = word_at(row + 12, d->big_endian);
        d->ts[i] = (int64_t)word_at(row, d->big_endian) * 1000000000 + fraction * d->scale;
        d->usable = i + 1;
    }
}

/* read_walk: walks the pcap records from `at` in data[:start] (a chunk's carried records),
 * then reads the file's next bytes into data[start, start + want) in reads of `piece` bytes,
 * walking on after each read while the piece is still in the CPU's cache (walked after a
 * whole chunk's read, the chunk's first pieces are back in main memory). Stops at the file's
 * end. The walk is walk()'s, so that rows are zeros past what was read when their record was
 * taken. With `d` (read_walk_decode), each record walked is decoded at once, while its row
 * is in the cache. A read error's errno goes to *failed (OSError for the caller). */
static Py_ssize_t read_walking(int fd, unsigned char *bytes, Py_ssize_t start, Py_ssize_t want,
                               Py_ssize_t *at, int64_t *offsets, int big_endian,
                               unsigned char *rows, Py_ssize_t width, Py_ssize_t piece,
                               Py_ssize_t capacity, Py_ssize_t *count, decoding *d, int *failed)
{
    Py_ssize_t got = 0;
    for (;;) {  /* walk what is there (first, what `start` holds already), then read more */
        Py_ssize_t end = start + got, before = *count;
        *at = walk_span(bytes, *at, end, big_endian, pcap_record, offsets, rows, width, capacity,
                        count);
        if (d != NULL)
            decode_rows(d, rows, width, offsets, before, *count);
        if (got >= want)
            break;
        Py_ssize_t ask = want - got < piece ? want - got : piece;
        Py_ssize_t n = read_some(fd, bytes + end, ask);
        if (n < 0 && errno == EINTR)  /* a signal: its handler runs when this returns */
            continue;
        if (n < 0)
            *failed = errno;
        if (n <= 0)
            break;
        got += n;
    }
    return got;
}

static PyObject *read_walk_with(PyObject *args, int decode)
{
    Py_buffer data, out, rows_out, outputs[4] = {{0}};
    int fd, big_endian;
    Py_ssize_t start, want, at, width, piece;
    decoding d = {0};
    int parsed = decode
        ? PyArg_ParseTuple(args, "iw*nnnw*pw*nnLLLw*w*w*w*", &fd, &data, &start, &want, &at,
                           &out, &big_endian, &rows_out, &width, &piece, &d.scale,
                           &d.fraction_limit, &d.max_captured, &outputs[0], &outputs[1],
                           &outputs[2], &outputs[3])
        : PyArg_ParseTuple(args, "iw*nnnw*pw*nn", &fd, &data, &start, &want, &at, &out,
                           &big_endian, &rows_out, &width, &piece);
    if (!parsed)
        return NULL;
    const char *refused = NULL;
    if (start < 0 || want < 0 || start > data.len || want > data.len - start || piece < 1
        || width < 0 || at < 0)
        refused = "read_walk: start, want, at, width or piece out of range";
    else if (decode && (width < 16 || d.scale <= 0 || d.fraction_limit <= 0))
        refused = "read_walk_decode: rows too narrow for a record header, or a bad scale";
    Py_ssize_t capacity = 0, count = 0, got = 0;
    int failed = 0;
    if (refused == NULL) {
        capacity = walk_capacity(&out, &rows_out, width);
        for (int k = 0; decode && k < 4; k++)  /* room to decode every record walked */
            if (outputs[k].len / 8 < capacity)
                capacity = outputs[k].len / 8;
        d.big_endian = big_endian;
        d.starts = outputs[0].buf;
        d.captured = outputs[1].buf;
        d.wire = outputs[2].buf;
        d.ts = outputs[3].buf;
        Py_BEGIN_ALLOW_THREADS
        got = read_walking(fd, (unsigned char *)data.buf, start, want, &at,
                           (int64_t *)out.buf, big_endian, (unsigned char *)rows_out.buf, width,
                           piece, capacity, &count, decode ? &d : NULL, &failed);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    PyBuffer_Release(&rows_out);
    for (int k = 0; decode && k < 4; k++)
        PyBuffer_Release(&outputs[k]);
    if (refused != NULL) {
        PyErr_SetString(PyExc_ValueError, refused);
        return NULL;
    }
    if (failed) {
        errno = failed;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (decode)
        return Py_BuildValue("nnnnn", got, count, at, d.usable, d.bad);
    return Py_BuildValue("nnn", got, count, at);
}

static PyObject *read_walk(PyObject *self, PyObject *args)
{
    return read_walk_with(args, 0);
}

static PyObject *read_walk_decode(PyObject *self, PyObject *args)
{
    return read_walk_with(args, 1);
}

/* walk_ring: the packets of a Linux TPACKET_V3 receive ring's blocks that the kernel has handed
 * over (block_status & TP_STATUS_USER), from block `block` on, whole blocks only, while the
 * outputs have room for a whole block more (`block_room` packets). Per packet: where its frame
 * starts (tp_mac past its tpacket3_hdr), its captured and wire lengths, its time in ns, and its
 * frame's first `width` bytes in a row of the table. With skip_outgoing, packets the host sent
 * (sll_pkttype PACKET_OUTGOING: lo's first copy) are left out. Host byte order throughout. */
static uint32_t host_word(const unsigned char *field)
{
    uint32_t word;
    memcpy(&word, field, 4);
    return word;
}

/* The block's status, read before anything the kernel wrote into the block: the kernel sets
 * it last (after a write barrier), so this read must not be reordered after the others. */
static uint32_t block_status(const unsigned char *field)
{
#if defined(__GNUC__) || defined(__clang__)
    return __atomic_load_n((const uint32_t *)(const void *)field, __ATOMIC_ACQUIRE);
#else
    return host_word(field);  /* MSVC: the ring is Linux's, never walked there */
#endif
}

static PyObject *walk_ring(PyObject *self, PyObject *args)
{
    Py_buffer ring, starts_out, captured_out, wire_out, ts_out, rows_out;
    Py_ssize_t block, block_count, block_bytes, block_room, width;
    int skip_outgoing;
    if (!PyArg_ParseTuple(args, "y*nnnnpw*w*w*w*w*n", &ring, &block, &block_count,
                          &block_bytes, &block_room, &skip_outgoing, &starts_out,
                          &captured_out, &wire_out, &ts_out, &rows_out, &width))
        return NULL;
    const unsigned char *bytes = (const unsigned char *)ring.buf;
    int64_t *starts = (int64_t *)starts_out.buf, *captured = (int64_t *)captured_out.buf;
    int64_t *wire = (int64_t *)wire_out.buf, *ts = (int64_t *)ts_out.buf;
    unsigned char *rows = (unsigned char *)rows_out.buf;
    Py_ssize_t capacity = starts_out.len / 8;
    if (captured_out.len / 8 < capacity) capacity = captured_out.len / 8;
    if (wire_out.len / 8 < capacity) capacity = wire_out.len / 8;
    if (ts_out.len / 8 < capacity) capacity = ts_out.len / 8;
    if (width > 0 && rows_out.len / width < capacity) capacity = rows_out.len / width;
    if (width < 0) width = 0;
    Py_ssize_t count = 0, taken = 0;
    if (block_bytes < 68 || block_count < 1 || block_room < 0)
        block_count = 0;  /* no block to walk: a ring's blocks hold their header and a packet */
    Py_BEGIN_ALLOW_THREADS
    while (taken < block_count && block >= 0 && (block + 1) * block_bytes <= ring.len
           && count + block_room <= capacity) {
        Py_ssize_t base = block * block_bytes, end = base + block_bytes;
        if (!(block_status(bytes + base + 8) & 1))  /* TP_STATUS_USER */
            break;
        uint32_t packets = host_word(bytes + base + 12);
        Py_ssize_t at = base + host_word(bytes + base + 16);
        for (uint32_t i = 0; i < packets && at >= base && at + 68 <= end; i++) {
            const unsigned char *header = bytes + at;
            uint16_t mac;
            memcpy(&mac, header + 24, 2);
            if (!(skip_outgoing && header[58] == 4)) {  /* PACKET_OUTGOING */
                starts[count] = at + mac;
                captured[count] = host_word(header + 12);
                wire[count] = host_word(header + 16);
                ts[count] = (int64_t)host_word(header + 4) * 1000000000 + host_word(header + 8);
                if (width)
                    copy_row(rows + count * width, bytes, at + mac, ring.len, width);
                if (++count == capacity)
                    break;
            }
            uint32_t next = host_word(header);
            if (next == 0)
                break;
            at += next;
        }
        taken++;
        block = (block + 1) % block_count;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ring);
    PyBuffer_Release(&starts_out);
    PyBuffer_Release(&captured_out);
    PyBuffer_Release(&wire_out);
    PyBuffer_Release(&ts_out);
    PyBuffer_Release(&rows_out);
    return Py_BuildValue("nn", count, taken);
}

/* decode_pcap: the 16-byte record headers at the start of the walk table's first `count` rows
 * (`width` bytes each) -> each frame's start (offset + 16), its captured and wire lengths and
 * its time in ns. A time whose fraction is a second or more (`fraction_limit`) counts from its
 * seconds alone, and is counted in the result; the records from the first one claiming more
 * than `max_captured` bytes on are left out (the walk cannot be trusted past it).
 * -> (usable, bad_timestamps). classic_pcap.walked_records says why, and record_walk.py holds
 * the same in numpy (python_decode_pcap). */
static PyObject *decode_pcap(PyObject *self, PyObject *args)
{
    Py_buffer rows_in, offsets_in, starts_out, captured_out, wire_out, ts_out;
    Py_ssize_t count, width;
    decoding d = {0};
    if (!PyArg_ParseTuple(args, "y*nnpLLLy*w*w*w*w*", &rows_in, &count, &width, &d.big_endian,
                          &d.scale, &d.fraction_limit, &d.max_captured, &offsets_in,
                          &starts_out, &captured_out, &wire_out, &ts_out))
        return NULL;
    int ok = count >= 0 && width >= 16 && rows_in.len / width >= count &&
             offsets_in.len / 8 >= count && starts_out.len / 8 >= count &&
             captured_out.len / 8 >= count && wire_out.len / 8 >= count &&
             ts_out.len / 8 >= count && d.scale > 0 && d.fraction_limit > 0;
    if (ok) {
        d.starts = starts_out.buf;
        d.captured = captured_out.buf;
        d.wire = wire_out.buf;
        d.ts = ts_out.buf;
        Py_BEGIN_ALLOW_THREADS
        decode_rows(&d, rows_in.buf, width, offsets_in.buf, 0, count);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&rows_in);
    PyBuffer_Release(&offsets_in);
    PyBuffer_Release(&starts_out);
    PyBuffer_Release(&captured_out);
    PyBuffer_Release(&wire_out);
    PyBuffer_Release(&ts_out);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "decode_pcap: rows or outputs too short");
        return NULL;
    }
    return Py_BuildValue("nn", d.usable, d.bad);
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
    {"walk_ring", walk_ring, METH_VARARGS,
     "walk_ring(ring, block, block_count, block_bytes, block_room, skip_outgoing, starts_out, "
     "captured_out, wire_out, ts_out, rows_out, width) -> (packets, blocks): the packets of "
     "the TPACKET_V3 blocks the kernel handed over, from `block` on, while the outputs have "
     "room for `block_room` more."},
    {"decode_pcap", decode_pcap, METH_VARARGS,
     "decode_pcap(rows, count, width, big_endian, scale, fraction_limit, max_captured, "
     "offsets, starts_out, captured_out, wire_out, ts_out) -> (usable, bad_timestamps): the "
     "pcap record headers of a walk's table, decoded (see classic_pcap.walked_records)."},
    {"read_walk", read_walk, METH_VARARGS,
     "read_walk(fd, data, start, want, at, offsets_out, big_endian, rows_out, width, piece) -> "
     "(got, count, at): reads up to `want` bytes into data[start:] in reads of `piece` bytes, "
     "walking the pcap records from `at` (as walk) after each."},
    {"read_walk_decode", read_walk_decode, METH_VARARGS,
     "read_walk_decode(fd, data, start, want, at, offsets_out, big_endian, rows_out, width, "
     "piece, scale, fraction_limit, max_captured, starts_out, captured_out, wire_out, ts_out) "
     "-> (got, count, at, usable, bad_timestamps): read_walk, each record's header decoded "
     "(as decode_pcap) as soon as it is walked."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_record_walk", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__record_walk(void)
{
    return PyModule_Create(&module);
}
