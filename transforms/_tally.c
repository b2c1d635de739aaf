/* The schema report's hot loop in C: counting the (key, JSON type) pairs of parsed records.
 *
 * transforms/schema.py counts, for every accepted record, each of its top-level keys with the
 * Python type of its value. In Python that is one dict lookup on a (key, type) tuple per
 * property, about 1,400 CPython instructions each (13 % of the whole pipeline on the
 * benchmark corpus); here it is a probe of a table keyed by the two objects' addresses, with
 * no object made. The table holds a reference to every key and type it has seen, so an
 * address stays that of one object for the table's life. Two equal keys that are distinct
 * objects (orjson shares most key strings, not all) get two entries; counts() adds them up
 * by value, so the result is exactly Python's.
 *
 * PairCounts is the twin of transforms.schema._PairCounts, which is used where this module
 * was not built: same methods, same results (tests/test_tally.py runs both).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject *key;  /* NULL: an empty slot */
    PyObject *type;
    Py_ssize_t count;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *entries;
    size_t mask;     /* slots - 1; slots is a power of two */
    Py_ssize_t used; /* entries in use: at most half the slots */
} PairCounts;

#define INITIAL_SLOTS 64

static size_t slot_of(PyObject *key, PyObject *type, size_t mask) {
    /* Objects are 16-byte aligned: the low bits of an address say nothing. */
    size_t h = ((size_t)key >> 4) * (size_t)0x9E3779B97F4A7C15ull;
    return (h ^ ((size_t)type >> 4) ^ (h >> 29)) & mask;
}

static int grow(PairCounts *self) {
    size_t slots = (self->mask + 1) * 2;
    Entry *entries = PyMem_Calloc(slots, sizeof(Entry));
    if (entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i <= self->mask; i++) {
        Entry *old = &self->entries[i];
        if (old->key == NULL) continue;
        size_t j = slot_of(old->key, old->type, slots - 1);
        while (entries[j].key != NULL) j = (j + 1) & (slots - 1);
        entries[j] = *old;
    }
    PyMem_Free(self->entries);
    self->entries = entries;
    self->mask = slots - 1;
    return 0;
}

static PyObject *PairCounts_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "PairCounts() takes no arguments");
        return NULL;
    }
    PairCounts *self = (PairCounts *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->entries = PyMem_Calloc(INITIAL_SLOTS, sizeof(Entry));
    if (self->entries == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->mask = INITIAL_SLOTS - 1;
    self->used = 0;
    return (PyObject *)self;
}

static void PairCounts_dealloc(PairCounts *self) {
    if (self->entries != NULL) {
        for (size_t i = 0; i <= self->mask; i++) {
            Py_XDECREF(self->entries[i].key);
            Py_XDECREF(self->entries[i].type);
        }
        PyMem_Free(self->entries);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(add_doc,
"add(values: dict) -> int\n\n"
"Counts each (key, type(value)) pair of the dict; returns how many entries were new.");

static PyObject *PairCounts_add(PairCounts *self, PyObject *values) {
    if (!PyDict_Check(values)) {
        PyErr_Format(PyExc_TypeError, "add() takes a dict, not %.100s", Py_TYPE(values)->tp_name);
        return NULL;
    }
    Py_ssize_t position = 0, added = 0;
    PyObject *key, *value;
    while (PyDict_Next(values, &position, &key, &value)) {
        PyObject *type = (PyObject *)Py_TYPE(value);
        size_t j = slot_of(key, type, self->mask);
        for (;;) {
            Entry *entry = &self->entries[j];
            if (entry->key == key && entry->type == type) {
                entry->count++;
                break;
            }
            if (entry->key == NULL) {
                Py_INCREF(key);
                Py_INCREF(type);
                entry->key = key;
                entry->type = type;
                entry->count = 1;
                self->used++;
                added++;
                if ((size_t)self->used * 2 > self->mask && grow(self) < 0) return NULL;
                break;
            }
            j = (j + 1) & self->mask;
        }
    }
    return PyLong_FromSsize_t(added);
}

PyDoc_STRVAR(counts_doc,
"counts() -> dict[tuple[str, type], int]\n\n"
"The counts, per (key, type) pair, equal keys added up.");

static PyObject *PairCounts_counts(PairCounts *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    for (size_t i = 0; i <= self->mask; i++) {
        Entry *entry = &self->entries[i];
        if (entry->key == NULL) continue;
        PyObject *pair = PyTuple_Pack(2, entry->key, entry->type);
        if (pair == NULL) goto error;
        Py_ssize_t total = entry->count;
        PyObject *before = PyDict_GetItemWithError(out, pair); /* borrowed */
        if (before != NULL) {
            total += PyLong_AsSsize_t(before);
        } else if (PyErr_Occurred()) {
            Py_DECREF(pair);
            goto error;
        }
        PyObject *count = PyLong_FromSsize_t(total);
        int failed = count == NULL || PyDict_SetItem(out, pair, count) < 0;
        Py_XDECREF(count);
        Py_DECREF(pair);
        if (failed) goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static Py_ssize_t PairCounts_len(PairCounts *self) { return self->used; }

static PyMethodDef PairCounts_methods[] = {
    {"add", (PyCFunction)PairCounts_add, METH_O, add_doc},
    {"counts", (PyCFunction)PairCounts_counts, METH_NOARGS, counts_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods PairCounts_as_sequence = {
    .sq_length = (lenfunc)PairCounts_len,
};

PyDoc_STRVAR(PairCounts_doc,
"PairCounts()\n\n"
"(key, type) pairs of dicts, counted; len() is the number of entries held.");

static PyTypeObject PairCountsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "transforms._tally.PairCounts",
    .tp_doc = PairCounts_doc,
    .tp_basicsize = sizeof(PairCounts),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PairCounts_new,
    .tp_dealloc = (destructor)PairCounts_dealloc,
    .tp_methods = PairCounts_methods,
    .tp_as_sequence = &PairCounts_as_sequence,
};

static struct PyModuleDef tally_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "transforms._tally",
    .m_doc = "The schema report's (key, type) counting in C (see transforms/schema.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__tally(void) {
    if (PyType_Ready(&PairCountsType) < 0) return NULL;
    PyObject *module = PyModule_Create(&tally_module);
    if (module == NULL) return NULL;
    Py_INCREF(&PairCountsType);
    if (PyModule_AddObject(module, "PairCounts", (PyObject *)&PairCountsType) < 0) {
        Py_DECREF(&PairCountsType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
