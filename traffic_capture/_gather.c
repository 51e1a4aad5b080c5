/* frames.gather_frames' copy loop: the chosen frames out of a source's buffer (which the source
 * reuses) into one buffer of their own, for the sinks that keep frames (the packet log, the
 * viewer). In Python it is one slice copy per frame, about 0.6 us each and all of it on the
 * capture thread, holding the GIL; here a memcpy each, without the GIL. frames.py holds the
 * same loop in Python for machines without a C compiler; tests/test_frames_gather.py checks
 * both give the same bytes. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *gather(PyObject *self, PyObject *args)
{
    Py_buffer source, starts, lengths, target, target_starts;
    if (!PyArg_ParseTuple(args, "y*y*y*w*y*", &source, &starts, &lengths, &target,
                          &target_starts))
        return NULL;
    Py_ssize_t n = starts.len / (Py_ssize_t)sizeof(int64_t);
    int bad = starts.len % (Py_ssize_t)sizeof(int64_t) || lengths.len != starts.len ||
              target_starts.len != starts.len;
    /* The spans are checked, then copied from, in a private copy: a target that shares
     * memory with them cannot move a checked span while the copy runs. */
    int64_t *spans = bad ? NULL : PyMem_RawMalloc(3 * (size_t)n * sizeof(int64_t) + 1);
    if (!bad && spans == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t *from = spans, *size = spans + n, *to = spans + 2 * n;
    if (spans != NULL) {
        memcpy(from, starts.buf, (size_t)starts.len);
        memcpy(size, lengths.buf, (size_t)lengths.len);
        memcpy(to, target_starts.buf, (size_t)target_starts.len);
    }
    for (Py_ssize_t i = 0; !bad && i < n; i++)
        bad = from[i] < 0 || size[i] < 0 || to[i] < 0 || from[i] > source.len ||
              size[i] > source.len - from[i] || to[i] > target.len ||
              size[i] > target.len - to[i];
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "gather: a span lies outside its buffer");
        goto done;
    }
    const char *in = source.buf;
    char *out = target.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        memmove(out + to[i], in + from[i], (size_t)size[i]); /* the two may overlap */
    Py_END_ALLOW_THREADS
done:
    PyMem_RawFree(spans);
    PyBuffer_Release(&source);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&lengths);
    PyBuffer_Release(&target);
    PyBuffer_Release(&target_starts);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"gather", gather, METH_VARARGS,
     "gather(source, starts, lengths, target, target_starts): copy source[starts[i]:"
     "starts[i] + lengths[i]] to target[target_starts[i]:...] for every i (int64 arrays). "
     "ValueError, and nothing copied, when a span lies outside its buffer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_gather", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__gather(void)
{
    return PyModule_Create(&module);
}
