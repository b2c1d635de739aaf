/* The schema report's hot loop in C: counting the (key, JSON type) pairs of parsed records.
 *
 * transforms/schema.py counts, for every accepted record, each of its top-level keys with the
 * Python type of its value, per event name, and notes the first position (the smallest
 * (rank, offset)) at which each pair was seen. In Python that is a function call per record
 * and a dict lookup on a (key, type) tuple per property, about 1,400 CPython instructions
 * each (13 % of the whole pipeline on the benchmark corpus); here one call per record does
 * it all, each property a probe of a table keyed by the two objects' addresses, with no
 * object made. A table holds a reference to every key and type it has seen, so an address
 * stays that of one object for the tally's life. Two equal keys that are distinct objects
 * (orjson shares most key strings, not all) get two entries; results() adds them up by
 * value, so the result is exactly Python's.
 *
 * Records may be added in any order: a pair's position is the smallest it was seen at.
 *
 * Tally is the twin of transforms.schema._Tally, which is used where this module was not
 * built: same methods, same results (tests/test_tally.py runs both).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject *key; /* NULL: an empty slot */
    PyObject *type;
    Py_ssize_t count;
    long long rank; /* the smallest (rank, offset) the pair was seen at */
    long long offset;
} Entry;

/* The pairs of one name. */
typedef struct {
    Entry *entries;
    size_t mask;        /* slots - 1; slots is a power of two */
    Py_ssize_t used;    /* entries in use: at most half the slots */
    Py_ssize_t records; /* records added under the name */
} Table;

typedef struct {
    PyObject_HEAD
    PyObject *names; /* dict: name -> index in tables, in the order names were first added */
    Table *tables;
    Py_ssize_t length;   /* tables in use */
    Py_ssize_t capacity; /* tables allocated */
    Py_ssize_t pairs;    /* entries in use, all tables */
} Tally;

/* A name's table starts small: a tally may gather a whole bundle's names, up to 100,000
 * (schema.HELD_PAIRS), at 320 bytes each until they have more pairs. */
#define INITIAL_SLOTS 8

static size_t slot_of(PyObject *key, PyObject *type, size_t mask) {
    /* Objects are 16-byte aligned: the low bits of an address say nothing. */
    size_t h = ((size_t)key >> 4) * (size_t)0x9E3779B97F4A7C15ull;
    return (h ^ ((size_t)type >> 4) ^ (h >> 29)) & mask;
}

static int grow(Table *table) {
    size_t slots = (table->mask + 1) * 2;
    Entry *entries = PyMem_Calloc(slots, sizeof(Entry));
    if (entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i <= table->mask; i++) {
        Entry *old = &table->entries[i];
        if (old->key == NULL) continue;
        size_t j = slot_of(old->key, old->type, slots - 1);
        while (entries[j].key != NULL) j = (j + 1) & (slots - 1);
        entries[j] = *old;
    }
    PyMem_Free(table->entries);
    table->entries = entries;
    table->mask = slots - 1;
    return 0;
}

/* The table of `name`, made when the name is new; NULL with an exception set on failure. */
static Table *table_of(Tally *self, PyObject *name) {
    PyObject *index = PyDict_GetItemWithError(self->names, name); /* borrowed */
    if (index != NULL) return &self->tables[PyLong_AsSsize_t(index)];
    if (PyErr_Occurred()) return NULL; /* an unhashable name */
    if (self->length == self->capacity) {
        Py_ssize_t capacity = self->capacity ? self->capacity * 2 : 8;
        Table *tables = PyMem_Realloc(self->tables, (size_t)capacity * sizeof(Table));
        if (tables == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        self->tables = tables;
        self->capacity = capacity;
    }
    Table *table = &self->tables[self->length];
    table->entries = PyMem_Calloc(INITIAL_SLOTS, sizeof(Entry));
    if (table->entries == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    table->mask = INITIAL_SLOTS - 1;
    table->used = 0;
    table->records = 0;
    index = PyLong_FromSsize_t(self->length);
    int failed = index == NULL || PyDict_SetItem(self->names, name, index) < 0;
    Py_XDECREF(index);
    if (failed) {
        PyMem_Free(table->entries);
        return NULL;
    }
    self->length++;
    return table;
}

static PyObject *Tally_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Tally() takes no arguments");
        return NULL;
    }
    Tally *self = (Tally *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->names = PyDict_New();
    if (self->names == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void Tally_dealloc(Tally *self) {
    for (Py_ssize_t t = 0; t < self->length; t++) {
        Table *table = &self->tables[t];
        for (size_t i = 0; i <= table->mask; i++) {
            Py_XDECREF(table->entries[i].key);
            Py_XDECREF(table->entries[i].type);
        }
        PyMem_Free(table->entries);
    }
    PyMem_Free(self->tables);
    Py_XDECREF(self->names);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(add_doc,
"add(name, values: dict, rank: int, offset: int) -> None\n\n"
"Counts one record of `name`: each (key, type(value)) pair of the dict, seen at (rank, offset).");

static PyObject *Tally_add(Tally *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "add() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *values = args[1];
    if (!PyDict_Check(values)) {
        PyErr_Format(PyExc_TypeError, "add() takes a dict, not %.100s", Py_TYPE(values)->tp_name);
        return NULL;
    }
    long long rank = PyLong_AsLongLong(args[2]);
    if (rank == -1 && PyErr_Occurred()) return NULL;
    long long offset = PyLong_AsLongLong(args[3]);
    if (offset == -1 && PyErr_Occurred()) return NULL;
    Table *table = table_of(self, args[0]);
    if (table == NULL) return NULL;
    table->records++;
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(values, &position, &key, &value)) {
        PyObject *type = (PyObject *)Py_TYPE(value);
        size_t j = slot_of(key, type, table->mask);
        for (;;) {
            Entry *entry = &table->entries[j];
            if (entry->key == key && entry->type == type) {
                entry->count++;
                if (rank < entry->rank || (rank == entry->rank && offset < entry->offset)) {
                    entry->rank = rank;
                    entry->offset = offset;
                }
                break;
            }
            if (entry->key == NULL) {
                Py_INCREF(key);
                Py_INCREF(type);
                entry->key = key;
                entry->type = type;
                entry->count = 1;
                entry->rank = rank;
                entry->offset = offset;
                table->used++;
                self->pairs++;
                if ((size_t)table->used * 2 > table->mask && grow(table) < 0) return NULL;
                break;
            }
            j = (j + 1) & table->mask;
        }
    }
    Py_RETURN_NONE;
}

/* {(key, type): (count, rank, offset)} of one table, equal keys added up by value. */
static PyObject *pairs_of(Table *table) {
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    for (size_t i = 0; i <= table->mask; i++) {
        Entry *entry = &table->entries[i];
        if (entry->key == NULL) continue;
        PyObject *pair = PyTuple_Pack(2, entry->key, entry->type);
        if (pair == NULL) goto error;
        Py_ssize_t count = entry->count;
        long long rank = entry->rank, offset = entry->offset;
        PyObject *before = PyDict_GetItemWithError(out, pair); /* borrowed */
        if (before != NULL) {
            long long rank_before = PyLong_AsLongLong(PyTuple_GET_ITEM(before, 1));
            long long offset_before = PyLong_AsLongLong(PyTuple_GET_ITEM(before, 2));
            count += PyLong_AsSsize_t(PyTuple_GET_ITEM(before, 0));
            if (rank_before < rank || (rank_before == rank && offset_before < offset)) {
                rank = rank_before;
                offset = offset_before;
            }
        } else if (PyErr_Occurred()) {
            Py_DECREF(pair);
            goto error;
        }
        PyObject *figures = Py_BuildValue("(nLL)", count, rank, offset);
        int failed = figures == NULL || PyDict_SetItem(out, pair, figures) < 0;
        Py_XDECREF(figures);
        Py_DECREF(pair);
        if (failed) goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

PyDoc_STRVAR(results_doc,
"results() -> list[tuple[name, int, dict[tuple[str, type], tuple[int, int, int]]]]\n\n"
"Per name, in the order names were first added: the records added and, per (key, type)\n"
"pair, (count, rank, offset): how many records had it and the smallest position it was seen at.");

static PyObject *Tally_results(Tally *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Py_ssize_t position = 0;
    PyObject *name, *index;
    while (PyDict_Next(self->names, &position, &name, &index)) {
        Table *table = &self->tables[PyLong_AsSsize_t(index)];
        PyObject *pairs = pairs_of(table);
        if (pairs == NULL) goto error;
        PyObject *item = Py_BuildValue("(OnN)", name, table->records, pairs);
        int failed = item == NULL || PyList_Append(out, item) < 0;
        Py_XDECREF(item);
        if (failed) goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static Py_ssize_t Tally_len(Tally *self) { return self->pairs; }

static PyMethodDef Tally_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Tally_add, METH_FASTCALL, add_doc},
    {"results", (PyCFunction)Tally_results, METH_NOARGS, results_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Tally_as_sequence = {
    .sq_length = (lenfunc)Tally_len,
};

PyDoc_STRVAR(Tally_doc,
"Tally()\n\n"
"(key, type) pairs of records, counted per name, with the first position of each;\n"
"len() is the number of entries held (pairs, all names).");

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "transforms._tally.Tally",
    .tp_doc = Tally_doc,
    .tp_basicsize = sizeof(Tally),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Tally_new,
    .tp_dealloc = (destructor)Tally_dealloc,
    .tp_methods = Tally_methods,
    .tp_as_sequence = &Tally_as_sequence,
};

static struct PyModuleDef tally_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "transforms._tally",
    .m_doc = "The schema report's (key, type) counting in C (see transforms/schema.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__tally(void) {
    if (PyType_Ready(&TallyType) < 0) return NULL;
    PyObject *module = PyModule_Create(&tally_module);
    if (module == NULL) return NULL;
    Py_INCREF(&TallyType);
    if (PyModule_AddObject(module, "Tally", (PyObject *)&TallyType) < 0) {
        Py_DECREF(&TallyType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
