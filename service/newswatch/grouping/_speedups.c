/* Compiled versions of the grouping's per-article inner loops.
 *
 * Each function here has a pure-Python twin in newswatch/grouping (the reference, used when
 * this module is not built); tests run both on the same inputs and compare. Nothing here
 * decides anything: these are the dictionary arithmetic, hashing and sorting that each
 * article repeats a few hundred times, where CPython's per-element overhead was most of the
 * cost of grouping.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- dictionary arithmetic ----------------------------------------------------------- */

/* sum(a[k] * b.get(k, 0.0) for k in a), iterating the smaller of the two. */
static PyObject *
speed_dot(PyObject *self, PyObject *args)
{
    PyObject *a, *b;
    if (!PyArg_ParseTuple(args, "O!O!:dot", &PyDict_Type, &a, &PyDict_Type, &b))
        return NULL;
    if (PyDict_GET_SIZE(a) > PyDict_GET_SIZE(b)) {
        PyObject *t = a;
        a = b;
        b = t;
    }
    double total = 0.0;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(a, &pos, &key, &value)) {
        PyObject *other = PyDict_GetItemWithError(b, key);
        if (other == NULL) {
            if (PyErr_Occurred())
                return NULL;
            continue;
        }
        double x = PyFloat_AsDouble(value), y = PyFloat_AsDouble(other);
        if ((x == -1.0 || y == -1.0) && PyErr_Occurred())
            return NULL;
        total += x * y;
    }
    return PyFloat_FromDouble(total);
}

/* target[k] = target.get(k, 0.0) + v for k, v in source.items(). */
static PyObject *
speed_accumulate(PyObject *self, PyObject *args)
{
    PyObject *target, *source;
    if (!PyArg_ParseTuple(args, "O!O!:accumulate", &PyDict_Type, &target, &PyDict_Type, &source))
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(source, &pos, &key, &value)) {
        double v = PyFloat_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        PyObject *old = PyDict_GetItemWithError(target, key);
        if (old == NULL && PyErr_Occurred())
            return NULL;
        if (old != NULL) {
            double o = PyFloat_AsDouble(old);
            if (o == -1.0 && PyErr_Occurred())
                return NULL;
            v += o;
        }
        PyObject *sum = PyFloat_FromDouble(v);
        if (sum == NULL || PyDict_SetItem(target, key, sum) < 0) {
            Py_XDECREF(sum);
            return NULL;
        }
        Py_DECREF(sum);
    }
    Py_RETURN_NONE;
}

/* counts[k] = counts.get(k, 0) + 1 for each key of each dict in `sources`. */
static PyObject *
speed_count_keys(PyObject *self, PyObject *args)
{
    PyObject *counts, *sources;
    if (!PyArg_ParseTuple(args, "O!O!:count_keys", &PyDict_Type, &counts, &PyTuple_Type, &sources))
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(sources); i++) {
        PyObject *source = PyTuple_GET_ITEM(sources, i);
        if (!PyDict_Check(source)) {
            PyErr_SetString(PyExc_TypeError, "count_keys: sources must be dicts");
            return NULL;
        }
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(source, &pos, &key, &value)) {
            PyObject *old = PyDict_GetItemWithError(counts, key);
            long n = 0;
            if (old == NULL && PyErr_Occurred())
                return NULL;
            if (old != NULL) {
                n = PyLong_AsLong(old);
                if (n == -1 && PyErr_Occurred())
                    return NULL;
            }
            PyObject *next = PyLong_FromLong(n + 1);
            if (next == NULL || PyDict_SetItem(counts, key, next) < 0) {
                Py_XDECREF(next);
                return NULL;
            }
            Py_DECREF(next);
        }
    }
    Py_RETURN_NONE;
}

/* Cosine of the entries of a and b whose keys start with `prefix` (one character): each
 * side divided by its norm (or 1.0 when that is 0); -1.0 when either side has no such entry. */
static int
starts_with(PyObject *key, Py_UCS4 prefix)
{
    return PyUnicode_Check(key) && PyUnicode_GET_LENGTH(key) > 0 &&
           PyUnicode_READ_CHAR(key, 0) == prefix;
}

static PyObject *
speed_prefixed_cosine(PyObject *self, PyObject *args)
{
    PyObject *a, *b, *prefix_obj;
    if (!PyArg_ParseTuple(args, "O!O!U:prefixed_cosine", &PyDict_Type, &a, &PyDict_Type, &b,
                          &prefix_obj))
        return NULL;
    if (PyUnicode_GET_LENGTH(prefix_obj) != 1) {
        PyErr_SetString(PyExc_ValueError, "prefixed_cosine: prefix must be one character");
        return NULL;
    }
    Py_UCS4 prefix = PyUnicode_READ_CHAR(prefix_obj, 0);
    double dot = 0.0, na = 0.0, nb = 0.0;
    int any_a = 0, any_b = 0;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(a, &pos, &key, &value)) {
        if (!starts_with(key, prefix))
            continue;
        any_a = 1;
        double x = PyFloat_AsDouble(value);
        if (x == -1.0 && PyErr_Occurred())
            return NULL;
        na += x * x;
        PyObject *other = PyDict_GetItemWithError(b, key);
        if (other == NULL) {
            if (PyErr_Occurred())
                return NULL;
            continue;
        }
        double y = PyFloat_AsDouble(other);
        if (y == -1.0 && PyErr_Occurred())
            return NULL;
        dot += x * y;
    }
    pos = 0;
    while (PyDict_Next(b, &pos, &key, &value)) {
        if (!starts_with(key, prefix))
            continue;
        any_b = 1;
        double y = PyFloat_AsDouble(value);
        if (y == -1.0 && PyErr_Occurred())
            return NULL;
        nb += y * y;
    }
    if (!any_a || !any_b)
        return PyFloat_FromDouble(-1.0);
    double norm_a = na > 0.0 ? sqrt(na) : 1.0, norm_b = nb > 0.0 ? sqrt(nb) : 1.0;
    return PyFloat_FromDouble(dot / (norm_a * norm_b));
}

/* ---- term counting ------------------------------------------------------------------- */

/* For each word: its term from `memo` (or term_of(word) when not there; "" skips it); then
 * terms[t] = terms.get(t, 0.0) + n * weight for each term t seen n times, in the order terms
 * first appear. */
static PyObject *
speed_add_terms(PyObject *self, PyObject *args)
{
    PyObject *terms, *words, *memo, *term_of;
    double weight;
    if (!PyArg_ParseTuple(args, "O!O!dO!O:add_terms", &PyDict_Type, &terms, &PyList_Type, &words,
                          &weight, &PyDict_Type, &memo, &term_of))
        return NULL;
    PyObject *seen = PyDict_New(); /* term -> count, in first-seen order */
    if (seen == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(words); i++) {
        PyObject *word = PyList_GET_ITEM(words, i);
        PyObject *term = PyDict_GetItemWithError(memo, word); /* borrowed */
        if (term == NULL) {
            if (PyErr_Occurred())
                goto fail;
            term = PyObject_CallOneArg(term_of, word);
            if (term == NULL)
                goto fail;
        } else {
            Py_INCREF(term);
        }
        if (!PyUnicode_Check(term)) {
            Py_DECREF(term);
            PyErr_SetString(PyExc_TypeError, "add_terms: terms must be str");
            goto fail;
        }
        if (PyUnicode_GET_LENGTH(term) == 0) {
            Py_DECREF(term);
            continue;
        }
        PyObject *old = PyDict_GetItemWithError(seen, term);
        long n = 0;
        if (old == NULL && PyErr_Occurred()) {
            Py_DECREF(term);
            goto fail;
        }
        if (old != NULL)
            n = PyLong_AsLong(old);
        PyObject *next = PyLong_FromLong(n + 1);
        int bad = next == NULL || PyDict_SetItem(seen, term, next) < 0;
        Py_XDECREF(next);
        Py_DECREF(term);
        if (bad)
            goto fail;
    }
    Py_ssize_t pos = 0;
    PyObject *term, *count;
    while (PyDict_Next(seen, &pos, &term, &count)) {
        double add = (double)PyLong_AsLong(count) * weight;
        PyObject *old = PyDict_GetItemWithError(terms, term);
        if (old == NULL && PyErr_Occurred())
            goto fail;
        if (old != NULL) {
            double o = PyFloat_AsDouble(old);
            if (o == -1.0 && PyErr_Occurred())
                goto fail;
            add = o + add;
        }
        PyObject *value = PyFloat_FromDouble(add);
        int bad = value == NULL || PyDict_SetItem(terms, term, value) < 0;
        Py_XDECREF(value);
        if (bad)
            goto fail;
    }
    Py_DECREF(seen);
    Py_RETURN_NONE;
fail:
    Py_DECREF(seen);
    return NULL;
}

/* ---- candidate votes ----------------------------------------------------------------- */

typedef struct {
    Py_ssize_t count;
    Py_ssize_t order; /* first appearance */
    PyObject *key;    /* borrowed from the `seen` dict */
} Vote;

static int
vote_cmp(const void *x, const void *y)
{
    const Vote *a = x, *b = y;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    return a->order < b->order ? -1 : (a->order > b->order);
}

/* The n keys found most often in the iterables postings.get(k) for k in `keys`, most first;
 * ties in the order first found (Counter + a stable sort by count). */
static PyObject *
speed_top_votes(PyObject *self, PyObject *args)
{
    PyObject *postings, *keys;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "O!O!n:top_votes", &PyDict_Type, &postings, &PyList_Type, &keys,
                          &n))
        return NULL;
    PyObject *seen = PyDict_New(); /* key -> index into votes */
    Vote *votes = NULL;
    Py_ssize_t used = 0, capacity = 0;
    PyObject *out = NULL;
    if (seen == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *posting = PyDict_GetItemWithError(postings, PyList_GET_ITEM(keys, i));
        if (posting == NULL) {
            if (PyErr_Occurred())
                goto done;
            continue;
        }
        PyObject *it = PyObject_GetIter(posting);
        if (it == NULL)
            goto done;
        PyObject *item;
        while ((item = PyIter_Next(it)) != NULL) {
            PyObject *index = PyDict_GetItemWithError(seen, item);
            if (index != NULL) {
                votes[PyLong_AsSsize_t(index)].count++;
                Py_DECREF(item);
                continue;
            }
            if (PyErr_Occurred()) {
                Py_DECREF(item);
                break;
            }
            if (used == capacity) {
                capacity = capacity ? capacity * 2 : 256;
                Vote *grown = PyMem_Realloc(votes, capacity * sizeof(Vote));
                if (grown == NULL) {
                    PyErr_NoMemory();
                    Py_DECREF(item);
                    break;
                }
                votes = grown;
            }
            PyObject *at = PyLong_FromSsize_t(used);
            int bad = at == NULL || PyDict_SetItem(seen, item, at) < 0;
            Py_XDECREF(at);
            if (bad) {
                Py_DECREF(item);
                break;
            }
            votes[used].count = 1;
            votes[used].order = used;
            votes[used].key = item; /* `seen` holds a reference */
            used++;
            Py_DECREF(item);
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            goto done;
    }
    if (used > 1)
        qsort(votes, used, sizeof(Vote), vote_cmp);
    if (n > used)
        n = used;
    if (n < 0)
        n = 0;
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(votes[i].key);
        PyList_SET_ITEM(out, i, votes[i].key);
    }
done:
    PyMem_Free(votes);
    Py_DECREF(seen);
    return out;
}

/* ---- TF-IDF vector ------------------------------------------------------------------- */

typedef struct {
    double weight;
    Py_ssize_t index;
} Ranked;

static int
ranked_cmp(const void *x, const void *y)
{
    const Ranked *a = x, *b = y;
    if (a->weight != b->weight)
        return a->weight > b->weight ? -1 : 1;
    return a->index < b->index ? -1 : (a->index > b->index);
}

/* The unit TF-IDF vector of an article's terms and entities, heaviest `size` entries first,
 * and its first `rare_count` keys whose document frequency is at most rare_limit. */
static PyObject *
speed_tfidf(PyObject *self, PyObject *args)
{
    PyObject *terms, *entities, *df;
    Py_ssize_t docs, size, rare_count;
    double entity_weight, rare_limit;
    if (!PyArg_ParseTuple(args, "O!O!O!ndnnd:tfidf", &PyDict_Type, &terms, &PyDict_Type,
                          &entities, &PyDict_Type, &df, &docs, &entity_weight, &size,
                          &rare_count, &rare_limit))
        return NULL;
    Py_ssize_t n_terms = PyDict_GET_SIZE(terms), total = n_terms + PyDict_GET_SIZE(entities);
    PyObject *vec = PyDict_New(), *rare = PyList_New(0), *result = NULL;
    PyObject **keys = PyMem_Malloc((total + 1) * sizeof(PyObject *));
    double *dfs = PyMem_Malloc((total + 1) * sizeof(double));
    Ranked *ranked = PyMem_Malloc((total + 1) * sizeof(Ranked));
    if (vec == NULL || rare == NULL || keys == NULL || dfs == NULL || ranked == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    double base = log((double)docs + 1.0) + 1.0;
    Py_ssize_t i = 0, pos = 0;
    PyObject *key, *value;
    for (int part = 0; part < 2; part++) {
        PyObject *source = part == 0 ? terms : entities;
        pos = 0;
        while (PyDict_Next(source, &pos, &key, &value)) {
            PyObject *count = PyDict_GetItemWithError(df, key);
            double d = 0.0;
            if (count == NULL && PyErr_Occurred())
                goto done;
            if (count != NULL) {
                d = PyFloat_AsDouble(count);
                if (d == -1.0 && PyErr_Occurred())
                    goto done;
            }
            double w = base - log1p(d);
            if (part == 0) {
                double tf = PyFloat_AsDouble(value);
                if (tf == -1.0 && PyErr_Occurred())
                    goto done;
                /* Sub-linear tf; a term seen only with a weight below 1 keeps it. */
                w *= tf >= 1.0 ? 1.0 + log(tf) : tf;
            } else {
                w *= entity_weight;
            }
            keys[i] = key;
            dfs[i] = d;
            ranked[i].weight = w;
            ranked[i].index = i;
            i++;
        }
    }
    qsort(ranked, total, sizeof(Ranked), ranked_cmp);
    if (size > total)
        size = total;
    if (size < 0)
        size = 0;
    double norm2 = 0.0;
    for (i = 0; i < size; i++)
        norm2 += ranked[i].weight * ranked[i].weight;
    double norm = sqrt(norm2);
    if (norm == 0.0)
        norm = 1.0;
    for (i = 0; i < size; i++) {
        PyObject *k = keys[ranked[i].index];
        PyObject *w = PyFloat_FromDouble(ranked[i].weight / norm);
        int bad = w == NULL || PyDict_SetItem(vec, k, w) < 0;
        Py_XDECREF(w);
        if (bad)
            goto done;
        if (PyList_GET_SIZE(rare) < rare_count && dfs[ranked[i].index] <= rare_limit &&
            PyList_Append(rare, k) < 0)
            goto done;
    }
    result = PyTuple_Pack(2, vec, rare);
done:
    PyMem_Free(keys);
    PyMem_Free(dfs);
    PyMem_Free(ranked);
    Py_XDECREF(vec);
    Py_XDECREF(rare);
    return result;
}

/* ---- MinHash ------------------------------------------------------------------------- */

#define MAX_BYTES 8192
#define BASE 0x100000001B3ULL
#define K1 0x9E3779B97F4A7C15ULL
#define K2 0xC2B2AE3D27D4EB4FULL
#define EMPTY_BIN 0xFFFFFFFFu
#define MAX_PERM 1024

static inline uint64_t
mix(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBULL;
    h ^= h >> 31;
    return h;
}

/* Hashes of the white-space separated tokens of data[:len] (bytes <= 32 separate); returns
 * how many. out has room for len / 2 + 1. */
static Py_ssize_t
hash_tokens(const unsigned char *data, Py_ssize_t len, uint64_t *out)
{
    Py_ssize_t n = 0, i = 0;
    while (i < len) {
        while (i < len && data[i] <= 32)
            i++;
        if (i >= len)
            break;
        uint64_t h = 0, power = 1;
        while (i < len && data[i] > 32) {
            h += (uint64_t)data[i] * power;
            power *= BASE;
            i++;
        }
        out[n++] = mix(h);
    }
    return n;
}

/* (tokens, signature bytes or None) of a text: the count of its white-space separated
 * tokens in the first MAX_BYTES bytes of UTF-8, and the one-permutation MinHash of their
 * 3-shingles (num_perm uint32 bins) when there are at least max(min_tokens, 3). */
static PyObject *
speed_minhash(PyObject *self, PyObject *args)
{
    PyObject *text;
    unsigned long long mult;
    int shift, num_perm;
    Py_ssize_t min_tokens;
    if (!PyArg_ParseTuple(args, "UKiin:minhash", &text, &mult, &shift, &num_perm, &min_tokens))
        return NULL;
    if (num_perm <= 0 || num_perm > MAX_PERM || shift < 1 || shift > 63 ||
        (1ULL << (64 - shift)) != (unsigned long long)num_perm) {
        PyErr_SetString(PyExc_ValueError, "minhash: bad num_perm or shift");
        return NULL;
    }
    Py_ssize_t len;
    const char *data = PyUnicode_AsUTF8AndSize(text, &len);
    if (data == NULL)
        return NULL;
    if (len > MAX_BYTES)
        len = MAX_BYTES;
    uint64_t hashes[MAX_BYTES / 2 + 1];
    Py_ssize_t n = hash_tokens((const unsigned char *)data, len, hashes);
    if (n < min_tokens || n < 3)
        return Py_BuildValue("nO", n, Py_None);
    uint64_t low[MAX_PERM];
    uint32_t sig[MAX_PERM];
    unsigned char filled[MAX_PERM];
    memset(filled, 0, (size_t)num_perm);
    for (int b = 0; b < num_perm; b++)
        low[b] = UINT64_MAX;
    for (Py_ssize_t j = 0; j + 2 < n; j++) {
        /* Order matters in a shingle: each position has its own odd multiplier. */
        uint64_t h = (hashes[j] * K1 + hashes[j + 1] * K2 + hashes[j + 2]) * mult;
        uint64_t b = h >> shift;
        filled[b] = 1;
        if (h < low[b])
            low[b] = h;
    }
    for (int b = 0; b < num_perm; b++)
        sig[b] = filled[b] ? ((uint32_t)low[b] & 0xFFFFFFFEu) : EMPTY_BIN;
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)sig, num_perm * sizeof(uint32_t));
    if (bytes == NULL)
        return NULL;
    return Py_BuildValue("nN", n, bytes);
}

static PyMethodDef methods[] = {
    {"dot", speed_dot, METH_VARARGS, "sum(a[k] * b.get(k, 0.0) for k in a)."},
    {"accumulate", speed_accumulate, METH_VARARGS, "target[k] += v for k, v in source."},
    {"count_keys", speed_count_keys, METH_VARARGS, "counts[k] += 1 for each key of each dict."},
    {"prefixed_cosine", speed_prefixed_cosine, METH_VARARGS,
     "Cosine of the entries whose keys start with prefix; -1.0 when a side has none."},
    {"add_terms", speed_add_terms, METH_VARARGS, "Count the words' terms into a dict."},
    {"top_votes", speed_top_votes, METH_VARARGS, "Keys found most often in postings."},
    {"tfidf", speed_tfidf, METH_VARARGS, "Unit TF-IDF vector and its rare keys."},
    {"minhash", speed_minhash, METH_VARARGS, "Token count and MinHash signature of a text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "Compiled inner loops of grouping (pure-Python twins in newswatch.grouping).", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
