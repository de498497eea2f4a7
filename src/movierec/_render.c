/* movierec._render: the plain-text answer of `recommend`, found and rendered in one call.
 *
 * A Renderer holds a vocabulary of UTF-8 movie ids back to back in one buffer;
 * join(codes) returns the ids of those codes joined by commas. Once every shard
 * of a run is in memory, set_users() gives it the run's user table and shards
 * (numpy arrays, shared, not copied) and render(user_id) answers a user with no
 * Python object touched on the way. In Python the same answer takes a dozen
 * calls and reads 20 separate bytes objects, each a cache miss after the
 * framework's work between two answers: measured, that is what kept recommend
 * from 90 % of a trivial handler's throughput (docs/serving.md).
 *
 * Every method runs holding the GIL and never runs Python code, so an add()
 * that grows the buffer can never move it under a join() in progress; a
 * Renderer is initialised once. Codes are read once each into a private copy:
 * the arrays are shared, and numpy may write to them from a thread that has
 * released the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    char *text;          /* the ids, back to back */
    Py_ssize_t *starts;  /* id i is text[starts[i]:starts[i + 1]]; count + 1 entries */
    Py_ssize_t count, text_capacity, starts_capacity;
    /* After set_users: user id -> row * partitions + partition, or -1; each partition's
     * list offsets (rows + 1) into its codes. */
    Py_ssize_t partitions;
    Py_buffer slots, *offsets, *codes;
} Renderer;

static void
release_users(Renderer *self)
{
    if (self->slots.obj)
        PyBuffer_Release(&self->slots);
    for (Py_ssize_t p = 0; p < self->partitions; p++) {
        if (self->offsets && self->offsets[p].obj)
            PyBuffer_Release(&self->offsets[p]);
        if (self->codes && self->codes[p].obj)
            PyBuffer_Release(&self->codes[p]);
    }
    PyMem_Free(self->offsets);
    PyMem_Free(self->codes);
    self->offsets = self->codes = NULL;
    self->partitions = 0;
}

static int
renderer_init(Renderer *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Renderer", kwlist))
        return -1;
    if (self->starts != NULL) {  /* re-initialising would free what a render may be reading */
        PyErr_SetString(PyExc_RuntimeError, "a Renderer is initialised once");
        return -1;
    }
    self->starts = PyMem_Calloc(1, sizeof(Py_ssize_t));
    if (self->starts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->starts_capacity = 1;  /* the rest starts at zero, as tp_alloc leaves it */
    return 0;
}

static void
renderer_dealloc(Renderer *self)
{
    release_users(self);
    PyMem_Free(self->text);
    PyMem_Free(self->starts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
grow(void **buffer, Py_ssize_t *capacity, Py_ssize_t needed, size_t item)
{
    if (*buffer != NULL && needed <= *capacity)  /* the first add allocates, even for an empty id */
        return 0;
    Py_ssize_t capacity_new = *capacity ? *capacity : 64;
    while (capacity_new < needed)
        capacity_new *= 2;
    void *grown = PyMem_Realloc(*buffer, (size_t)capacity_new * item);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buffer = grown;
    *capacity = capacity_new;
    return 0;
}

/* A Renderer made with __new__ and never __init__-ed has no vocabulary to add to or read. */
static int
initialised(Renderer *self)
{
    if (self->starts == NULL)
        PyErr_SetString(PyExc_RuntimeError, "Renderer not initialised");
    return self->starts != NULL;
}

static PyObject *
renderer_add(Renderer *self, PyObject *arg)
{
    if (!initialised(self))
        return NULL;
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "add() takes bytes, not %.80s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(arg), end = self->starts[self->count];
    if (grow((void **)&self->text, &self->text_capacity, end + size, 1) < 0
        || grow((void **)&self->starts, &self->starts_capacity, self->count + 2, sizeof(Py_ssize_t)) < 0)
        return NULL;
    memcpy(self->text + end, PyBytes_AS_STRING(arg), (size_t)size);
    self->starts[++self->count] = end + size;
    Py_RETURN_NONE;
}

/* Item i of a buffer of 2-byte unsigned, or 4- or 8-byte signed, integers. */
static inline long long
item(const Py_buffer *buffer, Py_ssize_t i)
{
    switch (buffer->itemsize) {
    case 2: return ((const uint16_t *)buffer->buf)[i];
    case 4: return ((const int32_t *)buffer->buf)[i];
    default: return ((const int64_t *)buffer->buf)[i];
    }
}

/* Get a one-dimensional buffer of integers: uint16 when `narrow`, else int32 or int64. */
static int
get_integers(PyObject *object, Py_buffer *buffer, int narrow, const char *what)
{
    if (PyObject_GetBuffer(object, buffer, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *format = buffer->format ? buffer->format : "B";
    if (format[0] == '@' || format[0] == '=' || format[0] == '<')
        format++;  /* native or little-endian: the same on the machines this runs on */
    int ok = buffer->ndim == 1 && format[1] == '\0'
             && ((narrow && buffer->itemsize == 2 && format[0] == 'H')
                 || (buffer->itemsize == 4 && (format[0] == 'i' || format[0] == 'l'))
                 || (buffer->itemsize == 8 && (format[0] == 'l' || format[0] == 'q')));
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must be one-dimensional %sint32 or int64, got %d dimensions of format %s",
                     what, narrow ? "uint16, " : "", buffer->ndim, format);
        PyBuffer_Release(buffer);
        return -1;
    }
    return 0;
}

/* The ids of codes[start:end] joined by commas; IndexError for a code outside the vocabulary. */
static PyObject *
join_codes(Renderer *self, const Py_buffer *codes, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t n = end - start, local[64], *checked = local, size = n ? n - 1 : 0;
    if (n > 64 && (checked = PyMem_Malloc((size_t)n * sizeof(Py_ssize_t))) == NULL)
        return PyErr_NoMemory();
    PyObject *joined = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {  /* each code read once: what is checked is what is copied */
        long long code = item(codes, start + i);
        if (code < 0 || code >= self->count) {
            PyErr_Format(PyExc_IndexError, "movie code %lld outside the vocabulary of %zd", code, self->count);
            goto done;
        }
        checked[i] = (Py_ssize_t)code;
        size += self->starts[code + 1] - self->starts[code];
    }
    joined = PyBytes_FromStringAndSize(NULL, size);
    if (joined == NULL)
        goto done;
    char *out = PyBytes_AS_STRING(joined);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t from = self->starts[checked[i]], length = self->starts[checked[i] + 1] - from;
        if (i)
            *out++ = ',';
        memcpy(out, self->text + from, (size_t)length);
        out += length;
    }
done:
    if (checked != local)
        PyMem_Free(checked);
    return joined;
}

static PyObject *
renderer_join(Renderer *self, PyObject *arg)
{
    Py_buffer codes;
    if (!initialised(self))
        return NULL;
    if (get_integers(arg, &codes, 1, "codes") < 0)
        return NULL;
    PyObject *joined = join_codes(self, &codes, 0, codes.len / codes.itemsize);
    PyBuffer_Release(&codes);
    return joined;
}

static PyObject *
renderer_set_users(Renderer *self, PyObject *args)
{
    PyObject *slots, *offsets, *codes;
    Py_ssize_t partitions;
    if (!PyArg_ParseTuple(args, "OnOO:set_users", &slots, &partitions, &offsets, &codes))
        return NULL;
    if (!initialised(self))
        return NULL;
    if (self->partitions) {
        PyErr_SetString(PyExc_RuntimeError, "set_users() was already called: a Renderer serves one run");
        return NULL;
    }
    if (partitions < 1 || !PyTuple_Check(offsets) || !PyTuple_Check(codes)
        || PyTuple_GET_SIZE(offsets) != partitions || PyTuple_GET_SIZE(codes) != partitions) {
        PyErr_SetString(PyExc_ValueError, "set_users() takes a tuple of offsets and one of codes per partition");
        return NULL;
    }
    self->offsets = PyMem_Calloc((size_t)partitions, sizeof(Py_buffer));
    self->codes = PyMem_Calloc((size_t)partitions, sizeof(Py_buffer));
    self->partitions = partitions;
    if (self->offsets == NULL || self->codes == NULL) {
        release_users(self);
        return PyErr_NoMemory();
    }
    if (get_integers(slots, &self->slots, 0, "slots") < 0)
        goto fail;
    for (Py_ssize_t p = 0; p < partitions; p++) {
        if (get_integers(PyTuple_GET_ITEM(offsets, p), &self->offsets[p], 0, "offsets") < 0
            || get_integers(PyTuple_GET_ITEM(codes, p), &self->codes[p], 1, "codes") < 0)
            goto fail;
    }
    Py_RETURN_NONE;
fail:
    release_users(self);
    return NULL;
}

static PyObject *
renderer_render(Renderer *self, PyObject *arg)
{
    if (!PyLong_Check(arg)) {  /* an int only: converting anything else could run Python code */
        PyErr_Format(PyExc_TypeError, "render() takes an int user id, not %.80s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    if (!self->partitions) {
        PyErr_SetString(PyExc_RuntimeError, "render() needs set_users() first");
        return NULL;
    }
    int overflow;
    long long user = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (user == -1 && PyErr_Occurred())
        return NULL;
    if (overflow || user < 0 || user >= self->slots.len / self->slots.itemsize)
        Py_RETURN_NONE;
    long long slot = item(&self->slots, (Py_ssize_t)user);
    if (slot < 0)
        Py_RETURN_NONE;
    Py_ssize_t row = (Py_ssize_t)(slot / self->partitions), p = (Py_ssize_t)(slot % self->partitions);
    const Py_buffer *offsets = &self->offsets[p];
    if (row >= offsets->len / offsets->itemsize - 1) {  /* checked here, not over 1 M slots up front */
        PyErr_Format(PyExc_IndexError, "user %lld: row %zd is past partition %zd", user, row, p);
        return NULL;
    }
    long long start = item(offsets, row), end = item(offsets, row + 1);
    if (start < 0 || start > end || end > self->codes[p].len / self->codes[p].itemsize) {
        PyErr_Format(PyExc_IndexError, "user %lld: offsets %lld:%lld outside partition %zd", user, start, end, p);
        return NULL;
    }
    return join_codes(self, &self->codes[p], (Py_ssize_t)start, (Py_ssize_t)end);
}

static Py_ssize_t
renderer_len(Renderer *self)
{
    return self->count;
}

static PyMethodDef renderer_methods[] = {
    {"add", (PyCFunction)renderer_add, METH_O, "add(movie_id: bytes): the next code's id, UTF-8."},
    {"join", (PyCFunction)renderer_join, METH_O,
     "join(codes) -> bytes: the ids of a buffer of codes (uint16, int32 or int64), joined by commas."},
    {"set_users", (PyCFunction)renderer_set_users, METH_VARARGS,
     "set_users(slots, partitions, offsets, codes): the run's user table (user id -> row * partitions\n"
     "+ partition, or -1) and, per partition, its list offsets and codes. Once; the arrays are shared."},
    {"render", (PyCFunction)renderer_render, METH_O,
     "render(user_id) -> bytes | None: the user's movie ids joined by commas; None for an unknown user."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods renderer_as_sequence = {.sq_length = (lenfunc)renderer_len};

static PyTypeObject RendererType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "movierec._render.Renderer",
    .tp_doc = "Movie ids, UTF-8, by code: renders an answer's codes as comma-joined bytes.",
    .tp_basicsize = sizeof(Renderer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)renderer_init,
    .tp_dealloc = (destructor)renderer_dealloc,
    .tp_methods = renderer_methods,
    .tp_as_sequence = &renderer_as_sequence,
};

static struct PyModuleDef render_module = {
    PyModuleDef_HEAD_INIT, "movierec._render", "recommend's answers rendered in C.", -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__render(void)
{
    if (PyType_Ready(&RendererType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&render_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&RendererType);
    if (PyModule_AddObject(module, "Renderer", (PyObject *)&RendererType) < 0) {
        Py_DECREF(&RendererType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
