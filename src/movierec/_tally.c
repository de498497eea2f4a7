/* movierec._tally: the answers of a hot path counted and timed in plain numbers, for metrics.Tally.
 *
 * recommend records every answer. In Python that took a lock, a dict keyed by
 * the labels and a bisect: measured in the server, 2-4 µs an answer, the
 * largest part of what kept it under 90 % of a trivial handler (docs/serving.md).
 * Here it is one call. A label set is a slot, a small int that metrics.Tally
 * hands out once per label set.
 *
 * Every method runs holding the GIL. record() runs no Python code once it
 * counts (its arguments are converted and `on_first` is called before), and
 * take() copies and zeroes the numbers before it makes any Python object (whose
 * allocation could run the garbage collector, and finalizers with it): so a
 * record() from another thread never lands between the copy and the zeroing,
 * and a flush loses no answer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

typedef struct {
    PyObject_HEAD
    long long *counts;    /* answers per slot */
    Py_ssize_t slots;
    double *bounds;       /* the histogram's upper bounds, ascending; the last is +Inf */
    long long *buckets;   /* observations per bucket (not cumulative) */
    Py_ssize_t nbounds;
    double sum;           /* of the observed seconds */
    PyObject *on_first;   /* called by the first record(); NULL once called */
} Counts;

static int
counts_init(Counts *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"bounds", "on_first", NULL};
    PyObject *bounds, *on_first, *seq;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Counts", kwlist, &bounds, &on_first))
        return -1;
    if (self->bounds != NULL) {  /* re-initialising would free what take() may be reading */
        PyErr_SetString(PyExc_RuntimeError, "a Counts is initialised once");
        return -1;
    }
    if (!PyCallable_Check(on_first)) {
        PyErr_SetString(PyExc_TypeError, "on_first must be callable");
        return -1;
    }
    if (!(seq = PySequence_Tuple(bounds)))  /* a copy: a __float__ below cannot shrink it */
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    double *values = n > 0 ? PyMem_Calloc(n, sizeof(double)) : NULL;
    long long *buckets = n > 0 ? PyMem_Calloc(n, sizeof(long long)) : NULL;
    if (n > 0 && (!values || !buckets)) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        values[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(seq, i));
        if (values[i] == -1.0 && PyErr_Occurred())
            goto fail;
        if (isnan(values[i]) || (i > 0 && !(values[i - 1] < values[i]))) {
            PyErr_SetString(PyExc_ValueError, "bounds must ascend strictly");
            goto fail;
        }
    }
    if (n == 0 || values[n - 1] != INFINITY) {
        PyErr_SetString(PyExc_ValueError, "bounds must end with +Inf, as a histogram's do");
        goto fail;
    }
    if (self->bounds != NULL) {  /* initialised meanwhile, by a __float__ above */
        PyErr_SetString(PyExc_RuntimeError, "a Counts is initialised once");
        goto fail;
    }
    Py_DECREF(seq);
    self->bounds = values;
    self->buckets = buckets;
    self->nbounds = n;
    Py_INCREF(on_first);
    self->on_first = on_first;
    return 0;
fail:
    Py_DECREF(seq);
    PyMem_Free(values);
    PyMem_Free(buckets);
    return -1;
}

static int
counts_traverse(Counts *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_first);
    return 0;
}

static int
counts_clear(Counts *self)
{
    Py_CLEAR(self->on_first);
    return 0;
}

static void
counts_dealloc(Counts *self)
{
    PyObject_GC_UnTrack(self);
    counts_clear(self);
    PyMem_Free(self->counts);
    PyMem_Free(self->bounds);
    PyMem_Free(self->buckets);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
ready(Counts *self)
{
    if (self->bounds == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Counts is not initialised");
        return 0;
    }
    return 1;
}

static PyObject *
counts_grow(Counts *self, PyObject *arg)
{
    if (!ready(self))
        return NULL;
    Py_ssize_t slots = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (slots == -1 && PyErr_Occurred())
        return NULL;
    if (slots > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(long long))
        return PyErr_NoMemory();
    if (slots > self->slots) {  /* never shrinks: a slot once handed out stays valid */
        long long *counts = PyMem_Realloc(self->counts, slots * sizeof(long long));
        if (!counts)
            return PyErr_NoMemory();
        memset(counts + self->slots, 0, (slots - self->slots) * sizeof(long long));
        self->counts = counts;
        self->slots = slots;
    }
    Py_RETURN_NONE;
}

static PyObject *
counts_record(Counts *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!ready(self))
        return NULL;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "record(slot, seconds=None)");
        return NULL;
    }
    if (!PyLong_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "record() takes an int slot, not %.80s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    Py_ssize_t slot = PyLong_AsSsize_t(args[0]);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    double seconds = 0.0;
    int timed = nargs == 2 && args[1] != Py_None;
    if (timed) {
        seconds = PyFloat_AsDouble(args[1]);
        if (seconds == -1.0 && PyErr_Occurred())
            return NULL;
    }
    if (self->on_first != NULL) {  /* once, even if it fails; Python code runs here, before anything is counted */
        PyObject *on_first = self->on_first;
        self->on_first = NULL;
        PyObject *result = PyObject_CallNoArgs(on_first);
        Py_DECREF(on_first);
        if (result == NULL)
            return NULL;
        Py_DECREF(result);
    }
    if (slot < 0 || slot >= self->slots) {  /* checked after on_first, which may grow the table */
        PyErr_Format(PyExc_IndexError, "slot %zd out of range (%zd slots)", slot, self->slots);
        return NULL;
    }
    self->counts[slot]++;
    if (timed) {
        /* The first bound not below the value, as bisect_left and a histogram's "le" place it. */
        Py_ssize_t lo = 0, hi = self->nbounds - 1;
        while (lo < hi) {
            Py_ssize_t mid = (lo + hi) / 2;
            if (self->bounds[mid] < seconds)
                lo = mid + 1;
            else
                hi = mid;
        }
        self->buckets[lo]++;
        self->sum += seconds;
    }
    Py_RETURN_NONE;
}

static PyObject *
long_list(const long long *values, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list && i < n; i++) {
        PyObject *item = PyLong_FromLongLong(values[i]);
        if (!item) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *
counts_take(Counts *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self))
        return NULL;
    /* Copy and zero first, with no Python object made in between (see the top). */
    Py_ssize_t slots = self->slots, nbounds = self->nbounds;
    long long *copy = PyMem_Malloc((slots + nbounds) * sizeof(long long));
    if (!copy)
        return PyErr_NoMemory();
    if (slots)  /* counts is NULL until the first grow */
        memcpy(copy, self->counts, slots * sizeof(long long));
    memcpy(copy + slots, self->buckets, nbounds * sizeof(long long));
    double sum = self->sum;
    if (slots)
        memset(self->counts, 0, slots * sizeof(long long));
    memset(self->buckets, 0, nbounds * sizeof(long long));
    self->sum = 0.0;

    PyObject *counts = long_list(copy, slots), *buckets = NULL, *result = NULL;
    if (counts && (buckets = long_list(copy + slots, nbounds)))
        result = Py_BuildValue("(OOd)", counts, buckets, sum);
    Py_XDECREF(counts);
    Py_XDECREF(buckets);
    if (!result) {  /* give the numbers back: the next take() has them (slots only ever grow) */
        for (Py_ssize_t i = 0; i < slots; i++)
            self->counts[i] += copy[i];
        for (Py_ssize_t i = 0; i < nbounds; i++)
            self->buckets[i] += copy[slots + i];
        self->sum += sum;
    }
    PyMem_Free(copy);
    return result;
}

static PyMethodDef counts_methods[] = {
    {"grow", (PyCFunction)counts_grow, METH_O,
     "grow(slots): make room for this many slots (new ones start at zero); never shrinks."},
    {"record", (PyCFunction)(void (*)(void))counts_record, METH_FASTCALL,
     "record(slot, seconds=None, /): one answer in this slot, and its latency when timed. The first "
     "call runs on_first (once, even if it fails) before it counts."},
    {"take", (PyCFunction)counts_take, METH_NOARGS,
     "take() -> (counts per slot, observations per bucket, sum of seconds), all set back to zero."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CountsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "movierec._tally.Counts",
    .tp_doc = "Counts(bounds, on_first): answers per slot and a latency histogram, in plain numbers.",
    .tp_basicsize = sizeof(Counts),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)counts_init,
    .tp_dealloc = (destructor)counts_dealloc,
    .tp_traverse = (traverseproc)counts_traverse,
    .tp_clear = (inquiry)counts_clear,
    .tp_methods = counts_methods,
};

static struct PyModuleDef tally_module = {
    PyModuleDef_HEAD_INIT, "movierec._tally", "A hot path's answers counted in C, for metrics.Tally.", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__tally(void)
{
    if (PyType_Ready(&CountsType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&tally_module);
    if (module && PyModule_AddObjectRef(module, "Counts", (PyObject *)&CountsType) < 0)
        Py_CLEAR(module);
    return module;
}
